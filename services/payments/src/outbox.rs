//! The transactional outbox: what must be sent to a payment provider.
//!
//! A charge's outbox row is written in the same transaction as the charge and its
//! ledger posting, so a charge exists if and only if it will be sent: a crash between
//! "charged" and "sent" loses nothing, and a retry sends the same idempotency key
//! ([`crate::charge::ChargeKey`]). One row per charge (the charge key is its key). The
//! worker that sends rows to the provider adapter comes next; until then rows stay
//! pending, and a voided tap's charge is cancelled with its row.

use crate::charge::ChargeKey;

/// Where an outbox row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    /// Not sent yet.
    Pending,
    /// Handed to the provider (the charge can no longer be cancelled).
    Dispatched,
    /// Cancelled before it was sent (a voided tap).
    Cancelled,
}

impl OutboxStatus {
    /// The number stored.
    pub fn code(self) -> i16 {
        match self {
            OutboxStatus::Pending => 1,
            OutboxStatus::Dispatched => 2,
            OutboxStatus::Cancelled => 3,
        }
    }

    /// From its stored number.
    pub fn from_code(code: i16) -> Option<Self> {
        [
            OutboxStatus::Pending,
            OutboxStatus::Dispatched,
            OutboxStatus::Cancelled,
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
}
