//! The issuer's private key ring and its file format.
//!
//! One JSON document holds every signing seed with its status, which key signs now,
//! and the subject-sealing key. Publishing and signing are separate steps so that a
//! rotation can follow the safe order (publish the new key, let gates refresh, switch
//! signing, retire the old key after the longest code lifetime): a key added with
//! [`Keyring::add_key`] is published but does not sign until [`Keyring::rotate`].
//!
//! `dev: true` marks key rings made for laptops and tests; production configuration
//! refuses them, so a dev key can never sign real codes. Reading and writing files is
//! the caller's job: this crate does no I/O.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

use crate::TokenError;
use crate::issuer::Issuer;
use crate::keys::{IssuerKey, Kid};
use crate::keyset::{KeySet, KeyStatus, PublishedKey};
use crate::seal::SubjectKey;

const FORMAT: &str = "citypass-keyring/v1";

/// The issuer's private keys.
pub struct Keyring {
    /// Made for development; refused by production configuration.
    pub dev: bool,
    /// The `iss` claim of every code this ring signs.
    pub iss: String,
    keys: Vec<(IssuerKey, KeyStatus)>,
    signing: Kid,
    subject_key: [u8; 32],
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("dev", &self.dev)
            .field("iss", &self.iss)
            .field("signing", &self.signing)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct File {
    format: String,
    dev: bool,
    iss: String,
    signing_kid: String,
    subject_key: String,
    keys: Vec<FileKey>,
}

#[derive(Serialize, Deserialize)]
struct FileKey {
    kid: String,
    seed: String,
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    valid_until: Option<u64>,
}

fn bad(what: impl Into<String>) -> TokenError {
    TokenError::InvalidKeySet(what.into())
}

impl Keyring {
    /// A new ring with one signing key and a fresh subject key.
    pub fn generate(iss: &str, dev: bool, rng: &dyn SecureRandom) -> Result<Self, TokenError> {
        let key = IssuerKey::from_seed(&IssuerKey::generate_seed(rng)?)?;
        let mut subject_key = [0u8; 32];
        rng.fill(&mut subject_key).map_err(|_| TokenError::Crypto)?;
        Ok(Keyring {
            dev,
            iss: iss.to_owned(),
            signing: key.kid(),
            keys: vec![(key, KeyStatus::Active)],
            subject_key,
        })
    }

    /// Parses a key ring file, checking that ids match seeds, are unique, and that
    /// the signing key exists and is active.
    pub fn from_json(json: &str) -> Result<Self, TokenError> {
        let file: File =
            serde_json::from_str(json).map_err(|e| bad(format!("not a key ring file: {e}")))?;
        if file.format != FORMAT {
            return Err(bad(format!("format must be {FORMAT}")));
        }
        let mut keys = Vec::with_capacity(file.keys.len());
        for k in file.keys {
            let seed = B64
                .decode(&k.seed)
                .map_err(|_| bad("seed is not base64url"))?;
            let key = IssuerKey::from_seed(&seed)?;
            if key.kid().to_hex() != k.kid {
                return Err(bad("kid does not match its seed"));
            }
            let status = match (k.status.as_str(), k.valid_until) {
                ("active", _) => KeyStatus::Active,
                ("retired", Some(valid_until)) => KeyStatus::Retired { valid_until },
                ("revoked", _) => KeyStatus::Revoked,
                _ => return Err(bad("bad key status")),
            };
            keys.push((key, status));
        }
        let subject_key: [u8; 32] = B64
            .decode(&file.subject_key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| bad("subject key must be 32 bytes of base64url"))?;
        let signing = keys
            .iter()
            .find(|(k, _)| k.kid().to_hex() == file.signing_kid)
            .ok_or_else(|| bad("signing kid names no key"))?;
        if signing.1 != KeyStatus::Active {
            return Err(bad("signing key is not active"));
        }
        let signing = signing.0.kid();
        let ring = Keyring {
            dev: file.dev,
            iss: file.iss,
            keys,
            signing,
            subject_key,
        };
        ring.public_keyset()?; // refuses duplicate kids
        Ok(ring)
    }

    /// The file form. It holds secrets: write it with owner-only permissions.
    pub fn to_json(&self) -> String {
        let keys = self
            .keys
            .iter()
            .map(|(k, status)| {
                let (status, valid_until) = match status {
                    KeyStatus::Active => ("active", None),
                    KeyStatus::Retired { valid_until } => ("retired", Some(*valid_until)),
                    KeyStatus::Revoked => ("revoked", None),
                };
                FileKey {
                    kid: k.kid().to_hex(),
                    seed: B64.encode(k.seed()),
                    status: status.to_owned(),
                    valid_until,
                }
            })
            .collect();
        let file = File {
            format: FORMAT.to_owned(),
            dev: self.dev,
            iss: self.iss.clone(),
            signing_kid: self.signing.to_hex(),
            subject_key: B64.encode(self.subject_key),
            keys,
        };
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// Refuses a dev ring: production configuration calls this at start-up, so a key
    /// made on a laptop can never sign real codes.
    pub fn ensure_production(&self) -> Result<(), TokenError> {
        if self.dev {
            return Err(bad("dev keys are refused in production"));
        }
        Ok(())
    }

    /// The kid that signs now.
    pub fn signing_kid(&self) -> Kid {
        self.signing
    }

    /// Publishes a new active key that does not sign yet; returns its kid.
    pub fn add_key(&mut self, rng: &dyn SecureRandom) -> Result<Kid, TokenError> {
        let key = IssuerKey::from_seed(&IssuerKey::generate_seed(rng)?)?;
        let kid = key.kid();
        self.keys.push((key, KeyStatus::Active));
        Ok(kid)
    }

    /// Switches signing to the newest published key that is not signing (adding one if
    /// there is none) and retires the old signing key until `now + retire_after`.
    /// Retired keys already past their valid-until are dropped. Returns the new kid.
    pub fn rotate(
        &mut self,
        now: u64,
        retire_after: u64,
        rng: &dyn SecureRandom,
    ) -> Result<Kid, TokenError> {
        let next = match self
            .keys
            .iter()
            .rev()
            .find(|(k, s)| *s == KeyStatus::Active && k.kid() != self.signing)
        {
            Some((k, _)) => k.kid(),
            None => self.add_key(rng)?,
        };
        let old = self.signing;
        for (k, status) in &mut self.keys {
            if k.kid() == old {
                *status = KeyStatus::Retired {
                    valid_until: now.saturating_add(retire_after),
                };
            }
        }
        self.keys.retain(
            |(_, s)| !matches!(s, KeyStatus::Retired { valid_until } if *valid_until < now),
        );
        self.signing = next;
        Ok(next)
    }

    /// Marks `kid` revoked (it stays published so gates refuse it). The signing key
    /// cannot be revoked until another key signs.
    pub fn revoke(&mut self, kid: Kid) -> Result<(), TokenError> {
        if kid == self.signing {
            return Err(bad("rotate before revoking the signing key"));
        }
        let entry = self
            .keys
            .iter_mut()
            .find(|(k, _)| k.kid() == kid)
            .ok_or(TokenError::UnknownKid)?;
        entry.1 = KeyStatus::Revoked;
        Ok(())
    }

    /// The public key set gates verify against.
    pub fn public_keyset(&self) -> Result<KeySet, TokenError> {
        KeySet::new(
            self.keys
                .iter()
                .map(|(k, status)| PublishedKey {
                    key: k.public_key().clone(),
                    status: *status,
                })
                .collect(),
        )
    }

    /// An issuer signing with the current key.
    pub fn issuer(&self) -> Result<Issuer, TokenError> {
        let (key, _) = self
            .keys
            .iter()
            .find(|(k, _)| k.kid() == self.signing)
            .ok_or(TokenError::UnknownKid)?;
        Ok(Issuer::new(
            self.iss.clone(),
            IssuerKey::from_seed(key.seed())?,
            self.subject_key()?,
        ))
    }

    /// The subject-sealing key.
    pub fn subject_key(&self) -> Result<SubjectKey, TokenError> {
        SubjectKey::from_bytes(&self.subject_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip_and_rotation() {
        let rng = ring::rand::SystemRandom::new();
        let mut ring = Keyring::generate("cp", true, &rng).unwrap();
        let first = ring.signing_kid();
        let staged = ring.add_key(&rng).unwrap();
        assert_eq!(
            ring.signing_kid(),
            first,
            "adding publishes without signing"
        );
        let next = ring.rotate(1_000, 300, &rng).unwrap();
        assert_eq!(next, staged);
        let parsed = Keyring::from_json(&ring.to_json()).unwrap();
        assert_eq!(parsed.signing_kid(), staged);
        let set = parsed.public_keyset().unwrap();
        assert_eq!(
            set.get(&first).unwrap().status,
            KeyStatus::Retired { valid_until: 1_300 }
        );
        // A later rotation past the valid-until drops the retired key.
        let mut parsed = parsed;
        parsed.rotate(2_000, 300, &rng).unwrap();
        assert!(parsed.public_keyset().unwrap().get(&first).is_none());
    }

    #[test]
    fn production_refuses_dev_rings() {
        let rng = ring::rand::SystemRandom::new();
        assert!(
            Keyring::generate("cp", true, &rng)
                .unwrap()
                .ensure_production()
                .is_err()
        );
        assert!(
            Keyring::generate("cp", false, &rng)
                .unwrap()
                .ensure_production()
                .is_ok()
        );
    }

    #[test]
    fn tampered_file_is_refused() {
        let rng = ring::rand::SystemRandom::new();
        let ring = Keyring::generate("cp", true, &rng).unwrap();
        let json = ring
            .to_json()
            .replace(&ring.signing_kid().to_hex(), "0000000000000000");
        assert!(matches!(
            Keyring::from_json(&json),
            Err(TokenError::InvalidKeySet(_))
        ));
    }
}
