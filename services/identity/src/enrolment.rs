//! Who may bind a device to a subject: the subject's authority, beyond the new key's
//! own proof of possession.
//!
//! A subject id is not a secret (operators and other services see it), so knowing one
//! must never be enough to bind a key and receive that citizen's codes. A binding needs
//! one of:
//! - the **enrolment secret**: 32 random bytes that Enrol returns only to the app that
//!   enrolled (or that an operator issues after an in-person check, with
//!   IssueEnrolmentSecret). It is stored only as a SHA-256 hash, expires after
//!   `enrolment_secret_ttl`, and is consumed by the binding that uses it, in the same
//!   transaction;
//! - a **bound device**: a signature by an ACTIVE device of the same subject over the
//!   new binding (`citypass_token::binding_authorization_message`), so a citizen adds a
//!   phone from the phone they already have.

use std::time::Duration;

use citypass_token::sha256;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::Error;
use crate::model::Timestamp;
pub use crate::model::{Authority, EnrolmentGrant, SecretHash};

/// An enrolled subject and the secret that binds its first device (given only by
/// Enrol, and again to a retry of it, [`crate::retries`]).
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub subject: crate::model::Subject,
    pub secret: EnrolmentSecret,
    pub secret_expires_at: Timestamp,
}

/// Bytes in an enrolment secret.
pub const SECRET_LEN: usize = 32;

/// An enrolment secret, as handed to the citizen's app (never stored, never logged).
#[derive(Clone, PartialEq, Eq)]
pub struct EnrolmentSecret([u8; SECRET_LEN]);

impl std::fmt::Debug for EnrolmentSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnrolmentSecret(…)")
    }
}

impl EnrolmentSecret {
    /// A fresh random secret.
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = [0u8; SECRET_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| Error::Randomness)?;
        Ok(EnrolmentSecret(bytes))
    }

    /// A secret as the app sends it back: exactly [`SECRET_LEN`] bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        bytes.try_into().map(EnrolmentSecret).map_err(|_| {
            Error::invalid("enrolment_secret", "must be 32 bytes, as Enrol returned it")
        })
    }

    /// The bytes, to hand to the app.
    pub fn as_bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }

    /// What the store keeps.
    pub fn hash(&self) -> SecretHash {
        SecretHash(sha256(&self.0))
    }
}

/// A fresh secret and the grant to store for it, valid for `ttl` from `now`.
pub fn grant(now: Timestamp, ttl: Duration) -> Result<(EnrolmentSecret, EnrolmentGrant), Error> {
    let secret = EnrolmentSecret::generate()?;
    let grant = EnrolmentGrant {
        secret_hash: secret.hash(),
        expires_at: now.saturating_add(ttl),
    };
    Ok((secret, grant))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh_hashed_and_hidden() {
        let now = Timestamp::from_micros(1_000_000);
        let (a, grant_a) = grant(now, Duration::from_secs(60)).unwrap();
        let (b, _) = grant(now, Duration::from_secs(60)).unwrap();
        assert_ne!(a, b);
        assert_eq!(grant_a.secret_hash, a.hash());
        assert_ne!(grant_a.secret_hash.0, *a.as_bytes());
        assert_eq!(grant_a.expires_at, Timestamp::from_micros(61_000_000));
        assert_eq!(EnrolmentSecret::parse(a.as_bytes()).unwrap(), a);
        assert!(EnrolmentSecret::parse(&a.as_bytes()[..31]).is_err());
        assert_eq!(format!("{a:?} {grant_a:?}").matches('…').count(), 2);
    }
}
