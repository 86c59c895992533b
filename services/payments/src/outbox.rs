//! The transactional outbox: what must be sent to a payment provider.
//!
//! A charge's outbox row is written in the same transaction as the charge and its
//! ledger posting, so a charge exists if and only if it will be sent: a crash between
//! "charged" and "sent" loses nothing, and a retry sends the same idempotency key
//! ([`crate::charge::ChargeKey`]). One row per charge (the charge key is its key).
//! The worker ([`crate::worker`]) marks a row DISPATCHED before it calls the provider
//! (from then on the charge cannot be cancelled by a void), and DONE once the answer is
//! applied; a row dispatched but not done (a worker that died between) is sent again
//! with the same key. A voided tap's charge is cancelled with its row while PENDING.

use crate::charge::{Charge, ChargeKey};
use crate::link::ProviderToken;

/// Where an outbox row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    /// Not sent yet.
    Pending,
    /// Handed to the provider (the charge can no longer be cancelled).
    Dispatched,
    /// Cancelled before it was sent (a voided tap).
    Cancelled,
    /// The provider's answer is applied.
    Done,
}

impl OutboxStatus {
    /// The number stored.
    pub fn code(self) -> i16 {
        match self {
            OutboxStatus::Pending => 1,
            OutboxStatus::Dispatched => 2,
            OutboxStatus::Cancelled => 3,
            OutboxStatus::Done => 4,
        }
    }

    /// From its stored number.
    pub fn from_code(code: i16) -> Option<Self> {
        [
            OutboxStatus::Pending,
            OutboxStatus::Dispatched,
            OutboxStatus::Cancelled,
            OutboxStatus::Done,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }
}

/// One outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxMessage {
    /// The charge to send (its key is the provider's idempotency key).
    pub charge: ChargeKey,
    /// Where it stands.
    pub status: OutboxStatus,
    /// When it was written, Unix seconds.
    pub created_at: u64,
    /// Sends that got no answer so far (a provider error or timeout).
    pub attempts: u32,
    /// Not taken by the worker before this time, Unix seconds ([`backoff`] after a send
    /// without an answer; 0 for a row never tried).
    pub next_attempt_at: u64,
    /// Claimed by a worker until this time, Unix seconds (0: not claimed); the worker
    /// releases it when it settles the row.
    pub claimed_until: u64,
}

/// How long a worker's claim on the rows of its batch lasts: another worker does not
/// take them before (a claim lapses if its worker dies; a pass longer than this may
/// let another replica send a key again, which the provider's idempotency keeps to
/// one charge).
pub const CLAIM_LEASE_S: u64 = 600;

/// How long after its `attempts`-th unanswered send a row is tried again: 2^attempts
/// seconds, at most [`MAX_BACKOFF_S`] (an hour), so rows that keep failing give way to
/// newer ones (the worker takes rows by `next_attempt_at`, then age).
pub fn backoff(attempts: u32) -> u64 {
    1u64.checked_shl(attempts.min(63))
        .unwrap_or(u64::MAX)
        .min(MAX_BACKOFF_S)
}

/// Whether `settlement` is applied to a charge in `status`: a PENDING or RETRYING
/// charge takes any answer; a DECLINED one only an approval (a send of the same
/// provider key answered later, e.g. by another worker's call: the provider charged,
/// so the rider owes nothing); any other is left as it is.
pub fn settles(status: crate::charge::ChargeStatus, settlement: &Settlement) -> bool {
    use crate::charge::ChargeStatus;
    match status {
        ChargeStatus::Pending | ChargeStatus::Retrying => true,
        ChargeStatus::Declined => matches!(settlement, Settlement::Approved),
        _ => false,
    }
}

/// The longest wait between two sends of a row.
pub const MAX_BACKOFF_S: u64 = 3600;

/// A row to send, with what sending needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxJob {
    /// The charge (PENDING or RETRYING, with a link).
    pub charge: Charge,
    /// The link's provider token; `None` if the stored one no longer parses (the row
    /// is skipped and counted by the worker, not sent, and the rest of the batch goes
    /// on).
    pub token: Option<ProviderToken>,
}

/// The provider's answer to apply to a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Approved: SUCCEEDED, captured in the ledger.
    Approved,
    /// Declined: DECLINED with the code, owed as arrears.
    Declined {
        /// The provider's code.
        code: String,
    },
    /// No answer known: RETRYING, sent again with the same key.
    Retry,
}
