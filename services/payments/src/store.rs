//! Where links, trips, charges, the ledger and the outbox live: one trait, two
//! backends.
//!
//! PostgreSQL ([`postgres::PostgresStore`]) is the system of record; the in-memory
//! store ([`memory::MemoryStore`]) is the embedded default of `citypass dev` and of unit
//! tests. Both pass one contract suite (`tests/store_contract/`), so the service cannot
//! tell them apart.
//!
//! Everything a tap changes is one call, [`PaymentsStore::with_rider`]: the store takes
//! the rider's lock (a `SELECT … FOR UPDATE` of the rider's row; the mutex in memory),
//! loads a [`RiderState`], asks the rules ([`crate::tap`]) what to write, and writes
//! it (trips, tap records, charges with their ledger postings and outbox rows,
//! cancellations with their reversals) all or nothing. So concurrent taps of one rider
//! take turns and see each other's effects, and constraints back the rules up: a tap
//! key is taken once, a charge key is written once, a trip has at most one live charge,
//! a rider at most one open trip and one active link. Times are passed in, never read
//! inside a store.

pub mod memory;
pub mod postgres;

use futures::future::BoxFuture;

use crate::account::TransitAccount;
use crate::charge::{Charge, ChargeKey};
use crate::decision::{Answer, Decision, RiderState};
use crate::error::Error;
use crate::ledger::{LedgerReport, Refund};
use crate::link::{Link, NewLink};
use crate::outbox::{OutboxJob, OutboxMessage, OutboxStatus, Settlement};
use crate::trip::{TapKey, Trip, TripId};

pub use memory::MemoryStore;
pub use postgres::PostgresStore;

/// The rules a store runs under the rider's lock: the rider's state in, the writes out.
pub type Rules<'a> = &'a (dyn Fn(&RiderState) -> Result<Decision, Error> + Send + Sync);

/// Where to start a page of trips: after this one, in listing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TripCursor {
    /// The last listed trip's start.
    pub started_at: u64,
    /// The last listed trip's id.
    pub id: TripId,
}

/// Which trips to list: newest first (by start, then id), started in `[since, until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TripQuery {
    /// Started at or after this.
    pub since: Option<u64>,
    /// Started before this.
    pub until: Option<u64>,
    /// After this trip (the previous page's last).
    pub after: Option<TripCursor>,
    /// Most trips to return (at least 1).
    pub limit: usize,
}

/// A trip with its live charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TripView {
    /// The trip.
    pub trip: Trip,
    /// Its live (not cancelled) charge, if any.
    pub charge: Option<Charge>,
}

/// A charge with its outbox row's status (`outbox: None`: no row, as for a charge made
/// while no link was active, which is never sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRow {
    /// The charge.
    pub charge: Charge,
    /// Its outbox row's status.
    pub outbox: Option<OutboxStatus>,
}

/// One page of trips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TripPage {
    /// The trips, newest first.
    pub trips: Vec<TripView>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<TripCursor>,
}

/// Storage for the payments service. See the module documentation.
pub trait PaymentsStore: Send + Sync + 'static {
    /// Stores a new active link. [`Error::AlreadyLinked`] if the account has one (also
    /// under concurrent links: one wins).
    fn link(&self, link: NewLink, now: u64) -> BoxFuture<'_, Result<Link, Error>>;

    /// Ends the account's active link (kept, with `unlinked_at`).
    /// [`Error::NotLinked`] if none is active.
    fn unlink(&self, account: TransitAccount, now: u64) -> BoxFuture<'_, Result<Link, Error>>;

    /// The account's active link, if any.
    fn active_link(&self, account: TransitAccount) -> BoxFuture<'_, Result<Option<Link>, Error>>;

    /// Under the rider's lock: loads the [`RiderState`] (with `tap`'s record when
    /// given, trips since [`crate::decision::window_start`] of `at`), runs `rules`, applies
    /// its writes all or nothing and returns its answer. An error from `rules` or from a
    /// write changes nothing.
    fn with_rider<'a>(
        &'a self,
        account: TransitAccount,
        tap: Option<TapKey>,
        at: u64,
        rules: Rules<'a>,
    ) -> BoxFuture<'a, Result<Answer, Error>>;

    /// Riders with a trip open since before `started_before`, at most `limit`.
    fn riders_open_since(
        &self,
        started_before: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<TransitAccount>, Error>>;

    /// One page of the account's trips (see [`TripQuery`]).
    fn trips(
        &self,
        account: TransitAccount,
        query: TripQuery,
    ) -> BoxFuture<'_, Result<TripPage, Error>>;

    /// One trip of the account, with its live charge; `None` if the account has no
    /// trip of this id.
    fn trip(
        &self,
        account: TransitAccount,
        id: TripId,
    ) -> BoxFuture<'_, Result<Option<TripView>, Error>>;

    /// Every rider's charges made in `[from, until)` (Unix seconds), every status.
    fn charges_made_between(
        &self,
        from: u64,
        until: u64,
    ) -> BoxFuture<'_, Result<Vec<Charge>, Error>>;

    /// Every rider's refunds posted in `[from, until)` (Unix seconds).
    fn refunds_made_between(
        &self,
        from: u64,
        until: u64,
    ) -> BoxFuture<'_, Result<Vec<Refund>, Error>>;

    /// The account's charges, every status, newest first (by creation, then key).
    fn charges(&self, account: TransitAccount) -> BoxFuture<'_, Result<Vec<Charge>, Error>>;

    /// The charge sent (or to be sent) under the provider key `key`, if any, with its
    /// outbox row's status (`None`: no row, as for a charge made while no link was
    /// active, which is never sent).
    fn charge_by_provider_key(
        &self,
        key: ChargeKey,
    ) -> BoxFuture<'_, Result<Option<ChargeRow>, Error>>;

    /// Outbox rows, oldest first, at most `limit`.
    fn outbox(&self, limit: usize) -> BoxFuture<'_, Result<Vec<OutboxMessage>, Error>>;

    /// Rows to send, oldest first, at most `limit`: PENDING, or DISPATCHED while their
    /// charge is still PENDING or RETRYING (a worker died or the answer was not known).
    fn outbox_jobs(&self, limit: usize, now: u64) -> BoxFuture<'_, Result<Vec<OutboxJob>, Error>>;

    /// Marks the charge's row DISPATCHED, taking the charge's lock (so a concurrent
    /// void either cancels first or finds it dispatched). `true` if the row is
    /// dispatched now; `false` if it is cancelled or done (nothing to send).
    fn dispatch(&self, charge: ChargeKey) -> BoxFuture<'_, Result<bool, Error>>;

    /// Applies the provider's answer to a PENDING or RETRYING charge, once: approved →
    /// SUCCEEDED with its capture posting, declined → DECLINED (arrears), the row DONE;
    /// retry → RETRYING. A charge in another state is returned unchanged.
    fn settle(
        &self,
        charge: ChargeKey,
        settlement: Settlement,
        at: u64,
    ) -> BoxFuture<'_, Result<Charge, Error>>;

    /// The sums [`crate::ledger::verify`] checks, over the whole ledger.
    fn ledger_report(&self) -> BoxFuture<'_, Result<LedgerReport, Error>>;
}
