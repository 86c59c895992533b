//! One entry of the revocation log, as every consumer of the log sees it.
//!
//! An entry either revokes a target (killing what was issued before its
//! `revoked_before`) or reinstates a device or subject (letting the issuer issue for it
//! again). The two carry different data, so [`Action`] holds each one's fields and an
//! entry cannot be, say, a reinstatement with a `revoked_before`.
//!
//! The entry holds what enforcement needs and nothing else, because it is what gates,
//! the Redis Stream, snapshots and the hash chain carry. Of the operator's reason it
//! keeps one bit, whether the target was revoked as compromised (which changes what a
//! key revocation kills); the reason itself ([`crate::reason`]: fraud, arrears, a lost
//! device…), the actor and the note are audit data of the log, shown only to auditors
//! (security review, finding 8: a gate operator reading the revocation data must not
//! learn who is in arrears or suspected of fraud).
//!
//! Times are Unix seconds. `revoked_before` is exclusive: a code with `iat` strictly
//! below it is dead. Codes carry whole seconds, so a revocation at 100.4 s written as
//! `revoked_before = 101` kills every code stamped 100 (which may have been issued
//! just after the revocation, before the issuer heard of it).

use crate::target::{Target, TargetKind};

/// What an entry does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Everything of the target issued (`iat` / certificate `iat`) before
    /// `revoked_before` is dead; for a device or subject, the issuer also stops issuing.
    Revoke {
        /// Whether the target was revoked as compromised (a key or device key in
        /// someone else's hands, [`crate::RevocationReason::compromised`]) rather than
        /// withdrawn: for a signing key, everything it signed is then dead.
        compromised: bool,
        /// Unix seconds, exclusive.
        revoked_before: u64,
    },
    /// The issuer may issue for the device or subject again. Codes and certificates
    /// issued before an earlier revocation's `revoked_before` stay dead.
    Reinstate,
}

impl Action {
    /// The proto `EntryAction` number: 1 revoke, 2 reinstate.
    pub fn code(&self) -> u8 {
        match self {
            Action::Revoke { .. } => 1,
            Action::Reinstate => 2,
        }
    }
}

/// One log entry. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Position in the log: 1, 2, 3, … without gaps.
    pub epoch: u64,
    /// What it revokes or reinstates.
    pub target: Target,
    /// Revoke or reinstate, with the action's data.
    pub action: Action,
    /// After this (Unix seconds) everything the entry could kill has expired and the
    /// entry may be dropped from sets and snapshots; `None`: never.
    pub expires_at: Option<u64>,
    /// When the entry became durable, Unix seconds.
    pub created_at: u64,
}

/// Why an entry is not a valid log entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Epochs start at 1.
    #[error("epoch 0 is not a log position")]
    ZeroEpoch,
    /// Only devices and subjects are reinstated.
    #[error("a {0} cannot be reinstated: only devices and subjects can")]
    ReinstateKind(TargetKind),
    /// A reinstatement is in force until a later revocation; it never expires.
    #[error("a reinstate entry has no expires_at")]
    ReinstateExpires,
}

impl Entry {
    /// Checks what the type cannot: a non-zero epoch, and
    /// reinstatements only for devices and subjects, without expiry.
    pub fn validate(&self) -> Result<(), EntryError> {
        if self.epoch == 0 {
            return Err(EntryError::ZeroEpoch);
        }
        if let Action::Reinstate = self.action {
            if !self.target.kind().reinstatable() {
                return Err(EntryError::ReinstateKind(self.target.kind()));
            }
            if self.expires_at.is_some() {
                return Err(EntryError::ReinstateExpires);
            }
        }
        Ok(())
    }

    /// Whether this entry revokes.
    pub fn is_revoke(&self) -> bool {
        matches!(self.action, Action::Revoke { .. })
    }

    /// `revoked_before` of a revocation; `None` for a reinstatement.
    pub fn revoked_before(&self) -> Option<u64> {
        match self.action {
            Action::Revoke { revoked_before, .. } => Some(revoked_before),
            Action::Reinstate => None,
        }
    }

    /// Whether the entry is still needed at `now` (not past its `expires_at`).
    pub fn is_live(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|t| t >= now)
    }

    /// Whether this revocation kills a code or certificate of its target issued at
    /// `iat` (`iat < kill_bound`).
    pub fn kills(&self, iat: u64) -> bool {
        self.kill_bound().is_some_and(|bound| iat < bound)
    }

    /// The exclusive `iat` bound below which this revocation kills; `None` for a
    /// reinstatement. Tokens and certificates are single objects, and a signing key
    /// revoked as compromised signed whatever its holder wanted, `iat` included: all
    /// three kill everything (`u64::MAX`). Otherwise `revoked_before`, an orderly
    /// withdrawal of what was issued before it.
    pub fn kill_bound(&self) -> Option<u64> {
        match (self.action, self.target.kind()) {
            (Action::Reinstate, _) => None,
            (Action::Revoke { .. }, TargetKind::Token | TargetKind::Certificate)
            | (
                Action::Revoke {
                    compromised: true, ..
                },
                TargetKind::Key,
            ) => Some(u64::MAX),
            (Action::Revoke { revoked_before, .. }, _) => Some(revoked_before),
        }
    }
}
