//! Entries to and from the API's `RevocationEntry` message, and the signed head to and
//! from `SignedRevocationHead` (feature `proto`).
//!
//! The service writes entries with [`to_proto`]; a follower that resyncs with List or
//! Watch reads them back with [`from_proto`], which is as strict as the binary
//! decoders: every field must be consistent with the entry's action and kind, and the
//! chain hash must be there (32 bytes), so a malformed message is refused rather than
//! applied half-understood. The audit fields (the operator's reason, actor, note) are
//! not part of an [`Entry`]: [`to_proto`] fills them only when given them (the
//! service's audit view), and [`from_proto`] only checks that a reason, when present,
//! agrees with the entry's `compromised` bit.

use citypass_proto::prost_types::Timestamp;
use citypass_proto::time::timestamp;
use citypass_proto::v1 as pb;

use citypass_token::Kid;

use crate::chain::{ChainHash, Chained, Head, SignedHead};
use crate::entry::{Action, Entry, EntryError};
use crate::reason::{Reason, ReinstateReason, RevocationReason};
use crate::target::{Target, TargetError, TargetKind};

/// Why a `RevocationEntry` message is not a valid entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// A field is missing or out of range.
    #[error("entry {epoch}: {field}: {reason}")]
    Field {
        /// The entry's epoch as sent.
        epoch: u64,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The target id does not fit its kind.
    #[error("entry {epoch}: {source}")]
    Target {
        /// The entry's epoch as sent.
        epoch: u64,
        /// Why.
        #[source]
        source: TargetError,
    },
    /// The fields do not make a valid entry.
    #[error("entry {epoch}: {source}")]
    Invalid {
        /// The entry's epoch as sent.
        epoch: u64,
        /// Why.
        #[source]
        source: EntryError,
    },
}

/// What only auditors see of a log record: why, who, and the note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditFields<'a> {
    /// The operator's reason.
    pub reason: Reason,
    /// Who wrote the record.
    pub actor: &'a str,
    /// Free text.
    pub note: &'a str,
}

/// The message for an entry and its chain hash; with `audit`, the audit view (reason,
/// actor, note set), without it the minimal view that services and gates get (both
/// reasons `UNSPECIFIED`, actor and note empty).
pub fn to_proto(chained: &Chained, audit: Option<AuditFields<'_>>) -> pb::RevocationEntry {
    let entry = &chained.entry;
    let (action, compromised, revoked_before) = match entry.action {
        Action::Revoke {
            compromised,
            revoked_before,
        } => (
            pb::EntryAction::Revoke,
            compromised,
            Some(timestamp(revoked_before)),
        ),
        Action::Reinstate => (pb::EntryAction::Reinstate, false, None),
    };
    let (revocation_reason, reinstate_reason) = match audit.map(|a| a.reason) {
        Some(Reason::Revoke(reason)) => (i32::from(reason.code()), 0),
        Some(Reason::Reinstate(reason)) => (0, i32::from(reason.code())),
        None => (0, 0),
    };
    pb::RevocationEntry {
        epoch: entry.epoch,
        action: action as i32,
        target_kind: i32::from(entry.target.kind().code()),
        target_id: entry.target.id(),
        revocation_reason,
        reinstate_reason,
        revoked_before,
        expires_at: entry.expires_at.map(timestamp),
        created_at: Some(timestamp(entry.created_at)),
        actor: audit.map(|a| a.actor.to_owned()).unwrap_or_default(),
        note: audit.map(|a| a.note.to_owned()).unwrap_or_default(),
        chain: chained.chain.as_bytes().to_vec(),
        compromised,
    }
}

/// An entry and its carried chain hash from its message (the chain hash is checked
/// only when the entry is applied); the audit fields, if the view had them, are the
/// message's own.
pub fn from_proto(message: &pb::RevocationEntry) -> Result<Chained, ProtoError> {
    let entry = entry_from_proto(message)?;
    let chain = ChainHash::from_slice(&message.chain).ok_or(ProtoError::Field {
        epoch: message.epoch,
        field: "chain",
        reason: "must be 32 bytes",
    })?;
    Ok(Chained { entry, chain })
}

/// The message for a signed head.
pub fn head_to_proto(head: &SignedHead) -> pb::SignedRevocationHead {
    pb::SignedRevocationHead {
        epoch: head.head.epoch,
        chain: head.head.chain.as_bytes().to_vec(),
        created_at: Some(timestamp(head.created_at)),
        signature: head.signature.clone(),
        kid: head.kid.0.to_vec(),
    }
}

/// A signed head from its message, not yet verified ([`SignedHead::verify`] checks the
/// signature for those who hold the key set).
pub fn head_from_proto(message: &pb::SignedRevocationHead) -> Result<SignedHead, ProtoError> {
    let field = |field, reason| ProtoError::Field {
        epoch: message.epoch,
        field,
        reason,
    };
    let chain = ChainHash::from_slice(&message.chain)
        .ok_or_else(|| field("head.chain", "must be 32 bytes"))?;
    let created_at = match &message.created_at {
        Some(t) if t.nanos == 0 => {
            u64::try_from(t.seconds).map_err(|_| field("head.created_at", "before 1970"))?
        }
        Some(_) => return Err(field("head.created_at", "must be whole seconds")),
        None => return Err(field("head.created_at", "missing")),
    };
    let kid = Kid::from_slice(&message.kid).map_err(|_| field("head.kid", "must be 8 bytes"))?;
    Ok(SignedHead {
        head: Head {
            epoch: message.epoch,
            chain,
        },
        created_at,
        signature: message.signature.clone(),
        kid,
    })
}

fn entry_from_proto(message: &pb::RevocationEntry) -> Result<Entry, ProtoError> {
    let epoch = message.epoch;
    let field = |field, reason| ProtoError::Field {
        epoch,
        field,
        reason,
    };
    let seconds = |name: &'static str, t: &Option<Timestamp>| -> Result<Option<u64>, ProtoError> {
        t.as_ref()
            .map(|t| {
                if t.nanos != 0 {
                    return Err(field(name, "must be whole seconds"));
                }
                u64::try_from(t.seconds).map_err(|_| field(name, "before 1970"))
            })
            .transpose()
    };
    let kind = TargetKind::from_code(message.target_kind)
        .ok_or_else(|| field("target_kind", "unknown or unspecified"))?;
    let target = Target::parse(kind, &message.target_id)
        .map_err(|source| ProtoError::Target { epoch, source })?;
    let revoked_before = seconds("revoked_before", &message.revoked_before)?;
    let action = match pb::EntryAction::try_from(message.action) {
        Ok(pb::EntryAction::Revoke) => {
            if message.reinstate_reason != 0 {
                return Err(field("reinstate_reason", "set on a REVOKE entry"));
            }
            let reason = RevocationReason::from_code(message.revocation_reason)
                .ok_or_else(|| field("revocation_reason", "unknown"))?;
            if reason != RevocationReason::Unspecified
                && reason.compromised() != message.compromised
            {
                return Err(field("compromised", "disagrees with revocation_reason"));
            }
            Action::Revoke {
                compromised: message.compromised,
                revoked_before: revoked_before
                    .ok_or_else(|| field("revoked_before", "missing on a REVOKE entry"))?,
            }
        }
        Ok(pb::EntryAction::Reinstate) => {
            if message.revocation_reason != 0 || revoked_before.is_some() || message.compromised {
                return Err(field(
                    "revocation_reason",
                    "REVOKE fields set on a REINSTATE entry",
                ));
            }
            ReinstateReason::from_code(message.reinstate_reason)
                .ok_or_else(|| field("reinstate_reason", "unknown"))?;
            Action::Reinstate
        }
        _ => return Err(field("action", "unknown or unspecified")),
    };
    let entry = Entry {
        epoch,
        target,
        action,
        expires_at: seconds("expires_at", &message.expires_at)?,
        created_at: seconds("created_at", &message.created_at)?
            .ok_or_else(|| field("created_at", "missing"))?,
    };
    entry
        .validate()
        .map_err(|source| ProtoError::Invalid { epoch, source })?;
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use citypass_token::{Cti, DeviceId};

    #[test]
    fn entries_round_trip_and_inconsistent_messages_are_refused() {
        let entries = [
            Entry {
                epoch: 1,
                target: Target::Key(Kid([1; 8])),
                action: Action::Revoke {
                    compromised: true,
                    revoked_before: 100,
                },
                expires_at: None,
                created_at: 99,
            },
            Entry {
                epoch: 2,
                target: Target::Device(DeviceId::from_bytes([0xab; 16])),
                action: Action::Reinstate,
                expires_at: None,
                created_at: 120,
            },
            Entry {
                epoch: 3,
                target: Target::Token(Cti::from_bytes([3; 16])),
                action: Action::Revoke {
                    compromised: false,
                    revoked_before: 130,
                },
                expires_at: Some(500),
                created_at: 130,
            },
        ];
        let mut chain = ChainHash::GENESIS;
        for entry in entries {
            let chained = Chained::link(&chain, entry);
            chain = chained.chain;
            let reason = match chained.entry.action {
                Action::Revoke {
                    compromised: true, ..
                } => Reason::Revoke(RevocationReason::KeyCompromised),
                Action::Revoke { .. } => Reason::Revoke(RevocationReason::Fraud),
                Action::Reinstate => Reason::Reinstate(ReinstateReason::ArrearsRepaid),
            };
            let audit = AuditFields {
                reason,
                actor: "ops",
                note: "note",
            };
            let message = to_proto(&chained, Some(audit));
            assert_eq!(message.actor, "ops");
            assert_eq!(from_proto(&message), Ok(chained.clone()));
            let minimal = to_proto(&chained, None);
            assert_eq!(
                (minimal.revocation_reason, minimal.reinstate_reason),
                (0, 0),
                "the minimal view carries no reason"
            );
            assert!(minimal.actor.is_empty() && minimal.note.is_empty());
            assert_eq!(from_proto(&minimal), Ok(chained));
        }
        let good = to_proto(
            &Chained::link(
                &chain,
                Entry {
                    epoch: 4,
                    target: Target::Token(Cti::from_bytes([0xab; 16])),
                    action: Action::Revoke {
                        compromised: false,
                        revoked_before: 1,
                    },
                    expires_at: Some(2),
                    created_at: 1,
                },
            ),
            None,
        );
        let mut fraud_but_compromised = good.clone();
        fraud_but_compromised.revocation_reason = RevocationReason::Fraud as i32;
        fraud_but_compromised.compromised = true;
        assert!(matches!(
            from_proto(&fraud_but_compromised),
            Err(ProtoError::Field {
                field: "compromised",
                ..
            })
        ));
        let mut no_chain = good.clone();
        no_chain.chain = vec![0; 31];
        assert!(matches!(
            from_proto(&no_chain),
            Err(ProtoError::Field { field: "chain", .. })
        ));
        let mut missing = good.clone();
        missing.revoked_before = None;
        assert!(from_proto(&missing).is_err());
        let mut both = good.clone();
        both.reinstate_reason = 1;
        assert!(from_proto(&both).is_err());
        let mut reinstate_token = good.clone();
        reinstate_token.action = pb::EntryAction::Reinstate as i32;
        reinstate_token.revocation_reason = 0;
        reinstate_token.revoked_before = None;
        reinstate_token.expires_at = None;
        assert!(matches!(
            from_proto(&reinstate_token),
            Err(ProtoError::Invalid { .. })
        ));
        let mut upper = good;
        upper.target_id = upper.target_id.to_uppercase();
        assert!(matches!(from_proto(&upper), Err(ProtoError::Target { .. })));
    }

    #[test]
    fn signed_heads_round_trip() {
        let key = citypass_token::SnapshotKey::from_seed(&[3; 32], true).unwrap();
        let head = SignedHead::sign(
            Head {
                epoch: 9,
                chain: ChainHash([4; 32]),
            },
            1_800_000_000,
            &key,
        );
        let message = head_to_proto(&head);
        assert_eq!(head_from_proto(&message), Ok(head));
        let mut short = message.clone();
        short.chain.pop();
        assert!(head_from_proto(&short).is_err());
        let mut undated = message;
        undated.created_at = None;
        assert!(head_from_proto(&undated).is_err());
    }
}
