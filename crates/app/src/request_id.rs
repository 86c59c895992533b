//! Request ids for calls that an app retries (AIP-155).
//!
//! Enrol is not idempotent by itself: a retry after a lost answer would be a second
//! enrolment attempt, refused as a duplicate, and the citizen would never see the
//! enrolment secret of the first. With a request id the app makes once per enrolment
//! and sends with every try, the identity service returns the first answer to a retry.

use citypass_token::{SecureRandom, SystemRandom};

/// A fresh random UUID (version 4), the form the identity service accepts; `None` if
/// the system has no randomness to give.
pub fn new_request_id(rng: &SystemRandom) -> Option<String> {
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes).ok()?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_fresh_version_4_uuids() {
        let rng = SystemRandom::new();
        let a = new_request_id(&rng).unwrap();
        let b = new_request_id(&rng).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        for (i, c) in a.chars().enumerate() {
            match i {
                8 | 13 | 18 | 23 => assert_eq!(c, '-'),
                14 => assert_eq!(c, '4', "version 4"),
                19 => assert!("89ab".contains(c), "RFC 4122 variant"),
                _ => assert!(c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            }
        }
    }
}
