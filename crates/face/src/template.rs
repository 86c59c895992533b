//! A face template at rest and on its way to the verifier: an [`Embedding`] sealed with
//! AES-256-GCM under a template key that has an id.
//!
//! Identity seals a template when it is enrolled and stores only the sealed bytes; the
//! verifier, which holds the same keys (mounted like its other keys), opens them to
//! build its in-memory gallery. Both use this one module, so they cannot disagree on
//! the layout:
//!
//! - sealed bytes: a 12-byte random nonce, then the ciphertext of the embedding's
//!   little-endian bytes ([`Embedding::to_le_bytes`]), then the 16-byte tag;
//! - associated data: a context string (with the layout's version), the key id, the
//!   channel the template was enrolled through ([`TemplateChannel`]) and the subject id, so that
//!   a sealed template copied onto another subject's row does not open, and a row
//!   relabelled from the app to the counter (which the counters' 1:1 check trusts) does
//!   not open either: changing any of them needs the key, not just the database;
//! - the key id travels beside the bytes ([`SealedTemplate::key_id`]): keys rotate by
//!   adding a new current key and keeping the old ones until every row was re-sealed
//!   (or withdrawn); the current key seals, every listed key opens.
//!
//! Each configured key is 32 or more secret bytes (hex in a key file, like every other
//! key); the AES key is SHA-256 of a context string and those bytes, so a key file's
//! format is the same for every key of the system. Nothing here prints a key, a
//! template or an embedding: `Debug` shows ids and lengths only.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use thiserror::Error;

use crate::embedding::{DIMENSION, Embedding};

/// The template key of development (identity's and the verifier's default there; each
/// refuses it in production). Not secret.
pub const DEV_TEMPLATE_KEY: &str = "dev:citypass-face-template-key-NOT-SECRET-development";

/// Shortest key material accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// Length of a sealed template: nonce, 4 bytes per component, tag.
pub const SEALED_LEN: usize = NONCE_LEN + 4 * DIMENSION + TAG_LEN;

const TAG_LEN: usize = 16;
const KEY_CONTEXT: &[u8] = b"citypass face template key v1\0";
const AAD_CONTEXT: &[u8] = b"citypass face template v2\0";

/// Why a template could not be sealed or opened. Says nothing of its contents.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TemplateError {
    /// A key id of 0, or one listed twice.
    #[error("template key ids must be 1 to 32767 and distinct")]
    KeyId,
    /// Key material shorter than [`MIN_KEY_BYTES`].
    #[error("a template key must be at least {MIN_KEY_BYTES} bytes")]
    KeyTooShort,
    /// The template names a key id that is not configured.
    #[error("template key {0} is not configured")]
    UnknownKey(u16),
    /// The bytes do not open under the key for this subject: tampered, truncated, or
    /// moved from another subject.
    #[error("the sealed template does not open (tampered, or not this subject's)")]
    Open,
    /// The system random number generator failed.
    #[error("system randomness failed")]
    Randomness,
}

/// Where a template was enrolled, bound into its sealing: the verifier's counter check
/// trusts only counter-enrolled templates (a phone's holder can enrol any face), so the
/// label must not change without the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemplateChannel {
    /// From the citizen's app (device-signed).
    App,
    /// At a counter, face to face with the citizen's document.
    Counter,
}

impl TemplateChannel {
    fn byte(self) -> u8 {
        match self {
            TemplateChannel::App => 1,
            TemplateChannel::Counter => 2,
        }
    }
}

/// A sealed template and the id of the key that sealed it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedTemplate {
    /// The sealing key's id.
    pub key_id: u16,
    /// Nonce, ciphertext and tag ([`SEALED_LEN`] bytes for a well-formed one).
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for SealedTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SealedTemplate(key {}, {} bytes)",
            self.key_id,
            self.bytes.len()
        )
    }
}

/// The template keys: the current one seals, every one opens.
pub struct TemplateKeys {
    current: u16,
    keys: Vec<(u16, LessSafeKey)>,
    random: SystemRandom,
}

impl std::fmt::Debug for TemplateKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateKeys")
            .field("current", &self.current)
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish()
    }
}

impl TemplateKeys {
    /// The current key (id, material) and earlier ones still needed to open rows.
    pub fn new(current: (u16, &[u8]), previous: &[(u16, &[u8])]) -> Result<Self, TemplateError> {
        let mut keys = Vec::with_capacity(previous.len() + 1);
        for &(id, material) in std::iter::once(&current).chain(previous) {
            if id == 0 || id > 32767 || keys.iter().any(|(k, _)| *k == id) {
                return Err(TemplateError::KeyId);
            }
            if material.len() < MIN_KEY_BYTES {
                return Err(TemplateError::KeyTooShort);
            }
            let mut input = Vec::with_capacity(KEY_CONTEXT.len() + material.len());
            input.extend_from_slice(KEY_CONTEXT);
            input.extend_from_slice(material);
            let digest = ring::digest::digest(&ring::digest::SHA256, &input);
            let key = UnboundKey::new(&AES_256_GCM, digest.as_ref())
                .map_err(|_| TemplateError::KeyTooShort)?;
            keys.push((id, LessSafeKey::new(key)));
        }
        Ok(TemplateKeys {
            current: current.0,
            keys,
            random: SystemRandom::new(),
        })
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> u16 {
        self.current
    }

    /// Every configured key id, the current one first.
    pub fn ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.keys.iter().map(|(id, _)| *id)
    }

    /// Seals `embedding` for `subject` (its id as the API writes it), enrolled through
    /// `channel`, under the current key, with a fresh random nonce.
    pub fn seal(
        &self,
        subject: &str,
        channel: TemplateChannel,
        embedding: &Embedding,
    ) -> Result<SealedTemplate, TemplateError> {
        let key = self.key(self.current)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| TemplateError::Randomness)?;
        let mut in_out = embedding.to_le_bytes();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(self.current, channel, subject)),
            &mut in_out,
        )
        .map_err(|_| TemplateError::Randomness)?;
        let mut bytes = Vec::with_capacity(NONCE_LEN + in_out.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&in_out);
        Ok(SealedTemplate {
            key_id: self.current,
            bytes,
        })
    }

    /// Opens a template sealed for `subject` enrolled through `channel`; the embedding
    /// inside is checked as any embedding is ([`Embedding::from_le_bytes`]).
    pub fn open(
        &self,
        subject: &str,
        channel: TemplateChannel,
        sealed: &SealedTemplate,
    ) -> Result<Embedding, TemplateError> {
        let key = self.key(sealed.key_id)?;
        if sealed.bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(TemplateError::Open);
        }
        let (nonce, body) = sealed.bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| TemplateError::Open)?;
        let mut in_out = body.to_vec();
        let plain = key
            .open_in_place(
                nonce,
                Aad::from(aad(sealed.key_id, channel, subject)),
                &mut in_out,
            )
            .map_err(|_| TemplateError::Open)?;
        Embedding::from_le_bytes(plain).map_err(|_| TemplateError::Open)
    }

    fn key(&self, id: u16) -> Result<&LessSafeKey, TemplateError> {
        self.keys
            .iter()
            .find(|(k, _)| *k == id)
            .map(|(_, key)| key)
            .ok_or(TemplateError::UnknownKey(id))
    }
}

/// Context (with the layout's version), key id, channel, subject: fixed-length fields
/// first, so no two different labels give the same bytes.
fn aad(key_id: u16, channel: TemplateChannel, subject: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_CONTEXT.len() + 3 + subject.len());
    aad.extend_from_slice(AAD_CONTEXT);
    aad.extend_from_slice(&key_id.to_be_bytes());
    aad.push(channel.byte());
    aad.extend_from_slice(subject.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBJECT: &str = "00112233445566778899aabbccddeeff";
    const OTHER: &str = "ffeeddccbbaa99887766554433221100";

    #[test]
    fn a_sealed_template_opens_for_its_subject_only() {
        let keys = TemplateKeys::new((1, &[7; 32]), &[]).unwrap();
        let e = Embedding::sample(1);
        let sealed = keys.seal(SUBJECT, TemplateChannel::Counter, &e).unwrap();
        assert_eq!(sealed.key_id, 1);
        assert_eq!(sealed.bytes.len(), SEALED_LEN);
        assert_eq!(
            keys.open(SUBJECT, TemplateChannel::Counter, &sealed)
                .unwrap(),
            e
        );
        assert_eq!(
            keys.open(OTHER, TemplateChannel::Counter, &sealed),
            Err(TemplateError::Open)
        );
        let mut tampered = sealed.clone();
        tampered.bytes[40] ^= 1;
        assert_eq!(
            keys.open(SUBJECT, TemplateChannel::Counter, &tampered),
            Err(TemplateError::Open)
        );
        let short = SealedTemplate {
            key_id: 1,
            bytes: vec![0; 20],
        };
        assert_eq!(
            keys.open(SUBJECT, TemplateChannel::Counter, &short),
            Err(TemplateError::Open)
        );
    }

    /// SECURITY.md, face finding F4: a row relabelled from the app to the counter (or
    /// given another key id) by someone with the database but not the key does not open.
    #[test]
    fn a_template_opens_only_under_its_channel_and_key_id() {
        let keys = TemplateKeys::new((1, &[7; 32]), &[(2, &[7; 32])]).unwrap();
        let e = Embedding::sample(5);
        let from_app = keys.seal(SUBJECT, TemplateChannel::App, &e).unwrap();
        assert_eq!(
            keys.open(SUBJECT, TemplateChannel::App, &from_app).unwrap(),
            e
        );
        assert_eq!(
            keys.open(SUBJECT, TemplateChannel::Counter, &from_app),
            Err(TemplateError::Open)
        );
        // Key 2 has the same material: only the id in the associated data differs.
        let relabelled = SealedTemplate {
            key_id: 2,
            bytes: from_app.bytes.clone(),
        };
        assert_eq!(
            keys.open(SUBJECT, TemplateChannel::App, &relabelled),
            Err(TemplateError::Open)
        );
    }

    #[test]
    fn the_sealed_bytes_do_not_contain_the_embedding_and_differ_each_time() {
        let keys = TemplateKeys::new((1, &[7; 32]), &[]).unwrap();
        let e = Embedding::sample(2);
        let plain = e.to_le_bytes();
        let a = keys.seal(SUBJECT, TemplateChannel::Counter, &e).unwrap();
        let b = keys.seal(SUBJECT, TemplateChannel::Counter, &e).unwrap();
        assert_ne!(a.bytes, b.bytes, "a fresh nonce each time");
        for window in [&plain[..16], &plain[1000..1016], &plain[2032..]] {
            assert!(!a.bytes.windows(16).any(|w| w == window));
        }
    }

    #[test]
    fn rotation_seals_under_the_new_key_and_still_opens_the_old() {
        let old = TemplateKeys::new((1, &[1; 32]), &[]).unwrap();
        let e = Embedding::sample(3);
        let sealed_old = old.seal(SUBJECT, TemplateChannel::Counter, &e).unwrap();
        let rotated = TemplateKeys::new((2, &[2; 32]), &[(1, &[1; 32])]).unwrap();
        assert_eq!(rotated.ids().collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(
            rotated
                .open(SUBJECT, TemplateChannel::Counter, &sealed_old)
                .unwrap(),
            e
        );
        let sealed_new = rotated.seal(SUBJECT, TemplateChannel::Counter, &e).unwrap();
        assert_eq!(sealed_new.key_id, 2);
        assert_eq!(
            old.open(SUBJECT, TemplateChannel::Counter, &sealed_new),
            Err(TemplateError::UnknownKey(2))
        );
        // The same id with other material does not open it.
        let wrong = TemplateKeys::new((1, &[9; 32]), &[]).unwrap();
        assert_eq!(
            wrong.open(SUBJECT, TemplateChannel::Counter, &sealed_old),
            Err(TemplateError::Open)
        );
    }

    #[test]
    fn bad_keys_are_refused_and_nothing_secret_is_printed() {
        assert_eq!(
            TemplateKeys::new((0, &[1; 32]), &[]).unwrap_err(),
            TemplateError::KeyId
        );
        assert_eq!(
            TemplateKeys::new((1, &[1; 32]), &[(1, &[2; 32])]).unwrap_err(),
            TemplateError::KeyId
        );
        assert_eq!(
            TemplateKeys::new((1, &[1; 31]), &[]).unwrap_err(),
            TemplateError::KeyTooShort
        );
        let keys = TemplateKeys::new((3, &[0xab; 32]), &[]).unwrap();
        let debug = format!("{keys:?}");
        assert!(!debug.contains("171") && !debug.contains("ab"), "{debug}");
        let sealed = keys
            .seal(SUBJECT, TemplateChannel::Counter, &Embedding::sample(4))
            .unwrap();
        assert_eq!(
            format!("{sealed:?}"),
            format!("SealedTemplate(key 3, {SEALED_LEN} bytes)")
        );
    }
}
