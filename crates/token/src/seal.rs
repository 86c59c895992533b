//! Sealing the subject id so that codes are unlinkable.
//!
//! `sub` in a code is the subject id encrypted (ChaCha20-Poly1305) under the
//! verifier's subject key. The nonce is derived from the code's `cti` (or the
//! certificate's serial), which is fresh random bytes for every code, so two codes for
//! one subject share no ciphertext byte; nothing random needs to travel beside it.
//! The AAD binds the sealed value to its object kind, so a sealed subject cannot be
//! lifted from a device certificate into an online token.

use ring::aead;

use crate::TokenError;

/// The symmetric key that seals and opens subject ids (32 bytes).
pub struct SubjectKey(aead::LessSafeKey);

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectKey(..)")
    }
}

/// Domain separation for the nonce derivation.
const NONCE_DOMAIN: &[u8] = b"citypass/v1/sub-nonce";

impl SubjectKey {
    /// The key from 32 secret bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TokenError> {
        let unbound = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, bytes)
            .map_err(|_| TokenError::InvalidKey("subject key must be 32 bytes"))?;
        Ok(SubjectKey(aead::LessSafeKey::new(unbound)))
    }

    /// Seals `subject` for an object of kind `typ` whose unique id is `unique`.
    pub fn seal(&self, subject: &[u8], unique: &[u8], typ: &str) -> Result<Vec<u8>, TokenError> {
        let mut sealed = subject.to_vec();
        self.0
            .seal_in_place_append_tag(nonce(unique, typ), aead::Aad::from(typ), &mut sealed)
            .map_err(|_| TokenError::Crypto)?;
        Ok(sealed)
    }

    /// Opens a sealed subject; fails if the key, `unique`, `typ` or bytes differ.
    pub fn open(&self, sealed: &[u8], unique: &[u8], typ: &str) -> Result<Vec<u8>, TokenError> {
        let mut buf = sealed.to_vec();
        let plain = self
            .0
            .open_in_place(nonce(unique, typ), aead::Aad::from(typ), &mut buf)
            .map_err(|_| TokenError::Unseal)?;
        let len = plain.len();
        buf.truncate(len);
        Ok(buf)
    }
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
        assert_ne!(a, b);
        assert_eq!(key.open(&a, &[1; 16], "cp1").unwrap(), subject);
        assert_eq!(key.open(&a, &[2; 16], "cp1"), Err(TokenError::Unseal));
        assert_eq!(key.open(&a, &[1; 16], "cpdc"), Err(TokenError::Unseal));
        let other = SubjectKey::from_bytes(&[8; 32]).unwrap();
        assert_eq!(other.open(&a, &[1; 16], "cp1"), Err(TokenError::Unseal));
    }
}
