//! Taps an offline gate took, passed on by the verifier once the gate uploaded them
//! (RecordOfflineTap): the rider went through already, so a late tap is never refused
//! for arrears, and it may belong to a trip that payments priced without it.
//!
//! A late tap's time is the gate's scan time, hours back at most (the service bounds it
//! by `payments.late_tap_window`); it is recorded under its `(gate_id, scan_id)` key
//! like any tap, so a retried upload, or two verifiers passing it on at once, find it
//! and change nothing. The rules, under the rider's lock as for every tap:
//!
//! - **Metro entry at `t`.**
//!   1. If the rider's trips hold an exit without an entry (UNMATCHED, charged the
//!      maximum fare) at or after `t`, with no other trip started between the two,
//!      it is this entry's exit: the trip gets the entry and is priced again as a
//!      matched trip (CLOSED; still UNMATCHED at the maximum fare if it lasted
//!      `max_trip` or longer), with the daily cap and the transfer discount over the
//!      rider's other trips of that day, as for any trip. What it was charged beyond
//!      the new fare is returned by a refund posting (`crate::ledger`); a new fare
//!      above the old one is not charged (the old fare stays).
//!   2. A second scan at the open trip's entry station within `double_tap` is a
//!      double tap, as online.
//!   3. If the rider started another trip after `t` (voided ones aside), or `t` is
//!      `max_trip` or more ago, the entry's trip is over and no exit is known: it is
//!      closed at once at the maximum fare, as the expiry pass would have closed it
//!      (an exit uploaded later still re-prices it, below).
//!   4. Otherwise it opens a trip entered at `t`. A trip the rider opened before
//!      `t` is closed at the maximum fare first: the rider left it (its exit, if an
//!      offline gate took one, re-prices it when uploaded).
//!
//!   Step 1 charges nothing new. No step needs a link: the rider rode, so a trip
//!   priced without one gets a DECLINED `NO_PAYMENT_LINK` charge (arrears), as the
//!   expiry pass gives (an unlink before the upload does not make the ride free).
//! - **Metro exit at `t`.** The rider's open trip, if entered at or before `t`, is
//!   closed by it as by any exit. Otherwise an entry priced without its exit (closed
//!   by the expiry pass, or by a later entry) at or before `t`, with no other trip
//!   started between, gets the exit and is priced again, as in step 1. Otherwise it
//!   is an exit without an entry, at the maximum fare.
//! - **Bus boarding**: a flat-fare trip as online, neither arrears nor a missing link
//!   refusing it.
//!
//! A charge a late tap makes (or a refund it posts) is stamped with the server's
//! `now`, never the scan time, so it never lands in a day already settled and
//! reported; the trip and its taps keep the scan time. The taps are recorded as late
//! ([`crate::trip::TapRecord::late`]): a gate's void of a late tap, or of any tap of a
//! trip a late tap completed, is refused (`LATE_TAP_NOT_VOIDABLE`).
//!
//! A trip re-priced this way keeps its id (the key of the tap payments saw first); its
//! charge is never cancelled afterwards. Its new fare counts only the trips that
//! started before it, and its refund never takes the day below the cap rule's total
//! for the whole day (see `TapRules::reprice`).

use super::{Answer, Arrival, Decision, Place, RiderState, TapIn, TapOut, TapRules, Write, replay};
use crate::account::TransitAccount;
use crate::error::Error;
use crate::fare::{FareClass, Journey, Mode};
use crate::money::Fen;
use crate::trip::{Side, Tap, TapKey, TapRecord, Trip, TripStatus};

/// Which tap an offline gate took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateKind {
    /// Into a metro's paid area.
    MetroEntry,
    /// Out of it.
    MetroExit,
    /// Boarding a bus.
    Bus,
}

/// A tap an offline gate took, uploaded later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateTap {
    /// The rider.
    pub account: TransitAccount,
    /// Entry, exit or bus.
    pub kind: LateKind,
    /// The gate or bus reader.
    pub gate_id: String,
    /// The gate's scan id.
    pub scan_id: String,
    /// The metro station, or the bus route.
    pub place: String,
    /// When the gate took it (its clock), Unix seconds.
    pub at: u64,
    /// The rider's fare class.
    pub fare_class: FareClass,
}

impl LateTap {
    /// Its key.
    pub fn key(&self) -> TapKey {
        TapKey::of(&self.gate_id, &self.scan_id)
    }

    fn side(&self) -> Side {
        match self.kind {
            LateKind::MetroExit => Side::Exit,
            LateKind::MetroEntry | LateKind::Bus => Side::Entry,
        }
    }

    fn tap(&self) -> Tap {
        Tap {
            gate_id: self.gate_id.clone(),
            place: self.place.clone(),
            scan_id: self.scan_id.clone(),
            at: self.at,
        }
    }

    fn record(&self, trip: TapKey) -> Write {
        Write::RecordTap(TapRecord {
            key: self.key(),
            trip,
            side: self.side(),
            at: self.at,
            voided: false,
            late: true,
        })
    }
}

impl TapRules {
    /// A tap an offline gate took at `tap.at`, arriving at `now` (see the module
    /// documentation).
    pub fn late_tap(&self, state: &RiderState, tap: &LateTap, now: u64) -> Result<Decision, Error> {
        if let Some(decision) = replay(state, tap.account, tap.side())? {
            return Ok(decision);
        }
        match tap.kind {
            LateKind::Bus => {
                // A boarding as online, but neither arrears nor a missing link refuse it
                // (the rider rode: without a link its charge is DECLINED, arrears), and
                // an open metro trip is left to its own exit.
                let mut rider = state.clone();
                rider.open = None;
                let boarding = self.tap_in_of(tap, Place::Bus(tap.place.clone()));
                self.enter(&rider, &boarding, Arrival::Late { now })
            }
            LateKind::MetroEntry => self.late_entry(state, tap, now),
            LateKind::MetroExit => self.late_exit(state, tap, now),
        }
    }

    fn tap_in_of(&self, tap: &LateTap, place: Place) -> TapIn {
        TapIn {
            account: tap.account,
            gate_id: tap.gate_id.clone(),
            scan_id: tap.scan_id.clone(),
            place,
            at: tap.at,
            fare_class: tap.fare_class,
        }
    }

    fn tap_out_of(&self, tap: &LateTap) -> TapOut {
        TapOut {
            account: tap.account,
            gate_id: tap.gate_id.clone(),
            scan_id: tap.scan_id.clone(),
            station: tap.place.clone(),
            at: tap.at,
            fare_class: tap.fare_class,
        }
    }

    fn late_entry(&self, state: &RiderState, tap: &LateTap, now: u64) -> Result<Decision, Error> {
        if !self.fares.has_station(&tap.place) {
            return Err(Error::UnknownStation);
        }
        if let Some(found) = self.exit_without_entry(state, tap.at) {
            let mut trip = found.clone();
            trip.entry = Some(tap.tap());
            return self.reprice(state, found, trip, tap.record(found.id), now);
        }
        if let Some(open) = state.open.as_ref().filter(|o| o.started_at() <= tap.at) {
            let same_place = open.entry.as_ref().is_some_and(|e| e.place == tap.place);
            if same_place && self.within(open.started_at(), tap.at, self.settings.double_tap) {
                return Ok(Decision {
                    writes: vec![tap.record(open.id)],
                    answer: Answer::Trip(Box::new(open.clone())),
                });
            }
        }
        let trip = Trip {
            id: tap.key(),
            account: tap.account,
            mode: Mode::Metro,
            status: TripStatus::Open,
            fare_class: tap.fare_class,
            entry: Some(tap.tap()),
            exit: None,
            fare: None,
        };
        let later = state
            .recent
            .iter()
            .chain(state.open.iter())
            .any(|t| t.status != TripStatus::Voided && t.started_at() > tap.at);
        let mut writes = Vec::new();
        if later || self.overstayed(&trip, now) {
            let closed = self.close_unmatched(trip, None, &state.recent)?;
            writes.push(Write::PutTrip(closed.clone()));
            writes.push(tap.record(closed.id));
            writes.extend(self.charge(&closed, state, now));
            return Ok(Decision {
                writes,
                answer: Answer::Trip(Box::new(closed)),
            });
        }
        if let Some(open) = &state.open {
            let closed = self.close_unmatched(open.clone(), None, &state.recent)?;
            writes.push(Write::PutTrip(closed.clone()));
            writes.extend(self.charge(&closed, state, now));
        }
        writes.push(Write::PutTrip(trip.clone()));
        writes.push(tap.record(trip.id));
        Ok(Decision {
            writes,
            answer: Answer::Trip(Box::new(trip)),
        })
    }

    fn late_exit(&self, state: &RiderState, tap: &LateTap, now: u64) -> Result<Decision, Error> {
        if !self.fares.has_station(&tap.place) {
            return Err(Error::UnknownStation);
        }
        if state
            .open
            .as_ref()
            .is_some_and(|o| o.started_at() <= tap.at)
        {
            return self.leave(state, &self.tap_out_of(tap), Arrival::Late { now });
        }
        if let Some(found) = self.entry_without_exit(state, tap.at) {
            let mut trip = found.clone();
            trip.exit = Some(tap.tap());
            return self.reprice(state, found, trip, tap.record(found.id), now);
        }
        // The open trip, if any, was entered after this exit: another trip.
        let mut rider = state.clone();
        rider.open = None;
        self.leave(&rider, &self.tap_out_of(tap), Arrival::Late { now })
    }

    /// The rider's exit without an entry at or after `entry_at`, the first one, if no
    /// other trip started between the two.
    fn exit_without_entry<'s>(&self, state: &'s RiderState, entry_at: u64) -> Option<&'s Trip> {
        let found = state
            .recent
            .iter()
            .filter(|t| t.mode == Mode::Metro && t.status == TripStatus::Unmatched)
            .filter(|t| t.entry.is_none() && t.exit.as_ref().is_some_and(|x| x.at >= entry_at))
            .min_by_key(|t| (t.started_at(), t.id))?;
        self.nothing_between(state, found, entry_at, found.started_at())
            .then_some(found)
    }

    /// The rider's entry priced without its exit at or before `exit_at`, the last one,
    /// if no other trip started between the two.
    fn entry_without_exit<'s>(&self, state: &'s RiderState, exit_at: u64) -> Option<&'s Trip> {
        let found = state
            .recent
            .iter()
            .filter(|t| t.mode == Mode::Metro && t.status == TripStatus::Unmatched)
            .filter(|t| t.exit.is_none() && t.entry.as_ref().is_some_and(|e| e.at <= exit_at))
            .max_by_key(|t| (t.started_at(), t.id))?;
        self.nothing_between(state, found, found.started_at(), exit_at)
            .then_some(found)
    }

    /// Whether no trip of the rider but `trip` started after `from` and before `until`
    /// (a voided trip, whose turnstile did not turn, does not count).
    fn nothing_between(&self, state: &RiderState, trip: &Trip, from: u64, until: u64) -> bool {
        !state.recent.iter().chain(state.open.iter()).any(|t| {
            t.id != trip.id
                && t.status != TripStatus::Voided
                && t.started_at() > from
                && t.started_at() < until
        })
    }

    /// `found` with its missing tap (`trip`), priced again: the refund of what it was
    /// charged beyond the new fare, never a further charge.
    ///
    /// The new fare counts only the rider's trips that started before this one (the
    /// daily cap and the transfer as they stood when the rider entered): trips after
    /// it were priced, and maybe capped, against its old maximum fare. The refund is
    /// then bounded so that the day (of the trip's start) never ends up below what the
    /// cap rule gives for the whole day: at least `min(daily_cap, Σ fares before the
    /// cap)` over the day's trips, this one at its new fare. Where that bound bites,
    /// the trip keeps part of its old charge (its `due` above its new fare, carrying
    /// what later trips were let off by the cap).
    fn reprice(
        &self,
        state: &RiderState,
        found: &Trip,
        trip: Trip,
        record: Write,
        now: u64,
    ) -> Result<Decision, Error> {
        let (Some(entry), Some(exit)) = (&trip.entry, &trip.exit) else {
            return Err(Error::Corrupt("a re-priced trip without both taps"));
        };
        let (entry, exit) = (entry.place.clone(), exit.place.clone());
        let started_at = trip.started_at();
        let lasted = trip
            .ended_at()
            .unwrap_or_default()
            .saturating_sub(started_at);
        let before: Vec<Trip> = state
            .recent
            .iter()
            .filter(|t| t.started_at() < started_at)
            .cloned()
            .collect();
        let mut priced = if lasted >= self.fares.config().metro.max_trip.as_secs() {
            self.priced(
                trip,
                Journey::MetroUnmatched,
                TripStatus::Unmatched,
                &before,
            )?
        } else {
            let journey = Journey::Metro {
                entry: &entry,
                exit: &exit,
            };
            self.priced(trip, journey, TripStatus::Closed, &before)?
        };
        let charged = found.due();
        let refund = charged
            .saturating_sub(priced.due())
            .min(self.above_the_days_floor(state, found, &priced));
        let mut writes = Vec::new();
        if refund > Fen::ZERO {
            writes.push(Write::Refund {
                trip: found.id,
                amount: refund,
                at: now,
            });
            if let Some(fare) = priced.fare.as_mut() {
                let uncapped = add(fare.due, fare.capped);
                fare.due = charged.saturating_sub(refund);
                fare.capped = uncapped.saturating_sub(fare.due);
            }
        } else {
            priced.fare = found.fare.clone();
        }
        writes.insert(0, Write::PutTrip(priced.clone()));
        writes.insert(1, record);
        Ok(Decision {
            writes,
            answer: Answer::Trip(Box::new(priced)),
        })
    }

    /// How far the rider's day (of `priced`'s start) stands above what the cap rule
    /// gives for the whole day with `priced` at its new fare: what they were charged
    /// that day, less `min(daily_cap, Σ fares before the cap)` (the other trips as
    /// priced, `priced` in place of `found`).
    fn above_the_days_floor(&self, state: &RiderState, found: &Trip, priced: &Trip) -> Fen {
        let today = self.day_of(priced.started_at());
        let uncapped = |t: &Trip| match (&t.fare, t.status.is_priced()) {
            (Some(fare), true) => add(fare.due, fare.capped),
            _ => Fen::ZERO,
        };
        let (mut charged, mut full) = (found.due(), uncapped(priced));
        for other in state
            .recent
            .iter()
            .filter(|t| t.id != found.id && t.status.is_priced())
            .filter(|t| self.day_of(t.started_at()) == today)
        {
            charged = add(charged, other.due());
            full = add(full, uncapped(other));
        }
        charged.saturating_sub(full.min(self.fares.config().daily_cap))
    }
}

/// `a + b`, at most the largest amount.
fn add(a: Fen, b: Fen) -> Fen {
    a.checked_add(b).unwrap_or(Fen::new(u64::MAX))
}
