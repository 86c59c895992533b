//! What a tap does to a rider's trips: the rules, as pure functions over a snapshot
//! of the rider ([`RiderState`]) that return the writes to make ([`Decision`]).
//!
//! A store loads the snapshot and applies the writes in one atomic step under the
//! rider's lock (a row lock in PostgreSQL, the mutex in memory), so both backends run
//! the same rules and concurrent taps of one rider take turns. The rules:
//!
//! - **Replays.** A tap whose key ([`crate::trip::TapKey`]) is recorded returns its
//!   trip and writes nothing (a gate retry); the key of another rider or of the other
//!   direction is refused ([`Error::ScanReused`]), a voided one too ([`Error::TapVoided`]).
//! - **Double taps.** A second scan (new scan id) at the same station, or the same bus
//!   route, within `double_tap` of the first is recorded as a repeat of the first
//!   tap's trip: nothing is opened or charged.
//! - **TapIn** needs an active link and no arrears (else a [`Refusal`]). A metro entry
//!   opens a trip; one is refused while another is open, unless that one stayed open
//!   past the table's `max_trip`: it is then closed UNMATCHED at the maximum fare
//!   first. A bus tap is a trip priced and charged at once.
//! - **TapOut** closes the open trip, priced from the table (UNMATCHED at the maximum
//!   fare if it stayed open past `max_trip`). Without an open trip it is an exit
//!   without entry, UNMATCHED at the maximum fare, if the rider has a link; with neither,
//!   [`Error::NoPaymentLink`] and nothing changes.
//! - **Void** (the gate's turnstile did not turn) within `void_window` after the tap
//!   (a void stamped more than [`VOID_CLOCK_SKEW_S`] before it is refused): an
//!   entry's open trip is VOIDED; a bus tap's or an exit-without-entry's trip is
//!   VOIDED and its charge cancelled; an exit is undone (its trip open again, its
//!   charge cancelled). A repeat tap's void only marks the tap. A tap whose trip has a
//!   later, un-voided repeat (another gate accepted the rider's next scan) is not
//!   undone ([`Error::TapRepeated`]). A late tap, or any tap of a trip a late tap
//!   joined, is not voided ([`Error::LateTapNotVoidable`]).
//! - **Late taps**, an offline gate's, uploaded after the fact: see [`late`] (they may
//!   re-price a trip closed without them, with a refund; never refused; their charges
//!   stamped with the server's `now`).
//! - **Pricing** uses the rider's earlier priced trips that started the same day (the
//!   daily cap, and the transfer discount from the last one that ended).
//! - **Charges**: a priced trip with a fare above zero gets one charge
//!   ([`crate::charge`]): PENDING to the active link, or DECLINED (`NO_PAYMENT_LINK`,
//!   owed as arrears) when none is active.

mod late;

use std::sync::Arc;
use std::time::Duration;

use crate::account::TransitAccount;
use crate::charge::{Charge, ChargeKey, ChargeStatus, NO_PAYMENT_LINK};
use crate::error::Error;
use crate::fare::{Day, FareClass, FareTable, Journey, LastLeg, Mode};
use crate::money::Fen;
use crate::trip::{Side, Tap, TapKey, TapRecord, Trip, TripId, TripStatus};

pub use crate::decision::{Answer, Decision, Refusal, RiderState, Write};
pub use late::{LateKind, LateTap};

const DAY: u64 = 86_400;
/// How far (seconds) a void may be stamped before the tap it voids (the gate's clock
/// reading the two moments apart); earlier is refused.
pub const VOID_CLOCK_SKEW_S: u64 = 2;

/// Timing rules of taps, beside the fare table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapSettings {
    /// A second scan at the same place within this long is a double tap.
    pub double_tap: Duration,
    /// A gate may void a tap within this long.
    pub void_window: Duration,
    /// Seconds east of UTC of the city's local time, where its days begin.
    pub utc_offset_s: i32,
}

impl Default for TapSettings {
    fn default() -> Self {
        TapSettings {
            double_tap: Duration::from_secs(60),
            void_window: Duration::from_secs(10),
            utc_offset_s: 8 * 3600,
        }
    }
}

impl TapSettings {
    /// Checks the settings: `double_tap` at most 10 min, `void_window` 1 s to 1 min,
    /// the offset at most 14 h either way.
    pub fn validate(&self) -> Result<(), Error> {
        if self.double_tap > Duration::from_secs(600) {
            return Err(Error::Config("double_tap must be at most 10m".into()));
        }
        if self.void_window.is_zero() || self.void_window > Duration::from_secs(60) {
            return Err(Error::Config("void_window must be 1s to 1m".into()));
        }
        if self.utc_offset_s.unsigned_abs() > 14 * 3600 {
            return Err(Error::Config("utc_offset must be within 14h of UTC".into()));
        }
        Ok(())
    }
}

/// Where a tap in happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A metro entry at this station.
    Metro(String),
    /// A boarding on this bus route.
    Bus(String),
}

/// A metro entry or a bus boarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapIn {
    /// The rider.
    pub account: TransitAccount,
    /// The gate or bus reader.
    pub gate_id: String,
    /// The gate's scan id.
    pub scan_id: String,
    /// Station or route.
    pub place: Place,
    /// When, Unix seconds (the verifier's clock).
    pub at: u64,
    /// The rider's fare class, fixed for the trip.
    pub fare_class: FareClass,
}

/// A metro exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapOut {
    /// The rider.
    pub account: TransitAccount,
    /// The exit gate.
    pub gate_id: String,
    /// The gate's scan id.
    pub scan_id: String,
    /// The exit station.
    pub station: String,
    /// When, Unix seconds.
    pub at: u64,
    /// The rider's fare class, used only for an exit without an entry.
    pub fare_class: FareClass,
}

/// A gate's void of one of its taps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Void {
    /// The rider.
    pub account: TransitAccount,
    /// The gate that took the tap.
    pub gate_id: String,
    /// The tap's scan id.
    pub scan_id: String,
    /// When the gate voided it, Unix seconds.
    pub at: u64,
}

/// The fare table and the tap settings: everything the rules need.
#[derive(Debug, Clone)]
pub struct TapRules {
    /// The fare table.
    pub fares: Arc<FareTable>,
    /// Timing rules.
    pub settings: TapSettings,
}

impl TapRules {
    /// Rules over `fares` with `settings` (checked).
    pub fn new(fares: Arc<FareTable>, settings: TapSettings) -> Result<Self, Error> {
        settings.validate()?;
        Ok(TapRules { fares, settings })
    }

    /// A metro entry or a bus boarding.
    pub fn tap_in(&self, state: &RiderState, tap: &TapIn) -> Result<Decision, Error> {
        self.enter(state, tap, Arrival::Live)
    }

    /// A metro entry or a bus boarding, live or late (a late one is never refused:
    /// the rider went through).
    fn enter(&self, state: &RiderState, tap: &TapIn, arrival: Arrival) -> Result<Decision, Error> {
        if let Some(decision) = replay(state, tap.account, Side::Entry)? {
            return Ok(decision);
        }
        match &tap.place {
            Place::Metro(station) if !self.fares.has_station(station) => {
                return Err(Error::UnknownStation);
            }
            Place::Bus(route) if !self.fares.has_route(route) => return Err(Error::UnknownRoute),
            _ => {}
        }
        if arrival == Arrival::Live {
            if state.link.is_none() {
                return Ok(Decision::answer(Answer::Refused(Refusal::NoPaymentLink)));
            }
            if state.arrears > Fen::ZERO {
                return Ok(Decision::answer(Answer::Refused(Refusal::Arrears)));
            }
        }
        let key = TapKey::of(&tap.gate_id, &tap.scan_id);
        let record = |trip: TripId| {
            Write::RecordTap(TapRecord {
                key,
                trip,
                side: Side::Entry,
                at: tap.at,
                voided: false,
                late: arrival.is_late(),
            })
        };
        let charged_at = arrival.charged_at(tap.at);
        let entry = Tap {
            gate_id: tap.gate_id.clone(),
            place: match &tap.place {
                Place::Metro(s) | Place::Bus(s) => s.clone(),
            },
            scan_id: tap.scan_id.clone(),
            at: tap.at,
        };
        let mut writes = Vec::new();
        let mut legs = state.recent.clone();
        if let Some(open) = &state.open {
            if self.overstayed(open, tap.at) {
                let closed = self.close_unmatched(open.clone(), None, &legs)?;
                writes.push(Write::PutTrip(closed.clone()));
                writes.extend(self.charge(&closed, state, charged_at));
                legs.push(closed);
            } else if let Place::Metro(station) = &tap.place {
                let same_place = open.entry.as_ref().is_some_and(|e| &e.place == station);
                if same_place && self.within(open.started_at(), tap.at, self.settings.double_tap) {
                    return Ok(Decision {
                        writes: vec![record(open.id)],
                        answer: Answer::Trip(Box::new(open.clone())),
                    });
                }
                return Ok(Decision::answer(Answer::Refused(Refusal::TripAlreadyOpen)));
            }
        }
        let mut trip = Trip {
            id: key,
            account: tap.account,
            mode: Mode::Metro,
            status: TripStatus::Open,
            fare_class: tap.fare_class,
            entry: Some(entry),
            exit: None,
            fare: None,
        };
        if let Place::Bus(route) = &tap.place {
            let repeat = state
                .recent
                .iter()
                .filter(|t| t.mode == Mode::Bus)
                .find(|t| {
                    t.status.is_priced()
                        && t.entry.as_ref().is_some_and(|e| {
                            &e.place == route && self.within(e.at, tap.at, self.settings.double_tap)
                        })
                });
            if let Some(first) = repeat {
                return Ok(Decision {
                    writes: vec![record(first.id)],
                    answer: Answer::Trip(Box::new(first.clone())),
                });
            }
            trip.mode = Mode::Bus;
            trip = self.priced(trip, Journey::Bus { route }, TripStatus::Closed, &legs)?;
        }
        writes.push(Write::PutTrip(trip.clone()));
        writes.push(record(trip.id));
        writes.extend(self.charge(&trip, state, charged_at));
        Ok(Decision {
            writes,
            answer: Answer::Trip(Box::new(trip)),
        })
    }

    /// A metro exit.
    pub fn tap_out(&self, state: &RiderState, tap: &TapOut) -> Result<Decision, Error> {
        self.leave(state, tap, Arrival::Live)
    }

    /// A metro exit, live or late (a late exit without an entry is recorded without a
    /// link too, its charge DECLINED: the rider went through).
    fn leave(&self, state: &RiderState, tap: &TapOut, arrival: Arrival) -> Result<Decision, Error> {
        if let Some(decision) = replay(state, tap.account, Side::Exit)? {
            return Ok(decision);
        }
        if !self.fares.has_station(&tap.station) {
            return Err(Error::UnknownStation);
        }
        let key = TapKey::of(&tap.gate_id, &tap.scan_id);
        let record = |trip: TripId| {
            Write::RecordTap(TapRecord {
                key,
                trip,
                side: Side::Exit,
                at: tap.at,
                voided: false,
                late: arrival.is_late(),
            })
        };
        let exit = Tap {
            gate_id: tap.gate_id.clone(),
            place: tap.station.clone(),
            scan_id: tap.scan_id.clone(),
            at: tap.at,
        };
        let closed = if let Some(open) = &state.open {
            if self.overstayed(open, tap.at) {
                self.close_unmatched(open.clone(), Some(exit), &state.recent)?
            } else {
                let entry = open
                    .entry
                    .as_ref()
                    .map(|e| e.place.clone())
                    .unwrap_or_default();
                let mut trip = open.clone();
                trip.exit = Some(exit);
                let journey = Journey::Metro {
                    entry: &entry,
                    exit: &tap.station,
                };
                self.priced(trip, journey, TripStatus::Closed, &state.recent)?
            }
        } else {
            let repeat = state
                .recent
                .iter()
                .filter(|t| t.mode == Mode::Metro && t.status.is_priced())
                .find(|t| {
                    t.exit.as_ref().is_some_and(|x| {
                        x.place == tap.station
                            && self.within(x.at, tap.at, self.settings.double_tap)
                    })
                });
            if let Some(first) = repeat {
                return Ok(Decision {
                    writes: vec![record(first.id)],
                    answer: Answer::Trip(Box::new(first.clone())),
                });
            }
            if state.link.is_none() && arrival == Arrival::Live {
                return Err(Error::NoPaymentLink);
            }
            let trip = Trip {
                id: key,
                account: tap.account,
                mode: Mode::Metro,
                status: TripStatus::Open,
                fare_class: tap.fare_class,
                entry: None,
                exit: Some(exit),
                fare: None,
            };
            self.priced(
                trip,
                Journey::MetroUnmatched,
                TripStatus::Unmatched,
                &state.recent,
            )?
        };
        let mut writes = vec![Write::PutTrip(closed.clone()), record(closed.id)];
        writes.extend(self.charge(&closed, state, arrival.charged_at(tap.at)));
        Ok(Decision {
            writes,
            answer: Answer::Trip(Box::new(closed)),
        })
    }

    /// A gate's void of its tap.
    pub fn void(&self, state: &RiderState, void: &Void) -> Result<Decision, Error> {
        let Some((record, trip)) = &state.tap else {
            return Err(Error::TapNotFound);
        };
        if trip.account != void.account {
            return Err(Error::TapNotFound);
        }
        if record.voided {
            return Ok(Decision::answer(Answer::Trip(Box::new(trip.clone()))));
        }
        // A late tap (the rider went through hours ago), or a trip one completed and
        // re-priced: a void would hand back a ride taken (or clear its arrears).
        if record.late || state.trip_taps.iter().any(|r| r.late) {
            return Err(Error::LateTapNotVoidable);
        }
        // record.at <= void.at <= record.at + void_window, allowing VOID_CLOCK_SKEW_S for
        // a gate whose void is stamped a moment before its tap.
        if void.at.saturating_add(VOID_CLOCK_SKEW_S) < record.at {
            return Err(Error::invalid("voided_at", "is before the tap it voids"));
        }
        if void.at
            > record
                .at
                .saturating_add(self.settings.void_window.as_secs())
        {
            return Err(Error::VoidTooLate("the void window has passed"));
        }
        let opening = trip.id == record.key;
        let closing =
            record.side == Side::Exit && trip.exit.as_ref().is_some_and(|x| x.key() == record.key);
        // A later scan of this trip that another gate accepted (a double tap recorded as
        // a repeat, not voided itself): the rider went through there, so undoing this
        // tap would undo that one too (an exit reopened while the rider is outside, an
        // entry voided while inside, a bus ride made free).
        let repeated = state
            .trip_taps
            .iter()
            .any(|r| r.side == record.side && !r.voided);
        if (opening || closing) && repeated {
            return Err(Error::TapRepeated);
        }
        let mut writes = vec![Write::VoidTap(record.key)];
        let mut after = trip.clone();
        if opening {
            // The tap that opened the trip: an open metro entry, or a trip closed by this
            // same tap (a bus boarding, an exit without entry).
            let closed_by_it = trip.mode == Mode::Bus || trip.entry.is_none();
            match trip.status {
                TripStatus::Open => {}
                TripStatus::Closed | TripStatus::Unmatched if closed_by_it => {
                    writes.push(Write::CancelCharge {
                        trip: trip.id,
                        at: void.at,
                    });
                }
                _ => return Err(Error::TripMovedOn),
            }
            after.status = TripStatus::Voided;
            writes.push(Write::PutTrip(after.clone()));
        } else if closing {
            // An exit: the rider is still inside, the trip open again.
            if state.open.is_some() {
                return Err(Error::TripMovedOn);
            }
            after.status = TripStatus::Open;
            after.exit = None;
            after.fare = None;
            writes.push(Write::CancelCharge {
                trip: trip.id,
                at: void.at,
            });
            writes.push(Write::PutTrip(after.clone()));
        }
        Ok(Decision {
            writes,
            answer: Answer::Trip(Box::new(after)),
        })
    }

    /// Closes the rider's open trip at the maximum fare if it is open past `max_trip`
    /// at `now`.
    pub fn expire(&self, state: &RiderState, now: u64) -> Result<Decision, Error> {
        match &state.open {
            Some(open) if self.overstayed(open, now) => {
                let closed = self.close_unmatched(open.clone(), None, &state.recent)?;
                let mut writes = vec![Write::PutTrip(closed.clone())];
                writes.extend(self.charge(&closed, state, now));
                Ok(Decision {
                    writes,
                    answer: Answer::Trip(Box::new(closed)),
                })
            }
            _ => Ok(Decision::answer(Answer::Nothing)),
        }
    }

    /// Whether `open` has been open for `max_trip` or longer at `at`.
    pub fn overstayed(&self, open: &Trip, at: u64) -> bool {
        at >= open
            .started_at()
            .saturating_add(self.fares.config().metro.max_trip.as_secs())
    }

    /// Whether `later` is at or after `at` and no more than `window` after it.
    fn within(&self, at: u64, later: u64, window: Duration) -> bool {
        later >= at && later - at <= window.as_secs()
    }

    fn close_unmatched(&self, trip: Trip, exit: Option<Tap>, legs: &[Trip]) -> Result<Trip, Error> {
        let mut trip = trip;
        trip.exit = exit;
        self.priced(trip, Journey::MetroUnmatched, TripStatus::Unmatched, legs)
    }

    fn priced(
        &self,
        mut trip: Trip,
        journey: Journey<'_>,
        status: TripStatus,
        legs: &[Trip],
    ) -> Result<Trip, Error> {
        let started_at = trip.started_at();
        let day = self.day(legs, started_at, trip.id);
        trip.fare = Some(
            self.fares
                .price(journey, trip.fare_class, started_at, &day)?,
        );
        trip.status = status;
        Ok(trip)
    }

    /// The city's day number of `at`.
    pub fn day_of(&self, at: u64) -> i64 {
        let local = i128::from(at) + i128::from(self.settings.utc_offset_s);
        // Times are below 2^64 s: the day number fits an i64.
        i64::try_from(local.div_euclid(i128::from(DAY))).unwrap_or(i64::MAX)
    }

    /// The Unix seconds `[from, until)` of city day `day`.
    pub fn day_bounds(&self, day: i64) -> Result<(u64, u64), Error> {
        let start = i128::from(day) * i128::from(DAY) - i128::from(self.settings.utc_offset_s);
        let from = u64::try_from(start).map_err(|_| Error::invalid("date", "is out of range"))?;
        let until = from
            .checked_add(DAY)
            .ok_or_else(|| Error::invalid("date", "is out of range"))?;
        Ok((from, until))
    }

    /// What the rider paid on the day of `started_at`, before it, from `legs`.
    fn day(&self, legs: &[Trip], started_at: u64, except: TripId) -> Day {
        let today = self.day_of(started_at);
        let mut day = Day::default();
        for leg in legs
            .iter()
            .filter(|t| t.id != except && t.status.is_priced())
            .filter(|t| self.day_of(t.started_at()) == today)
        {
            day.charged = day
                .charged
                .checked_add(leg.due())
                .unwrap_or(Fen::new(u64::MAX));
            let Some(ended_at) = leg.ended_at().filter(|&end| end <= started_at) else {
                continue;
            };
            if day.last.is_none_or(|last| ended_at >= last.ended_at) {
                day.last = Some(LastLeg {
                    mode: leg.mode,
                    ended_at,
                    discounted: leg.fare.as_ref().is_some_and(|f| f.discounted()),
                });
            }
        }
        day
    }

    /// The charge for a priced trip, if it costs anything.
    fn charge(&self, trip: &Trip, state: &RiderState, at: u64) -> Option<Write> {
        let fare = trip.fare.as_ref()?;
        if fare.due == Fen::ZERO || !trip.status.is_priced() {
            return None;
        }
        let link = state.link.as_ref().filter(|l| l.is_active());
        let key = ChargeKey::of(trip);
        Some(Write::Charge(Charge {
            key,
            provider_key: key,
            trip: trip.id,
            account: trip.account,
            link: link.map(|l| (l.id, l.provider)),
            operator: fare.operator.clone(),
            amount: fare.due,
            status: if link.is_some() {
                ChargeStatus::Pending
            } else {
                ChargeStatus::Declined
            },
            decline_code: link.is_none().then(|| NO_PAYMENT_LINK.to_owned()),
            created_at: at,
            settled_at: link.is_none().then_some(at),
        }))
    }
}

/// How a tap reached payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// From the gate as it happened (TapIn, TapOut).
    Live,
    /// Uploaded by an offline gate, passed on at the server's `now` (RecordOfflineTap).
    Late {
        /// The server's clock when it arrived.
        now: u64,
    },
}

impl Arrival {
    fn is_late(self) -> bool {
        matches!(self, Arrival::Late { .. })
    }

    /// When a charge the tap makes is stamped: the tap's time for a live tap, the
    /// server's `now` for a late one, so that a late charge never lands in a day
    /// already settled and reported (the trip keeps the scan time).
    fn charged_at(self, at: u64) -> u64 {
        match self {
            Arrival::Live => at,
            Arrival::Late { now } => now,
        }
    }
}

/// A recorded tap's answer, or the refusal of its key.
fn replay(
    state: &RiderState,
    account: TransitAccount,
    side: Side,
) -> Result<Option<Decision>, Error> {
    let Some((record, trip)) = &state.tap else {
        return Ok(None);
    };
    if trip.account != account || record.side != side {
        return Err(Error::ScanReused);
    }
    if record.voided {
        return Err(Error::TapVoided);
    }
    Ok(Some(Decision::answer(Answer::Trip(Box::new(trip.clone())))))
}
