//! Sealing the subject id so that codes are unlinkable.
//!
//! `sub` in a code is the subject id encrypted (ChaCha20-Poly1305) under the
//! issuer's subject key. The nonce is derived from the code's `cti` (or the
//! certificate's serial), which is fresh random bytes for every code, so two codes for
//! one subject share no ciphertext byte; nothing random needs to travel beside it.
//!
//! # Layout (version 1)
//!
//! ```text
//! sealed = version (0x01) ‖ key id (1 byte) ‖ ChaCha20-Poly1305(subject) ‖ tag
//! AAD    = typ ‖ version ‖ key id
//! nonce  = SHA-256("citypass/v1/sub-nonce" ‖ typ ‖ cti-or-serial)[..12]
//! ```
//!
//! The key id names the subject key that sealed the value, so that an old and a new
//! key work side by side while the sealing key is rotated: new seals use the current
//! key, and [`SubjectKeys`] opens each value with the key its id names, the current
//! one or a retired one still kept (keys/README.md, "Rotating the subject-sealing
//! key"). The id is a small counter, not a secret: every code sealed while one key was
//! current carries the same id, as it carries the same `kid` and `iss`. The AAD binds
//! the sealed value to its object kind, so a sealed subject cannot be lifted from a
//! device certificate into an online token, and to its header, so the id cannot be
//! changed without the value failing to open.
//!
//! Values sealed before the header existed (no version byte, ids unknown) do not open:
//! nothing opened them in service, and the longest of them (a device certificate)
//! lived a day.

use ring::aead;

use crate::TokenError;

/// The layout version this crate writes and reads: the first byte of a sealed value.
pub const SEAL_VERSION: u8 = 1;

/// Version byte and key id before the ciphertext.
const HEADER_LEN: usize = 2;

/// The symmetric key that seals and opens subject ids (32 bytes), with its key id.
pub struct SubjectKey {
    id: u8,
    key: aead::LessSafeKey,
}

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SubjectKey(id {}, ..)", self.id)
    }
}

/// Domain separation for the nonce derivation.
const NONCE_DOMAIN: &[u8] = b"citypass/v1/sub-nonce";

impl SubjectKey {
    /// The key from 32 secret bytes, with key id 0 (a ring's first key).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TokenError> {
        Self::with_id(0, bytes)
    }

    /// The key from 32 secret bytes, with key id `id`.
    pub fn with_id(id: u8, bytes: &[u8]) -> Result<Self, TokenError> {
        let unbound = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, bytes)
            .map_err(|_| TokenError::InvalidKey("subject key must be 32 bytes"))?;
        Ok(SubjectKey {
            id,
            key: aead::LessSafeKey::new(unbound),
        })
    }

    /// The key id written into everything this key seals.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// Seals `subject` for an object of kind `typ` whose unique id is `unique`.
    pub fn seal(&self, subject: &[u8], unique: &[u8], typ: &str) -> Result<Vec<u8>, TokenError> {
        let header = [SEAL_VERSION, self.id];
        let mut body = subject.to_vec();
        self.key
            .seal_in_place_append_tag(
                nonce(unique, typ),
                aead::Aad::from(aad(typ, header)),
                &mut body,
            )
            .map_err(|_| TokenError::Crypto)?;
        let mut sealed = Vec::with_capacity(HEADER_LEN + body.len());
        sealed.extend_from_slice(&header);
        sealed.extend_from_slice(&body);
        Ok(sealed)
    }

    /// Opens a sealed subject; fails if the key id is not this key's
    /// ([`TokenError::UnknownSubjectKey`]), or if the key, `unique`, `typ` or bytes
    /// differ ([`TokenError::Unseal`]).
    pub fn open(&self, sealed: &[u8], unique: &[u8], typ: &str) -> Result<Vec<u8>, TokenError> {
        let id = sealed_key_id(sealed)?;
        if id != self.id {
            return Err(TokenError::UnknownSubjectKey { id });
        }
        self.open_body(sealed, unique, typ)
    }

    /// Opens a value whose header was already checked and names this key.
    fn open_body(&self, sealed: &[u8], unique: &[u8], typ: &str) -> Result<Vec<u8>, TokenError> {
        let header = [SEAL_VERSION, self.id];
        let mut buf = sealed[HEADER_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(
                nonce(unique, typ),
                aead::Aad::from(aad(typ, header)),
                &mut buf,
            )
            .map_err(|_| TokenError::Unseal)?;
        let len = plain.len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// The id of the key that sealed `sealed`, read from its header (not authenticated
/// until the value opens). Refuses a value too short to hold a header and a tag
/// ([`TokenError::Unseal`]) and an unknown layout version
/// ([`TokenError::UnsupportedSealVersion`]).
pub fn sealed_key_id(sealed: &[u8]) -> Result<u8, TokenError> {
    if sealed.len() < HEADER_LEN + aead::CHACHA20_POLY1305.tag_len() {
        return Err(TokenError::Unseal);
    }
    if sealed[0] != SEAL_VERSION {
        return Err(TokenError::UnsupportedSealVersion { version: sealed[0] });
    }
    Ok(sealed[1])
}

/// Opens sealed subjects: one [`SubjectKey`], or a ring of them ([`SubjectKeys`]) that
/// picks the key by the id in the sealed value.
pub trait SubjectOpener {
    /// Opens `sealed` for an object of kind `typ` whose unique id is `unique`.
    fn open_subject(&self, sealed: &[u8], unique: &[u8], typ: &str) -> Result<Vec<u8>, TokenError>;
}

impl SubjectOpener for SubjectKey {
    fn open_subject(&self, sealed: &[u8], unique: &[u8], typ: &str) -> Result<Vec<u8>, TokenError> {
        self.open(sealed, unique, typ)
    }
}

/// The subject keys a verifier opens with: the key sealing now, a staged next key,
/// and retired keys kept while what they sealed may still be valid. Ids are unique.
pub struct SubjectKeys {
    keys: Vec<SubjectKey>,
}

impl std::fmt::Debug for SubjectKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(SubjectKey::id))
            .finish()
    }
}

impl SubjectKeys {
    /// The keys; two with one id are refused.
    pub fn new(keys: Vec<SubjectKey>) -> Result<Self, TokenError> {
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].iter().any(|k| k.id == key.id) {
                return Err(TokenError::InvalidKeySet(format!(
                    "two subject keys with id {}",
                    key.id
                )));
            }
        }
        Ok(SubjectKeys { keys })
    }

    /// The key with `id`, if held.
    pub fn get(&self, id: u8) -> Option<&SubjectKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// The ids held, in the ring's order.
    pub fn ids(&self) -> Vec<u8> {
        self.keys.iter().map(SubjectKey::id).collect()
    }

    /// Opens `sealed` with the key its header names; a key id not held is refused with
    /// [`TokenError::UnknownSubjectKey`].
    pub fn open(&self, sealed: &[u8], unique: &[u8], typ: &str) -> Result<Vec<u8>, TokenError> {
        let id = sealed_key_id(sealed)?;
        self.get(id)
            .ok_or(TokenError::UnknownSubjectKey { id })?
            .open_body(sealed, unique, typ)
    }
}

impl SubjectOpener for SubjectKeys {
    fn open_subject(&self, sealed: &[u8], unique: &[u8], typ: &str) -> Result<Vec<u8>, TokenError> {
        self.open(sealed, unique, typ)
    }
}

fn aad(typ: &str, header: [u8; HEADER_LEN]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(typ.len() + HEADER_LEN);
    aad.extend_from_slice(typ.as_bytes());
    aad.extend_from_slice(&header);
    aad
}

fn nonce(unique: &[u8], typ: &str) -> aead::Nonce {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(NONCE_DOMAIN);
    ctx.update(typ.as_bytes());
    ctx.update(unique);
    let digest = ctx.finish();
    let mut n = [0u8; aead::NONCE_LEN];
    n.copy_from_slice(&digest.as_ref()[..aead::NONCE_LEN]);
    aead::Nonce::assume_unique_for_key(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_unlinkably_and_opens_only_in_context() {
        let key = SubjectKey::from_bytes(&[7; 32]).unwrap();
        let subject = [42u8; 16];
        let a = key.seal(&subject, &[1; 16], "cp1").unwrap();
        let b = key.seal(&subject, &[2; 16], "cp1").unwrap();
        assert_eq!(a[..HEADER_LEN], b[..HEADER_LEN], "the header is the key's");
        assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
        assert_eq!(key.open(&a, &[1; 16], "cp1").unwrap(), subject);
        assert_eq!(key.open(&a, &[2; 16], "cp1"), Err(TokenError::Unseal));
        assert_eq!(key.open(&a, &[1; 16], "cpdc"), Err(TokenError::Unseal));
        let other = SubjectKey::from_bytes(&[8; 32]).unwrap();
        assert_eq!(other.open(&a, &[1; 16], "cp1"), Err(TokenError::Unseal));
    }

    #[test]
    fn the_header_names_the_key_and_is_bound_to_the_value() {
        let old = SubjectKey::with_id(1, &[7; 32]).unwrap();
        let new = SubjectKey::with_id(2, &[8; 32]).unwrap();
        let subject = [42u8; 16];
        let sealed = old.seal(&subject, &[1; 16], "cp1").unwrap();
        assert_eq!(sealed[..2], [SEAL_VERSION, 1]);
        assert_eq!(sealed.len(), 2 + 16 + 16);
        assert_eq!(sealed_key_id(&sealed), Ok(1));

        // One key opens only its own id.
        assert_eq!(
            new.open(&sealed, &[1; 16], "cp1"),
            Err(TokenError::UnknownSubjectKey { id: 1 })
        );
        // The ring picks by id; an id it does not hold is refused as such.
        let ring = SubjectKeys::new(vec![new, old]).unwrap();
        assert_eq!(ring.open(&sealed, &[1; 16], "cp1").unwrap(), subject);
        let mut unknown = sealed.clone();
        unknown[1] = 9;
        assert_eq!(
            ring.open(&unknown, &[1; 16], "cp1"),
            Err(TokenError::UnknownSubjectKey { id: 9 })
        );
        // Relabelling the value with another held key's id does not open it.
        let mut relabelled = sealed.clone();
        relabelled[1] = 2;
        assert_eq!(
            ring.open(&relabelled, &[1; 16], "cp1"),
            Err(TokenError::Unseal)
        );
        let mut future = sealed.clone();
        future[0] = 2;
        assert_eq!(
            ring.open(&future, &[1; 16], "cp1"),
            Err(TokenError::UnsupportedSealVersion { version: 2 })
        );
        assert_eq!(
            ring.open(&sealed[..17], &[1; 16], "cp1"),
            Err(TokenError::Unseal)
        );
        assert!(
            SubjectKeys::new(vec![
                SubjectKey::with_id(3, &[1; 32]).unwrap(),
                SubjectKey::with_id(3, &[2; 32]).unwrap(),
            ])
            .is_err()
        );
    }
}
