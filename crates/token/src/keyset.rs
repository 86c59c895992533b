//! The public key set gates verify against, and its JWKS form.
//!
//! A key set is what a verifier trusts: each key with its pinned algorithm and a
//! status. Retired keys stay valid until their `valid_until` so that codes signed just
//! before a rotation still pass; revoked keys fail at once. The set refuses duplicate
//! `kid`s when it is built, so a lookup by `kid` is never ambiguous.
//!
//! The JWKS form (RFC 7517 with RFC 8037 `OKP`/`Ed25519` and RFC 7518 `EC`/`P-256`)
//! lets any JOSE/COSE tool read the set. Statuses travel in two extra members,
//! `status` and `valid_until` (Unix seconds), which other tools ignore.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use crate::TokenError;
use crate::keys::{Kid, PublicKey};

/// Whether a published key may still be used to accept codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Accepted, and may be signing.
    Active,
    /// No longer signing; accepted until `valid_until` (Unix seconds, inclusive).
    Retired { valid_until: u64 },
    /// Refused, whatever a code's times say.
    Revoked,
}

/// One key of a key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKey {
    pub key: PublicKey,
    pub status: KeyStatus,
}

impl PublishedKey {
    /// The key's id.
    pub fn kid(&self) -> Kid {
        self.key.kid()
    }
}

/// A set of public keys with unique `kid`s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<PublishedKey>,
    by_kid: HashMap<Kid, usize>,
}

impl KeySet {
    /// Builds a set, refusing two keys with one `kid`.
    pub fn new(keys: Vec<PublishedKey>) -> Result<Self, TokenError> {
        let mut by_kid = HashMap::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            if by_kid.insert(k.kid(), i).is_some() {
                return Err(TokenError::DuplicateKid);
            }
        }
        Ok(KeySet { keys, by_kid })
    }

    /// The keys, in the order given.
    pub fn keys(&self) -> &[PublishedKey] {
        &self.keys
    }

    /// The key for `kid`, if present, whatever its status.
    pub fn get(&self, kid: &Kid) -> Option<&PublishedKey> {
        self.by_kid.get(kid).map(|&i| &self.keys[i])
    }

    /// The key for `kid` if it may accept codes at `now` (Unix seconds).
    pub fn usable(&self, kid: &Kid, now: u64) -> Result<&PublicKey, TokenError> {
        let entry = self.get(kid).ok_or(TokenError::UnknownKid)?;
        match entry.status {
            KeyStatus::Active => Ok(&entry.key),
            KeyStatus::Retired { valid_until } if now <= valid_until => Ok(&entry.key),
            KeyStatus::Retired { .. } => Err(TokenError::KeyExpired),
            KeyStatus::Revoked => Err(TokenError::KeyRevoked),
        }
    }

    /// The JWKS document for this set.
    pub fn to_jwks(&self) -> String {
        let doc = Jwks {
            keys: self.keys.iter().map(Jwk::from_key).collect(),
        };
        // Serialising plain structs of strings and integers cannot fail.
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }

    /// Parses a JWKS document. Every key needs `kty`, `crv`, its coordinates and an
    /// `alg` matching its type; a stated `kid` must equal the derived one.
    pub fn from_jwks(json: &str) -> Result<Self, TokenError> {
        let doc: Jwks = serde_json::from_str(json)
            .map_err(|e| TokenError::InvalidKeySet(format!("not a JWKS document: {e}")))?;
        let keys = doc
            .keys
            .into_iter()
            .map(Jwk::into_key)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
    }
}

#[derive(Serialize, Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Serialize, Deserialize)]
struct Jwk {
    kty: String,
    crv: String,
    x: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    alg: String,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    use_: Option<String>,
    #[serde(default = "active")]
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    valid_until: Option<u64>,
}

fn active() -> String {
    "active".to_owned()
}

impl Jwk {
    fn from_key(k: &PublishedKey) -> Self {
        let (kty, crv, x, y) = match k.key.p256_xy() {
            Some((x, y)) => ("EC", "P-256", B64.encode(x), Some(B64.encode(y))),
            None => ("OKP", "Ed25519", B64.encode(k.key.as_bytes()), None),
        };
        let (status, valid_until) = match k.status {
            KeyStatus::Active => ("active", None),
            KeyStatus::Retired { valid_until } => ("retired", Some(valid_until)),
            KeyStatus::Revoked => ("revoked", None),
        };
        Jwk {
            kty: kty.to_owned(),
            crv: crv.to_owned(),
            x,
            y,
            kid: Some(B64.encode(k.kid().0)),
            alg: k.key.alg().jose_name().to_owned(),
            use_: Some("sig".to_owned()),
            status: status.to_owned(),
            valid_until,
        }
    }

    fn into_key(self) -> Result<PublishedKey, TokenError> {
        let bad = |what: &str| TokenError::InvalidKeySet(what.to_owned());
        let decode = |s: &str| {
            B64.decode(s)
                .map_err(|_| bad("coordinate is not base64url"))
        };
        let key = match (self.kty.as_str(), self.crv.as_str()) {
            ("OKP", "Ed25519") => PublicKey::ed25519(&decode(&self.x)?)?,
            ("EC", "P-256") => {
                let y = self.y.as_deref().ok_or_else(|| bad("EC key without y"))?;
                PublicKey::p256_from_xy(&decode(&self.x)?, &decode(y)?)?
            }
            _ => return Err(bad("unsupported kty/crv")),
        };
        if self.alg != key.alg().jose_name() {
            return Err(bad("alg does not match the key type"));
        }
        if let Some(kid) = &self.kid
            && B64.decode(kid).ok().as_deref() != Some(&key.kid().0[..])
        {
            return Err(bad("kid does not match the key"));
        }
        let status = match (self.status.as_str(), self.valid_until) {
            ("active", _) => KeyStatus::Active,
            ("retired", Some(valid_until)) => KeyStatus::Retired { valid_until },
            ("retired", None) => return Err(bad("retired key without valid_until")),
            ("revoked", _) => KeyStatus::Revoked,
            _ => return Err(bad("unknown key status")),
        };
        Ok(PublishedKey { key, status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::IssuerKey;

    fn key(seed: u8) -> PublicKey {
        IssuerKey::from_seed(&[seed; 32])
            .unwrap()
            .public_key()
            .clone()
    }

    #[test]
    fn duplicate_kid_is_refused() {
        let k = PublishedKey {
            key: key(1),
            status: KeyStatus::Active,
        };
        assert_eq!(
            KeySet::new(vec![k.clone(), k]).unwrap_err(),
            TokenError::DuplicateKid
        );
    }

    #[test]
    fn statuses_gate_usability() {
        let set = KeySet::new(vec![
            PublishedKey {
                key: key(1),
                status: KeyStatus::Retired { valid_until: 100 },
            },
            PublishedKey {
                key: key(2),
                status: KeyStatus::Revoked,
            },
        ])
        .unwrap();
        let retired = key(1).kid();
        assert!(set.usable(&retired, 100).is_ok());
        assert_eq!(
            set.usable(&retired, 101).unwrap_err(),
            TokenError::KeyExpired
        );
        assert_eq!(
            set.usable(&key(2).kid(), 0).unwrap_err(),
            TokenError::KeyRevoked
        );
        assert_eq!(
            set.usable(&key(3).kid(), 0).unwrap_err(),
            TokenError::UnknownKid
        );
    }

    #[test]
    fn jwks_round_trips_both_key_types() {
        let rng = ring::rand::SystemRandom::new();
        let device = crate::keys::DeviceKey::generate(&rng).unwrap();
        let set = KeySet::new(vec![
            PublishedKey {
                key: key(1),
                status: KeyStatus::Active,
            },
            PublishedKey {
                key: device.public_key().clone(),
                status: KeyStatus::Retired { valid_until: 7 },
            },
        ])
        .unwrap();
        let json = set.to_jwks();
        assert!(json.contains("\"crv\": \"Ed25519\""));
        assert!(json.contains("\"crv\": \"P-256\""));
        assert_eq!(KeySet::from_jwks(&json).unwrap(), set);
    }

    #[test]
    fn jwks_with_mismatched_alg_or_kid_is_refused() {
        let set = KeySet::new(vec![PublishedKey {
            key: key(1),
            status: KeyStatus::Active,
        }])
        .unwrap();
        let json = set.to_jwks();
        let wrong_alg = json.replace("\"EdDSA\"", "\"ES256\"");
        assert!(matches!(
            KeySet::from_jwks(&wrong_alg),
            Err(TokenError::InvalidKeySet(_))
        ));
        let other_kid = B64.encode(key(2).kid().0);
        let wrong_kid = json.replace(&B64.encode(key(1).kid().0), &other_kid);
        assert!(matches!(
            KeySet::from_jwks(&wrong_kid),
            Err(TokenError::InvalidKeySet(_))
        ));
    }
}
