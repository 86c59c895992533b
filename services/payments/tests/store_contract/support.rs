//! Fixtures the concerns share: the checked-in fare table, riders, taps, the ledger
//! check, and `race` for truly concurrent calls.

use std::sync::Arc;

use citypass_payments::charge::{Charge, ChargeStatus};
use citypass_payments::link::Provider;
use citypass_payments::payments::{LinkRequest, Tapped};
use citypass_payments::store::TripQuery;
use citypass_payments::tap::{Place, TapIn, TapOut, TapRules, TapSettings, Void};
use citypass_payments::trip::Trip;
use citypass_payments::{FareClass, FareTable, Payments, PaymentsStore, TransitAccount};

/// A fixed clock origin (2027-01-15T08:00:00Z, 16:00 in Beijing); tests move it on.
pub(crate) const T0: u64 = 1_800_000_000;

pub(crate) fn payments(store: Arc<dyn PaymentsStore>) -> Payments {
    let fares = FareTable::from_yaml(include_str!("../../config/fares.yaml")).unwrap();
    Payments::new(
        store,
        TapRules::new(Arc::new(fares), TapSettings::default()).unwrap(),
    )
}

pub(crate) fn rider(n: u8) -> TransitAccount {
    TransitAccount::from_bytes([n; 16])
}

pub(crate) fn link_request(account: TransitAccount) -> LinkRequest<'static> {
    LinkRequest {
        account,
        provider: Provider::Sandbox,
        token: "agr_sandbox_4f9c2a7e1b",
        last4: "0042",
        consent_version: "2026-01",
        consented_at: T0 - 100,
    }
}

/// A rider with an active link.
pub(crate) async fn linked(p: &Payments, n: u8) -> TransitAccount {
    let account = rider(n);
    p.link(link_request(account), T0 - 50).await.unwrap();
    account
}

pub(crate) fn entry(
    account: TransitAccount,
    gate: &str,
    scan: &str,
    station: &str,
    at: u64,
) -> TapIn {
    TapIn {
        account,
        gate_id: gate.to_owned(),
        scan_id: scan.to_owned(),
        place: Place::Metro(station.to_owned()),
        at,
        fare_class: FareClass::Adult,
    }
}

pub(crate) fn boarding(
    account: TransitAccount,
    gate: &str,
    scan: &str,
    route: &str,
    at: u64,
) -> TapIn {
    TapIn {
        place: Place::Bus(route.to_owned()),
        ..entry(account, gate, scan, "x", at)
    }
}

pub(crate) fn exit(
    account: TransitAccount,
    gate: &str,
    scan: &str,
    station: &str,
    at: u64,
) -> TapOut {
    TapOut {
        account,
        gate_id: gate.to_owned(),
        scan_id: scan.to_owned(),
        station: station.to_owned(),
        at,
        fare_class: FareClass::Adult,
    }
}

pub(crate) fn void(account: TransitAccount, gate: &str, scan: &str, at: u64) -> Void {
    Void {
        account,
        gate_id: gate.to_owned(),
        scan_id: scan.to_owned(),
        at,
    }
}

/// The trip a tap in recorded (panics on a refusal).
pub(crate) async fn tap_in(p: &Payments, tap: TapIn) -> Trip {
    match p.tap_in(tap).await.unwrap() {
        Tapped::Trip(trip) => *trip,
        Tapped::Refused(refusal) => panic!("refused: {refusal:?}"),
    }
}

/// The rider's charges that still count.
pub(crate) async fn live_charges(p: &Payments, account: TransitAccount) -> Vec<Charge> {
    p.store()
        .charges(account)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.status != ChargeStatus::Cancelled)
        .collect()
}

/// Every trip of the rider, newest first.
pub(crate) async fn all_trips(p: &Payments, account: TransitAccount) -> Vec<Trip> {
    p.trips(
        account,
        TripQuery {
            since: None,
            until: None,
            after: None,
            limit: 500,
        },
    )
    .await
    .unwrap()
    .trips
    .into_iter()
    .map(|v| v.trip)
    .collect()
}

/// The ledger's invariants hold; returns the operators' receivable total.
pub(crate) async fn ledger_balances(p: &Payments) -> i128 {
    let (report, verdict) = p.check_ledger().await.unwrap();
    assert_eq!(verdict, Ok(()), "{report:?}");
    report.operators
}

/// Runs `attempt(i)` for `i in 0..n` truly at once (each waits at a barrier until all
/// are ready), on tasks of the multi-threaded runtime.
pub(crate) async fn race<F, Fut, T>(n: usize, attempt: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            let work = attempt(i);
            tokio::spawn(async move {
                barrier.wait().await;
                work.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}
