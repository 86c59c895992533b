//! HMAC keys with ids, so that a key can be rotated while what it made stays usable.
//!
//! Identity's document key (the keyed hash of a document number), its pseudonym key
//! (the scene pseudonyms, [`crate::scene`]) and the government key
//! ([`crate::government`]) are HMAC keys, as are the verifier's scene keys. Each is
//! configured as a *current* key with an id, plus the *previous* keys still needed
//! during a rotation. Records carry the id of the key that made them
//! (`subjects.document_key_id`, `subjects.pseudonym_key_id`,
//! `subjects.government_key_id`): new records use the current key; lookups try every
//! configured key; a key can leave the configuration once no record needs it
//! (keys/README.md, "The identity service's HMAC keys").
//!
//! Ids are small positive numbers (1 to 32767, a PostgreSQL SMALLINT); rows written
//! before ids existed carry id 1, which is therefore the id of the key configured then.

use std::fmt;

use ring::hmac;

/// A key configuration that cannot be used (the message names what is wrong, never
/// key bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// The id of one HMAC key: 1 to 32767.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(i16);

impl KeyId {
    /// The id of the keys configured before ids existed (and the default).
    pub const FIRST: KeyId = KeyId(1);

    /// The id `n`, if it is one (1 to 32767).
    pub fn new(n: u16) -> Option<KeyId> {
        i16::try_from(n).ok().filter(|n| *n >= 1).map(KeyId)
    }

    /// The id as stored (a SMALLINT).
    pub fn from_stored(n: i16) -> Option<KeyId> {
        (n >= 1).then_some(KeyId(n))
    }

    /// The stored form.
    pub fn stored(self) -> i16 {
        self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The keys of one purpose: the current key first, then the previous ones.
pub struct HmacKeys {
    /// Never empty; `keys[0]` is the current key.
    keys: Vec<(KeyId, hmac::Key)>,
}

impl fmt::Debug for HmacKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<KeyId> = self.ids().collect();
        f.debug_struct("HmacKeys")
            .field("ids", &ids)
            .finish_non_exhaustive()
    }
}

impl HmacKeys {
    /// The current key and the previous ones (each at least 32 bytes, checked by the
    /// configuration). Ids must differ.
    pub fn new(current: (KeyId, &[u8]), previous: &[(KeyId, &[u8])]) -> Result<Self, KeyError> {
        let mut keys = Vec::with_capacity(1 + previous.len());
        for (id, bytes) in std::iter::once(&current).chain(previous) {
            if keys.iter().any(|(seen, _)| seen == id) {
                return Err(KeyError(format!("key id {id} is configured twice")));
            }
            keys.push((*id, hmac::Key::new(hmac::HMAC_SHA256, bytes)));
        }
        Ok(HmacKeys { keys })
    }

    /// A single key with id 1 (tests, tools).
    pub fn single(key: &[u8]) -> Self {
        HmacKeys {
            keys: vec![(KeyId::FIRST, hmac::Key::new(hmac::HMAC_SHA256, key))],
        }
    }

    /// The key new records use, with its id.
    pub fn current(&self) -> (KeyId, &hmac::Key) {
        let (id, key) = &self.keys[0];
        (*id, key)
    }

    /// The key with this id, if configured.
    pub fn get(&self, id: KeyId) -> Option<&hmac::Key> {
        self.keys.iter().find(|(k, _)| *k == id).map(|(_, key)| key)
    }

    /// Every configured key, the current one first.
    pub fn all(&self) -> impl Iterator<Item = (KeyId, &hmac::Key)> {
        self.keys.iter().map(|(id, key)| (*id, key))
    }

    /// Every configured id, the current one first.
    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.iter().map(|(id, _)| *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_smallints_and_unique() {
        assert_eq!(KeyId::new(0), None);
        assert_eq!(KeyId::new(32_768), None);
        assert_eq!(KeyId::new(1), Some(KeyId::FIRST));
        assert_eq!(KeyId::from_stored(-1), None);
        let two = KeyId::new(2).unwrap();
        let keys = HmacKeys::new((two, &[2; 32]), &[(KeyId::FIRST, &[1; 32])]).unwrap();
        assert_eq!(keys.current().0, two);
        assert_eq!(keys.ids().collect::<Vec<_>>(), vec![two, KeyId::FIRST]);
        assert!(keys.get(KeyId::FIRST).is_some());
        assert!(keys.get(KeyId::new(3).unwrap()).is_none());
        assert!(HmacKeys::new((two, &[2; 32]), &[(two, &[1; 32])]).is_err());
        assert!(
            !format!("{keys:?}").contains("[2, 2"),
            "no key bytes in Debug"
        );
    }
}
