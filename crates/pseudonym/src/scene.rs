//! Scene pseudonyms: what a subject is known by in one scene, unlinkable to the
//! subject id and to its other scenes without the key.
//!
//! ```text
//! pseudonym(scene) = hex( HMAC-SHA256(key, "citypass/v1/scene-pseudonym"
//!                                        || u32be(len(scene)) || scene
//!                                        || subject_id_bytes[16])[..16] )
//! ```
//!
//! 32 lower-case hex characters, with `scene` one of [`Scope`]'s names: `transit`
//! (the transit account, the payments ledger's key, which identity derives once at
//! enrolment and stores), `hospital` (the patient key every hospital of the city
//! shares) and `venue:<venue id>` (one per scenic venue, so two venues cannot link
//! their visitors). The scene name is length-prefixed, so no venue id can make one
//! scene's input another's.
//!
//! The transit account must never change for an enrolled subject (the ledger is keyed
//! by it), so identity stores it with its key id and never re-derives it under a newer
//! key; the verifier derives hospital and venue pseudonyms per scan under its current
//! key (their consumers re-key on a rotation).

use std::fmt;

use citypass_token::SubjectId;
use ring::hmac;

use crate::hmac_keys::{HmacKeys, KeyId};

/// Domain separation of scene pseudonyms.
pub const SCENE_CONTEXT: &[u8] = b"citypass/v1/scene-pseudonym";

/// Which scene a pseudonym is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// The transit account (`transit`).
    Transit,
    /// The hospital patient key (`hospital`).
    Hospital,
    /// One scenic venue (`venue:<id>`, the gate registry's `venue`).
    Venue(&'a str),
    /// The verifier's face-pass mark at one place (`face-pass-mark:<place>`, the place
    /// `station:<id>` or `venue:<id>`): never shown to anyone, it keys the replay
    /// store's "this rider just passed here" entry without putting the subject there.
    FacePassMark(&'a str),
}

impl Scope<'_> {
    /// The scene name hashed into the pseudonym.
    pub fn name(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Scope::Transit => "transit".into(),
            Scope::Hospital => "hospital".into(),
            Scope::Venue(id) => format!("venue:{id}").into(),
            Scope::FacePassMark(gate) => format!("face-pass-mark:{gate}").into(),
        }
    }
}

/// A pseudonym with the id of the key that derived it: what a record stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pseudonym {
    pub key_id: KeyId,
    /// Lower-case hex.
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

    /// The subject's pseudonym in `scope` under the current key.
    pub fn derive(&self, scope: Scope<'_>, subject: &SubjectId) -> Pseudonym {
        let (key_id, key) = self.0.current();
        Pseudonym {
            key_id,
            value: derive_under(key, &scope.name(), subject),
        }
    }

    /// The subject's pseudonym in `scope` under the key `key_id`, if it is configured.
    pub fn derive_under(
        &self,
        key_id: KeyId,
        scope: Scope<'_>,
        subject: &SubjectId,
    ) -> Option<String> {
        self.0
            .get(key_id)
            .map(|key| derive_under(key, &scope.name(), subject))
    }

    /// A new subject's transit account (under the current key), to store.
    pub fn transit_account(&self, subject: &SubjectId) -> Pseudonym {
        self.derive(Scope::Transit, subject)
    }
}

fn derive_under(key: &hmac::Key, scene: &str, subject: &SubjectId) -> String {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(SCENE_CONTEXT);
    ctx.update(&u32::try_from(scene.len()).unwrap_or(u32::MAX).to_be_bytes());
    ctx.update(scene.as_bytes());
    ctx.update(subject.as_bytes());
    hex::encode(&ctx.sign().as_ref()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> SubjectId {
        let mut bytes = [0u8; 16];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = i as u8;
        }
        SubjectId::from_bytes(bytes)
    }

    /// Fixed vectors, computed outside this code (Python's `hmac` over the documented
    /// input). The transit vector guards every transit account already stored.
    #[test]
    fn fixed_vectors() {
        let p = Pseudonyms::new(HmacKeys::single(&[7; 32]));
        let s = subject();
        assert_eq!(
            p.derive(Scope::Transit, &s).value,
            "ea32b5c986ff110ece0728d203bda638"
        );
        assert_eq!(
            p.derive(Scope::Hospital, &s).value,
            "dc2c786a85c487560cf2a7a03d5588b5"
        );
        assert_eq!(
            p.derive(Scope::Venue("west-lake"), &s).value,
            "f1f175f466a2bfb006806cfce688d7d4"
        );
        let dev = Pseudonyms::new(HmacKeys::single(b"citypass-scene-pseudonym-key-NOT-SECRET"));
        assert_eq!(
            dev.transit_account(&s).value,
            "27ed7c6e9a2a6f4d2dd3b43d4d70bb92"
        );
    }

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
        assert_ne!(transit, p.derive(Scope::Hospital, &a));
        assert_ne!(
            p.derive(Scope::Venue("a"), &a),
            p.derive(Scope::Venue("b"), &a)
        );
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
            rotated.derive_under(KeyId::FIRST, Scope::Transit, &a),
            Some(old.value)
        );
        assert_eq!(
            rotated.derive_under(KeyId::new(3).unwrap(), Scope::Transit, &a),
            None
        );
    }
}
