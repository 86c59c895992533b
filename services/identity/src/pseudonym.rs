//! Scene pseudonyms: the `transit_account` a subject is known by in transit.
//!
//! The payments ledger is keyed by a transit pseudonym, never by the subject id, and
//! the verifier returns the same value at transit gates; other scenes get unrelated
//! values. A pseudonym is a keyed hash of the subject id under a secret shared by the
//! services that must agree on it (identity and the verifier):
//!
//! ```text
//! pseudonym(scene) = hex( HMAC-SHA256(key, "citypass/v1/scene-pseudonym"
//!                                        || u32be(len(scene)) || scene
//!                                        || subject_id_bytes[16])[..16] )
//! ```
//!
//! with `scene = "transit"` for the transit account: 32 lower-case hex characters.
//! Without the key, pseudonyms of different scenes cannot be linked to each other or to
//! the subject. The key can never be rotated without re-keying the ledger.
//!
//! (The verifier needs this exact function; it belongs in a shared crate once the
//! verifier is built, so that it is written once.)

use std::fmt;

use ring::hmac;

use crate::ids::SubjectId;

const CONTEXT: &[u8] = b"citypass/v1/scene-pseudonym";
/// The scene name of the transit account.
pub const TRANSIT: &str = "transit";

/// Derives scene pseudonyms under the shared pseudonym key.
pub struct Pseudonyms(hmac::Key);

impl fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonyms(..)")
    }
}

impl Pseudonyms {
    /// Pseudonyms under `key` (at least 32 bytes; checked by the configuration).
    pub fn new(key: &[u8]) -> Self {
        Pseudonyms(hmac::Key::new(hmac::HMAC_SHA256, key))
    }

    /// The subject's pseudonym in `scene`.
    pub fn derive(&self, scene: &str, subject: &SubjectId) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(CONTEXT);
        ctx.update(&u32::try_from(scene.len()).unwrap_or(u32::MAX).to_be_bytes());
        ctx.update(scene.as_bytes());
        ctx.update(subject.as_bytes());
        hex::encode(&ctx.sign().as_ref()[..16])
    }

    /// The subject's transit account.
    pub fn transit_account(&self, subject: &SubjectId) -> String {
        self.derive(TRANSIT, subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_differ_by_scene_key_and_subject() {
        let p = Pseudonyms::new(&[7; 32]);
        let a = SubjectId::from_bytes([1; 16]);
        let b = SubjectId::from_bytes([2; 16]);
        let transit = p.transit_account(&a);
        assert_eq!(transit.len(), 32);
        assert_eq!(transit, p.transit_account(&a));
        assert_ne!(transit, p.transit_account(&b));
        assert_ne!(transit, p.derive("hospital", &a));
        assert_ne!(transit, Pseudonyms::new(&[8; 32]).transit_account(&a));
        assert_ne!(transit, a.to_string());
    }
}
