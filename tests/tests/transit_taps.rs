//! The contract of the verifier's `TransitTaps` seam, held by its real implementation
//! (`PaymentsTaps`, the gRPC client) against a real payments service over mutual TLS on
//! loopback, with payments' memory store and with PostgreSQL: what the transit policy
//! relies on. Here, in the composition layer, because services do not depend on one
//! another.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use citypass_payments::charge::ChargeStatus as LedgerCharge;
use citypass_payments::link::Provider;
use citypass_payments::payments::LinkRequest;
use citypass_payments::{Config, Payments, TransitAccount};
use citypass_proto::v1::{ChargeStatus, FareClass};
use citypass_runtime::Deadline;
use citypass_runtime::config::PostgresConfig;
use citypass_testkit::tls::{As, TestPki};
use citypass_testkit::{Served, serve};
use citypass_verifier::transit::Void;
use citypass_verifier::transit::payments::PaymentsTaps;
use citypass_verifier::{Tap, TapKind, TapRefused, Tapped, TransitError, TransitTaps, TripState};

const RIDER: &str = "0123456789abcdef0123456789abcdef";

/// A payments service serving over TLS, and the verifier's client of it.
pub struct Running {
    taps: Arc<dyn TransitTaps>,
    payments: Payments,
    addr: SocketAddr,
    pki: TestPki,
    _served: Served,
    _dir: tempfile::TempDir,
}

async fn start(database: bool) -> Running {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pki = TestPki::new("payments");
    let mut config = Config::dev();
    config.server.tls = Some(pki.server_files(&dir.path().join("tls")));
    if database {
        let (_pool, url) = citypass_testkit::fresh_database().await;
        config.database = Some(PostgresConfig::new(url));
    }
    let built = citypass_payments::build(config)
        .await
        .expect("payments builds");
    let payments = built.payments.clone();
    let served = serve(built.server).await;
    // The verifier's client, over the runtime's upstream channel with its certificate.
    let taps = Arc::new(PaymentsTaps::new(
        pki.channel(served.addr, &As::Service("verifier")),
    ));
    Running {
        taps,
        payments,
        addr: served.addr,
        pki,
        _served: served,
        _dir: dir,
    }
}

pub async fn memory() -> Running {
    start(false).await
}

pub async fn postgres() -> Running {
    start(true).await
}

impl Running {
    async fn link(&self, token: &'static str) {
        let account = TransitAccount::parse(RIDER).expect("an account");
        self.payments
            .link(
                LinkRequest {
                    account,
                    provider: Provider::Sandbox,
                    token,
                    last4: "0042",
                    consent_version: "2026-01",
                    consented_at: now() - 10,
                },
                now(),
            )
            .await
            .expect("linked");
    }

    async fn charges(&self) -> Vec<citypass_payments::charge::Charge> {
        let account = TransitAccount::parse(RIDER).expect("an account");
        self.payments
            .store()
            .charges(account)
            .await
            .expect("charges")
    }
}

fn now() -> u64 {
    citypass_token::unix_now()
}

fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(10))
}

fn tap(kind: TapKind, gate: &str, station: &str, scan: &str) -> Tap {
    Tap {
        transit_account: RIDER.to_owned(),
        kind,
        gate_id: gate.to_owned(),
        station_id: station.to_owned(),
        scan_id: scan.to_owned(),
        tapped_at: now(),
        fare_class: FareClass::Adult,
    }
}

fn entry(scan: &str, station: &str) -> Tap {
    tap(TapKind::MetroEntry, "metro-entry-1", station, scan)
}

fn exit(scan: &str, station: &str) -> Tap {
    tap(TapKind::MetroExit, "metro-exit-1", station, scan)
}

fn trip(tapped: Result<Tapped, TransitError>) -> citypass_verifier::Trip {
    match tapped {
        Ok(Tapped::Trip(trip)) => trip,
        other => panic!("not a trip: {other:?}"),
    }
}

mod rides {
    use super::*;

    /// A metro entry opens a trip at no fare; the exit closes the same trip at the
    /// fare table's fare (pingguoyuan → xidan, 16 km: 5 yuan), charged once.
    pub async fn an_entry_opens_and_the_exit_prices_the_trip(running: Running) {
        running.link("agr_sandbox_contract").await;
        let opened = trip(
            running
                .taps
                .tap(entry("c-in", "pingguoyuan"), deadline())
                .await,
        );
        assert_eq!(opened.status, TripState::Open);
        assert_eq!(opened.fare_minor_units, 0);
        assert_eq!(opened.fare_class, FareClass::Adult);
        let closed = trip(running.taps.tap(exit("c-out", "xidan"), deadline()).await);
        assert_eq!(closed.trip_id, opened.trip_id);
        assert_eq!(closed.status, TripState::Closed);
        assert_eq!(
            (closed.fare_minor_units, closed.currency_code.as_str()),
            (500, "CNY")
        );
        assert_eq!(closed.charge_status, ChargeStatus::Pending);
        assert_eq!(running.charges().await.len(), 1);
    }

    /// A bus boarding is a closed, priced trip at once (route 1: 2 yuan).
    pub async fn a_bus_ride_is_priced_at_once(running: Running) {
        running.link("agr_sandbox_contract").await;
        let ride = trip(
            running
                .taps
                .tap(tap(TapKind::Bus, "bus-1", "1", "c-bus"), deadline())
                .await,
        );
        assert_eq!(ride.status, TripState::Closed);
        assert_eq!(ride.fare_minor_units, 200);
    }

    /// The same gate and scan again (a gate's retry, a policy run again): the same
    /// trip, no second charge.
    pub async fn a_repeated_tap_is_the_same_trip_charged_once(running: Running) {
        running.link("agr_sandbox_contract").await;
        let first = trip(
            running
                .taps
                .tap(entry("r-in", "pingguoyuan"), deadline())
                .await,
        );
        let again = trip(
            running
                .taps
                .tap(entry("r-in", "pingguoyuan"), deadline())
                .await,
        );
        assert_eq!(again.trip_id, first.trip_id);
        let out = trip(running.taps.tap(exit("r-out", "xidan"), deadline()).await);
        let out_again = trip(running.taps.tap(exit("r-out", "xidan"), deadline()).await);
        assert_eq!(out_again, out);
        assert_eq!(running.charges().await.len(), 1, "charged once");
    }

    /// An offline gate's entry, uploaded after the rider's online exit (an exit
    /// without entry, the maximum fare): the same trip priced as a matched one, the
    /// difference refunded once, a retry the same answer; without a link (unlinked
    /// before the upload), recorded all the same, its charge DECLINED (arrears).
    pub async fn a_late_entry_reprices_the_exit_it_belongs_to(running: Running) {
        let late = |scan: &str, at: u64| Tap {
            tapped_at: at,
            ..entry(scan, "pingguoyuan")
        };
        running.link("agr_sandbox_contract").await;
        let unmatched = trip(running.taps.tap(exit("l-out", "xidan"), deadline()).await);
        assert_eq!(
            (unmatched.status, unmatched.fare_minor_units),
            (TripState::Unmatched, 1000)
        );
        let entered = now() - 1200;
        let repriced = trip(
            running
                .taps
                .late_tap(late("l-in", entered), deadline())
                .await,
        );
        assert_eq!(repriced.trip_id, unmatched.trip_id);
        assert_eq!(
            (repriced.status, repriced.fare_minor_units),
            (TripState::Closed, 500)
        );
        let again = trip(
            running
                .taps
                .late_tap(late("l-in", entered), deadline())
                .await,
        );
        assert_eq!(again, repriced);
        assert_eq!(running.charges().await.len(), 1, "one charge");
        let (report, verdict) = running.payments.check_ledger().await.expect("ledger");
        assert_eq!(verdict, Ok(()), "{report:?}");
        assert_eq!((report.refund_postings, report.operators), (1, 500));
        // Older than payments' late window (24 h): rejected with the field's reason.
        let stale = running
            .taps
            .late_tap(late("l-in-old", now() - 25 * 3600), deadline())
            .await;
        assert!(
            matches!(stale, Err(TransitError::Rejected { .. })),
            "{stale:?}"
        );
        let account = TransitAccount::parse(RIDER).expect("an account");
        running
            .payments
            .unlink(account, now())
            .await
            .expect("unlinked");
        let exit_late = Tap {
            tapped_at: now() - 600,
            ..exit("l-out-2", "xidan")
        };
        let owed = trip(running.taps.late_tap(exit_late, deadline()).await);
        assert_eq!(
            (owed.status, owed.fare_minor_units),
            (TripState::Unmatched, 1000)
        );
        assert!(
            running.charges().await.iter().any(|c| {
                c.status == LedgerCharge::Declined
                    && c.decline_code.as_deref() == Some("NO_PAYMENT_LINK")
            }),
            "owed as arrears"
        );
    }

    /// A gate's void of its entry: the trip is voided, not charged.
    pub async fn a_void_voids_the_gates_tap(running: Running) {
        running.link("agr_sandbox_contract").await;
        let opened = trip(
            running
                .taps
                .tap(entry("v-in", "pingguoyuan"), deadline())
                .await,
        );
        let voided = running
            .taps
            .void(
                Void {
                    transit_account: RIDER.to_owned(),
                    gate_id: "metro-entry-1".to_owned(),
                    scan_id: "v-in".to_owned(),
                    voided_at: now(),
                },
                deadline(),
            )
            .await
            .expect("voided");
        assert_eq!(voided.trip_id, opened.trip_id);
        assert_eq!(voided.status, TripState::Voided);
        assert!(running.charges().await.is_empty());
    }
}

mod refusals {
    use super::*;

    /// Without a payment link: refused, nothing opened.
    pub async fn no_link_is_refused(running: Running) {
        let refused = running
            .taps
            .tap(entry("n-in", "pingguoyuan"), deadline())
            .await;
        assert_eq!(refused, Ok(Tapped::Refused(TapRefused::NoPaymentLink)));
        assert!(running.charges().await.is_empty());
    }

    /// A second entry elsewhere while a trip is open: refused.
    pub async fn a_second_entry_is_refused_while_a_trip_is_open(running: Running) {
        running.link("agr_sandbox_contract").await;
        trip(
            running
                .taps
                .tap(entry("o-1", "pingguoyuan"), deadline())
                .await,
        );
        let refused = running.taps.tap(entry("o-2", "xidan"), deadline()).await;
        assert_eq!(refused, Ok(Tapped::Refused(TapRefused::TripAlreadyOpen)));
    }

    /// A declined charge is arrears: the next entry is refused until repaid.
    pub async fn a_declined_charge_refuses_the_next_entry(running: Running) {
        running.link("decline_contract").await;
        trip(
            running
                .taps
                .tap(tap(TapKind::Bus, "bus-1", "1", "d-bus"), deadline())
                .await,
        );
        let until = Instant::now() + Duration::from_secs(30);
        while !running
            .charges()
            .await
            .iter()
            .any(|c| c.status == LedgerCharge::Declined)
        {
            assert!(Instant::now() < until, "the charge was never declined");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let refused = running
            .taps
            .tap(entry("d-in", "pingguoyuan"), deadline())
            .await;
        assert_eq!(refused, Ok(Tapped::Refused(TapRefused::Arrears)));
    }

    /// A station payments does not know is payments refusing the request, with its
    /// reason: not a refusal of the rider, not an outage.
    pub async fn an_unknown_station_is_rejected_with_its_reason(running: Running) {
        running.link("agr_sandbox_contract").await;
        let rejected = running
            .taps
            .tap(entry("u-in", "atlantis"), deadline())
            .await;
        assert_eq!(
            rejected,
            Err(TransitError::Rejected {
                reason: "UNKNOWN_STATION".to_owned()
            })
        );
    }
}

mod outages {
    use super::*;

    /// Payments absent (nothing listens) or silent (a socket that never answers):
    /// unavailable, within the deadline, never a refusal of the rider.
    pub async fn an_absent_or_silent_service_is_unavailable_within_the_deadline(running: Running) {
        let absent = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("an address")
        };
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        for addr in [absent, silent.local_addr().expect("an address")] {
            let taps = PaymentsTaps::new(running.pki.channel(addr, &As::Service("verifier")));
            let started = Instant::now();
            let failed = taps
                .tap(
                    entry("x-in", "pingguoyuan"),
                    Deadline::after(Duration::from_secs(1)),
                )
                .await;
            assert_eq!(failed, Err(TransitError::Unavailable), "{addr}");
            assert!(started.elapsed() < Duration::from_secs(5), "{addr}");
        }
        drop(silent);
    }

    /// A caller without the verifier's certificate is refused by payments: rejected
    /// (PERMISSION_DENIED), not treated as an outage.
    pub async fn another_caller_is_rejected(running: Running) {
        let gate = PaymentsTaps::new(
            running
                .pki
                .channel(running.addr, &As::Gate("metro-entry-1")),
        );
        let rejected = gate.tap(entry("g-in", "pingguoyuan"), deadline()).await;
        assert!(
            matches!(rejected, Err(TransitError::Rejected { .. })),
            "{rejected:?}"
        );
    }
}

citypass_testkit::contract_suite!(
    memory => super::memory().await,
    postgres => super::postgres().await;
    [
        rides::an_entry_opens_and_the_exit_prices_the_trip,
        rides::a_bus_ride_is_priced_at_once,
        rides::a_repeated_tap_is_the_same_trip_charged_once,
        rides::a_void_voids_the_gates_tap,
        rides::a_late_entry_reprices_the_exit_it_belongs_to,
        refusals::no_link_is_refused,
        refusals::a_second_entry_is_refused_while_a_trip_is_open,
        refusals::a_declined_charge_refuses_the_next_entry,
        refusals::an_unknown_station_is_rejected_with_its_reason,
        outages::an_absent_or_silent_service_is_unavailable_within_the_deadline,
        outages::another_caller_is_rejected,
    ]
);
