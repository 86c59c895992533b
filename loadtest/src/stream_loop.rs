//! The open loop over VerifyStream: a gate controller's long-lived streams, each
//! carrying many scans.
//!
//! `--streams N` streams are opened before the run (stream *j* from gate *j* mod the
//! gates, with that gate's certificate) and each is checked with one scan that no
//! store remembers. Scan *i* is due at `start + i / rate`, like a Verify request, and
//! is written then on stream *i* mod N whatever became of the scans before it; each
//! stream's reader matches answers to scans by `scan_id` (the server answers a
//! stream's scans as they are decided, not necessarily in order) and records the
//! latency from the scan's due time. A `ScanError` counts as an error under its gRPC
//! code, as Verify's status would. The in-flight cap and the drain are as for Verify
//! ([`crate::open_loop`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use citypass_proto::v1::{
    DenyReason, VerifyRequest, VerifyResponse, VerifyStreamRequest, VerifyStreamResponse,
};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::codes::Planned;
use crate::error::LoadError;
use crate::mix::CodeKind;
use crate::open_loop::{GateClient, Load, Run, progress_bar};
use crate::record::{Outcome, Recording, latency_histogram, micros};

/// Scans written but not answered, by scan id: when each was due and what it carried.
type Pending = Arc<Mutex<HashMap<String, (Instant, CodeKind)>>>;

/// One open stream: where to write scans, and the scans awaiting their answer.
struct OpenStream {
    gate: GateClient,
    scans: mpsc::UnboundedSender<VerifyStreamRequest>,
    pending: Pending,
    inbound: tonic::Streaming<VerifyStreamResponse>,
}

/// The outcome an answer on a stream stands for, and its scan id.
fn outcome_of(answer: VerifyStreamResponse) -> Option<(String, Outcome)> {
    match (answer.response, answer.error) {
        (Some(response), _) => {
            let id = response.scan_id.clone();
            Some((
                id,
                Outcome::of(&Ok::<VerifyResponse, tonic::Status>(response)),
            ))
        }
        (None, Some(error)) => Some((
            error.scan_id,
            Outcome::Failed(format!("{:?}", tonic::Code::from(error.code))),
        )),
        (None, None) => None,
    }
}

/// Opens `n` streams from `gates` in turn, each checked with one scan that is not a
/// code (it must come back DENY BAD_PREFIX).
async fn open(gates: &[GateClient], n: usize, run_id: &str) -> Result<Vec<OpenStream>, LoadError> {
    let mut streams = Vec::with_capacity(n);
    for j in 0..n {
        let gate = gates[j % gates.len()].clone();
        let (scans, queue) = mpsc::unbounded_channel();
        let probe_id = format!("{run_id}-open-{j}");
        let probe = VerifyStreamRequest {
            request: Some(VerifyRequest {
                gate_id: gate.id.clone(),
                scene: gate.scene,
                scan_id: probe_id.clone(),
                qr_text: "NOT-A-CODE".to_owned(),
                ..VerifyRequest::default()
            }),
        };
        scans
            .send(probe)
            .map_err(|_| LoadError::Stream("the stream closed at once".to_owned()))?;
        let mut client = gate.client.clone();
        let mut inbound = client
            .verify_stream(UnboundedReceiverStream::new(queue))
            .await
            .map_err(|s| LoadError::Stream(format!("opening: {:?} {}", s.code(), s.message())))?
            .into_inner();
        let first = tokio::time::timeout(Duration::from_secs(10), inbound.next())
            .await
            .map_err(|_| LoadError::Stream("no answer to the opening scan".to_owned()))?;
        let answer = match first {
            Some(Ok(answer)) => outcome_of(answer),
            Some(Err(s)) => {
                return Err(LoadError::Stream(format!("{:?} {}", s.code(), s.message())));
            }
            None => None,
        };
        let bad_prefix = Outcome::Denied(crate::record::reason_name(DenyReason::BadPrefix as i32));
        match answer {
            Some((id, outcome)) if id == probe_id && outcome == bad_prefix => {}
            other => {
                return Err(LoadError::Stream(format!(
                    "gate {}: expected DENY BAD_PREFIX for the opening scan, got {:?}",
                    gate.id,
                    other.map(|(_, o)| o.label())
                )));
            }
        }
        streams.push(OpenStream {
            gate,
            scans,
            pending: Pending::default(),
            inbound,
        });
    }
    Ok(streams)
}

/// Sends `requests` at `load.rate` over `streams` VerifyStreams opened from `gates`,
/// scan ids `<run_id>-<i>`.
pub async fn run(
    load: Load,
    gates: &[GateClient],
    streams: usize,
    requests: Vec<Planned>,
    run_id: &str,
    label: &str,
) -> Result<Run, LoadError> {
    if gates.is_empty() || streams == 0 || load.rate == 0 || load.in_flight_cap == 0 {
        return Err(LoadError::Settings(
            "a stream run needs a gate, a stream, a rate and an in-flight cap above zero"
                .to_owned(),
        ));
    }
    let cap = u32::try_from(load.in_flight_cap)
        .map_err(|_| LoadError::Settings("the in-flight cap is too large".to_owned()))?;
    let opened = open(gates, streams, run_id).await?;
    let slots = Arc::new(Semaphore::new(load.in_flight_cap));
    let recording = Arc::new(Mutex::new(Recording::default()));
    let interval = 1.0 / f64::from(load.rate);
    let start = Instant::now() + Duration::from_millis(20);
    let bar = progress_bar(load, requests.len(), label);

    let mut writers = Vec::with_capacity(opened.len());
    let mut readers = tokio::task::JoinSet::new();
    for stream in opened {
        let OpenStream {
            gate,
            scans,
            pending,
            mut inbound,
        } = stream;
        writers.push((gate, scans, pending.clone()));
        let (slots, recording, bar) = (slots.clone(), recording.clone(), bar.clone());
        readers.spawn(async move {
            while let Some(Ok(answer)) = inbound.next().await {
                let answered = Instant::now();
                let Some((id, outcome)) = outcome_of(answer) else {
                    continue;
                };
                let Some((due, kind)) = pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id)
                else {
                    continue;
                };
                recording
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .record(
                        kind,
                        outcome,
                        answered.saturating_duration_since(due),
                        answered.saturating_duration_since(start),
                    );
                bar.inc(1);
                slots.add_permits(1);
            }
        });
    }

    let mut cap_hits = 0u64;
    let mut max_in_flight = 0usize;
    let mut sent = 0u64;
    let mut last_send = Duration::ZERO;
    let mut send_lag = latency_histogram();
    for (i, planned) in requests.into_iter().enumerate() {
        let due = start + Duration::from_secs_f64(i as f64 * interval);
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                cap_hits += 1;
                slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| LoadError::Settings("the in-flight slots closed".to_owned()))?
            }
        };
        // The reader gives the slot back when the answer comes.
        slot.forget();
        max_in_flight = max_in_flight.max(load.in_flight_cap - slots.available_permits());
        let (gate, scans, pending) = &writers[i % writers.len()];
        let scan_id = format!("{run_id}-{i}");
        pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(scan_id.clone(), (due, planned.kind));
        let scan = VerifyStreamRequest {
            request: Some(VerifyRequest {
                gate_id: gate.id.clone(),
                scene: gate.scene,
                scan_id,
                qr_text: planned.text,
                ..VerifyRequest::default()
            }),
        };
        send_lag.saturating_record(micros(Instant::now().saturating_duration_since(due)));
        scans
            .send(scan)
            .map_err(|_| LoadError::Stream(format!("gate {}'s stream closed", gate.id)))?;
        sent += 1;
        last_send = Instant::now().saturating_duration_since(start);
    }

    let drained = tokio::time::timeout(load.drain, slots.acquire_many(cap)).await;
    bar.finish_and_clear();
    // Closing the writers ends the streams, and so the readers.
    drop(writers);
    if drained.is_err() {
        readers.abort_all();
        return Err(LoadError::Unanswered(
            load.in_flight_cap - slots.available_permits(),
        ));
    }
    while readers.join_next().await.is_some() {}
    let recording = recording
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    Ok(Run {
        sent,
        recording,
        last_send,
        cap_hits,
        max_in_flight,
        send_lag,
    })
}
