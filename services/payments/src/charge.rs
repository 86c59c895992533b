//! Charges: what a priced trip asks of the rider's payment link.
//!
//! A charge's id is its idempotency key (the one the provider receives), derived from
//! its trip and the tap that closed it:
//!
//! ```text
//! charge_key = SHA-256("citypass/v1/charge\0" ‖ trip_id ‖ closing tap key)[..16]
//! ```
//!
//! (the closing tap is the exit; the boarding for a bus; all zeros for a trip closed
//! because it stayed open too long). A double tap, a gate retry or concurrent TapOuts
//! therefore name one key, which both stores accept once; an exit voided by its gate and
//! then taken again with a new scan is a new key, after the first charge was cancelled.
//! Both stores also refuse a second live (not cancelled) charge for one trip.

use std::fmt;

use crate::account::TransitAccount;
use crate::link::{LinkId, Provider};
use crate::money::Fen;
use crate::trip::{TapKey, Trip, TripId};

const CHARGE_DOMAIN: &[u8] = b"citypass/v1/charge\0";
const REPAY_DOMAIN: &[u8] = b"citypass/v1/repay\0";

/// The decline code of a charge made while no link is active: it is owed at once.
pub const NO_PAYMENT_LINK: &str = "NO_PAYMENT_LINK";

/// A charge's id and idempotency key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChargeKey(pub [u8; 16]);

impl ChargeKey {
    /// The key of the charge for `trip`, closed by the tap `closing` (`None`: closed by
    /// the service, not by a tap).
    pub fn for_trip(trip: TripId, closing: Option<TapKey>) -> Self {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(CHARGE_DOMAIN);
        ctx.update(&trip.0);
        ctx.update(&closing.map_or([0u8; 16], |k| k.0));
        let digest = ctx.finish();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest.as_ref()[..16]);
        ChargeKey(key)
    }

    /// The key of the charge for `trip` as it stands (closed by its exit, its boarding,
    /// or the service).
    pub fn of(trip: &Trip) -> Self {
        let closing = match (&trip.exit, &trip.entry) {
            (Some(exit), _) => Some(exit.key()),
            (None, Some(entry)) if trip.mode == crate::fare::Mode::Bus => Some(entry.key()),
            _ => None,
        };
        ChargeKey::for_trip(trip.id, closing)
    }

    /// From 16 stored bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(ChargeKey)
    }

    /// The provider key of a declined charge sent again for RepayArrears request
    /// `request` (the caller's idempotency key):
    /// `SHA-256("citypass/v1/repay\0" ‖ charge key ‖ request)[..16]`. A retry of the
    /// request names the same key, so the provider charges it once.
    pub fn repayment(charge: ChargeKey, request: &str) -> Self {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(REPAY_DOMAIN);
        ctx.update(&charge.0);
        ctx.update(request.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&ctx.finish().as_ref()[..16]);
        ChargeKey(key)
    }
}

impl fmt::Display for ChargeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ChargeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChargeKey({self})")
    }
}

/// A charge's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeStatus {
    /// In the ledger and the outbox; the provider has not answered.
    Pending,
    /// The provider accepted it.
    Succeeded,
    /// The provider declined it (or no link was active): owed as arrears.
    Declined,
    /// Failed for a technical reason; being retried with the same key.
    Retrying,
    /// Cancelled before it left (its tap was voided); reversed in the ledger.
    Cancelled,
}

impl ChargeStatus {
    /// The number stored (the proto enum's number; CANCELLED is 6).
    pub fn code(self) -> i16 {
        match self {
            ChargeStatus::Pending => 2,
            ChargeStatus::Succeeded => 3,
            ChargeStatus::Declined => 4,
            ChargeStatus::Retrying => 5,
            ChargeStatus::Cancelled => 6,
        }
    }

    /// From its stored number.
    pub fn from_code(code: i16) -> Option<Self> {
        [
            ChargeStatus::Pending,
            ChargeStatus::Succeeded,
            ChargeStatus::Declined,
            ChargeStatus::Retrying,
            ChargeStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }
}

/// A charge, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// Its id and idempotency key.
    pub key: ChargeKey,
    /// The idempotency key the provider receives: `key`, or the key of the
    /// RepayArrears request that sent it again after a decline.
    pub provider_key: ChargeKey,
    /// The trip charged.
    pub trip: TripId,
    /// Whose.
    pub account: TransitAccount,
    /// The link charged and its provider; `None` when no link was active.
    pub link: Option<(LinkId, Provider)>,
    /// The operator the fare is due to (settlement).
    pub operator: String,
    /// How much; more than zero.
    pub amount: Fen,
    /// Its state.
    pub status: ChargeStatus,
    /// The decline code when declined (no personal data).
    pub decline_code: Option<String>,
    /// When it was written, Unix seconds.
    pub created_at: u64,
    /// When it was settled or cancelled.
    pub settled_at: Option<u64>,
}

impl Charge {
    /// Whether it still counts (not cancelled).
    pub fn is_live(&self) -> bool {
        self.status != ChargeStatus::Cancelled
    }
}
