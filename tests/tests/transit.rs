//! Issues 10 and 11 end to end through the stack: a rider's codes at the stack's metro
//! gates and bus reader, decided by the verifier's transit policy through payments
//! (TapIn, TapOut over mutual TLS), charged once at the fare table's fare, and
//! refused ARREARS after a declined charge until repaid.

use std::time::{Duration, Instant};

use citypass_e2e::{
    TestStack, decide, dev_ring, link_sandbox, now, online_code, scan, trips_until, within,
};
use citypass_gate::{Decision, Gate, GateConfig};
use citypass_pki::Subject;
use citypass_proto::v1::{self as pb, VerifyResponse};
use citypass_revocation::SignedSnapshot;
use citypass_runtime::Role;
use citypass_token::{Kid, Scene};

fn transit(response: &VerifyResponse) -> &pb::TransitResult {
    assert_eq!(response.decision(), pb::Decision::Allow, "{response:?}");
    match &response.scene_result {
        Some(pb::verify_response::SceneResult::Transit(trip)) => trip,
        other => panic!("not a transit result: {other:?}"),
    }
}

/// The city's day (UTC+8) now, as GetSettlement takes it.
fn city_date() -> String {
    let days = (i64::try_from(citypass_e2e::now()).expect("a time") + 8 * 3600).div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `trip` is `trip_id`, closed, from pingguoyuan to xidan at 5 yuan (one metro ride
/// of the sample gates, entry and exit matched).
fn assert_one_ride_pingguoyuan_xidan(trip: &pb::Trip, trip_id: &str) {
    assert_eq!(trip.trip_id, trip_id);
    assert_eq!(trip.status(), pb::TripStatus::Closed);
    assert_eq!(
        (
            trip.entry_station_id.as_str(),
            trip.exit_station_id.as_str()
        ),
        ("pingguoyuan", "xidan")
    );
    assert_eq!(trip.fare.as_ref().map(|f| f.minor_units), Some(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ride_through_the_gates_is_charged_once_and_arrears_stop_the_next() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let mut app = t.citizen("Han Meimei").await;
    let m = pb::Scene::Metro;

    // Without a payment link the entry gate refuses: NO_PAYMENT_LINK, nothing opened.
    let first = online_code(&mut app).await;
    let refused = decide(
        &t,
        "metro-entry-1",
        scan("metro-entry-1", m, "in-0", &first),
    )
    .await;
    assert_eq!(refused.decision(), pb::Decision::Deny, "{refused:?}");
    assert_eq!(refused.deny_reason(), pb::DenyReason::NoPaymentLink);
    link_sandbox(&mut app, "agr_sandbox_e2e_ride").await;

    // Entry at pingguoyuan: a trip opens, nothing charged yet; a retry of the scan
    // gets the same trip.
    let entry_code = online_code(&mut app).await;
    let entered = decide(
        &t,
        "metro-entry-1",
        scan("metro-entry-1", m, "in-1", &entry_code),
    )
    .await;
    let opened = transit(&entered).clone();
    assert!(!opened.trip_id.is_empty());
    assert_eq!(opened.fare_charged.as_ref().map(|f| f.minor_units), Some(0));
    assert_eq!(opened.transit_account.len(), 32, "{opened:?}");
    assert_eq!(opened.fare_class(), pb::FareClass::Adult);
    let retried = decide(
        &t,
        "metro-entry-1",
        scan("metro-entry-1", m, "in-1", &entry_code),
    )
    .await;
    assert!(retried.idempotent_replay, "{retried:?}");
    assert_eq!(transit(&retried), &opened);

    // Exit at xidan (16 km on line 1: 5 yuan), with a new code; retried too.
    let exit_code = online_code(&mut app).await;
    let exited = decide(
        &t,
        "metro-exit-1",
        scan("metro-exit-1", m, "out-1", &exit_code),
    )
    .await;
    let closed = transit(&exited).clone();
    assert_eq!(
        closed.trip_id, opened.trip_id,
        "the exit closes the entry's trip"
    );
    assert_eq!(
        closed.fare_charged.as_ref().map(|f| f.minor_units),
        Some(500)
    );
    let again = decide(
        &t,
        "metro-exit-1",
        scan("metro-exit-1", m, "out-1", &exit_code),
    )
    .await;
    assert!(again.idempotent_replay);
    assert_eq!(transit(&again), &closed);

    // One trip in the ledger, charged once at 5 yuan, and the charge goes through.
    let trips = trips_until(&mut app, "the charge succeeds", |trips| {
        trips
            .first()
            .is_some_and(|t| t.charge_status() == pb::ChargeStatus::Succeeded)
    })
    .await;
    assert_eq!(trips.len(), 1, "{trips:?}");
    assert_one_ride_pingguoyuan_xidan(&trips[0], &opened.trip_id);
    let mut auditor = t
        .payments(&Subject::operator(
            "e2e-auditor",
            &[Role::Auditor],
            citypass_pki::OPERATOR_LIFE,
        ))
        .await;
    let settlement = within(
        "GetSettlement",
        auditor.get_settlement(pb::GetSettlementRequest { date: city_date() }),
    )
    .await
    .expect("settlement")
    .into_inner();
    assert_eq!(settlement.operators.len(), 1, "{settlement:?}");
    let metro = &settlement.operators[0];
    assert_eq!((metro.operator.as_str(), metro.charges), ("metro", 1));
    assert_eq!(metro.due.as_ref().map(|d| d.minor_units), Some(500));

    // A card that declines: a bus ride is charged, declined, and becomes arrears.
    within("unlink", app.unlink()).await.expect("unlinked");
    link_sandbox(&mut app, "decline_e2e_card").await;
    let bus_code = online_code(&mut app).await;
    let rode = decide(
        &t,
        "bus-1",
        scan("bus-1", pb::Scene::Bus, "bus-1-ride", &bus_code),
    )
    .await;
    let ride = transit(&rode).clone();
    let fare = ride.fare_charged.as_ref().map_or(0, |f| f.minor_units);
    assert!(fare > 0, "{ride:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let arrears = loop {
        let arrears = within("GetArrears", app.arrears()).await.expect("arrears");
        if arrears.in_arrears {
            break arrears;
        }
        assert!(
            Instant::now() < deadline,
            "the decline never became arrears"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(arrears.total.as_ref().map(|t| t.minor_units), Some(fare));

    // The next entry is refused ARREARS, and opens nothing.
    let blocked_code = online_code(&mut app).await;
    let blocked = decide(
        &t,
        "metro-entry-1",
        scan("metro-entry-1", m, "in-2", &blocked_code),
    )
    .await;
    assert_eq!(blocked.decision(), pb::Decision::Deny, "{blocked:?}");
    assert_eq!(blocked.deny_reason(), pb::DenyReason::Arrears);

    // A card that pays, the arrears repaid: the entry opens again.
    within("unlink", app.unlink()).await.expect("unlinked");
    link_sandbox(&mut app, "agr_sandbox_e2e_repay").await;
    within("repay", app.repay("e2e-repay-1"))
        .await
        .expect("repaid");
    let deadline = Instant::now() + Duration::from_secs(30);
    while within("GetArrears", app.arrears())
        .await
        .expect("arrears")
        .in_arrears
    {
        assert!(Instant::now() < deadline, "the repayment never cleared");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let open_code = online_code(&mut app).await;
    let reopened = decide(
        &t,
        "metro-entry-1",
        scan("metro-entry-1", m, "in-3", &open_code),
    )
    .await;
    let trip = transit(&reopened);
    assert_ne!(trip.trip_id, opened.trip_id);
    let trips = within("GetTrips", app.trips(0, ""))
        .await
        .expect("trips")
        .trips;
    assert_eq!(trips.len(), 3, "metro, bus, the new entry: {trips:?}");
}

/// The turnstile did not turn: the entry gate voids its scan through the verifier,
/// payments voids the trip (nothing charged), and the rider's next entry opens a new
/// trip rather than meeting TRIP_ALREADY_OPEN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_voids_its_scan_and_the_trip_is_not_charged() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let mut app = t.citizen("Li Lei").await;
    link_sandbox(&mut app, "agr_sandbox_e2e_void").await;
    let m = pb::Scene::Metro;
    let entry_code = online_code(&mut app).await;
    let entered = decide(
        &t,
        "metro-entry-1",
        scan("metro-entry-1", m, "void-in-1", &entry_code),
    )
    .await;
    let opened = transit(&entered).clone();
    let mut gate = t.verifier("metro-entry-1").await;
    let voided = within(
        "VoidScan",
        gate.void_scan(pb::VoidScanRequest {
            gate_id: "metro-entry-1".to_owned(),
            scan_id: "void-in-1".to_owned(),
            qr_text: entry_code.clone(),
        }),
    )
    .await
    .expect("voided")
    .into_inner();
    assert_eq!(voided.trip_id, opened.trip_id);
    assert!(voided.trip_voided);
    let trips = within("GetTrips", app.trips(0, ""))
        .await
        .expect("trips")
        .trips;
    assert_eq!(trips.len(), 1, "{trips:?}");
    assert_eq!(trips[0].status(), pb::TripStatus::Voided);

    // Another gate cannot void it.
    let mut other = t.verifier("metro-exit-1").await;
    let refused = within(
        "VoidScan",
        other.void_scan(pb::VoidScanRequest {
            gate_id: "metro-exit-1".to_owned(),
            scan_id: "void-in-1".to_owned(),
            qr_text: entry_code,
        }),
    )
    .await
    .expect_err("not its tap");
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");

    let next = online_code(&mut app).await;
    let again = decide(
        &t,
        "metro-entry-1",
        scan("metro-entry-1", m, "void-in-2", &next),
    )
    .await;
    assert_ne!(transit(&again).trip_id, opened.trip_id);
}

/// Fetches a revocation snapshot and loads it into the offline gate.
async fn load_snapshot(t: &TestStack, gate: &mut Gate) {
    let mut revocation = t.revocation().await;
    let response = within(
        "snapshot",
        revocation.get_revocation_snapshot(pb::GetRevocationSnapshotRequest { kinds: vec![] }),
    )
    .await
    .expect("snapshot")
    .into_inner();
    let signed = SignedSnapshot {
        bytes: response.snapshot,
        signature: response.signature,
        kid: Kid::from_slice(&response.kid).expect("kid"),
    };
    gate.load_snapshot(&signed, now())
        .expect("the gate loads the snapshot");
}

/// `code`, allowed at `scanned_at` by an offline gate, uploaded by `gate` as its scan
/// `scan_id`: the one result.
async fn upload(
    t: &TestStack,
    gate: &str,
    scan_id: &str,
    code: &str,
    scanned_at: u64,
) -> pb::OfflineScanResult {
    let mut client = t.verifier(gate).await;
    let mut results = within(
        "UploadOfflineScans",
        client.upload_offline_scans(pb::UploadOfflineScansRequest {
            gate_id: gate.to_owned(),
            scene: pb::Scene::Metro as i32,
            scans: vec![pb::OfflineScan {
                scan_id: scan_id.to_owned(),
                qr_text: code.to_owned(),
                scanned_at: Some(citypass_proto::time::timestamp(scanned_at)),
                direction: pb::Direction::Entry as i32,
                station_id: String::new(),
            }],
        }),
    )
    .await
    .expect("an upload is answered")
    .into_inner()
    .results;
    assert_eq!(results.len(), 1, "{results:?}");
    results.remove(0)
}

/// Issue 10's "an uploaded offline entry plus an online exit make one trip", in both
/// orders: the entry gate is cut off and lets the rider in on an offline code (CP2,
/// checked by `crates/gate` against a signed snapshot); the rider leaves through the
/// online exit gate; the entry gate uploads its scan once back. Uploaded after the
/// exit (which was charged the maximum fare, as an exit without entry), the entry
/// re-prices that trip to its fare; uploaded before it, the entry opens the trip the
/// exit closes. Retried uploads change nothing; the rider's trips show each ride once
/// at 5 yuan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_entry_and_an_online_exit_make_one_trip() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let mut app = t.citizen("Wang Fang").await;
    link_sandbox(&mut app, "agr_sandbox_e2e_offline").await;
    within("certificate", app.certificate())
        .await
        .expect("certified");
    let (keys, _) = within("key set", app.key_set()).await.expect("key set");
    let mut gate = Gate::new(keys, GateConfig::new(Scene::Metro));
    load_snapshot(&t, &mut gate).await;
    let m = pb::Scene::Metro;

    // The exit first: the entry is not known yet, so the exit is charged the maximum.
    let offline = app.offline_code(60).expect("an offline code");
    let entered_at = now();
    assert!(matches!(
        gate.check(&offline, entered_at),
        Decision::Allow(_)
    ));
    let exit_code = online_code(&mut app).await;
    let exited = decide(
        &t,
        "metro-exit-1",
        scan("metro-exit-1", m, "e2e-out-1", &exit_code),
    )
    .await;
    let unmatched = transit(&exited).clone();
    assert_eq!(
        unmatched.fare_charged.as_ref().map(|f| f.minor_units),
        Some(1000),
        "an exit without entry: {unmatched:?}"
    );

    // The entry gate uploads: the same trip, priced pingguoyuan → xidan.
    let uploaded = upload(&t, "metro-entry-1", "e2e-off-in-1", &offline, entered_at).await;
    assert_eq!(
        uploaded.outcome(),
        pb::UploadOutcome::Recorded,
        "{uploaded:?}"
    );
    assert_eq!(
        uploaded.tap(),
        pb::OfflineTapOutcome::Recorded,
        "{uploaded:?}"
    );
    let repriced = uploaded.trip.expect("the trip");
    assert_eq!(repriced.trip_id, unmatched.trip_id);
    assert_eq!(
        repriced.fare_charged.as_ref().map(|f| f.minor_units),
        Some(500)
    );
    // Retried (the gate missed the answer): nothing new.
    let again = upload(&t, "metro-entry-1", "e2e-off-in-1", &offline, entered_at).await;
    assert_eq!(again.outcome(), pb::UploadOutcome::AlreadyRecorded);
    assert_eq!(again.trip, Some(repriced.clone()));
    // The offline code is spent online too.
    let replayed = decide(
        &t,
        "metro-entry-1",
        scan("metro-entry-1", m, "e2e-in-replay", &offline),
    )
    .await;
    assert_eq!(
        replayed.deny_reason(),
        pb::DenyReason::Replayed,
        "{replayed:?}"
    );

    let trips = trips_until(&mut app, "the re-priced trip", |trips| !trips.is_empty()).await;
    assert_eq!(trips.len(), 1, "one trip: {trips:?}");
    assert_one_ride_pingguoyuan_xidan(&trips[0], &unmatched.trip_id);

    // The entry uploaded first: it opens the trip that the online exit closes.
    let offline = app.offline_code(60).expect("an offline code");
    let entered_at = now();
    assert!(matches!(
        gate.check(&offline, entered_at),
        Decision::Allow(_)
    ));
    let uploaded = upload(&t, "metro-entry-1", "e2e-off-in-2", &offline, entered_at).await;
    assert_eq!(
        uploaded.tap(),
        pb::OfflineTapOutcome::Recorded,
        "{uploaded:?}"
    );
    let opened = uploaded.trip.expect("the trip");
    assert_eq!(opened.fare_charged.as_ref().map(|f| f.minor_units), Some(0));
    let exit_code = online_code(&mut app).await;
    let exited = decide(
        &t,
        "metro-exit-1",
        scan("metro-exit-1", m, "e2e-out-2", &exit_code),
    )
    .await;
    let closed = transit(&exited).clone();
    assert_eq!(closed.trip_id, opened.trip_id);
    assert_eq!(
        closed.fare_charged.as_ref().map(|f| f.minor_units),
        Some(500)
    );

    let trips = trips_until(&mut app, "two trips", |trips| trips.len() >= 2).await;
    assert_eq!(trips.len(), 2, "{trips:?}");
    for trip in &trips {
        assert_eq!(trip.status(), pb::TripStatus::Closed, "{trip:?}");
        assert_eq!(trip.fare.as_ref().map(|f| f.minor_units), Some(500));
    }
    t.shutdown().await;
}
