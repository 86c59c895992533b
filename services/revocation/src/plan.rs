//! The rules both log backends apply inside their one atomic step: when a revocation is
//! already covered, which certificate serials a device or subject revocation cascades to,
//! whether a reinstatement is allowed.
//!
//! The rules are pure functions over the target's history so that the PostgreSQL and
//! the in-memory log cannot disagree: each backend only locks, reads the history and
//! the head (epoch and chain hash), calls [`plan_revoke`] / [`plan_cascade`] /
//! [`plan_reinstate`], and writes what the plan says: records with epochs from
//! `head + 1` on, each with its chain hash (the head's chain, then each record's,
//! `citypass_revocation::chain`), and the new head.
//!
//! # When a revocation is covered (Revoke is idempotent)
//!
//! A request writes nothing and returns the existing entry when a live entry of the
//! target already does everything the request asks:
//!
//! - token, certificate: a live revocation exists whose `expires_at` is no earlier than
//!   the requested one (any live revocation when the request let the server derive
//!   `expires_at`: the code existed before that revocation, so it dies within the
//!   derived lifetime);
//! - device, subject: the target is revoked now (its latest entry is a revocation) and
//!   either the request let the server pick `revoked_before` (a retry: nothing was
//!   issued for the target while it was blocked) or a revocation has a
//!   `revoked_before` no earlier than the requested one;
//! - key: a revocation has a `revoked_before` no earlier than the requested one (keys
//!   are not blocked by revocation, so a later instant does kill more);
//! - and, whatever the kind, a request whose reason is a compromise
//!   ([`citypass_revocation::RevocationReason::compromised`]) is covered only by an entry that was itself
//!   revoked as compromised: an orderly withdrawal of a key does not kill what the
//!   thief of that key signs later, so it must not swallow the compromise report.
//!
//! Even when the device or subject entry is covered, live certificates that no entry
//! covers yet are cascaded (the request is only fully covered when they are too).
//!
//! # Cascade
//!
//! Revoking a device or subject also revokes each of its certificates that is still
//! live, whatever its `not_before` (security finding 5: a certificate the issuer made
//! in the moment before it heard of the revocation, or stamped later than
//! `revoked_before`, must not survive), unless a live certificate entry already covers
//! it. The sweep that runs after the revocation does the same for certificates recorded
//! meanwhile, as long as the revocation is still the target's latest entry (a
//! reinstatement in between ends it). The certificate entry shares the parent's
//! reason (and so its `compromised` bit) and `revoked_before`, and expires `clock_skew` after the certificate (gates
//! accept a certificate up to that long after its `not_after`).

use std::collections::HashMap;

use citypass_revocation::{
    Action, ChainHash, Entry, Head, Reason, ReinstateReason, Target, TargetKind,
};
use citypass_token::CertSerial;

use crate::error::Error;
use crate::model::{Audit, Cascade, Record, RevokeCommand, Revoked};

/// Gives `records` (epochs `head.epoch + 1 ..`, in order) their chain hashes, from
/// `head`'s; returns the new head.
fn link<'a>(head: Head, records: impl IntoIterator<Item = &'a mut Record>) -> Head {
    let mut head = head;
    for record in records {
        debug_assert_eq!(record.entry.epoch, head.epoch + 1);
        record.chain = head.chain.next(&record.entry);
        head = record.head();
    }
    head
}

/// What a backend writes for a Revoke.
#[derive(Debug)]
pub(crate) struct RevokePlan {
    /// The result to return (epochs already assigned).
    pub revoked: Revoked,
    /// New records, epochs `head + 1 ..` in order.
    pub writes: Vec<Record>,
}

fn covers(existing: &Entry, command: &RevokeCommand, now: u64) -> bool {
    let Action::Revoke { revoked_before, .. } = existing.action else {
        return false;
    };
    if !covers_compromise(existing, command) {
        return false;
    }
    match command.target.kind() {
        TargetKind::Token | TargetKind::Certificate => {
            existing.is_live(now)
                && (!command.expires_at_given
                    || existing.expires_at.unwrap_or(u64::MAX)
                        >= command.expires_at.unwrap_or(u64::MAX))
        }
        TargetKind::Device | TargetKind::Subject | TargetKind::Key => {
            revoked_before >= command.revoked_before
        }
    }
}

/// The existing record that covers `command`, if any (see the module documentation).
/// `history` is every record of the target, in epoch order.
fn covering<'a>(command: &RevokeCommand, history: &'a [Record], now: u64) -> Option<&'a Record> {
    if command.target.kind().reinstatable() {
        let latest = history.last().filter(|r| r.entry.is_revoke())?;
        if !command.revoked_before_given && covers_compromise(&latest.entry, command) {
            return Some(latest);
        }
    }
    history
        .iter()
        .rev()
        .find(|r| covers(&r.entry, command, now))
}

/// Whether `existing` answers a compromise report in `command`, if it is one.
fn covers_compromise(existing: &Entry, command: &RevokeCommand) -> bool {
    !command.reason.compromised()
        || matches!(
            existing.action,
            Action::Revoke {
                compromised: true,
                ..
            }
        )
}

fn cascade_note(parent: &Entry) -> String {
    format!(
        "cascaded from the {} revocation at epoch {}",
        parent.target.kind(),
        parent.epoch
    )
}

/// Certificate records for `parent`'s live certificates that nothing covers yet,
/// numbered from `next_epoch`. `certificate_history` maps serials to their records.
fn cascade_records(
    parent: &Record,
    cascade: Cascade<'_>,
    certificate_history: &HashMap<CertSerial, Vec<Record>>,
    next_epoch: u64,
    now: u64,
) -> Vec<Record> {
    let (
        Action::Revoke {
            compromised,
            revoked_before,
        },
        Reason::Revoke(reason),
    ) = (parent.entry.action, parent.reason)
    else {
        return Vec::new();
    };
    let mut out: Vec<Record> = Vec::new();
    for certificate in cascade.certificates {
        let expires_at = certificate.not_after.saturating_add(cascade.expiry_margin);
        if expires_at < now {
            continue;
        }
        if out
            .iter()
            .any(|r| r.entry.target == Target::Certificate(certificate.serial))
        {
            continue;
        }
        let command = RevokeCommand {
            target: Target::Certificate(certificate.serial),
            reason,
            revoked_before,
            revoked_before_given: true,
            expires_at: Some(expires_at),
            expires_at_given: true,
            audit: Audit::default(),
        };
        let history = certificate_history
            .get(&certificate.serial)
            .map_or(&[][..], Vec::as_slice);
        if covering(&command, history, now).is_some() {
            continue;
        }
        out.push(Record {
            entry: Entry {
                epoch: next_epoch + out.len() as u64,
                target: command.target,
                action: Action::Revoke {
                    compromised,
                    revoked_before,
                },
                expires_at: Some(expires_at),
                created_at: now,
            },
            chain: ChainHash::GENESIS,
            reason: parent.reason,
            actor: parent.actor.clone(),
            note: cascade_note(&parent.entry),
        });
    }
    out
}

/// Plans a Revoke under the backend's lock. `history`: the target's records in epoch
/// order; `head`: the log's head.
pub(crate) fn plan_revoke(
    command: &RevokeCommand,
    history: &[Record],
    cascade: Cascade<'_>,
    certificate_history: &HashMap<CertSerial, Vec<Record>>,
    log_head: Head,
    now: u64,
) -> RevokePlan {
    let head = log_head.epoch;
    let (parent, created) = match covering(command, history, now) {
        Some(existing) => (existing.clone(), false),
        None => (
            Record {
                entry: Entry {
                    epoch: head + 1,
                    target: command.target,
                    action: Action::Revoke {
                        compromised: command.reason.compromised(),
                        revoked_before: command.revoked_before,
                    },
                    expires_at: command.expires_at,
                    created_at: now,
                },
                chain: ChainHash::GENESIS,
                reason: Reason::Revoke(command.reason),
                actor: command.audit.actor.clone(),
                note: command.audit.note.clone(),
            },
            true,
        ),
    };
    let next = head + 1 + u64::from(created);
    let cascaded = if command.target.kind().reinstatable() {
        cascade_records(&parent, cascade, certificate_history, next, now)
    } else {
        Vec::new()
    };
    let mut revoked = Revoked {
        entry: parent,
        cascaded,
        created,
    };
    // The new parent (epoch head + 1) comes first, then the cascaded records.
    let parent = created.then_some(&mut revoked.entry);
    link(
        log_head,
        parent.into_iter().chain(revoked.cascaded.iter_mut()),
    );
    RevokePlan {
        writes: revoked.written(),
        revoked,
    }
}

/// Plans a later cascade for an existing device or subject revocation (the sweep that
/// catches certificates recorded while the revocation was being written), unless
/// `parent` is no longer the target's latest entry (`history`, in epoch order): after
/// a reinstatement its certificates are the citizen's again, and a newer revocation
/// sweeps for itself.
pub(crate) fn plan_cascade(
    parent: &Record,
    history: &[Record],
    cascade: Cascade<'_>,
    certificate_history: &HashMap<CertSerial, Vec<Record>>,
    head: Head,
    now: u64,
) -> Vec<Record> {
    if !parent.entry.target.kind().reinstatable()
        || history.last().map(|r| r.entry.epoch) != Some(parent.entry.epoch)
    {
        return Vec::new();
    }
    let mut records = cascade_records(parent, cascade, certificate_history, head.epoch + 1, now);
    link(head, records.iter_mut());
    records
}

/// Plans a Reinstate: [`Error::NotRevoked`] unless the target's latest entry is a
/// revocation.
pub(crate) fn plan_reinstate(
    target: &Target,
    reason: ReinstateReason,
    audit: &Audit,
    history: &[Record],
    head: Head,
    now: u64,
) -> Result<Record, Error> {
    if !target.kind().reinstatable() {
        return Err(Error::invalid(
            "target_kind",
            "only devices and subjects can be reinstated",
        ));
    }
    if !history.last().is_some_and(|r| r.entry.is_revoke()) {
        return Err(Error::NotRevoked);
    }
    let mut record = Record {
        entry: Entry {
            epoch: head.epoch + 1,
            target: *target,
            action: Action::Reinstate,
            expires_at: None,
            created_at: now,
        },
        chain: ChainHash::GENESIS,
        reason: Reason::Reinstate(reason),
        actor: audit.actor.clone(),
        note: audit.note.clone(),
    };
    link(head, [&mut record]);
    Ok(record)
}
