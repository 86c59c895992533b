//! The payments service as `build` makes it, over real TLS: the authorisation table
//! for every RPC and caller, a metro ride through TapIn and TapOut as the verifier
//! (PostgreSQL), and bad input answered with a precise status and reason, changing
//! nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use citypass_payments::charge::ChargeStatus;
use citypass_payments::link::Provider;
use citypass_payments::payments::LinkRequest;
use citypass_payments::provider::Sandbox;
use citypass_payments::store::TripQuery;
use citypass_payments::{AUTHORIZATION, Config, Payments, TransitAccount, build};
use citypass_proto::prost_types::Timestamp;
use citypass_proto::v1;
use citypass_proto::v1::payments_service_client::PaymentsServiceClient;
use citypass_runtime::config::PostgresConfig;
use citypass_runtime::{Role, reason_of};
use citypass_testkit::tls::{As, TestPki};
use citypass_testkit::{Served, serve};
use tonic::Code;

const RIDER: &str = "00112233445566778899aabbccddeeff";

struct Running {
    addr: SocketAddr,
    pki: TestPki,
    payments: Payments,
    sandbox: Option<Arc<Sandbox>>,
    _served: Served,
    _dir: tempfile::TempDir,
}

async fn start(database: bool) -> Running {
    start_with(database, Config::dev()).await
}

async fn start_with(database: bool, mut config: Config) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new("payments");
    config.server.tls = Some(pki.server_files(&dir.path().join("tls")));
    if database {
        let (_pool, url) = citypass_testkit::fresh_database().await;
        config.database = Some(PostgresConfig::new(url));
    }
    let built = build(config).await.expect("the service builds");
    let payments = built.payments.clone();
    let sandbox = built.sandbox.clone();
    let served = serve(built.server).await;
    Running {
        addr: served.addr,
        pki,
        payments,
        sandbox,
        _served: served,
        _dir: dir,
    }
}

impl Running {
    fn client(&self, who: &As) -> PaymentsServiceClient<tonic::transport::Channel> {
        PaymentsServiceClient::new(self.pki.channel(self.addr, who))
    }

    fn verifier(&self) -> PaymentsServiceClient<tonic::transport::Channel> {
        self.client(&As::Service("verifier"))
    }

    async fn link(&self, account: &str) {
        self.link_with(account, "agr_sandbox_4f9c2a7e1b").await;
    }

    async fn link_with(&self, account: &str, token: &'static str) {
        let account = TransitAccount::parse(account).unwrap();
        self.payments
            .link(
                LinkRequest {
                    account,
                    provider: Provider::Sandbox,
                    token,
                    last4: "0042",
                    consent_version: "2026-01",
                    consented_at: 1_799_999_000,
                },
                1_799_999_100,
            )
            .await
            .unwrap();
    }
}

fn now() -> i64 {
    i64::try_from(citypass_token::unix_now()).unwrap()
}

/// `offset` seconds after a minute ago: the service refuses taps more than
/// `payments.max_clock_skew` (5 min) from its clock.
fn at(offset: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: now() - 60 + offset,
        nanos: 0,
    })
}

fn entry(scan: &str, station: &str) -> v1::TapInRequest {
    v1::TapInRequest {
        transit_account: RIDER.to_owned(),
        scene: v1::Scene::Metro as i32,
        gate_id: "metro-entry-1".to_owned(),
        station_id: station.to_owned(),
        scan_id: scan.to_owned(),
        tapped_at: at(0),
        fare_class: v1::FareClass::Adult as i32,
    }
}

fn exit(scan: &str, station: &str) -> v1::TapOutRequest {
    v1::TapOutRequest {
        transit_account: RIDER.to_owned(),
        gate_id: "metro-exit-1".to_owned(),
        station_id: station.to_owned(),
        scan_id: scan.to_owned(),
        tapped_at: at(60),
        fare_class: v1::FareClass::Adult as i32,
    }
}

#[tokio::test]
async fn every_rpc_answers_every_caller_as_the_table_says() {
    let running = start(false).await;
    citypass_testkit::authz::assert_table_holds(&running.pki, running.addr, &AUTHORIZATION).await;
}

#[tokio::test]
async fn a_metro_ride_over_grpc_is_charged_once() {
    // No provider: the charge stays PENDING in the outbox, whatever the timing.
    let mut config = Config::dev();
    config.sandbox = None;
    let running = start_with(true, config).await;
    running.link(RIDER).await;
    let mut verifier = running.verifier();
    let opened = verifier
        .tap_in(entry("scan-1", "pingguoyuan"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.refusal, v1::TapRefusal::Unspecified as i32);
    let trip = opened.trip.unwrap();
    assert_eq!(trip.status, v1::TripStatus::Open as i32);
    assert_eq!(trip.charge_status, v1::ChargeStatus::NotRequired as i32);
    assert_eq!(trip.entry_station_id, "pingguoyuan");

    let out = exit("scan-2", "xidan");
    for _ in 0..3 {
        // The verifier's retries of one exit scan: one charge.
        let closed = verifier
            .tap_out(out.clone())
            .await
            .unwrap()
            .into_inner()
            .trip
            .unwrap();
        assert_eq!(closed.trip_id, trip.trip_id);
        assert_eq!(closed.status, v1::TripStatus::Closed as i32);
        assert_eq!(
            closed.fare,
            Some(v1::Money {
                currency_code: "CNY".to_owned(),
                minor_units: 500
            })
        );
        assert_eq!(closed.charge_status, v1::ChargeStatus::Pending as i32);
        assert_eq!(closed.exited_at, out.tapped_at);
    }
    let account = TransitAccount::parse(RIDER).unwrap();
    let charges = running.payments.store().charges(account).await.unwrap();
    assert_eq!(charges.len(), 1);
    let (report, verdict) = running.payments.check_ledger().await.unwrap();
    assert_eq!(verdict, Ok(()));
    assert_eq!(report.operators, 500);

    // A gate may not tap for itself.
    let status = running
        .client(&As::Gate("metro-entry-1"))
        .tap_in(entry("scan-3", "xidan"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn bad_input_gets_a_precise_status_and_changes_nothing() {
    let running = start(false).await;
    let mut verifier = running.verifier();
    // No link: a refusal, not an error; an exit: NO_PAYMENT_LINK.
    let refused = verifier
        .tap_in(entry("s1", "xidan"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refused.trip, None);
    assert_eq!(refused.refusal, v1::TapRefusal::NoPaymentLink as i32);
    let status = verifier.tap_out(exit("s2", "xidan")).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&status).as_deref(), Some("NO_PAYMENT_LINK"));

    running.link(RIDER).await;
    let cases: Vec<(v1::TapInRequest, &str, &str)> = vec![
        (
            entry("s3", "no-such-station"),
            "UNKNOWN_STATION",
            "station_id",
        ),
        (
            v1::TapInRequest {
                scene: v1::Scene::Bus as i32,
                ..entry("s4", "no-such-route")
            },
            "UNKNOWN_ROUTE",
            "station_id",
        ),
        (
            v1::TapInRequest {
                scene: v1::Scene::Hospital as i32,
                ..entry("s5", "xidan")
            },
            "INVALID_ARGUMENT",
            "scene",
        ),
        (
            v1::TapInRequest {
                transit_account: "4111111111111111".to_owned(),
                ..entry("s6", "xidan")
            },
            "INVALID_ARGUMENT",
            "transit_account",
        ),
        (
            v1::TapInRequest {
                tapped_at: None,
                ..entry("s7", "xidan")
            },
            "INVALID_ARGUMENT",
            "tapped_at",
        ),
        (entry("", "xidan"), "INVALID_ARGUMENT", "scan_id"),
        // A gate's clock far from the server's: refused, however it is off.
        (
            v1::TapInRequest {
                tapped_at: at(60 + 400),
                ..entry("s8", "xidan")
            },
            "INVALID_ARGUMENT",
            "tapped_at",
        ),
        (
            v1::TapInRequest {
                tapped_at: at(60 - 3600),
                ..entry("s9", "xidan")
            },
            "INVALID_ARGUMENT",
            "tapped_at",
        ),
        (
            v1::TapInRequest {
                tapped_at: Some(Timestamp {
                    seconds: 1_800_000_000,
                    nanos: 0,
                }),
                ..entry("s10", "xidan")
            },
            "INVALID_ARGUMENT",
            "tapped_at",
        ),
    ];
    for (request, reason, field) in cases {
        let status = verifier.tap_in(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert_eq!(reason_of(&status).as_deref(), Some(reason), "{field}");
        assert!(status.message().starts_with(field), "{status:?}");
        assert!(!status.message().contains("4111"), "no value is echoed");
    }
    let account = TransitAccount::parse(RIDER).unwrap();
    let page = running
        .payments
        .trips(
            account,
            TripQuery {
                since: None,
                until: None,
                after: None,
                limit: 0,
            },
        )
        .await
        .unwrap();
    assert!(page.trips.is_empty(), "nothing was written");

    // A citizen's call without a device is malformed; with one, this service (built
    // without identity) cannot check it: UNAVAILABLE, never a silent success.
    let status = running
        .client(&As::Nobody)
        .get_link(v1::GetLinkRequest {
            transit_account: RIDER.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("device_id"), "{status:?}");
    let status = running
        .client(&As::Nobody)
        .get_link(v1::GetLinkRequest {
            device_id: "00112233445566778899aabbccddeeff".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason_of(&status).as_deref(), Some("IDENTITY_UNAVAILABLE"));
}

/// VoidTap, the gate's "the turnstile did not turn", as the verifier: an entry voided
/// within the window is VOIDED and the rider may enter again; a void of an unknown tap
/// is NOT_FOUND; one stamped far from the server's clock is INVALID_ARGUMENT. (Other
/// callers are refused: `every_rpc_answers_every_caller_as_the_table_says`.)
#[tokio::test]
async fn the_verifier_voids_a_tap_the_turnstile_did_not_take() {
    let running = start(false).await;
    running.link(RIDER).await;
    let mut verifier = running.verifier();
    let mut tap = entry("scan-v1", "xidan");
    tap.tapped_at = at(0);
    let trip = verifier
        .tap_in(tap)
        .await
        .unwrap()
        .into_inner()
        .trip
        .unwrap();
    let void = |scan: &str, offset: i64| v1::VoidTapRequest {
        transit_account: RIDER.to_owned(),
        gate_id: "metro-entry-1".to_owned(),
        scan_id: scan.to_owned(),
        voided_at: at(offset),
    };
    let voided = verifier
        .void_tap(void("scan-v1", 2))
        .await
        .unwrap()
        .into_inner()
        .trip
        .unwrap();
    assert_eq!(voided.trip_id, trip.trip_id);
    assert_eq!(voided.status, v1::TripStatus::Voided as i32);
    let status = verifier
        .void_tap(void("scan-unknown", 2))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(reason_of(&status).as_deref(), Some("TAP_NOT_FOUND"));
    let status = verifier.void_tap(void("scan-v1", 3_600)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    // The voided entry does not block the next one (at another station: a scan at the
    // same one within a minute would be a double tap).
    let mut again = entry("scan-v2", "pingguoyuan");
    again.tapped_at = at(5);
    let reopened = verifier.tap_in(again).await.unwrap().into_inner();
    assert_eq!(reopened.refusal, v1::TapRefusal::Unspecified as i32);
    assert_eq!(reopened.trip.unwrap().status, v1::TripStatus::Open as i32);
}

/// GetSettlement for an operator with the auditor role: the day's charges per
/// operator, with the CSV; a malformed date is INVALID_ARGUMENT naming `date`.
#[tokio::test]
async fn an_auditor_reads_the_days_settlement() {
    let mut config = Config::dev();
    config.sandbox = None;
    let running = start_with(false, config).await;
    running.link(RIDER).await;
    let mut verifier = running.verifier();
    verifier
        .tap_in(entry("scan-s1", "pingguoyuan"))
        .await
        .unwrap();
    verifier.tap_out(exit("scan-s2", "xidan")).await.unwrap();
    // The city's day (UTC+8) of the exit.
    let exited = now() + 8 * 3600;
    let days = exited.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let date = format!("{y:04}-{m:02}-{d:02}");
    let mut auditor = running.client(&As::Operator(&[Role::Auditor]));
    let settlement = auditor
        .get_settlement(v1::GetSettlementRequest { date: date.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(settlement.date, date);
    assert_eq!(settlement.operators.len(), 1, "{settlement:?}");
    let metro = &settlement.operators[0];
    assert_eq!(metro.charges, 1);
    assert_eq!(metro.due.as_ref().unwrap().minor_units, 500);
    assert_eq!(metro.pending.as_ref().unwrap().minor_units, 500);
    assert!(
        settlement.csv.starts_with("operator,charges,due"),
        "{}",
        settlement.csv
    );
    assert!(
        settlement.csv.contains(",1,5.00,0.00,5.00,0.00"),
        "{}",
        settlement.csv
    );
    // Another day has nothing.
    let other = auditor
        .get_settlement(v1::GetSettlementRequest {
            date: "2001-01-01".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(other.operators.is_empty());
    let status = auditor
        .get_settlement(v1::GetSettlementRequest {
            date: "2026-02-30".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("date"), "{status:?}");
}

/// Howard Hinnant's civil_from_days.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[tokio::test]
async fn a_trip_left_open_is_closed_at_the_maximum_fare_by_the_expiry_pass() {
    let mut config = Config::dev();
    config.payments.expiry_interval = std::time::Duration::from_millis(100);
    let running = start_with(true, config).await;
    running.link(RIDER).await;
    // An entry five hours ago, never exited (the table's max_trip is 4 h): through the
    // logic (the service refuses a tapped_at that far from its clock).
    let account = TransitAccount::parse(RIDER).unwrap();
    let five_hours_ago = citypass_token::unix_now() - 5 * 3600;
    let opened = running
        .payments
        .tap_in(citypass_payments::tap::TapIn {
            account,
            gate_id: "metro-entry-1".to_owned(),
            scan_id: "scan-1".to_owned(),
            place: citypass_payments::tap::Place::Metro("xidan".to_owned()),
            at: five_hours_ago,
            fare_class: citypass_payments::FareClass::Adult,
        })
        .await
        .unwrap();
    let citypass_payments::payments::Tapped::Trip(opened) = opened else {
        panic!("refused: {opened:?}");
    };
    assert_eq!(opened.status, citypass_payments::trip::TripStatus::Open);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let closed = loop {
        let page = running
            .payments
            .trips(
                account,
                TripQuery {
                    since: None,
                    until: None,
                    after: None,
                    limit: 0,
                },
            )
            .await
            .unwrap();
        let trip = page.trips[0].clone();
        if trip.trip.status == citypass_payments::trip::TripStatus::Unmatched {
            break trip;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the expiry pass did not close the trip"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(closed.trip.due(), citypass_payments::Fen::new(1000));
    assert_eq!(
        closed.charge.map(|c| c.amount),
        Some(citypass_payments::Fen::new(1000))
    );
    let (_, verdict) = running.payments.check_ledger().await.unwrap();
    assert_eq!(verdict, Ok(()));
}

/// Waits (generously: a busy machine) until the rider has a charge in `status`.
async fn until_charge(running: &Running, account: &str, status: ChargeStatus) {
    let account = TransitAccount::parse(account).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let charges = running.payments.store().charges(account).await.unwrap();
        if charges.iter().any(|c| c.status == status) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {status:?} charge: {charges:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_worker_charges_the_sandbox_and_a_decline_blocks_the_next_entry() {
    let mut config = Config::dev();
    config.payments.outbox_interval = Duration::from_millis(100);
    let running = start_with(true, config).await;
    running.link(RIDER).await;
    let mut verifier = running.verifier();
    verifier
        .tap_in(entry("scan-1", "pingguoyuan"))
        .await
        .unwrap();
    verifier.tap_out(exit("scan-2", "xidan")).await.unwrap();
    until_charge(&running, RIDER, ChargeStatus::Succeeded).await;
    let sandbox = running.sandbox.clone().expect("dev runs the sandbox");
    assert_eq!(sandbox.approved().len(), 1);
    assert_eq!(sandbox.approved()[0].1, citypass_payments::Fen::new(500));
    let (report, verdict) = running.payments.check_ledger().await.unwrap();
    assert_eq!((verdict, report.captured), (Ok(()), 500));

    // Another rider whose agreement the provider declines: arrears, then ARREARS.
    const OTHER: &str = "ffeeddccbbaa99887766554433221100";
    running.link_with(OTHER, "decline-agreement-1").await;
    let bus = v1::TapInRequest {
        transit_account: OTHER.to_owned(),
        scene: v1::Scene::Bus as i32,
        gate_id: "bus-52-1".to_owned(),
        station_id: "52".to_owned(),
        ..entry("scan-3", "52")
    };
    verifier.tap_in(bus).await.unwrap();
    until_charge(&running, OTHER, ChargeStatus::Declined).await;
    let refused = verifier
        .tap_in(v1::TapInRequest {
            transit_account: OTHER.to_owned(),
            ..entry("scan-4", "xidan")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refused.refusal, v1::TapRefusal::Arrears as i32);
    let (_, verdict) = running.payments.check_ledger().await.unwrap();
    assert_eq!(verdict, Ok(()));
}

fn offline_entry(scan: &str, tapped_at: i64) -> v1::RecordOfflineTapRequest {
    v1::RecordOfflineTapRequest {
        transit_account: RIDER.to_owned(),
        kind: v1::OfflineTapKind::MetroEntry as i32,
        gate_id: "metro-entry-1".to_owned(),
        station_id: "pingguoyuan".to_owned(),
        scan_id: scan.to_owned(),
        tapped_at: Some(Timestamp {
            seconds: tapped_at,
            nanos: 0,
        }),
        fare_class: v1::FareClass::Adult as i32,
    }
}

/// The service on PostgreSQL taking late taps up to an hour old, no provider (charges
/// stay PENDING whatever the timing), the rider linked.
async fn late_taps_service() -> Running {
    let mut config = Config::dev();
    config.sandbox = None;
    config.payments.late_tap_window = Duration::from_secs(3600);
    let running = start_with(true, config).await;
    running.link(RIDER).await;
    running
}

#[tokio::test]
async fn an_offline_entry_uploaded_after_the_exit_reprices_the_trip_over_grpc() {
    let running = late_taps_service().await;
    let mut verifier = running.verifier();
    // The exit first (the entry gate was offline): the maximum fare.
    let unmatched = verifier
        .tap_out(exit("out-1", "xidan"))
        .await
        .unwrap()
        .into_inner()
        .trip
        .unwrap();
    assert_eq!(unmatched.status, v1::TripStatus::Unmatched as i32);
    assert_eq!(unmatched.fare.as_ref().unwrap().minor_units, 1000);

    // The entry, scanned 40 minutes ago (beyond the live skew, within the late window),
    // uploaded now: the same trip at 5 yuan, however often it is sent.
    for _ in 0..3 {
        let answer = verifier
            .record_offline_tap(offline_entry("off-in-1", now() - 2400))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.refusal, v1::TapRefusal::Unspecified as i32);
        let trip = answer.trip.unwrap();
        assert_eq!(trip.trip_id, unmatched.trip_id);
        assert_eq!(trip.status, v1::TripStatus::Closed as i32);
        assert_eq!(trip.entry_station_id, "pingguoyuan");
        assert_eq!(trip.fare.as_ref().unwrap().minor_units, 500);
    }
    let (report, verdict) = running.payments.check_ledger().await.unwrap();
    assert_eq!(verdict, Ok(()), "{report:?}");
    assert_eq!((report.refund_postings, report.refunded), (1, 500));
    assert_eq!(report.operators, 500);

    // Outside the late window and the skew (1 h + 5 min), or ahead of the clock beyond
    // the skew: refused, naming the field; as is a tap the live RPCs would refuse for
    // its age.
    for tapped_at in [now() - 4000, now() + 600] {
        let status = verifier
            .record_offline_tap(offline_entry("off-in-2", tapped_at))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("tapped_at"), "{status:?}");
    }
    let mut stale = entry("in-stale", "pingguoyuan");
    stale.tapped_at = Some(Timestamp {
        seconds: now() - 2400,
        nanos: 0,
    });
    let status = verifier.tap_in(stale).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut no_kind = offline_entry("off-in-3", now() - 60);
    no_kind.kind = v1::OfflineTapKind::Unspecified as i32;
    let status = verifier.record_offline_tap(no_kind).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // Only the verifier may send one.
    let status = running
        .client(&As::Gate("metro-entry-1"))
        .record_offline_tap(offline_entry("off-in-4", now() - 60))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let account = TransitAccount::parse(RIDER).unwrap();
    let trips = running
        .payments
        .trips(
            account,
            TripQuery {
                since: None,
                until: None,
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(trips.trips.len(), 1, "nothing else written");
}

/// Finding 8: the verifier checks its upload window at its own clock, so payments
/// takes a late tap up to `late_tap_window + max_clock_skew` old: a scan at the edge of
/// the verifier's window, with the verifier's clock ahead, is not rejected (the ride
/// would otherwise go uncharged, its mark spent).
#[tokio::test]
async fn late_tap_finding_8_payments_takes_the_window_plus_the_skew() {
    let running = late_taps_service().await;
    let mut verifier = running.verifier();
    let answer = verifier
        .record_offline_tap(offline_entry("off-edge", now() - 3600 - 200))
        .await
        .expect("within the window and the skew")
        .into_inner();
    assert_eq!(answer.refusal, v1::TapRefusal::Unspecified as i32);
    assert!(answer.trip.is_some());
}

/// A NotifyCharge request for `signed`.
fn notify_request(
    signed: &citypass_payments::notification::SignedNotification,
) -> v1::NotifyChargeRequest {
    v1::NotifyChargeRequest {
        provider: v1::PaymentProvider::Sandbox as i32,
        key_id: signed.key_id.clone(),
        body: signed.body.clone(),
        signature: signed.signature.clone(),
    }
}

#[tokio::test]
async fn a_providers_signed_notification_settles_a_charge_the_worker_could_not_learn() {
    use citypass_payments::notification::{Notification, dev_sandbox_signer};
    use citypass_payments::provider::Outcome;

    // Every call of the sandbox charges and then times out: the worker never learns
    // the outcome (the charge stays RETRYING), as when a provider's answer is lost.
    let mut config = Config::dev();
    config.payments.outbox_interval = Duration::from_millis(100);
    config
        .sandbox
        .as_mut()
        .expect("dev runs the sandbox")
        .timeouts_after_success = u32::MAX;
    let running = start_with(true, config).await;
    running.link(RIDER).await;
    let mut verifier = running.verifier();
    verifier
        .tap_in(entry("scan-1", "pingguoyuan"))
        .await
        .unwrap();
    verifier.tap_out(exit("scan-2", "xidan")).await.unwrap();
    until_charge(&running, RIDER, ChargeStatus::Retrying).await;
    let account = TransitAccount::parse(RIDER).unwrap();
    let charge = running.payments.store().charges(account).await.unwrap()[0].clone();
    let sandbox = running.sandbox.clone().unwrap();
    // The sandbox's callback, signed with its development key, which dev trusts.
    let signer = dev_sandbox_signer();
    let signed = signer
        .sandbox_callback(&sandbox, charge.provider_key, citypass_token::unix_now())
        .expect("the sandbox decided this key");
    // Anyone may deliver a notification: the signature is the proof.
    let mut anyone = running.client(&As::Nobody);
    let status_of = |charges: Vec<citypass_payments::charge::Charge>| charges[0].status;

    // A body changed in flight, or a key the service does not trust: refused before
    // anything is read, and nothing changes.
    let mut tampered = notify_request(&signed);
    tampered.body = String::from_utf8(tampered.body)
        .unwrap()
        .replace("500", "5")
        .into_bytes();
    let mut unknown_key = notify_request(&signed);
    unknown_key.key_id = "sandbox-other".to_owned();
    let mut as_alipay = notify_request(&signed);
    as_alipay.provider = v1::PaymentProvider::Alipay as i32;
    for forged in [tampered, unknown_key, as_alipay] {
        let status = anyone.notify_charge(forged).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert_eq!(
            reason_of(&status).as_deref(),
            Some("NOTIFICATION_SIGNATURE_INVALID")
        );
    }
    assert_eq!(
        status_of(running.payments.store().charges(account).await.unwrap()),
        ChargeStatus::Retrying
    );

    // The provider's own notification: applied once, captured once.
    let applied = anyone
        .notify_charge(notify_request(&signed))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(applied.outcome, v1::NotificationOutcome::Applied as i32);
    assert_eq!(applied.status, v1::ChargeStatus::Succeeded as i32);
    let again = anyone
        .notify_charge(notify_request(&signed))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.outcome,
        v1::NotificationOutcome::AlreadyApplied as i32
    );
    let (report, verdict) = running.payments.check_ledger().await.unwrap();
    assert_eq!((verdict, report.captured), (Ok(()), 500));
    assert_eq!(
        sandbox.approved(),
        vec![(charge.provider_key, charge.amount)]
    );

    // Signed by the provider but wrong: another amount, no such charge, a decline
    // after the approval.
    let approval = Notification::parse(&signed.body).unwrap();
    let other_amount = Notification {
        amount: citypass_payments::Fen::new(499),
        ..approval.clone()
    };
    let no_charge = Notification {
        provider_key: citypass_payments::charge::ChargeKey([0x5a; 16]),
        ..approval.clone()
    };
    for (wrong, code, reason) in [
        (other_amount, Code::FailedPrecondition, "AMOUNT_MISMATCH"),
        (no_charge, Code::NotFound, "CHARGE_NOT_FOUND"),
    ] {
        let status = anyone
            .notify_charge(notify_request(&signer.sign(&wrong)))
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), reason_of(&status).as_deref()),
            (code, Some(reason))
        );
    }
    let late_decline = signer.sign(&Notification {
        outcome: Outcome::Declined {
            code: "INSUFFICIENT_FUNDS".to_owned(),
        },
        ..approval
    });
    let superseded = anyone
        .notify_charge(notify_request(&late_decline))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        superseded.outcome,
        v1::NotificationOutcome::Superseded as i32
    );
    assert_eq!(superseded.status, v1::ChargeStatus::Succeeded as i32);
    assert_eq!(
        status_of(running.payments.store().charges(account).await.unwrap()),
        ChargeStatus::Succeeded
    );
    let (report, verdict) = running.payments.check_ledger().await.unwrap();
    assert_eq!((verdict, report.captured), (Ok(()), 500));

    // Malformed requests name the field.
    let status = anyone
        .notify_charge(v1::NotifyChargeRequest {
            body: Vec::new(),
            ..notify_request(&signed)
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}
