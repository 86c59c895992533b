//! The records the log stores and the requests and answers of the service's logic.
//!
//! The rules both log backends apply inside their one atomic step are in
//! [`crate::plan`].

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::SystemTime;

use citypass_revocation::{
    ChainHash, Chained, Entry, Head, Reason, ReinstateReason, RevocationReason, SignedHead,
    SignedSnapshot, Target,
};
use citypass_token::CertSerial;

/// Who wrote an entry and why, for audit (never needed to enforce it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audit {
    /// The caller (operator or service identity).
    pub actor: String,
    /// Free text, no personal data.
    pub note: String,
}

/// One row of the log: the entry, its chain hash and its audit fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The entry, as sets and snapshots see it.
    pub entry: Entry,
    /// The log's chain hash through this entry.
    pub chain: ChainHash,
    /// The operator's reason (audit only: the entry carries just its `compromised`
    /// bit, see `citypass_revocation::reason`).
    pub reason: Reason,
    /// Who wrote it.
    pub actor: String,
    /// Why, in words.
    pub note: String,
}

impl Record {
    /// The entry with its chain hash, as the stream, ListRevocations and WatchRevocations carry it.
    pub fn chained(&self) -> Chained {
        Chained {
            entry: self.entry.clone(),
            chain: self.chain,
        }
    }

    /// The head of the log when this record is the last one.
    pub fn head(&self) -> Head {
        Head {
            epoch: self.entry.epoch,
            chain: self.chain,
        }
    }
}

/// A device certificate, as the identity service lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Certificate {
    /// Random serial: what offline gates check.
    pub serial: CertSerial,
    /// Issued at (the certificate's `iat`), Unix seconds.
    pub not_before: u64,
    /// End of validity, Unix seconds.
    pub not_after: u64,
}

/// The certificates a device or subject revocation cascades to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cascade<'a> {
    /// The target's certificates, from the identity service.
    pub certificates: &'a [Certificate],
    /// How long after its `not_after` a certificate entry is kept: the clock skew gates
    /// allow.
    pub expiry_margin: u64,
}

/// A validated revocation request with its times resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeCommand {
    /// What to revoke.
    pub target: Target,
    /// Why.
    pub reason: RevocationReason,
    /// Exclusive bound, Unix seconds (resolved: the caller's, or the server's clock).
    pub revoked_before: u64,
    /// Whether the caller chose `revoked_before` (see the coverage rules).
    pub revoked_before_given: bool,
    /// When the entry may be forgotten (resolved; `None`: never).
    pub expires_at: Option<u64>,
    /// Whether the caller chose `expires_at`.
    pub expires_at_given: bool,
    /// Who and why.
    pub audit: Audit,
}

/// What a Revoke did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// The entry now in force: the new one, or the one that already covered the request.
    pub entry: Record,
    /// Certificate entries written by this call.
    pub cascaded: Vec<Record>,
    /// Whether `entry` was written by this call.
    pub created: bool,
}

impl Revoked {
    /// Every record written by this call, in epoch order.
    pub fn written(&self) -> Vec<Record> {
        let mut out = Vec::with_capacity(1 + self.cascaded.len());
        if self.created {
            out.push(self.entry.clone());
        }
        out.extend(self.cascaded.iter().cloned());
        out.sort_by_key(|r| r.entry.epoch);
        out
    }
}

/// One page of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Records after the asked epoch, in epoch order, without gaps.
    pub records: Vec<Record>,
    /// The head of the log when the page was read (at least the last record's epoch).
    pub head: u64,
    /// The chain hash through `head`.
    pub head_chain: ChainHash,
}

/// Revoke, as asked: the request's shape already checked ([`crate::convert`]), its
/// rules not yet (the note, and the times against the clock and the settings, are
/// [`crate::registry::Registry::command`]'s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeRequest {
    /// What to revoke.
    pub target: Target,
    /// Why.
    pub reason: RevocationReason,
    /// The exclusive bound asked for, Unix seconds rounded up; `None`: the server's
    /// clock.
    pub revoked_before: Option<u64>,
    /// When the entry may be forgotten, Unix seconds rounded up; `None`: derived by the
    /// server (tokens, certificates) or never (the other kinds).
    pub expires_at: Option<u64>,
    /// Free text for audit, no personal data.
    pub note: String,
}

/// Reinstate, as asked (shape checked; the kind and note rules are the logic's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReinstateRequest {
    /// The device or subject to reinstate.
    pub target: Target,
    /// Why.
    pub reason: ReinstateReason,
    /// Free text for audit, no personal data.
    pub note: String,
}

/// List: where to start and how much to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListQuery {
    /// Records with an epoch above this one (a page token resolves to it).
    pub since: u64,
    /// Records wanted; `None`: the server's default. Capped by the settings.
    pub page_size: Option<NonZeroU32>,
}

/// One List answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// Records after the asked epoch, in epoch order, without gaps.
    pub records: Vec<Record>,
    /// Where the next page starts (its [`ListQuery::since`]); `None` when this page
    /// reached the head.
    pub next_since: Option<u64>,
    /// The head of the log when the page was read.
    pub head: u64,
    /// That head with its chain hash, signed by the snapshot key.
    pub signed_head: SignedHead,
}

/// One Watch message: entries contiguous with the previous message's, or none (a
/// heartbeat, or the first message telling the watcher the head).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The entries, in epoch order (shared with the replica's recent entries).
    pub entries: Vec<Arc<Record>>,
    /// The epoch this replica has read up to (at least the last entry's).
    pub head_epoch: u64,
    /// When the message was made.
    pub sent_at: SystemTime,
    /// In a heartbeat: this replica's head (at `head_epoch`), signed. `None` in a
    /// message with entries (they carry their chain hashes).
    pub head: Option<SignedHead>,
}

/// A signed snapshot and the epoch it is complete up to: what Snapshot returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochSnapshot {
    /// The encoded snapshot with the snapshot key's signature and kid.
    pub signed: SignedSnapshot,
    /// The epoch the snapshot is complete up to.
    pub epoch: u64,
}
