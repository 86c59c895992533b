//! Fixtures the concerns share: the checked-in fare table, riders, taps, the ledger
//! check, and `race` for truly concurrent calls.

use std::sync::Arc;

use citypass_payments::Error;
use citypass_payments::charge::{Charge, ChargeKey, ChargeStatus};
use citypass_payments::decision::Answer;
use citypass_payments::ledger::{LedgerReport, Refund};
use citypass_payments::link::Provider;
use citypass_payments::link::{Link, NewLink};
use citypass_payments::outbox::{OutboxJob, OutboxMessage, Settlement};
use citypass_payments::payments::{LinkRequest, Tapped};
use citypass_payments::store::TripQuery;
use citypass_payments::store::{ChargeRow, Rules, TripPage, TripView};
use citypass_payments::tap::{Place, TapIn, TapOut, TapRules, TapSettings, Void};
use citypass_payments::trip::Trip;
use citypass_payments::trip::{TapKey, TripId};
use citypass_payments::{FareClass, FareTable, Payments, PaymentsStore, TransitAccount};
use futures::future::BoxFuture;

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

/// A store that fails `settle` for one charge, and `with_rider` for one rider (what a
/// database refusing one row looks like), and passes everything else on.
pub(crate) struct Faulty {
    pub(crate) settle: Option<ChargeKey>,
    pub(crate) rider: Option<TransitAccount>,
    pub(crate) inner: Arc<dyn PaymentsStore>,
}

impl PaymentsStore for Faulty {
    fn link(&self, link: NewLink, now: u64) -> BoxFuture<'_, Result<Link, Error>> {
        self.inner.link(link, now)
    }
    fn unlink(&self, account: TransitAccount, now: u64) -> BoxFuture<'_, Result<Link, Error>> {
        self.inner.unlink(account, now)
    }
    fn active_link(&self, account: TransitAccount) -> BoxFuture<'_, Result<Option<Link>, Error>> {
        self.inner.active_link(account)
    }
    fn with_rider<'a>(
        &'a self,
        account: TransitAccount,
        tap: Option<TapKey>,
        at: u64,
        rules: Rules<'a>,
    ) -> BoxFuture<'a, Result<Answer, Error>> {
        if Some(account) == self.rider {
            return Box::pin(async { Err(Error::Corrupt("rider refused for the test")) });
        }
        self.inner.with_rider(account, tap, at, rules)
    }
    fn riders_open_since(
        &self,
        started_before: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<TransitAccount>, Error>> {
        self.inner.riders_open_since(started_before, limit)
    }
    fn trips(
        &self,
        account: TransitAccount,
        query: TripQuery,
    ) -> BoxFuture<'_, Result<TripPage, Error>> {
        self.inner.trips(account, query)
    }
    fn trip(
        &self,
        account: TransitAccount,
        id: TripId,
    ) -> BoxFuture<'_, Result<Option<TripView>, Error>> {
        self.inner.trip(account, id)
    }
    fn charges_made_between(
        &self,
        from: u64,
        until: u64,
    ) -> BoxFuture<'_, Result<Vec<Charge>, Error>> {
        self.inner.charges_made_between(from, until)
    }
    fn refunds_made_between(
        &self,
        from: u64,
        until: u64,
    ) -> BoxFuture<'_, Result<Vec<Refund>, Error>> {
        self.inner.refunds_made_between(from, until)
    }
    fn charges(&self, account: TransitAccount) -> BoxFuture<'_, Result<Vec<Charge>, Error>> {
        self.inner.charges(account)
    }
    fn charge_by_provider_key(
        &self,
        key: ChargeKey,
    ) -> BoxFuture<'_, Result<Option<ChargeRow>, Error>> {
        self.inner.charge_by_provider_key(key)
    }
    fn outbox(&self, limit: usize) -> BoxFuture<'_, Result<Vec<OutboxMessage>, Error>> {
        self.inner.outbox(limit)
    }
    fn outbox_jobs(&self, limit: usize, now: u64) -> BoxFuture<'_, Result<Vec<OutboxJob>, Error>> {
        self.inner.outbox_jobs(limit, now)
    }
    fn dispatch(&self, charge: ChargeKey) -> BoxFuture<'_, Result<bool, Error>> {
        self.inner.dispatch(charge)
    }
    fn settle(
        &self,
        charge: ChargeKey,
        settlement: Settlement,
        at: u64,
    ) -> BoxFuture<'_, Result<Charge, Error>> {
        if Some(charge) == self.settle {
            Box::pin(async { Err(Error::Corrupt("settle refused for the test")) })
        } else {
            self.inner.settle(charge, settlement, at)
        }
    }
    fn ledger_report(&self) -> BoxFuture<'_, Result<LedgerReport, Error>> {
        self.inner.ledger_report()
    }
}
