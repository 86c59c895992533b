//! The gates' connections: one mTLS channel per gate, each with the gate's own
//! certificate (so the server's per-caller limits and its authorisation see separate
//! gates), opened and checked before anything is measured, so that no handshake is
//! counted in a run's latencies.

use std::time::Duration;

use citypass_proto::v1::verifier_service_client::VerifierServiceClient;
use citypass_proto::v1::{DenyReason, VerifyRequest};
use citypass_runtime::UpstreamConfig;

use crate::error::LoadError;
use crate::open_loop::GateClient;
use crate::record::Outcome;
use crate::target::GateIdentity;

/// How long one call may take before it counts as an error (DEADLINE_EXCEEDED).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected client per gate for the server at `url`.
pub async fn connect(url: &str, gates: &[GateIdentity]) -> Result<Vec<GateClient>, LoadError> {
    let mut upstream = UpstreamConfig::new(url);
    upstream.connect_timeout = Duration::from_secs(5);
    upstream.request_timeout = CALL_TIMEOUT;
    let mut clients = Vec::with_capacity(gates.len());
    for gate in gates {
        let client = GateClient {
            id: gate.id.clone(),
            scene: citypass_proto::scene::to_api(gate.scene),
            client: VerifierServiceClient::new(upstream.channel(Some(&gate.tls))?),
        };
        // One call that no store remembers (not a code), to open the connection and
        // show that the gate is known.
        let mut probe = client.client.clone();
        let answer = probe
            .verify(VerifyRequest {
                gate_id: gate.id.clone(),
                scene: client.scene,
                scan_id: "loadtest-connect".to_owned(),
                qr_text: "NOT-A-CODE".to_owned(),
                ..VerifyRequest::default()
            })
            .await
            .map(tonic::Response::into_inner);
        let got = match answer {
            Ok(a) if a.deny_reason == DenyReason::BadPrefix as i32 => None,
            Ok(a) => Some(Outcome::of(&Ok(a)).label()),
            Err(status) => Some(format!("{:?} {}", status.code(), status.message())),
        };
        if let Some(got) = got {
            return Err(LoadError::NoGates(format!(
                "gate {} at {url}: expected DENY BAD_PREFIX for a text that is not a code, got {got}",
                gate.id
            )));
        }
        clients.push(client);
    }
    Ok(clients)
}
