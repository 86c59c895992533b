//! The byte layouts that a device key, the issuer key or the snapshot key signs
//! outside of codes.
//!
//! Each message starts with its own context string and length-prefixes every
//! variable field, so a signature made for one purpose can never verify as another
//! (a binding answer as a request, a key set as a snapshot) and no two field splits
//! give the same bytes. The app, the identity service, the issuer and gates all build
//! these from here, so the layout is defined exactly once.

use crate::TokenError;
use crate::keys::{DeviceKey, IssuerKey, PublicKey};
use crate::keyset::{KeyUsage, PublishedKey};
use crate::snapshot_key::SnapshotKey;
use ring::rand::SecureRandom;

const BIND: &[u8] = b"citypass/v1/bind-device";
const AUTHORIZE_BIND: &[u8] = b"citypass/v1/authorize-binding";
const REQUEST: &[u8] = b"citypass/v1/device-request";
const KEY_SET: &[u8] = b"citypass/v1/key-set";
const SNAPSHOT: &[u8] = b"citypass/v1/revocation-snapshot";

fn message(context: &[u8], fields: &[&[u8]]) -> Vec<u8> {
    let len = context.len() + fields.iter().map(|f| 4 + f.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(context);
    for f in fields {
        // Fields are bounded by gRPC message limits, far below 4 GiB.
        out.extend_from_slice(&u32::try_from(f.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// What a device signs to bind itself: the subject, the server's challenge and the
/// device's own public key (so the answer cannot be moved to another subject or key).
pub fn binding_message(subject_id: &str, challenge: &[u8], device_key: &PublicKey) -> Vec<u8> {
    message(
        BIND,
        &[subject_id.as_bytes(), challenge, device_key.as_bytes()],
    )
}

/// What an already bound device signs to let another device bind to its subject: the
/// subject, the challenge the new device answers, and the new device's public key (so
/// the authorisation cannot be moved to another binding).
pub fn binding_authorization_message(
    subject_id: &str,
    challenge: &[u8],
    new_device_key: &PublicKey,
) -> Vec<u8> {
    message(
        AUTHORIZE_BIND,
        &[subject_id.as_bytes(), challenge, new_device_key.as_bytes()],
    )
}

/// The signed parts of an app request (a `DeviceProof`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestProof<'a> {
    /// The full gRPC method path, e.g. `/citypass.v1.IssuerService/IssueToken`.
    pub method: &'a str,
    /// Device clock at signing: Unix seconds and nanoseconds.
    pub seconds: i64,
    pub nanos: i32,
    /// At least 16 random bytes, never reused.
    pub nonce: &'a [u8],
    /// SHA-256 of the request message encoded with its proof unset.
    pub body_sha256: &'a [u8],
}

impl RequestProof<'_> {
    /// The bytes the device key signs.
    pub fn message(&self) -> Vec<u8> {
        message(
            REQUEST,
            &[
                self.method.as_bytes(),
                &self.seconds.to_be_bytes(),
                &self.nanos.to_be_bytes(),
                self.nonce,
                self.body_sha256,
            ],
        )
    }

    /// Signs with the bound device key (ES256, raw r ‖ s).
    pub fn sign(&self, key: &DeviceKey, rng: &dyn SecureRandom) -> Result<Vec<u8>, TokenError> {
        key.sign(rng, &self.message())
    }

    /// Checks a device signature; the key's pinned algorithm must be ES256.
    pub fn verify(&self, key: &PublicKey, signature: &[u8]) -> Result<(), TokenError> {
        if key.alg() != crate::Algorithm::Es256 {
            return Err(TokenError::AlgMismatch);
        }
        key.verify(&self.message(), signature)
    }
}

/// SHA-256, for request body hashes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

/// The issuer's detached signature over a published JWKS document, made with its
/// code-signing key (the key set decides which keys sign codes, so only the holder of
/// a code key may vouch for it).
pub fn sign_key_set(key: &IssuerKey, jwks_json: &[u8]) -> Vec<u8> {
    key.sign(&message(KEY_SET, &[jwks_json]))
}

/// Checks a key set signature with a key the verifier already trusts, which must be
/// published for codes: a snapshot key never vouches for a key set, or its holder
/// could publish a code key of its own.
pub fn verify_key_set(
    key: &PublishedKey,
    jwks_json: &[u8],
    signature: &[u8],
) -> Result<(), TokenError> {
    key.ensure_usage(KeyUsage::Code)?;
    key.key.verify(&message(KEY_SET, &[jwks_json]), signature)
}

/// The revocation service's detached signature over a revocation snapshot, made with
/// the snapshot key (never a code key: see [`SnapshotKey`]).
pub fn sign_snapshot(key: &SnapshotKey, snapshot: &[u8]) -> Vec<u8> {
    key.sign(&message(SNAPSHOT, &[snapshot]))
}

/// Checks a revocation snapshot signature with a key published for snapshots.
pub fn verify_snapshot(
    key: &PublishedKey,
    snapshot: &[u8],
    signature: &[u8],
) -> Result<(), TokenError> {
    key.ensure_usage(KeyUsage::Snapshot)?;
    key.key.verify(&message(SNAPSHOT, &[snapshot]), signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn request_proofs_bind_every_field() {
        let rng = SystemRandom::new();
        let device = DeviceKey::generate(&rng).unwrap();
        let body = sha256(b"request");
        let proof = RequestProof {
            method: "/citypass.v1.IssuerService/IssueToken",
            seconds: 1_800_000_000,
            nanos: 5,
            nonce: &[7; 16],
            body_sha256: &body,
        };
        let sig = proof.sign(&device, &rng).unwrap();
        proof.verify(device.public_key(), &sig).unwrap();
        let other_body = sha256(b"other");
        for changed in [
            RequestProof {
                method: "/citypass.v1.IssuerService/IssueDeviceCertificate",
                ..proof
            },
            RequestProof {
                seconds: 1_800_000_001,
                ..proof
            },
            RequestProof {
                nonce: &[8; 16],
                ..proof
            },
            RequestProof {
                body_sha256: &other_body,
                ..proof
            },
        ] {
            assert_eq!(
                changed.verify(device.public_key(), &sig),
                Err(TokenError::BadSignature)
            );
        }
    }

    fn published(key: &PublicKey, usage: KeyUsage) -> PublishedKey {
        PublishedKey {
            key: key.clone(),
            status: crate::KeyStatus::Active,
            usage,
        }
    }

    #[test]
    fn a_key_set_signature_is_not_a_snapshot_signature() {
        // One seed in both roles, so only the context string and the usage differ.
        let key = IssuerKey::from_seed(&[1; 32]).unwrap();
        let snapshot_key = SnapshotKey::from_seed(&[1; 32], true).unwrap();
        let sig = sign_key_set(&key, b"{}");
        let as_code = published(key.public_key(), KeyUsage::Code);
        let as_snapshot = published(key.public_key(), KeyUsage::Snapshot);
        verify_key_set(&as_code, b"{}", &sig).unwrap();
        assert_eq!(
            verify_snapshot(&as_snapshot, b"{}", &sig),
            Err(TokenError::BadSignature)
        );
        let sig = sign_snapshot(&snapshot_key, b"{}");
        verify_snapshot(&as_snapshot, b"{}", &sig).unwrap();
        assert_eq!(
            verify_key_set(&as_code, b"{}", &sig),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn finding_4_signatures_verify_only_with_a_key_of_their_usage() {
        let key = IssuerKey::from_seed(&[1; 32]).unwrap();
        let snapshot_key = SnapshotKey::from_seed(&[2; 32], true).unwrap();
        // A key set signed by the snapshot key: refused before any signature math.
        let sig = snapshot_key.sign(&message(KEY_SET, &[b"{}"]));
        assert_eq!(
            verify_key_set(
                &published(snapshot_key.public_key(), KeyUsage::Snapshot),
                b"{}",
                &sig
            ),
            Err(TokenError::WrongKeyUsage)
        );
        // A snapshot signed by a code key.
        let sig = key.sign(&message(SNAPSHOT, &[b"CPRS"]));
        assert_eq!(
            verify_snapshot(&published(key.public_key(), KeyUsage::Code), b"CPRS", &sig),
            Err(TokenError::WrongKeyUsage)
        );
    }

    #[test]
    fn binding_answers_are_tied_to_subject_and_key() {
        let rng = SystemRandom::new();
        let device = DeviceKey::generate(&rng).unwrap();
        let msg = binding_message("s1", b"challenge", device.public_key());
        let sig = device.sign(&rng, &msg).unwrap();
        device.public_key().verify(&msg, &sig).unwrap();
        let moved = binding_message("s2", b"challenge", device.public_key());
        assert!(device.public_key().verify(&moved, &sig).is_err());
    }
}
