//! UploadOfflineScans and ListFraudSignals through the running service: what offline
//! gates allowed is recorded after the fact, a double use is flagged for operators.

use citypass_proto::v1::verifier_service_client::VerifierServiceClient;
use citypass_proto::v1::{self as pb, ListFraudSignalsRequest, UploadOfflineScansRequest};
use citypass_runtime::{Role, reason_of};
use citypass_testkit::tls::As;
use citypass_token::{Scene, Scopes, unix_now};
use tonic::Code;
use tonic::transport::Channel;

use crate::support::{Harness, allowed, denied, request, verify};

fn scan(scan_id: &str, code: &str, scanned_at: u64) -> pb::OfflineScan {
    pb::OfflineScan {
        scan_id: scan_id.to_owned(),
        qr_text: code.to_owned(),
        scanned_at: Some(citypass_proto::time::timestamp(scanned_at)),
        ..pb::OfflineScan::default()
    }
}

async fn upload(
    client: &mut VerifierServiceClient<Channel>,
    gate: &str,
    scans: Vec<pb::OfflineScan>,
) -> Vec<(String, pb::UploadOutcome, pb::DenyReason)> {
    client
        .upload_offline_scans(UploadOfflineScansRequest {
            gate_id: gate.to_owned(),
            scene: pb::Scene::Bus as i32,
            scans,
        })
        .await
        .expect("an upload is answered")
        .into_inner()
        .results
        .into_iter()
        .map(|r| {
            (
                r.scan_id,
                pb::UploadOutcome::try_from(r.outcome).expect("a known outcome"),
                pb::DenyReason::try_from(r.deny_reason).expect("a known reason"),
            )
        })
        .collect()
}

fn outcomes(results: &[(String, pb::UploadOutcome, pb::DenyReason)]) -> Vec<pb::UploadOutcome> {
    results.iter().map(|r| r.1).collect()
}

#[tokio::test]
async fn an_offline_code_used_at_two_offline_gates_is_flagged_after_upload() {
    let h = Harness::start().await;
    let now = unix_now();
    let (signer, _) = h.offline_signer(Scopes::all());
    let code = signer.make_code(now - 30, 60, 3, &h.rng).unwrap();
    let (mut bus_a, mut bus_b) = (h.gate("bus-12"), h.gate("bus-14"));

    // Two buses out of coverage both let the same code through; the first upload
    // records it (again: nothing new), the second is a double use.
    let first = upload(&mut bus_a, "bus-12", vec![scan("a-1", &code, now - 20)]).await;
    assert_eq!(
        first,
        vec![(
            "a-1".to_owned(),
            pb::UploadOutcome::Recorded,
            pb::DenyReason::Unspecified
        )]
    );
    let again = upload(&mut bus_a, "bus-12", vec![scan("a-1", &code, now - 20)]).await;
    assert_eq!(outcomes(&again), [pb::UploadOutcome::AlreadyRecorded]);
    let second = upload(&mut bus_b, "bus-14", vec![scan("b-1", &code, now - 10)]).await;
    assert_eq!(outcomes(&second), [pb::UploadOutcome::FraudSuspected]);

    // The uploaded use counts online too.
    let online = verify(&mut bus_a, request("bus-12", pb::Scene::Bus, "a-2", &code)).await;
    assert_eq!(denied(&online), pb::DenyReason::Replayed);

    // An auditor lists the signal; it names the second gate, never the code.
    let mut auditor =
        VerifierServiceClient::new(h.pki.channel(h.addr, &As::Operator(&[Role::Auditor])));
    let listed = auditor
        .list_fraud_signals(ListFraudSignalsRequest::default())
        .await
        .expect("an auditor lists signals")
        .into_inner();
    assert_eq!(listed.signals.len(), 1, "{listed:?}");
    let signal = &listed.signals[0];
    assert_eq!(signal.gate_id, "bus-14");
    assert_eq!(signal.scene, pb::Scene::Bus as i32);
    assert_eq!(signal.kind, pb::FraudKind::CounterReused as i32);
    assert_eq!(signal.mark_digest.len(), 16);
    assert!(!code.contains(&signal.mark_digest));
    assert_eq!(
        signal
            .scanned_at
            .as_ref()
            .and_then(citypass_proto::time::seconds),
        Some(now - 10)
    );
    assert!(listed.next_page_token.is_empty());

    // Gates cannot read the signals.
    let refused = bus_a
        .list_fraud_signals(ListFraudSignalsRequest::default())
        .await
        .expect_err("a gate is no auditor");
    assert_eq!(refused.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn uploads_take_counters_in_any_order_and_refuse_what_a_gate_should_not_have_allowed() {
    let h = Harness::start().await;
    let now = unix_now();
    let (signer, _) = h.offline_signer(Scopes::all());
    let mut bus_a = h.gate("bus-12");
    let mut bus_b = h.gate("bus-14");

    // Counter 5 is used online; counter 3, scanned by an offline bus, arrives later:
    // an older copy online, but an honest late upload.
    let live = signer.make_code(now, 60, 5, &h.rng).unwrap();
    allowed(
        &verify(
            &mut bus_a,
            request("bus-12", pb::Scene::Bus, "live-5", &live),
        )
        .await,
    );
    // (Times stay at or after the certificate's start, which is now.)
    let earlier = signer.make_code(now, 60, 3, &h.rng).unwrap();

    let forged = h
        .stranger
        .issue_token(&[9; 16], Scopes::all(), now - 5, 60)
        .unwrap()
        .text;
    let expired = h
        .issuer
        .issue_token(&[9; 16], Scopes::all(), now - 600, 60)
        .unwrap()
        .text;
    let hospital_only: Scopes = [Scene::Hospital].into_iter().collect();
    let out_of_scope = h
        .issuer
        .issue_token(&[9; 16], hospital_only, now - 5, 60)
        .unwrap()
        .text;
    let fresh = h.code(Scopes::all()).text;
    let results = upload(
        &mut bus_b,
        "bus-14",
        vec![
            scan("u-1", &earlier, now),
            scan("u-2", &forged, now - 2),
            scan("u-3", &expired, now - 2),
            scan("u-4", &out_of_scope, now - 2),
            scan("u-5", &fresh, now - 2 * 24 * 3600),
            scan("u-6", &fresh, now + 600),
            scan("u-7", "", now),
            scan("u-8", &fresh, now),
        ],
    )
    .await;
    let expected = [
        (
            "u-1",
            pb::UploadOutcome::Recorded,
            pb::DenyReason::Unspecified,
        ),
        (
            "u-2",
            pb::UploadOutcome::CodeRefused,
            pb::DenyReason::UnknownKid,
        ),
        (
            "u-3",
            pb::UploadOutcome::CodeRefused,
            pb::DenyReason::Expired,
        ),
        (
            "u-4",
            pb::UploadOutcome::CodeRefused,
            pb::DenyReason::ScopeNotAllowed,
        ),
        (
            "u-5",
            pb::UploadOutcome::OutsideWindow,
            pb::DenyReason::Unspecified,
        ),
        (
            "u-6",
            pb::UploadOutcome::OutsideWindow,
            pb::DenyReason::Unspecified,
        ),
        (
            "u-7",
            pb::UploadOutcome::Invalid,
            pb::DenyReason::Unspecified,
        ),
        (
            "u-8",
            pb::UploadOutcome::Recorded,
            pb::DenyReason::Unspecified,
        ),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(s, o, r)| (s.to_string(), *o, *r))
        .collect();
    assert_eq!(results, expected);

    // Another copy of counter 3 from another bus is the double use.
    let copy = upload(&mut bus_a, "bus-12", vec![scan("c-1", &earlier, now)]).await;
    assert_eq!(outcomes(&copy), [pb::UploadOutcome::FraudSuspected]);
    // The same scan id with another code is the gate's bug, and changes nothing.
    let conflict = upload(&mut bus_b, "bus-14", vec![scan("u-1", &fresh, now)]).await;
    assert_eq!(outcomes(&conflict), [pb::UploadOutcome::ScanIdConflict]);

    // Uploads that are not taken at all.
    let err = bus_a
        .upload_offline_scans(UploadOfflineScansRequest {
            gate_id: "bus-14".into(),
            scene: pb::Scene::Bus as i32,
            scans: vec![],
        })
        .await
        .expect_err("another gate's id");
    assert_eq!(
        (err.code(), reason_of(&err).as_deref()),
        (Code::PermissionDenied, Some("GATE_MISMATCH"))
    );
    let err = bus_a
        .upload_offline_scans(UploadOfflineScansRequest {
            gate_id: "bus-12".into(),
            scene: pb::Scene::Metro as i32,
            scans: vec![],
        })
        .await
        .expect_err("another scene");
    assert_eq!(
        (err.code(), reason_of(&err).as_deref()),
        (Code::InvalidArgument, Some("SCENE_MISMATCH"))
    );
    let err = bus_a
        .upload_offline_scans(UploadOfflineScansRequest {
            gate_id: "bus-12".into(),
            scene: pb::Scene::Bus as i32,
            scans: (0..65)
                .map(|i| scan(&format!("x-{i}"), &fresh, now))
                .collect(),
        })
        .await
        .expect_err("too many scans");
    assert_eq!(
        (err.code(), reason_of(&err).as_deref()),
        (Code::InvalidArgument, Some("TOO_MANY_SCANS"))
    );
}

/// One upload of a bus scan, with what payments did with it.
async fn upload_result(
    client: &mut VerifierServiceClient<Channel>,
    scan: pb::OfflineScan,
) -> pb::OfflineScanResult {
    let mut results = client
        .upload_offline_scans(UploadOfflineScansRequest {
            gate_id: "bus-12".to_owned(),
            scene: pb::Scene::Bus as i32,
            scans: vec![scan],
        })
        .await
        .expect("an upload is answered")
        .into_inner()
        .results;
    assert_eq!(results.len(), 1);
    results.remove(0)
}

#[tokio::test]
async fn uploaded_transit_scans_are_passed_on_to_payments_once_per_scan() {
    let h = Harness::start().await;
    let now = unix_now();
    let (signer, _) = h.offline_signer(Scopes::all());
    let mut bus = h.gate("bus-12");

    // Recorded, and passed on as a late tap: the gate's scan id, the scan's own time,
    // the registry's route (not the scan's), the holder's fare class.
    let code = signer.make_code(now - 30, 60, 3, &h.rng).unwrap();
    let mut first = scan("up-1", &code, now - 20);
    first.station_id = "somewhere-else".to_owned();
    let result = upload_result(&mut bus, first.clone()).await;
    assert_eq!(result.outcome, pb::UploadOutcome::Recorded as i32);
    assert_eq!(result.tap, pb::OfflineTapOutcome::Recorded as i32);
    let trip = result.trip.expect("the trip payments answered");
    assert_eq!(trip.trip_id, "fixed-bus-12-up-1");
    assert_eq!(trip.fare_charged.unwrap().minor_units, 300);
    assert!(trip.transit_account.is_empty(), "not repeated to the gate");
    let taps = h.transit.taps();
    assert_eq!(taps.len(), 1);
    let tap = &taps[0];
    assert_eq!(
        (
            tap.gate_id.as_str(),
            tap.scan_id.as_str(),
            tap.station_id.as_str()
        ),
        ("bus-12", "up-1", "route-12")
    );
    assert_eq!(tap.tapped_at, now - 20, "the scan's time, not the upload's");
    assert_eq!(tap.kind, citypass_verifier::TapKind::Bus);

    // Retried: the mark is there already, the tap is passed on again (payments answers
    // it by its key with the same trip).
    let again = upload_result(&mut bus, first).await;
    assert_eq!(again.outcome, pb::UploadOutcome::AlreadyRecorded as i32);
    assert_eq!(again.tap, pb::OfflineTapOutcome::Recorded as i32);
    assert_eq!(h.transit.taps().len(), 2);
    assert!(h.transit.taps().iter().all(|t| t.scan_id == "up-1"));

    // Payments down: the scan is UNAVAILABLE, so the gate keeps it; uploaded again once
    // payments is back, it is passed on.
    h.transit.fail(citypass_verifier::TransitError::Unavailable);
    let code = signer.make_code(now - 30, 60, 4, &h.rng).unwrap();
    let second = scan("up-2", &code, now - 10);
    let down = upload_result(&mut bus, second.clone()).await;
    assert_eq!(down.outcome, pb::UploadOutcome::Unavailable as i32);
    assert_eq!(down.tap, pb::OfflineTapOutcome::Unspecified as i32);
    h.transit.refuse(None);
    let back = upload_result(&mut bus, second).await;
    assert_eq!(back.outcome, pb::UploadOutcome::AlreadyRecorded as i32);
    assert_eq!(back.tap, pb::OfflineTapOutcome::Recorded as i32);

    // Payments refuses the rider: said so, the mark stays recorded.
    h.transit
        .refuse(Some(citypass_verifier::TapRefused::NoPaymentLink));
    let code = signer.make_code(now - 30, 60, 5, &h.rng).unwrap();
    let refused = upload_result(&mut bus, scan("up-3", &code, now - 5)).await;
    assert_eq!(refused.outcome, pb::UploadOutcome::Recorded as i32);
    assert_eq!(refused.tap, pb::OfflineTapOutcome::NoPaymentLink as i32);
    assert!(refused.trip.is_none());
    // Payments rejecting the request itself: its reason.
    h.transit.fail(citypass_verifier::TransitError::Rejected {
        reason: "UNKNOWN_ROUTE".to_owned(),
    });
    let code = signer.make_code(now - 30, 60, 6, &h.rng).unwrap();
    let rejected = upload_result(&mut bus, scan("up-4", &code, now - 5)).await;
    assert_eq!(rejected.outcome, pb::UploadOutcome::Recorded as i32);
    assert_eq!(
        (rejected.tap, rejected.tap_reason.as_str()),
        (pb::OfflineTapOutcome::Rejected as i32, "UNKNOWN_ROUTE")
    );
}

/// Finding 4: a scan this gate decided live is not passed on to payments as a late
/// tap when the gate uploads it, whatever payments answered then (a refusal for
/// arrears, or a trip): only marks an upload wrote are passed on.
#[tokio::test]
async fn late_tap_finding_4_live_scans_are_not_passed_on_as_late_taps() {
    let h = Harness::start().await;
    let now = unix_now();
    let (signer, _) = h.offline_signer(Scopes::all());
    let mut bus = h.gate("bus-12");

    // Live, refused by payments for arrears; then uploaded under the same scan id.
    h.transit
        .refuse(Some(citypass_verifier::TapRefused::Arrears));
    let code = signer.make_code(now - 30, 60, 3, &h.rng).unwrap();
    let live = verify(&mut bus, request("bus-12", pb::Scene::Bus, "live-1", &code)).await;
    assert_eq!(
        live.decision,
        pb::Decision::Deny as i32,
        "refused for arrears"
    );
    h.transit.refuse(None);
    let passed = h.transit.taps().len();
    let result = upload_result(&mut bus, scan("live-1", &code, now - 20)).await;
    assert_eq!(result.outcome, pb::UploadOutcome::AlreadyRecorded as i32);
    assert_eq!(result.tap, pb::OfflineTapOutcome::Unspecified as i32);
    assert_eq!(h.transit.taps().len(), passed, "nothing passed on");

    // Live and allowed: likewise (payments had it then).
    let code = signer.make_code(now - 30, 60, 4, &h.rng).unwrap();
    allowed(&verify(&mut bus, request("bus-12", pb::Scene::Bus, "live-2", &code)).await);
    let passed = h.transit.taps().len();
    let result = upload_result(&mut bus, scan("live-2", &code, now - 10)).await;
    assert_eq!(result.outcome, pb::UploadOutcome::AlreadyRecorded as i32);
    assert_eq!(result.tap, pb::OfflineTapOutcome::Unspecified as i32);
    assert_eq!(h.transit.taps().len(), passed, "nothing passed on");

    // An upload retried is still passed on again.
    let code = signer.make_code(now - 30, 60, 5, &h.rng).unwrap();
    for outcome in [
        pb::UploadOutcome::Recorded,
        pb::UploadOutcome::AlreadyRecorded,
    ] {
        let result = upload_result(&mut bus, scan("up-9", &code, now - 5)).await;
        assert_eq!(result.outcome, outcome as i32);
        assert_eq!(result.tap, pb::OfflineTapOutcome::Recorded as i32);
    }
}

/// Finding 8: an uploaded scan id payments would reject (not 1 to 64 characters of
/// `[A-Za-z0-9._:-]`) is INVALID with its reason before the mark is spent, so the code
/// can still be uploaded under a good id and its ride charged.
#[tokio::test]
async fn late_tap_finding_8_a_scan_id_payments_rejects_is_refused_before_the_mark() {
    let h = Harness::start().await;
    let now = unix_now();
    let (signer, _) = h.offline_signer(Scopes::all());
    let mut bus = h.gate("bus-12");
    let code = signer.make_code(now - 30, 60, 3, &h.rng).unwrap();
    for bad in ["scan 1", "scan/1", &"x".repeat(65)] {
        let result = upload_result(&mut bus, scan(bad, &code, now - 20)).await;
        assert_eq!(result.outcome, pb::UploadOutcome::Invalid as i32, "{bad}");
        assert_eq!(result.invalid_reason, "BAD_SCAN_ID");
        assert_eq!(result.tap, pb::OfflineTapOutcome::Unspecified as i32);
    }
    assert!(h.transit.taps().is_empty());
    let good = upload_result(&mut bus, scan("scan-1", &code, now - 20)).await;
    assert_eq!(good.outcome, pb::UploadOutcome::Recorded as i32);
    assert_eq!(good.tap, pb::OfflineTapOutcome::Recorded as i32);
    assert!(good.invalid_reason.is_empty());
}
