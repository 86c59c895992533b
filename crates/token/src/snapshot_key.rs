//! The revocation service's snapshot-signing key and its file format.
//!
//! Snapshots are signed with a key of their own, not with the issuer's code-signing
//! keys (security review, finding 4): the revocation service holds only this key, so
//! whoever breaks into it can sign snapshots but cannot mint codes or unseal subjects.
//! Gates tell the two apart by the usage the issuer publishes with each key
//! ([`crate::KeyUsage`]); the issuer publishes this key's public half from its key
//! ring ([`crate::Keyring::publish_snapshot_key`]) and never holds the private half.
//!
//! One JSON document, format `citypass-snapshot-key/v1`:
//!
//! ```json
//! { "format": "citypass-snapshot-key/v1", "dev": true,
//!   "kid": "<16 hex digits>", "seed": "<32-byte Ed25519 seed, base64url>" }
//! ```
//!
//! `dev: true` marks keys made for laptops and tests; production refuses them, as it
//! refuses a dev key ring. Reading and writing the file is the caller's job.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

use crate::TokenError;
use crate::keys::{IssuerKey, Kid, PublicKey};

const FORMAT: &str = "citypass-snapshot-key/v1";

/// An Ed25519 key that signs revocation snapshots and nothing else. It is a type of
/// its own so that nothing that signs codes accepts it.
pub struct SnapshotKey {
    /// Made for development; refused in production.
    pub dev: bool,
    key: IssuerKey,
}

impl std::fmt::Debug for SnapshotKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotKey")
            .field("dev", &self.dev)
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    dev: bool,
    kid: String,
    seed: String,
}

fn bad(what: impl Into<String>) -> TokenError {
    TokenError::InvalidKeySet(what.into())
}

impl SnapshotKey {
    /// A fresh key.
    pub fn generate(dev: bool, rng: &dyn SecureRandom) -> Result<Self, TokenError> {
        Self::from_seed(&IssuerKey::generate_seed(rng)?, dev)
    }

    /// The key for a 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8], dev: bool) -> Result<Self, TokenError> {
        Ok(SnapshotKey {
            dev,
            key: IssuerKey::from_seed(seed)?,
        })
    }

    /// Parses a snapshot key file, checking that the kid matches the seed.
    pub fn from_json(json: &str) -> Result<Self, TokenError> {
        let file: File =
            serde_json::from_str(json).map_err(|e| bad(format!("not a snapshot key file: {e}")))?;
        if file.format != FORMAT {
            return Err(bad(format!("format must be {FORMAT}")));
        }
        let seed = B64
            .decode(&file.seed)
            .map_err(|_| bad("seed is not base64url"))?;
        let key = Self::from_seed(&seed, file.dev)?;
        if key.kid().to_hex() != file.kid {
            return Err(bad("kid does not match its seed"));
        }
        Ok(key)
    }

    /// The file form. It holds the secret: write it with owner-only permissions.
    pub fn to_json(&self) -> String {
        let file = File {
            format: FORMAT.to_owned(),
            dev: self.dev,
            kid: self.kid().to_hex(),
            seed: B64.encode(self.key.seed()),
        };
        // Serialising a struct of strings and a bool cannot fail.
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// Refuses a dev key: production calls this at start-up and at every reload.
    pub fn ensure_production(&self) -> Result<(), TokenError> {
        if self.dev {
            return Err(bad("dev keys are refused in production"));
        }
        Ok(())
    }

    /// The key id.
    pub fn kid(&self) -> Kid {
        self.key.kid()
    }

    /// The public half, to publish in the issuer's key set.
    pub fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    /// Signs `message` (used by [`crate::sign_snapshot`] only).
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip() {
        let rng = ring::rand::SystemRandom::new();
        let key = SnapshotKey::generate(true, &rng).unwrap();
        let parsed = SnapshotKey::from_json(&key.to_json()).unwrap();
        assert_eq!(parsed.kid(), key.kid());
        assert!(parsed.dev);
        assert!(parsed.ensure_production().is_err());
        assert!(
            SnapshotKey::generate(false, &rng)
                .unwrap()
                .ensure_production()
                .is_ok()
        );
    }

    #[test]
    fn a_tampered_file_is_refused() {
        let key = SnapshotKey::from_seed(&[5; 32], true).unwrap();
        let other = SnapshotKey::from_seed(&[6; 32], true).unwrap();
        let json = key
            .to_json()
            .replace(&key.kid().to_hex(), &other.kid().to_hex());
        assert!(matches!(
            SnapshotKey::from_json(&json),
            Err(TokenError::InvalidKeySet(_))
        ));
        // A key ring is not a snapshot key file.
        let ring = crate::Keyring::generate("cp", true, &ring::rand::SystemRandom::new()).unwrap();
        assert!(SnapshotKey::from_json(&ring.to_json()).is_err());
        // And a snapshot key does not print its seed.
        assert!(!format!("{key:?}").contains(&B64.encode([5u8; 32])));
    }
}
