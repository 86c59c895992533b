//! The key ring's file form (`citypass-keyring/v1`, JSON): what is written, and the
//! checks a file passes before it becomes a [`Keyring`] (ids match seeds and public
//! keys, subject key ids are unique, the signing key exists and is active).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use super::{Keyring, RingSubjectKey, bad};
use crate::TokenError;
use crate::keys::{IssuerKey, PublicKey};
use crate::keyset::KeyStatus;

const FORMAT: &str = "citypass-keyring/v1";

#[derive(Serialize, Deserialize)]
struct File {
    format: String,
    dev: bool,
    iss: String,
    signing_kid: String,
    /// The subject key that seals now.
    subject_key: String,
    /// Its id; absent in rings written before subject key ids (then 0).
    #[serde(default)]
    subject_key_id: u8,
    /// Staged (no `valid_until`) and retired subject keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    other_subject_keys: Vec<FileSubjectKey>,
    keys: Vec<FileKey>,
    /// Absent in rings written before snapshot keys had their own usage.
    #[serde(default)]
    snapshot_keys: Vec<FilePublicKey>,
}

#[derive(Serialize, Deserialize)]
struct FilePublicKey {
    kid: String,
    /// The raw 32-byte Ed25519 public key, base64url.
    public_key: String,
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    valid_until: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct FileSubjectKey {
    id: u8,
    /// 32 bytes, base64url.
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    valid_until: Option<u64>,
}

fn subject_secret(b64: &str) -> Result<[u8; 32], TokenError> {
    B64.decode(b64)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| bad("subject key must be 32 bytes of base64url"))
}

#[derive(Serialize, Deserialize)]
struct FileKey {
    kid: String,
    seed: String,
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    valid_until: Option<u64>,
}

fn parse_status(status: &str, valid_until: Option<u64>) -> Result<KeyStatus, TokenError> {
    match (status, valid_until) {
        ("active", _) => Ok(KeyStatus::Active),
        ("retired", Some(valid_until)) => Ok(KeyStatus::Retired { valid_until }),
        ("revoked", _) => Ok(KeyStatus::Revoked),
        _ => Err(bad("bad key status")),
    }
}

fn status_fields(status: KeyStatus) -> (String, Option<u64>) {
    match status {
        KeyStatus::Active => ("active".to_owned(), None),
        KeyStatus::Retired { valid_until } => ("retired".to_owned(), Some(valid_until)),
        KeyStatus::Revoked => ("revoked".to_owned(), None),
    }
}

impl Keyring {
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
            keys.push((key, parse_status(&k.status, k.valid_until)?));
        }
        let mut snapshot_keys = Vec::with_capacity(file.snapshot_keys.len());
        for k in file.snapshot_keys {
            let bytes = B64
                .decode(&k.public_key)
                .map_err(|_| bad("snapshot public key is not base64url"))?;
            let key = PublicKey::ed25519(&bytes)?;
            if key.kid().to_hex() != k.kid {
                return Err(bad("kid does not match its snapshot public key"));
            }
            snapshot_keys.push((key, parse_status(&k.status, k.valid_until)?));
        }
        let mut subject_keys = vec![RingSubjectKey {
            id: file.subject_key_id,
            secret: subject_secret(&file.subject_key)?,
            valid_until: None,
        }];
        for k in file.other_subject_keys {
            if subject_keys.iter().any(|s| s.id == k.id) {
                return Err(bad(format!("two subject keys with id {}", k.id)));
            }
            subject_keys.push(RingSubjectKey {
                id: k.id,
                secret: subject_secret(&k.key)?,
                valid_until: k.valid_until,
            });
        }
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
            subject_keys,
            sealing: file.subject_key_id,
            snapshot_keys,
        };
        ring.public_keyset()?; // refuses duplicate kids, across both usages
        Ok(ring)
    }

    /// The file form. It holds secrets: write it with owner-only permissions.
    pub fn to_json(&self) -> String {
        let keys = self
            .keys
            .iter()
            .map(|(k, status)| {
                let (status, valid_until) = status_fields(*status);
                FileKey {
                    kid: k.kid().to_hex(),
                    seed: B64.encode(k.seed()),
                    status,
                    valid_until,
                }
            })
            .collect();
        let snapshot_keys = self
            .snapshot_keys
            .iter()
            .map(|(k, status)| {
                let (status, valid_until) = status_fields(*status);
                FilePublicKey {
                    kid: k.kid().to_hex(),
                    public_key: B64.encode(k.as_bytes()),
                    status,
                    valid_until,
                }
            })
            .collect();
        let sealing = self.sealing_key();
        let other_subject_keys = self
            .subject_keys
            .iter()
            .filter(|k| k.id != self.sealing)
            .map(|k| FileSubjectKey {
                id: k.id,
                key: B64.encode(k.secret),
                valid_until: k.valid_until,
            })
            .collect();
        let file = File {
            format: FORMAT.to_owned(),
            dev: self.dev,
            iss: self.iss.clone(),
            signing_kid: self.signing.to_hex(),
            subject_key: B64.encode(sealing.secret),
            subject_key_id: sealing.id,
            other_subject_keys,
            keys,
            snapshot_keys,
        };
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }
}
