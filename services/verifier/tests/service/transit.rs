//! The transit policy through the running service, with payments' taps as a test
//! double (`FixedTaps`; the real client is held to the seam's contract against a real
//! payments service in `tests/tests/transit_taps.rs`): which tap each gate makes, the
//! trip in the answer, payments' refusals settled as the rider's, a retry that taps
//! nothing twice, and the fail modes when payments does not answer.

use citypass_proto::v1::verify_response::SceneResult;
use citypass_proto::v1::{self as pb, FareClass, SubjectStatus, VerifyResponse};
use citypass_token::Scopes;
use citypass_verifier::{TapKind, TapRefused, TransitError};

use crate::support::{Harness, allowed, denied, holder, request, verify};

fn transit(response: &VerifyResponse) -> &pb::TransitResult {
    allowed(response);
    match &response.scene_result {
        Some(SceneResult::Transit(result)) => result,
        other => panic!("a transit result: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_gate_taps_payments_once_and_answers_the_trip() {
    let h = Harness::start().await;
    let m = pb::Scene::Metro;
    let mut entry = h.gate("metro-entry-1");
    let code = h.code(Scopes::all());
    let first = verify(&mut entry, request("metro-entry-1", m, "t-1", &code.text)).await;
    let opened = transit(&first).clone();
    assert_eq!(opened.trip_id, "fixed-metro-entry-1-t-1");
    assert_eq!(opened.fare_charged.as_ref().map(|f| f.minor_units), Some(0));
    assert_eq!(opened.fare_class(), pb::FareClass::Adult);
    // The account is identity's transit pseudonym of the holder.
    assert_eq!(opened.transit_account, "ta-09090909");
    let taps = h.transit.taps();
    assert_eq!(taps.len(), 1);
    let tap = &taps[0];
    assert_eq!(tap.kind, TapKind::MetroEntry);
    assert_eq!(
        (
            tap.gate_id.as_str(),
            tap.station_id.as_str(),
            tap.scan_id.as_str()
        ),
        ("metro-entry-1", "L1-S03", "t-1"),
        "the station is the registry's"
    );
    assert_eq!(tap.transit_account, "ta-09090909");
    assert_eq!(tap.fare_class, FareClass::Adult);
    assert!(
        !format!("{tap:?}").contains("ta-0909"),
        "no account in Debug"
    );

    // The gate's retry: the settled answer, the same trip, no second tap.
    let retry = verify(&mut entry, request("metro-entry-1", m, "t-1", &code.text)).await;
    assert!(retry.idempotent_replay);
    assert_eq!(transit(&retry), &opened);
    assert_eq!(h.transit.taps().len(), 1, "a retry taps nothing");

    // The exit gate taps out; a bus reader taps in on its route.
    let out = h.code(Scopes::all());
    let mut exit = h.gate("metro-exit-1");
    let closed = verify(&mut exit, request("metro-exit-1", m, "t-2", &out.text)).await;
    assert_eq!(
        transit(&closed)
            .fare_charged
            .as_ref()
            .map(|f| f.minor_units),
        Some(300)
    );
    let ride = h.code(Scopes::all());
    let mut bus = h.gate("bus-12");
    let rode = verify(
        &mut bus,
        request("bus-12", pb::Scene::Bus, "t-3", &ride.text),
    )
    .await;
    transit(&rode);
    let taps = h.transit.taps();
    assert_eq!(
        taps.iter()
            .map(|t| (t.kind, t.station_id.as_str()))
            .collect::<Vec<_>>(),
        [
            (TapKind::MetroEntry, "L1-S03"),
            (TapKind::MetroExit, "L1-S03"),
            (TapKind::Bus, "route-12"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_refusals_are_the_riders_and_settled() {
    let h = Harness::start().await;
    let m = pb::Scene::Metro;
    let mut entry = h.gate("metro-entry-1");
    for (n, (refusal, reason)) in [
        (TapRefused::NoPaymentLink, pb::DenyReason::NoPaymentLink),
        (TapRefused::Arrears, pb::DenyReason::Arrears),
        (TapRefused::TripAlreadyOpen, pb::DenyReason::TripAlreadyOpen),
    ]
    .into_iter()
    .enumerate()
    {
        h.transit.refuse(Some(refusal));
        let code = h.code(Scopes::all());
        let scan = format!("r-{n}");
        let refused = verify(&mut entry, request("metro-entry-1", m, &scan, &code.text)).await;
        assert_eq!(denied(&refused), reason);
        // Settled: the retry gets the same refusal even once payments would allow.
        h.transit.refuse(None);
        let retry = verify(&mut entry, request("metro-entry-1", m, &scan, &code.text)).await;
        assert_eq!(denied(&retry), reason);
        assert!(retry.idempotent_replay);
    }
    assert_eq!(h.transit.taps().len(), 3, "one tap per scan");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_rider_is_refused_without_a_tap() {
    let h = Harness::start().await;
    let code = h.code_of(holder(3, |p| p.status = SubjectStatus::Suspended));
    let mut bus = h.gate("bus-12");
    let refused = verify(
        &mut bus,
        request("bus-12", pb::Scene::Bus, "i-1", &code.text),
    )
    .await;
    assert_eq!(denied(&refused), pb::DenyReason::SubjectInactive);
    assert!(h.transit.taps().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_not_answering_follows_the_scenes_fail_mode() {
    let mut h = Harness::start().await;
    let m = pb::Scene::Metro;
    let mut entry = h.gate("metro-entry-1");

    // Closed (the default): SERVICE_UNAVAILABLE, not settled: the retry taps again.
    h.transit.fail(TransitError::Unavailable);
    let code = h.code(Scopes::all());
    let refused = verify(&mut entry, request("metro-entry-1", m, "u-1", &code.text)).await;
    assert_eq!(denied(&refused), pb::DenyReason::ServiceUnavailable);
    assert!(!refused.fail_open);
    h.transit.refuse(None);
    let retry = verify(&mut entry, request("metro-entry-1", m, "u-1", &code.text)).await;
    transit(&retry);
    assert!(!retry.idempotent_replay, "decided now, not replayed");

    // Payments rejecting the request itself is no refusal of the rider: the fail mode.
    h.transit.fail(TransitError::Rejected {
        reason: "UNKNOWN_STATION".to_owned(),
    });
    let other = h.code(Scopes::all());
    let refused = verify(&mut entry, request("metro-entry-1", m, "u-2", &other.text)).await;
    assert_eq!(denied(&refused), pb::DenyReason::ServiceUnavailable);

    // Open: the rider passes, marked fail_open, with no trip (nothing charged).
    h.config.scenes.bus.fail = citypass_verifier::FailMode::Open;
    h.restart_verifier().await;
    h.transit.fail(TransitError::Unavailable);
    let rider = h.code(Scopes::all());
    let mut bus = h.gate("bus-12");
    let opened = verify(
        &mut bus,
        request("bus-12", pb::Scene::Bus, "u-3", &rider.text),
    )
    .await;
    allowed(&opened);
    assert!(opened.fail_open, "{opened:?}");
    assert!(opened.scene_result.is_none());
}

fn void_request(gate: &str, scan_id: &str, code: &str) -> pb::VoidScanRequest {
    pb::VoidScanRequest {
        gate_id: gate.to_owned(),
        scan_id: scan_id.to_owned(),
        qr_text: code.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_voids_its_own_tap_and_payments_decides() {
    let h = Harness::start().await;
    let m = pb::Scene::Metro;
    let mut entry = h.gate("metro-entry-1");
    let code = h.code(Scopes::all());
    transit(&verify(&mut entry, request("metro-entry-1", m, "v-1", &code.text)).await);
    let voided = entry
        .void_scan(void_request("metro-entry-1", "v-1", &code.text))
        .await
        .expect("voided")
        .into_inner();
    assert_eq!(voided.trip_id, "fixed-metro-entry-1-v-1");
    assert!(voided.trip_voided);

    let refused = |status: tonic::Status, code: tonic::Code, reason: &str| {
        assert_eq!(status.code(), code, "{status:?}");
        assert_eq!(
            citypass_runtime::reason_of(&status).as_deref(),
            Some(reason),
            "{status:?}"
        );
    };
    // Another gate's id, a gate without fares, a code that does not check.
    let status = entry
        .void_scan(void_request("metro-exit-1", "v-1", &code.text))
        .await
        .expect_err("not this gate's");
    refused(status, tonic::Code::PermissionDenied, "GATE_MISMATCH");
    let mut desk = h.gate("hospital-desk-1");
    let status = desk
        .void_scan(void_request("hospital-desk-1", "v-1", &code.text))
        .await
        .expect_err("no fares at a desk");
    refused(
        status,
        tonic::Code::FailedPrecondition,
        "NOT_A_TRANSIT_GATE",
    );
    let forged = h
        .stranger
        .issue_token(
            &crate::support::SUBJECT,
            Scopes::all(),
            citypass_token::unix_now(),
            60,
        )
        .expect("a code");
    let status = entry
        .void_scan(void_request("metro-entry-1", "v-1", &forged.text))
        .await
        .expect_err("a stranger's code");
    refused(status, tonic::Code::FailedPrecondition, "CODE_REFUSED");

    // Payments' answers, as the gate sees them.
    for (err, status_code, reason) in [
        (
            TransitError::Rejected {
                reason: "TAP_NOT_FOUND".to_owned(),
            },
            tonic::Code::NotFound,
            "TAP_NOT_FOUND",
        ),
        (
            TransitError::Rejected {
                reason: "VOID_TOO_LATE".to_owned(),
            },
            tonic::Code::FailedPrecondition,
            "VOID_TOO_LATE",
        ),
        (
            TransitError::Rejected {
                reason: "SOMETHING_NEW".to_owned(),
            },
            tonic::Code::FailedPrecondition,
            "VOID_REFUSED",
        ),
        (
            TransitError::Unavailable,
            tonic::Code::Unavailable,
            "PAYMENTS_UNAVAILABLE",
        ),
    ] {
        h.transit.fail(err);
        let status = entry
            .void_scan(void_request("metro-entry-1", "v-1", &code.text))
            .await
            .expect_err("payments refused");
        refused(status, status_code, reason);
    }
}
