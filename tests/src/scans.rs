//! A gate's scans as the end-to-end tests make them (the Verify request, its answer
//! through the gate's own certificate, the reason of a DENY), and a rider's first
//! steps before a transit gate (a sandbox payment link, an online code).

use citypass_app::App;
use citypass_proto::v1::{self as pb, VerifyRequest, VerifyResponse};

use crate::{TestStack, within};

/// `code` scanned at `gate` (a gate of `scene`) under the gate's `scan_id`.
pub fn scan(gate: &str, scene: pb::Scene, scan_id: &str, code: &str) -> VerifyRequest {
    VerifyRequest {
        gate_id: gate.to_owned(),
        scene: scene as i32,
        scan_id: scan_id.to_owned(),
        qr_text: code.to_owned(),
        ..VerifyRequest::default()
    }
}

/// The verifier's answer to `request`, sent by `gate` with its own certificate.
pub async fn decide(t: &TestStack, gate: &str, request: VerifyRequest) -> VerifyResponse {
    let mut client = t.verifier(gate).await;
    within("verify", client.verify(request))
        .await
        .expect("an answer")
        .into_inner()
}

/// The reason of a DENY (any other decision fails the test).
pub fn deny_reason(response: &VerifyResponse) -> pb::DenyReason {
    assert_eq!(response.decision(), pb::Decision::Deny, "{response:?}");
    response.deny_reason()
}

/// Links a sandbox payment account with provider token `token` (signed by the app's
/// device), as a rider does before a metro or bus gate.
pub async fn link_sandbox(app: &mut App, token: &str) {
    within(
        "link",
        app.link(pb::PaymentProvider::Sandbox, token, "1234", "2026-01"),
    )
    .await
    .expect("linked");
}

/// A fresh online code's QR text.
pub async fn online_code(app: &mut App) -> String {
    within("code", app.code(false))
        .await
        .expect("a code")
        .qr_text
}
