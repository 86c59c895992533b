//! The in-memory store: one mutex over everything, so each call is atomic. For
//! `citypass dev` and tests; passes the same contract suite as PostgreSQL.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use futures::future::BoxFuture;

use super::{ChargeRow, PaymentsStore, Rules, TripCursor, TripPage, TripQuery, TripView};
use crate::account::TransitAccount;
use crate::charge::{Charge, ChargeKey, ChargeStatus};
use crate::decision::{Answer, RiderState, Write, arrears_of, window_start};
use crate::error::Error;
use crate::ledger::{Account, LedgerReport, Posting, PostingKind, Refund};
use crate::link::{Link, NewLink, ProviderToken};
use crate::money::Fen;
use crate::outbox::{OutboxJob, OutboxMessage, OutboxStatus, Settlement};
use crate::trip::{TapKey, TapRecord, Trip, TripId, TripStatus};

#[derive(Default)]
struct State {
    /// Links in the order made, with their tokens.
    links: Vec<(Link, ProviderToken)>,
    trips: HashMap<TripId, Trip>,
    taps: HashMap<TapKey, TapRecord>,
    charges: HashMap<ChargeKey, Charge>,
    postings: Vec<Posting>,
    /// Outbox rows in the order written.
    outbox: Vec<OutboxMessage>,
}

/// The in-memory store.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, Error> {
        self.state.lock().map_err(|_| Error::Poisoned)
    }
}

impl State {
    fn active_link(&self, account: TransitAccount) -> Option<&Link> {
        self.links
            .iter()
            .map(|(link, _)| link)
            .find(|l| l.account == account && l.is_active())
    }

    fn live_charge(&self, trip: TripId) -> Option<&Charge> {
        self.charges
            .values()
            .find(|c| c.trip == trip && c.is_live())
    }

    /// Whether the charge has a refund posting.
    fn refunded(&self, charge: ChargeKey) -> bool {
        self.postings
            .iter()
            .any(|p| p.charge == charge && p.kind == PostingKind::Refund)
    }

    fn rider(
        &self,
        account: TransitAccount,
        tap: Option<TapKey>,
        at: u64,
    ) -> Result<RiderState, Error> {
        let declined: Vec<Charge> = self
            .charges
            .values()
            .filter(|c| c.account == account && c.status == ChargeStatus::Declined)
            .cloned()
            .collect();
        let arrears = arrears_of(&declined)?;
        let tap = match tap.and_then(|key| self.taps.get(&key)) {
            Some(record) => Some((
                *record,
                self.trips
                    .get(&record.trip)
                    .cloned()
                    .ok_or(Error::Corrupt("tap without its trip"))?,
            )),
            None => None,
        };
        let trip_taps = match &tap {
            Some((record, _)) => self
                .taps
                .values()
                .filter(|r| r.trip == record.trip && r.key != record.key)
                .copied()
                .collect(),
            None => Vec::new(),
        };
        let open = self
            .trips
            .values()
            .find(|t| t.account == account && t.status == TripStatus::Open)
            .cloned();
        let since = window_start(at, open.as_ref());
        let recent = self
            .trips
            .values()
            .filter(|t| t.account == account && t.status != TripStatus::Open)
            .filter(|t| t.started_at() >= since)
            .cloned()
            .collect();
        Ok(RiderState {
            link: self.active_link(account).cloned(),
            arrears,
            declined,
            tap,
            trip_taps,
            open,
            recent,
        })
    }

    /// Refuses the writes that cannot all be made, before any is.
    fn check(&self, writes: &[Write]) -> Result<(), Error> {
        for write in writes {
            match write {
                Write::Charge(charge) => {
                    if !self.charges.contains_key(&charge.key)
                        && self.live_charge(charge.trip).is_some()
                    {
                        return Err(Error::Corrupt("a second live charge for one trip"));
                    }
                    Posting::charge(charge).ok_or(Error::AmountOutOfRange("charge"))?;
                }
                Write::CancelCharge { trip, .. } => {
                    if let Some(charge) = self.live_charge(*trip) {
                        if self.refunded(charge.key) {
                            return Err(Error::VoidTooLate("its charge has been refunded in part"));
                        }
                        let sent = self.outbox.iter().any(|m| {
                            m.charge == charge.key
                                && matches!(m.status, OutboxStatus::Dispatched | OutboxStatus::Done)
                        }) || !matches!(
                            charge.status,
                            ChargeStatus::Pending | ChargeStatus::Declined
                        );
                        if sent {
                            return Err(Error::VoidTooLate("its charge has been sent"));
                        }
                    }
                }
                Write::Refund { trip, amount, .. } => {
                    if let Some(charge) = self.live_charge(*trip)
                        && !self.refunded(charge.key)
                        && Posting::refund(charge, *amount, 0).is_none()
                    {
                        return Err(Error::AmountOutOfRange("refund"));
                    }
                }
                Write::RecordTap(record) if self.taps.contains_key(&record.key) => {
                    return Err(Error::ScanReused);
                }
                Write::PutTrip(trip) => {
                    let other_open = self.trips.values().any(|t| {
                        t.account == trip.account && t.status == TripStatus::Open && t.id != trip.id
                    });
                    if trip.status == TripStatus::Open
                        && other_open
                        && !writes.iter().any(|w| closes_other(w, trip))
                    {
                        return Err(Error::Corrupt("a second open trip"));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn apply(&mut self, write: Write) -> Result<(), Error> {
        match write {
            Write::PutTrip(trip) => {
                self.trips.insert(trip.id, trip);
            }
            Write::RecordTap(record) => {
                self.taps.insert(record.key, record);
            }
            Write::VoidTap(key) => {
                if let Some(record) = self.taps.get_mut(&key) {
                    record.voided = true;
                }
            }
            Write::Charge(charge) => {
                if self.charges.contains_key(&charge.key) {
                    return Ok(());
                }
                let posting = Posting::charge(&charge).ok_or(Error::AmountOutOfRange("charge"))?;
                self.postings.push(posting);
                if charge.status == ChargeStatus::Pending {
                    self.outbox.push(OutboxMessage {
                        charge: charge.key,
                        status: OutboxStatus::Pending,
                        created_at: charge.created_at,
                        attempts: 0,
                        next_attempt_at: 0,
                        claimed_until: 0,
                    });
                }
                self.charges.insert(charge.key, charge);
            }
            Write::Requeue {
                charge,
                provider_key,
                link,
                at,
            } => {
                let Some(stored) = self
                    .charges
                    .get_mut(&charge)
                    .filter(|c| c.status == ChargeStatus::Declined)
                else {
                    return Ok(());
                };
                stored.status = ChargeStatus::Pending;
                stored.provider_key = provider_key;
                stored.link = Some(link);
                stored.decline_code = None;
                stored.settled_at = None;
                match self.outbox.iter_mut().find(|m| m.charge == charge) {
                    Some(message) => {
                        message.status = OutboxStatus::Pending;
                        message.next_attempt_at = 0;
                    }
                    None => self.outbox.push(OutboxMessage {
                        charge,
                        status: OutboxStatus::Pending,
                        created_at: at,
                        attempts: 0,
                        next_attempt_at: 0,
                        claimed_until: 0,
                    }),
                }
            }
            Write::Refund { trip, amount, at } => {
                let Some(charge) = self.live_charge(trip) else {
                    return Ok(());
                };
                if self.refunded(charge.key) {
                    return Ok(());
                }
                let refund =
                    Posting::refund(charge, amount, at).ok_or(Error::AmountOutOfRange("refund"))?;
                self.postings.push(refund);
            }
            Write::CancelCharge { trip, at } => {
                let Some(key) = self.live_charge(trip).map(|c| c.key) else {
                    return Ok(());
                };
                if let Some(charge) = self.charges.get_mut(&key) {
                    charge.status = ChargeStatus::Cancelled;
                    charge.settled_at = Some(at);
                    let reversal =
                        Posting::reversal(charge, at).ok_or(Error::AmountOutOfRange("charge"))?;
                    self.postings.push(reversal);
                }
                for message in self.outbox.iter_mut().filter(|m| m.charge == key) {
                    message.status = OutboxStatus::Cancelled;
                }
            }
        }
        Ok(())
    }
}

/// Whether `write` closes an open trip other than `trip` of the same rider (a tap in
/// that first closes an overdue trip).
fn closes_other(write: &Write, trip: &Trip) -> bool {
    matches!(write, Write::PutTrip(t) if t.account == trip.account && t.id != trip.id && t.status != TripStatus::Open)
}

impl PaymentsStore for MemoryStore {
    fn link(&self, link: NewLink, now: u64) -> BoxFuture<'_, Result<Link, Error>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            if state.active_link(link.account).is_some() {
                return Err(Error::AlreadyLinked);
            }
            let stored = Link::from_new(&link, now);
            state.links.push((stored.clone(), link.token));
            Ok(stored)
        })
    }

    fn unlink(&self, account: TransitAccount, now: u64) -> BoxFuture<'_, Result<Link, Error>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            let (link, _) = state
                .links
                .iter_mut()
                .find(|(l, _)| l.account == account && l.is_active())
                .ok_or(Error::NotLinked)?;
            // Never before the link was made (as PostgreSQL's GREATEST).
            link.unlinked_at = Some(now.max(link.linked_at));
            Ok(link.clone())
        })
    }

    fn active_link(&self, account: TransitAccount) -> BoxFuture<'_, Result<Option<Link>, Error>> {
        Box::pin(async move { Ok(self.lock()?.active_link(account).cloned()) })
    }

    fn with_rider<'a>(
        &'a self,
        account: TransitAccount,
        tap: Option<TapKey>,
        at: u64,
        rules: Rules<'a>,
    ) -> BoxFuture<'a, Result<Answer, Error>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            let rider = state.rider(account, tap, at)?;
            let decision = rules(&rider)?;
            state.check(&decision.writes)?;
            for write in decision.writes {
                state.apply(write)?;
            }
            Ok(decision.answer)
        })
    }

    fn riders_open_since(
        &self,
        started_before: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<TransitAccount>, Error>> {
        Box::pin(async move {
            let state = self.lock()?;
            let mut open: Vec<_> = state
                .trips
                .values()
                .filter(|t| t.status == TripStatus::Open && t.started_at() < started_before)
                .map(|t| (t.started_at(), t.account))
                .collect();
            open.sort();
            Ok(open.into_iter().take(limit).map(|(_, a)| a).collect())
        })
    }

    fn trips(
        &self,
        account: TransitAccount,
        query: TripQuery,
    ) -> BoxFuture<'_, Result<TripPage, Error>> {
        Box::pin(async move {
            let state = self.lock()?;
            let mut trips: Vec<&Trip> = state
                .trips
                .values()
                .filter(|t| t.account == account)
                .filter(|t| query.since.is_none_or(|s| t.started_at() >= s))
                .filter(|t| query.until.is_none_or(|u| t.started_at() < u))
                .filter(|t| {
                    query
                        .after
                        .is_none_or(|c| (t.started_at(), t.id) < (c.started_at, c.id))
                })
                .collect();
            trips.sort_by_key(|t| std::cmp::Reverse((t.started_at(), t.id)));
            let limit = query.limit.max(1);
            let more = trips.len() > limit;
            let page: Vec<TripView> = trips
                .into_iter()
                .take(limit)
                .map(|t| TripView {
                    trip: t.clone(),
                    charge: state.live_charge(t.id).cloned(),
                })
                .collect();
            let next = more.then(|| page.last()).flatten().map(|v| TripCursor {
                started_at: v.trip.started_at(),
                id: v.trip.id,
            });
            Ok(TripPage { trips: page, next })
        })
    }

    fn trip(
        &self,
        account: TransitAccount,
        id: TripId,
    ) -> BoxFuture<'_, Result<Option<TripView>, Error>> {
        Box::pin(async move {
            let state = self.lock()?;
            Ok(state
                .trips
                .get(&id)
                .filter(|t| t.account == account)
                .map(|t| TripView {
                    trip: t.clone(),
                    charge: state.live_charge(id).cloned(),
                }))
        })
    }

    fn charges_made_between(
        &self,
        from: u64,
        until: u64,
    ) -> BoxFuture<'_, Result<Vec<Charge>, Error>> {
        Box::pin(async move {
            let state = self.lock()?;
            Ok(state
                .charges
                .values()
                .filter(|c| (from..until).contains(&c.created_at))
                .cloned()
                .collect())
        })
    }

    fn refunds_made_between(
        &self,
        from: u64,
        until: u64,
    ) -> BoxFuture<'_, Result<Vec<Refund>, Error>> {
        Box::pin(async move {
            let state = self.lock()?;
            state
                .postings
                .iter()
                .filter(|p| p.kind == PostingKind::Refund && (from..until).contains(&p.at))
                .map(|p| {
                    let [rider, operator] = &p.entries;
                    let amount = u64::try_from(rider.amount)
                        .map_err(|_| Error::Corrupt("a refund of a negative amount"))?;
                    Ok(Refund {
                        charge: p.charge,
                        operator: operator.account.name(),
                        amount: Fen::new(amount),
                        at: p.at,
                    })
                })
                .collect()
        })
    }

    fn charges(&self, account: TransitAccount) -> BoxFuture<'_, Result<Vec<Charge>, Error>> {
        Box::pin(async move {
            let state = self.lock()?;
            let mut charges: Vec<Charge> = state
                .charges
                .values()
                .filter(|c| c.account == account)
                .cloned()
                .collect();
            charges.sort_by_key(|c| std::cmp::Reverse((c.created_at, c.key)));
            Ok(charges)
        })
    }

    fn charge_by_provider_key(
        &self,
        key: ChargeKey,
    ) -> BoxFuture<'_, Result<Option<ChargeRow>, Error>> {
        Box::pin(async move {
            let state = self.lock()?;
            let Some(charge) = state.charges.values().find(|c| c.provider_key == key) else {
                return Ok(None);
            };
            let sent = state
                .outbox
                .iter()
                .find(|m| m.charge == charge.key)
                .map(|m| m.status);
            Ok(Some(ChargeRow {
                charge: charge.clone(),
                outbox: sent,
            }))
        })
    }

    fn outbox(&self, limit: usize) -> BoxFuture<'_, Result<Vec<OutboxMessage>, Error>> {
        Box::pin(async move { Ok(self.lock()?.outbox.iter().take(limit).copied().collect()) })
    }

    fn outbox_jobs(&self, limit: usize, now: u64) -> BoxFuture<'_, Result<Vec<OutboxJob>, Error>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            let mut jobs = Vec::new();
            // Due, unclaimed rows, by next_attempt_at then age (the sort is stable).
            let mut due: Vec<&OutboxMessage> = state
                .outbox
                .iter()
                .filter(|m| m.next_attempt_at <= now && m.claimed_until <= now)
                .collect();
            due.sort_by_key(|m| m.next_attempt_at);
            for message in due {
                if jobs.len() == limit {
                    break;
                }
                if !matches!(
                    message.status,
                    OutboxStatus::Pending | OutboxStatus::Dispatched
                ) {
                    continue;
                }
                let Some(charge) = state.charges.get(&message.charge) else {
                    return Err(Error::Corrupt("outbox row without its charge"));
                };
                if !matches!(
                    charge.status,
                    ChargeStatus::Pending | ChargeStatus::Retrying
                ) {
                    continue;
                }
                let (link_id, _) = charge
                    .link
                    .ok_or(Error::Corrupt("outbox charge without a link"))?;
                let token = state
                    .links
                    .iter()
                    .find(|(l, _)| l.id == link_id)
                    .map(|(_, token)| token.clone())
                    .ok_or(Error::Corrupt("outbox charge without its link"))?;
                jobs.push(OutboxJob {
                    charge: charge.clone(),
                    token: Some(token),
                });
            }
            let until = now.saturating_add(crate::outbox::CLAIM_LEASE_S);
            for job in &jobs {
                if let Some(message) = state.outbox.iter_mut().find(|m| m.charge == job.charge.key)
                {
                    message.claimed_until = until;
                }
            }
            Ok(jobs)
        })
    }

    fn dispatch(&self, charge: ChargeKey) -> BoxFuture<'_, Result<bool, Error>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            let Some(message) = state.outbox.iter_mut().find(|m| m.charge == charge) else {
                return Ok(false);
            };
            match message.status {
                OutboxStatus::Pending | OutboxStatus::Dispatched => {
                    message.status = OutboxStatus::Dispatched;
                    Ok(true)
                }
                OutboxStatus::Cancelled | OutboxStatus::Done => Ok(false),
            }
        })
    }

    fn settle(
        &self,
        key: ChargeKey,
        settlement: Settlement,
        at: u64,
    ) -> BoxFuture<'_, Result<Charge, Error>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            let charge = state
                .charges
                .get(&key)
                .cloned()
                .ok_or(Error::Corrupt("settling an unknown charge"))?;
            if !crate::outbox::settles(charge.status, &settlement) {
                return Ok(charge);
            }
            let mut settled = charge;
            let done = match settlement {
                Settlement::Approved => {
                    settled.status = ChargeStatus::Succeeded;
                    settled.decline_code = None;
                    settled.settled_at = Some(at);
                    let capture =
                        Posting::capture(&settled, at).ok_or(Error::AmountOutOfRange("charge"))?;
                    state.postings.push(capture);
                    true
                }
                Settlement::Declined { code } => {
                    settled.status = ChargeStatus::Declined;
                    settled.decline_code = Some(code);
                    settled.settled_at = Some(at);
                    true
                }
                Settlement::Retry => {
                    settled.status = ChargeStatus::Retrying;
                    false
                }
            };
            for message in state.outbox.iter_mut().filter(|m| m.charge == key) {
                message.claimed_until = 0;
                if done {
                    message.status = OutboxStatus::Done;
                } else {
                    message.attempts = message.attempts.saturating_add(1);
                    message.next_attempt_at =
                        at.saturating_add(crate::outbox::backoff(message.attempts));
                }
            }
            state.charges.insert(key, settled.clone());
            Ok(settled)
        })
    }

    fn ledger_report(&self) -> BoxFuture<'_, Result<LedgerReport, Error>> {
        Box::pin(async move {
            let state = self.lock()?;
            let mut report = LedgerReport::default();
            for posting in &state.postings {
                let sum: i128 = posting.entries.iter().map(|e| i128::from(e.amount)).sum();
                if sum != 0 {
                    report.unbalanced_postings += 1;
                }
                match posting.kind {
                    PostingKind::Charge => report.charge_postings += 1,
                    PostingKind::Reversal => report.reversal_postings += 1,
                    PostingKind::Capture => report.capture_postings += 1,
                    PostingKind::Refund => {
                        report.refund_postings += 1;
                        let refund: i128 = posting
                            .entries
                            .iter()
                            .filter(|e| matches!(e.account, Account::Rider(_)))
                            .map(|e| i128::from(e.amount))
                            .sum();
                        report.refunded += refund;
                        let fits = state
                            .charges
                            .get(&posting.charge)
                            .is_some_and(|c| c.is_live() && refund <= i128::from(c.amount.get()));
                        if !fits {
                            report.bad_refunds += 1;
                        }
                    }
                }
                if !state.charges.contains_key(&posting.charge) {
                    report.orphan_postings += 1;
                }
                for entry in &posting.entries {
                    let amount = i128::from(entry.amount);
                    report.total += amount;
                    match entry.account {
                        Account::Rider(_) => report.riders += amount,
                        Account::Operator(_) => report.operators += amount,
                        Account::ProviderClearing(_) => report.providers += amount,
                    }
                }
            }
            for charge in state.charges.values() {
                report.charges += 1;
                if charge.is_live() {
                    report.live_charged += i128::from(charge.amount.get());
                } else {
                    report.cancelled_charges += 1;
                }
                if charge.status == ChargeStatus::Succeeded {
                    report.succeeded_charges += 1;
                    report.captured += i128::from(charge.amount.get());
                }
            }
            Ok(report)
        })
    }
}
