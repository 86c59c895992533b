//! Binding challenges: the server's half of the device's proof of possession.
//!
//! To bind a key, a device signs a fresh server challenge (with the subject id and the
//! key itself, in the layout `citypass_token::binding_message` defines). The challenge
//! is 32 random bytes, lives in the store (not in a replica's memory, so any replica
//! can finish a binding another one started), expires after the configured TTL
//! (default 5 minutes) and is consumed by the binding that uses it, so a recorded
//! answer cannot bind twice. A subject keeps at most a few outstanding challenges.

use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

use crate::error::Error;
use crate::ids::SubjectId;
use crate::model::{Challenge, Timestamp};

/// Bytes in a challenge.
pub const CHALLENGE_LEN: usize = 32;

/// A fresh challenge for `subject_id`, expiring `ttl` after `now`.
pub fn generate(subject_id: SubjectId, now: Timestamp, ttl: Duration) -> Result<Challenge, Error> {
    let mut bytes = [0u8; CHALLENGE_LEN];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Randomness)?;
    Ok(Challenge {
        bytes,
        subject_id,
        expires_at: now.saturating_add(ttl),
    })
}

/// A challenge as sent back by the device: exactly [`CHALLENGE_LEN`] bytes.
pub fn parse(bytes: &[u8]) -> Result<[u8; CHALLENGE_LEN], Error> {
    if bytes.is_empty() {
        return Err(Error::invalid("challenge", "required"));
    }
    bytes.try_into().map_err(|_| {
        Error::invalid(
            "challenge",
            "must be 32 bytes, as CreateBindingChallenge returns it",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_fresh_and_expire_after_the_ttl() {
        let subject = SubjectId::from_bytes([1; 16]);
        let now = Timestamp::from_micros(1_000_000);
        let a = generate(subject, now, Duration::from_secs(300)).unwrap();
        let b = generate(subject, now, Duration::from_secs(300)).unwrap();
        assert_ne!(a.bytes, b.bytes);
        assert_eq!(a.expires_at, Timestamp::from_micros(301_000_000));
        assert_eq!(parse(&a.bytes).unwrap(), a.bytes);
        assert!(parse(&a.bytes[..31]).is_err());
        assert!(parse(&[]).is_err());
    }
}
