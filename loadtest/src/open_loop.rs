//! The open loop: request `i` is due at `start + i / rate` and is sent then, whatever
//! happened to the requests before it.
//!
//! A closed loop (send, wait, send) slows down with the server and so never sees its
//! stalls: while the server sleeps, the requests that real gates would have sent are
//! simply not made ("coordinated omission"). Here every request is its own task,
//! spawned at its due time, and its latency runs from that due time, not from when the
//! task got going, so a stalled server, or a generator that fell behind, shows in the
//! tail. Tasks in flight are bounded by a generous cap; when it is reached the
//! generator waits for a slot (the wait counts in the latency) and the hit is
//! reported, because past it the run no longer measures what it offered.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use citypass_proto::v1::VerifyRequest;
use citypass_proto::v1::verifier_service_client::VerifierServiceClient;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::codes::Planned;
use crate::error::LoadError;
use crate::mix::CodeKind;
use crate::record::{Outcome, Recording, latency_histogram, micros};

/// How the load is offered.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Requests per second.
    pub rate: u32,
    /// Requests in flight at most.
    pub in_flight_cap: usize,
    /// How long after the last request is due its answers may take.
    pub drain: Duration,
    /// Whether to show a progress bar (on standard error, when it is a terminal).
    pub progress: bool,
}

/// A bar of `n` answers labelled `label`, hidden unless `load.progress`.
pub fn progress_bar(load: Load, n: usize, label: &str) -> ProgressBar {
    if !load.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(n as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>28} [{bar:30}] {pos}/{len} answered, {elapsed} of about {duration}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("{label} at {}/s", load.rate));
    bar
}

/// A gate's connection to the server under load.
#[derive(Clone)]
pub struct GateClient {
    /// The gate's id.
    pub id: String,
    /// Its scene, as the API's number.
    pub scene: i32,
    /// A client over the gate's own mTLS channel.
    pub client: VerifierServiceClient<Channel>,
}

/// What an open-loop run saw.
#[derive(Debug)]
pub struct Run {
    /// Requests sent (every request of the plan).
    pub sent: u64,
    /// Answers and latencies.
    pub recording: Recording,
    /// When the last request was actually sent, from the start.
    pub last_send: Duration,
    /// How often a request found the in-flight cap reached.
    pub cap_hits: u64,
    /// The most requests in flight at once.
    pub max_in_flight: usize,
    /// How late each request was sent after its due time, microseconds: the
    /// generator's own lateness (its timer's resolution, a busy core), which is part
    /// of every latency and must stay well below the latencies to be measured.
    pub send_lag: Histogram<u64>,
}

/// Sends `requests` at `load.rate` round-robin from `gates`, scan ids `<run_id>-<i>`,
/// with a progress bar labelled `label`.
pub async fn run(
    load: Load,
    gates: &[GateClient],
    requests: Vec<Planned>,
    run_id: &str,
    label: &str,
) -> Result<Run, LoadError> {
    if gates.is_empty() {
        return Err(LoadError::Settings("a run needs a gate".to_owned()));
    }
    schedule(load, requests, label, |i, planned| {
        let gate = &gates[i % gates.len()];
        let request = VerifyRequest {
            gate_id: gate.id.clone(),
            scene: gate.scene,
            scan_id: format!("{run_id}-{i}"),
            qr_text: planned.text,
            ..VerifyRequest::default()
        };
        let mut client = gate.client.clone();
        let kind = planned.kind;
        async move {
            let result = client
                .verify(request)
                .await
                .map(tonic::Response::into_inner);
            (kind, Outcome::of(&result))
        }
    })
    .await
}

/// The open loop over any call: item `i` is handed to `call` at its due time and the
/// call's future runs as its own task; what it returns is recorded with the latency
/// from the due time.
pub async fn schedule<T, F, Fut>(
    load: Load,
    items: Vec<T>,
    label: &str,
    mut call: F,
) -> Result<Run, LoadError>
where
    F: FnMut(usize, T) -> Fut,
    Fut: Future<Output = (CodeKind, Outcome)> + Send + 'static,
{
    if load.rate == 0 || load.in_flight_cap == 0 {
        return Err(LoadError::Settings(
            "a run needs a rate and an in-flight cap above zero".to_owned(),
        ));
    }
    let cap = u32::try_from(load.in_flight_cap)
        .map_err(|_| LoadError::Settings("the in-flight cap is too large".to_owned()))?;
    let slots = Arc::new(Semaphore::new(load.in_flight_cap));
    let recording = Arc::new(Mutex::new(Recording::default()));
    let interval = 1.0 / f64::from(load.rate);
    // A little lead, so that the first requests are not late from the start.
    let start = Instant::now() + Duration::from_millis(20);
    let mut cap_hits = 0u64;
    let mut max_in_flight = 0usize;
    let mut sent = 0u64;
    let mut last_send = Duration::ZERO;
    let mut send_lag = latency_histogram();
    let bar = progress_bar(load, items.len(), label);

    for (i, item) in items.into_iter().enumerate() {
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
        max_in_flight = max_in_flight.max(load.in_flight_cap - slots.available_permits());
        let answer = call(i, item);
        let recording = recording.clone();
        send_lag.saturating_record(micros(Instant::now().saturating_duration_since(due)));
        let bar = bar.clone();
        tokio::spawn(async move {
            let (kind, outcome) = answer.await;
            let answered = Instant::now();
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
            drop(slot);
        });
        sent += 1;
        last_send = Instant::now().saturating_duration_since(start);
    }

    // Every slot back means every request answered (or failed).
    let drained = tokio::time::timeout(load.drain, slots.acquire_many(cap)).await;
    bar.finish_and_clear();
    if drained.is_err() {
        return Err(LoadError::Unanswered(
            load.in_flight_cap - slots.available_permits(),
        ));
    }
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
