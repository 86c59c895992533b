//! What the tap rules ([`crate::tap`]) and a store ([`crate::store`]) exchange: the
//! rider's state the store loads under the rider's lock ([`RiderState`]), and the
//! [`Decision`] the rules return: the writes for the store to make, all or nothing,
//! and the answer to give once they are made.

use crate::charge::{Charge, ChargeKey};
use crate::error::Error;
use crate::link::{Link, LinkId, Provider};
use crate::money::Fen;
use crate::trip::{TapKey, TapRecord, Trip, TripId};

const DAY: u64 = 86_400;

/// What a store knows of a rider when a tap arrives.
#[derive(Debug, Clone, Default)]
pub struct RiderState {
    /// The active link, if any.
    pub link: Option<Link>,
    /// The sum of declined charges (arrears).
    pub arrears: Fen,
    /// The declined charges that make up the arrears.
    pub declined: Vec<Charge>,
    /// The record of this tap's key and its trip, if the key was taken.
    pub tap: Option<(TapRecord, Trip)>,
    /// The other taps recorded for the trip of [`RiderState::tap`] (its other side,
    /// and the double taps recorded as repeats of it); empty without `tap`.
    pub trip_taps: Vec<TapRecord>,
    /// The rider's open trip, if any (at most one).
    pub open: Option<Trip>,
    /// The rider's other trips that started at or after [`window_start`].
    pub recent: Vec<Trip>,
}

/// The arrears `declined` make up: their sum, [`Error::AmountOutOfRange`] past `u64`
/// (what both stores put in [`RiderState::arrears`]).
pub fn arrears_of(declined: &[Charge]) -> Result<Fen, Error> {
    declined
        .iter()
        .try_fold(Fen::ZERO, |sum, c| sum.checked_add(c.amount))
        .ok_or(Error::AmountOutOfRange("arrears"))
}

/// From when a store loads a rider's recent trips: two days before the earlier of the
/// tap and the open trip's start (enough for any day boundary and offset).
pub fn window_start(at: u64, open: Option<&Trip>) -> u64 {
    open.map_or(at, |trip| trip.started_at().min(at))
        .saturating_sub(2 * DAY)
}

/// Why a tap in was refused (nothing written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No active payment link.
    NoPaymentLink,
    /// Unpaid arrears.
    Arrears,
    /// A metro entry while a trip is open.
    TripAlreadyOpen,
}

/// The answer to a tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The trip as it stands after the writes (boxed: the other answers are small).
    Trip(Box<Trip>),
    /// Refused; nothing written.
    Refused(Refusal),
    /// Nothing to do (an expiry check of a rider whose trip is not overdue).
    Nothing,
    /// Declined charges sent again (RepayArrears), by charge key.
    Requeued(Vec<ChargeKey>),
}

/// One change for a store to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Insert the trip, or replace the stored trip of its id.
    PutTrip(Trip),
    /// Record a tap's key (never taken before).
    RecordTap(TapRecord),
    /// Mark a recorded tap voided.
    VoidTap(TapKey),
    /// A new charge, with its ledger posting and (when PENDING) its outbox row; a key
    /// stored already is not written again.
    Charge(Charge),
    /// Send a DECLINED charge again: PENDING to `link` under `provider_key`, its
    /// outbox row PENDING (made if it had none). A charge in another state is left.
    Requeue {
        /// The charge.
        charge: ChargeKey,
        /// The new provider key.
        provider_key: ChargeKey,
        /// The link to charge.
        link: (LinkId, Provider),
        /// When.
        at: u64,
    },
    /// Cancel the trip's live charge, if any, and reverse its posting;
    /// [`Error::VoidTooLate`] if it has left through the outbox or has a refund.
    CancelCharge {
        /// The trip.
        trip: TripId,
        /// When.
        at: u64,
    },
    /// Return `amount` of the trip's live charge (the trip was re-priced lower): its
    /// refund posting, once per charge (a charge refunded before is left as it is).
    /// Nothing if the trip has no live charge; [`Error::AmountOutOfRange`] for more
    /// than the charge.
    Refund {
        /// The trip.
        trip: TripId,
        /// How much, more than zero.
        amount: Fen,
        /// When.
        at: u64,
    },
}

/// The writes and the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What to write, in order, all or nothing.
    pub writes: Vec<Write>,
    /// What to answer once written.
    pub answer: Answer,
}

impl Decision {
    /// No writes, only `answer`.
    pub fn answer(answer: Answer) -> Self {
        Decision {
            writes: Vec::new(),
            answer,
        }
    }
}
