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
//! the subject.
//!
//! The payments ledger is keyed by the transit account, so a subject's must never
//! change. It is therefore derived once, at enrolment, under the current pseudonym key,
//! and *stored* with that key's id (`subjects.transit_account`, `pseudonym_key_id`);
//! it is read back, never re-derived, so rotating the key (keys/README.md) changes the
//! pseudonyms of subjects enrolled afterwards only. Subjects stored before pseudonyms
//! were stored have none; theirs is derived under the key of their stored id (1), which
//! must stay configured (as a previous key) for them. Services that need the value
//! (payments, the verifier) ask GetTransitAccount; nobody else gets it (security
//! finding 8).
//!
//! (Other scenes' pseudonyms, for the verifier, will need the same treatment.)

use std::fmt;

use ring::hmac;

use crate::hmac_keys::{HmacKeys, KeyId};
use crate::ids::SubjectId;

const CONTEXT: &[u8] = b"citypass/v1/scene-pseudonym";
/// The scene name of the transit account.
pub const TRANSIT: &str = "transit";

/// A pseudonym with the id of the key that derived it: what a subject row stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pseudonym {
    pub key_id: KeyId,
    /// 32 lower-case hex characters.
    pub value: String,
}

/// Derives scene pseudonyms under the pseudonym keys.
pub struct Pseudonyms(HmacKeys);

impl fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pseudonyms").field(&self.0).finish()
    }
}

impl Pseudonyms {
    /// Pseudonyms under `keys` (each at least 32 bytes; checked by the configuration).
    pub fn new(keys: HmacKeys) -> Self {
        Pseudonyms(keys)
    }

    /// The subject's pseudonym in `scene` under the current key.
    pub fn derive(&self, scene: &str, subject: &SubjectId) -> Pseudonym {
        let (key_id, key) = self.0.current();
        Pseudonym {
            key_id,
            value: derive_under(key, scene, subject),
        }
    }

    /// The subject's pseudonym in `scene` under the key `key_id`, if it is configured.
    pub fn derive_under(&self, key_id: KeyId, scene: &str, subject: &SubjectId) -> Option<String> {
        self.0
            .get(key_id)
            .map(|key| derive_under(key, scene, subject))
    }

    /// A new subject's transit account (under the current key), to store.
    pub fn transit_account(&self, subject: &SubjectId) -> Pseudonym {
        self.derive(TRANSIT, subject)
    }
}

fn derive_under(key: &hmac::Key, scene: &str, subject: &SubjectId) -> String {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(CONTEXT);
    ctx.update(&u32::try_from(scene.len()).unwrap_or(u32::MAX).to_be_bytes());
    ctx.update(scene.as_bytes());
    ctx.update(subject.as_bytes());
    hex::encode(&ctx.sign().as_ref()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_differ_by_scene_key_and_subject() {
        let p = Pseudonyms::new(HmacKeys::single(&[7; 32]));
        let a = SubjectId::from_bytes([1; 16]);
        let b = SubjectId::from_bytes([2; 16]);
        let transit = p.transit_account(&a);
        assert_eq!(transit.key_id, KeyId::FIRST);
        assert_eq!(transit.value.len(), 32);
        assert_eq!(transit, p.transit_account(&a));
        assert_ne!(transit, p.transit_account(&b));
        assert_ne!(transit, p.derive("hospital", &a));
        let other = Pseudonyms::new(HmacKeys::single(&[8; 32]));
        assert_ne!(transit.value, other.transit_account(&a).value);
        assert_ne!(transit.value, a.to_string());
    }

    #[test]
    fn a_rotated_key_still_derives_under_the_old_one() {
        let a = SubjectId::from_bytes([1; 16]);
        let old = Pseudonyms::new(HmacKeys::single(&[7; 32])).transit_account(&a);
        let two = KeyId::new(2).unwrap();
        let rotated =
            Pseudonyms::new(HmacKeys::new((two, &[8; 32]), &[(KeyId::FIRST, &[7; 32])]).unwrap());
        assert_eq!(rotated.transit_account(&a).key_id, two);
        assert_eq!(
            rotated.derive_under(KeyId::FIRST, TRANSIT, &a),
            Some(old.value)
        );
        assert_eq!(
            rotated.derive_under(KeyId::new(3).unwrap(), TRANSIT, &a),
            None
        );
    }
}
