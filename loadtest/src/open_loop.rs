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

use citypass_proto::v1::VerifyRequest;
use citypass_proto::v1::verifier_service_client::VerifierServiceClient;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::codes::Planned;
use crate::error::LoadError;
use crate::mix::CodeKind;
use crate::pacing::{Load, Pacer, Run};
use crate::record::Outcome;

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
    let mut pacer = Pacer::new(load, items.len(), label)?;
    for (i, item) in items.into_iter().enumerate() {
        let (slot, due) = pacer.due(i).await?;
        let answer = call(i, item);
        pacer.lag(due);
        let recording = pacer.recorder();
        tokio::spawn(async move {
            let (kind, outcome) = answer.await;
            recording.answered(kind, outcome, due, Instant::now());
            drop(slot);
        });
        pacer.sent();
    }
    pacer.drain().await?;
    Ok(pacer.finish())
}
