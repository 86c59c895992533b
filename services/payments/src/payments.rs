//! The payments logic: what the gRPC layer (and `citypass dev`, and tests) call.
//!
//! [`Payments`] checks its input (ids, times, tokens: a precise error and nothing
//! stored for bad input), then runs the rules of [`crate::tap`] inside one store call
//! under the rider's lock ([`PaymentsStore::with_rider`]). It takes model types only;
//! conversions from the wire live with the service.

use std::sync::Arc;

use crate::account::TransitAccount;
use crate::charge::{Charge, ChargeStatus};
use crate::error::Error;
use crate::ledger::{self, Imbalance, LedgerReport};
use crate::link::{Consent, Last4, Link, LinkId, NewLink, Provider, ProviderToken};
use crate::money::Fen;
use crate::notification::{Applied, Notification};
use crate::settlement::DailySettlement;
use crate::store::{PaymentsStore, TripPage, TripQuery, TripView};
use crate::tap::{Answer, LateTap, Place, Refusal, TapIn, TapOut, TapRules, Void};
use crate::trip::{TapKey, Trip, check_id};

/// Latest accepted time: 9999-12-31T23:59:59Z.
pub const MAX_TIME: u64 = 253_402_300_799;
/// Trips per page when the caller names no size.
pub const DEFAULT_PAGE: usize = 50;
/// Most trips per page (as identity's ListCertificates).
pub const MAX_PAGE: usize = 200;
/// Most overdue trips closed per expiry pass.
pub const EXPIRY_BATCH: usize = 500;

/// A link request, as the citizen's app sends it.
#[derive(Debug, Clone)]
pub struct LinkRequest<'a> {
    /// The transit account.
    pub account: TransitAccount,
    /// The provider.
    pub provider: Provider,
    /// The provider's token (checked: never a card number).
    pub token: &'a str,
    /// Last 4 digits (checked).
    pub last4: &'a str,
    /// The consent text version.
    pub consent_version: &'a str,
    /// When the citizen consented (the app's clock), Unix seconds.
    pub consented_at: u64,
}

/// The outcome of a tap in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tapped {
    /// The trip opened (metro) or closed and priced (bus) (boxed: a refusal is small).
    Trip(Box<Trip>),
    /// Refused; nothing written.
    Refused(Refusal),
}

/// What an expiry pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    /// The trips closed at the maximum fare.
    pub closed: Vec<Trip>,
    /// Riders whose overdue trip could not be closed (left for the next pass).
    pub failed: usize,
}

/// What a rider owes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrears {
    /// The sum of the declined charges.
    pub total: Fen,
    /// The declined charges, newest first.
    pub charges: Vec<Charge>,
}

/// The payments logic over a store and the tap rules.
#[derive(Clone)]
pub struct Payments {
    store: Arc<dyn PaymentsStore>,
    rules: Arc<TapRules>,
    server_clock: Option<ServerClock>,
}

/// The server's clock and how far a gate's void may be from it.
#[derive(Clone)]
struct ServerClock {
    now: Arc<dyn Fn() -> u64 + Send + Sync>,
    max_skew: std::time::Duration,
}

fn check_time(field: &'static str, at: u64) -> Result<(), Error> {
    if at == 0 || at > MAX_TIME {
        return Err(Error::invalid(
            field,
            "must be a time between 1970 and 9999",
        ));
    }
    Ok(())
}

fn trip_of(answer: Answer) -> Result<Trip, Error> {
    match answer {
        Answer::Trip(trip) => Ok(*trip),
        _ => Err(Error::Corrupt("the rules answered a tap without a trip")),
    }
}

impl Payments {
    /// The logic over `store` with `rules`.
    pub fn new(store: Arc<dyn PaymentsStore>, rules: TapRules) -> Self {
        Payments {
            store,
            rules: Arc::new(rules),
            server_clock: None,
        }
    }

    /// The same logic refusing a void whose `voided_at` is more than `max_skew` from
    /// `now()` (the server's clock; the service sets it, tests inject one).
    pub fn with_server_clock(
        mut self,
        now: Arc<dyn Fn() -> u64 + Send + Sync>,
        max_skew: std::time::Duration,
    ) -> Self {
        self.server_clock = Some(ServerClock { now, max_skew });
        self
    }

    /// The logic over `store` with shared `rules`.
    pub fn with_rules(store: Arc<dyn PaymentsStore>, rules: Arc<TapRules>) -> Self {
        Payments {
            store,
            rules,
            server_clock: None,
        }
    }

    /// The rules, shared.
    pub fn shared_rules(&self) -> Arc<TapRules> {
        self.rules.clone()
    }

    /// The store (for tests and the outbox worker).
    pub fn store(&self) -> &Arc<dyn PaymentsStore> {
        &self.store
    }

    /// The rules.
    pub fn rules(&self) -> &TapRules {
        &self.rules
    }

    /// Links a payment account. [`Error::InvalidArgument`] for a bad token (a card
    /// number included), last4 or consent; [`Error::AlreadyLinked`].
    pub async fn link(&self, request: LinkRequest<'_>, now: u64) -> Result<Link, Error> {
        let token = ProviderToken::parse(request.token)?;
        let last4 = Last4::parse(request.last4)?;
        check_time("consent.consented_at", request.consented_at)?;
        let consent = Consent::new(request.consent_version, request.consented_at)?;
        let link = NewLink {
            id: LinkId::generate()?,
            account: request.account,
            provider: request.provider,
            token,
            last4,
            consent,
        };
        self.store.link(link, now).await
    }

    /// Ends the active link. [`Error::NotLinked`].
    pub async fn unlink(&self, account: TransitAccount, now: u64) -> Result<Link, Error> {
        self.store.unlink(account, now).await
    }

    /// The active link. [`Error::NotLinked`].
    pub async fn get_link(&self, account: TransitAccount) -> Result<Link, Error> {
        self.store
            .active_link(account)
            .await?
            .ok_or(Error::NotLinked)
    }

    /// A metro entry or a bus boarding (see [`crate::tap`]).
    pub async fn tap_in(&self, tap: TapIn) -> Result<Tapped, Error> {
        check_id("gate_id", &tap.gate_id)?;
        check_id("scan_id", &tap.scan_id)?;
        match &tap.place {
            Place::Metro(place) | Place::Bus(place) => check_id("station_id", place)?,
        }
        check_time("tapped_at", tap.at)?;
        let key = TapKey::of(&tap.gate_id, &tap.scan_id);
        let rules = &self.rules;
        let decide = |state: &_| rules.tap_in(state, &tap);
        match self
            .store
            .with_rider(tap.account, Some(key), tap.at, &decide)
            .await?
        {
            Answer::Refused(refusal) => Ok(Tapped::Refused(refusal)),
            answer => trip_of(answer).map(|trip| Tapped::Trip(Box::new(trip))),
        }
    }

    /// A metro exit (see [`crate::tap`]).
    pub async fn tap_out(&self, tap: TapOut) -> Result<Trip, Error> {
        check_id("gate_id", &tap.gate_id)?;
        check_id("scan_id", &tap.scan_id)?;
        check_id("station_id", &tap.station)?;
        check_time("tapped_at", tap.at)?;
        let key = TapKey::of(&tap.gate_id, &tap.scan_id);
        let rules = &self.rules;
        let decide = |state: &_| rules.tap_out(state, &tap);
        trip_of(
            self.store
                .with_rider(tap.account, Some(key), tap.at, &decide)
                .await?,
        )
    }

    /// A tap an offline gate took at `tap.at`, uploaded and passed on by the verifier
    /// at `now` (see [`crate::tap::LateTap`]; the service bounds `tap.at` by its late
    /// window). Never refused: without a link the trip is charged DECLINED (arrears).
    pub async fn late_tap(&self, tap: LateTap, now: u64) -> Result<Tapped, Error> {
        check_id("gate_id", &tap.gate_id)?;
        check_id("scan_id", &tap.scan_id)?;
        check_id("station_id", &tap.place)?;
        check_time("tapped_at", tap.at)?;
        let rules = &self.rules;
        let decide = |state: &_| rules.late_tap(state, &tap, now);
        match self
            .store
            .with_rider(tap.account, Some(tap.key()), tap.at, &decide)
            .await?
        {
            Answer::Refused(refusal) => Ok(Tapped::Refused(refusal)),
            answer => trip_of(answer).map(|trip| Tapped::Trip(Box::new(trip))),
        }
    }

    /// A gate's void of its tap (see [`crate::tap`]).
    pub async fn void(&self, void: Void) -> Result<Trip, Error> {
        check_id("gate_id", &void.gate_id)?;
        check_id("scan_id", &void.scan_id)?;
        check_time("voided_at", void.at)?;
        if let Some(clock) = &self.server_clock
            && void.at.abs_diff((clock.now)()) > clock.max_skew.as_secs()
        {
            return Err(Error::invalid(
                "voided_at",
                format!(
                    "is more than {} s from the server's clock",
                    clock.max_skew.as_secs()
                ),
            ));
        }
        let key = TapKey::of(&void.gate_id, &void.scan_id);
        let rules = &self.rules;
        let decide = |state: &_| rules.void(state, &void);
        trip_of(
            self.store
                .with_rider(void.account, Some(key), void.at, &decide)
                .await?,
        )
    }

    /// Closes, at the maximum fare, trips open for the table's `max_trip` or longer at
    /// `now` (at most [`EXPIRY_BATCH`] riders). A rider whose closing fails is counted
    /// in [`Expired::failed`] (and logged without the rider) and the pass goes on with
    /// the others; only failing to list the riders is an error.
    pub async fn expire_open_trips(&self, now: u64) -> Result<Expired, Error> {
        let max_trip = self.rules.fares.config().metro.max_trip.as_secs();
        let before = now.saturating_sub(max_trip).saturating_add(1);
        let mut expired = Expired::default();
        for account in self.store.riders_open_since(before, EXPIRY_BATCH).await? {
            let rules = &self.rules;
            let decide = |state: &_| rules.expire(state, now);
            match self.store.with_rider(account, None, now, &decide).await {
                Ok(Answer::Trip(trip)) => expired.closed.push(*trip),
                Ok(_) => {}
                Err(err) => {
                    // No transit account in the log: the error names the step only.
                    tracing::warn!(error = %err, "an overdue trip was not closed; tried again at the next pass");
                    expired.failed += 1;
                }
            }
        }
        Ok(expired)
    }

    /// The trip a tap answered, as stored now, with its live charge (what a tap's
    /// answer shows); the trip as given if it is not stored (a refused write).
    pub async fn trip_view(&self, trip: Trip) -> Result<TripView, Error> {
        Ok(self
            .store
            .trip(trip.account, trip.id)
            .await?
            .unwrap_or(TripView { trip, charge: None }))
    }

    /// One page of the rider's trips, newest first. `limit` 0 is [`DEFAULT_PAGE`];
    /// more than [`MAX_PAGE`] is capped.
    pub async fn trips(
        &self,
        account: TransitAccount,
        mut query: TripQuery,
    ) -> Result<TripPage, Error> {
        if let (Some(since), Some(until)) = (query.since, query.until)
            && since > until
        {
            return Err(Error::invalid("until", "must not be before since"));
        }
        query.limit = match query.limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        self.store.trips(account, query).await
    }

    /// RepayArrears: sends every declined charge again to the active link (see
    /// [`crate::arrears`]); returns them, now PENDING. `request` is the caller's
    /// idempotency key (field `idempotency_key`). [`Error::NoPaymentLink`],
    /// [`Error::NothingOwed`].
    pub async fn repay_arrears(
        &self,
        account: TransitAccount,
        request: &str,
        now: u64,
    ) -> Result<Vec<Charge>, Error> {
        check_id("idempotency_key", request)?;
        check_time("now", now)?;
        let decide = |state: &_| crate::arrears::repay(state, request, now);
        let Answer::Requeued(keys) = self.store.with_rider(account, None, now, &decide).await?
        else {
            return Err(Error::Corrupt("a repayment answered without its charges"));
        };
        let charges = self.store.charges(account).await?;
        Ok(charges
            .into_iter()
            .filter(|c| keys.contains(&c.key))
            .collect())
    }

    /// What the rider owes: the declined charges.
    pub async fn arrears(&self, account: TransitAccount) -> Result<Arrears, Error> {
        let charges: Vec<Charge> = self
            .store
            .charges(account)
            .await?
            .into_iter()
            .filter(|c| c.status == ChargeStatus::Declined)
            .collect();
        let total = charges
            .iter()
            .try_fold(Fen::ZERO, |sum, c| sum.checked_add(c.amount))
            .ok_or(Error::AmountOutOfRange("arrears"))?;
        Ok(Arrears { total, charges })
    }

    /// The settlement of city day `day` (see [`crate::settlement`]).
    pub async fn settlement(&self, day: i64) -> Result<DailySettlement, Error> {
        let (from, until) = self.rules.day_bounds(day)?;
        let charges = self.store.charges_made_between(from, until).await?;
        let refunds = self.store.refunds_made_between(from, until).await?;
        DailySettlement::of(day, &charges, &refunds)
    }

    /// Applies a provider's notification whose signature was checked
    /// ([`crate::notification`]), at `now`.
    pub async fn notify(
        &self,
        provider: Provider,
        notification: &Notification,
        now: u64,
    ) -> Result<(Applied, Charge), Error> {
        crate::notification::apply(self.store.as_ref(), provider, notification, now).await
    }

    /// The ledger's sums and whether its invariants hold.
    pub async fn check_ledger(&self) -> Result<(LedgerReport, Result<(), Vec<Imbalance>>), Error> {
        let report = self.store.ledger_report().await?;
        let verdict = ledger::verify(&report);
        Ok((report, verdict))
    }
}
