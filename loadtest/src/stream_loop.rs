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
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::codes::Planned;
use crate::error::LoadError;
use crate::mix::CodeKind;
use crate::open_loop::GateClient;
use crate::pacing::{Load, Pacer, Run};
use crate::record::Outcome;

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
    let opened = open(gates, streams, run_id).await?;
    let mut pacer = Pacer::new(load, requests.len(), label)?;

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
        let (slots, recorder) = (pacer.slots(), pacer.recorder());
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
                recorder.answered(kind, outcome, due, answered);
                slots.add_permits(1);
            }
        });
    }

    for (i, planned) in requests.into_iter().enumerate() {
        let (slot, due) = pacer.due(i).await?;
        // The reader gives the slot back when the answer comes.
        slot.forget();
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
        pacer.lag(due);
        scans
            .send(scan)
            .map_err(|_| LoadError::Stream(format!("gate {}'s stream closed", gate.id)))?;
        pacer.sent();
    }

    let drained = pacer.drain().await;
    // Closing the writers ends the streams, and so the readers.
    drop(writers);
    if let Err(err) = drained {
        readers.abort_all();
        return Err(err);
    }
    while readers.join_next().await.is_some() {}
    Ok(pacer.finish())
}
