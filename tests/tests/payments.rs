//! The stack's payments service, as `citypass dev` runs it: reachable over mutual TLS,
//! answering the verifier's taps and refusing anyone else's.

use citypass_e2e::{TestStack, dev_ring, within};
use citypass_pki::Subject;
use citypass_proto::prost_types::Timestamp;
use citypass_proto::v1::{self as pb, TapInRequest};
use tonic::Code;

fn metro_entry(account: &str) -> TapInRequest {
    TapInRequest {
        transit_account: account.to_owned(),
        scene: pb::Scene::Metro as i32,
        gate_id: "metro-entry-1".to_owned(),
        station_id: "xizhimen".to_owned(),
        scan_id: "e2e-scan-1".to_owned(),
        tapped_at: Some(Timestamp {
            seconds: i64::try_from(citypass_e2e::now()).expect("a time"),
            nanos: 0,
        }),
        fare_class: pb::FareClass::Adult as i32,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stacks_payments_answer_the_verifier_and_refuse_a_gate() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let account = "00112233445566778899aabbccddeeff";

    // The verifier's certificate: a rider with no payment link is refused, as data.
    let mut verifier = t.payments(&Subject::service("verifier")).await;
    let answer = within("TapIn", verifier.tap_in(metro_entry(account)))
        .await
        .expect("the verifier may tap")
        .into_inner();
    assert_eq!(
        answer.refusal(),
        pb::TapRefusal::NoPaymentLink,
        "{answer:?}"
    );
    assert!(answer.trip.is_none());

    // A gate may not charge anyone directly.
    let mut gate = t.payments(&Subject::gate("metro-entry-1")).await;
    let refused = within("TapIn", gate.tap_in(metro_entry(account)))
        .await
        .expect_err("a gate is not the verifier");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
}
