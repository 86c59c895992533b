//! The public key set gates verify against, and its JWKS form.
//!
//! A key set is what a verifier trusts: each key with its pinned algorithm and a
//! status. Retired keys stay valid until their `valid_until` so that codes signed just
//! before a rotation still pass; revoked keys fail at once. The set refuses duplicate
//! `kid`s when it is built, so a lookup by `kid` is never ambiguous.
//!
//! Every key has one **usage**: it signs codes and device certificates (and the
//! published key set), or it signs revocation snapshots. A verifier asks for a key of
//! the usage it needs ([`KeySet::usable`]), so a snapshot key never verifies a code and
//! a code key never verifies a snapshot: the revocation service, which holds only the
//! snapshot key, cannot mint codes, and whoever holds a code key cannot feed gates
//! revocation data (security review, finding 4).
//!
//! The JWKS form (RFC 7517 with RFC 8037 `OKP`/`Ed25519` and RFC 7518 `EC`/`P-256`)
//! lets any JOSE/COSE tool read the set. Statuses travel in two extra members,
//! `status` and `valid_until` (Unix seconds), and the usage in a third, `usage`
//! (`"code"` or `"revocation-snapshot"`), which other tools ignore. The standard
//! members cannot say it: `use` only tells signing from encryption (both kinds are
//! `"sig"`), and `key_ops` names operations (`"verify"`), not what is signed. `usage`
//! is required when a set is read: a key that does not say what it is for is refused
//! rather than guessed.

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

/// What a published key signs. A verifier accepts a signature only from a key of the
/// usage it expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyUsage {
    /// Online codes, device certificates, and the published key set (the issuer's
    /// keys).
    Code,
    /// Revocation snapshots (the revocation service's key).
    Snapshot,
}

impl KeyUsage {
    /// The JWKS `usage` value.
    pub fn name(self) -> &'static str {
        match self {
            KeyUsage::Code => "code",
            KeyUsage::Snapshot => "revocation-snapshot",
        }
    }

    /// The usage for a JWKS `usage` value.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "code" => Some(KeyUsage::Code),
            "revocation-snapshot" => Some(KeyUsage::Snapshot),
            _ => None,
        }
    }
}

impl std::fmt::Display for KeyUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One key of a key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKey {
    pub key: PublicKey,
    pub status: KeyStatus,
    /// What the key may verify.
    pub usage: KeyUsage,
}

impl PublishedKey {
    /// The key's id.
    pub fn kid(&self) -> Kid {
        self.key.kid()
    }

    /// Refuses a key of another usage than `usage`.
    pub fn ensure_usage(&self, usage: KeyUsage) -> Result<(), TokenError> {
        if self.usage != usage {
            return Err(TokenError::WrongKeyUsage);
        }
        Ok(())
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

    /// The key for `kid` if it has `usage` and may be used at `now` (Unix seconds).
    /// A key of another usage is refused ([`TokenError::WrongKeyUsage`]) before its
    /// status is looked at.
    pub fn usable(
        &self,
        kid: &Kid,
        usage: KeyUsage,
        now: u64,
    ) -> Result<&PublishedKey, TokenError> {
        let entry = self.get(kid).ok_or(TokenError::UnknownKid)?;
        entry.ensure_usage(usage)?;
        match entry.status {
            KeyStatus::Active => Ok(entry),
            KeyStatus::Retired { valid_until } if now <= valid_until => Ok(entry),
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

    /// Parses a JWKS document. Every key needs `kty`, `crv`, its coordinates, an
    /// `alg` matching its type and a `usage`; a stated `kid` must equal the derived
    /// one.
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
    /// `code` or `revocation-snapshot` (see the module documentation).
    #[serde(default)]
    usage: Option<String>,
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
            usage: Some(k.usage.name().to_owned()),
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
        let usage = self
            .usage
            .as_deref()
            .ok_or_else(|| bad("key without usage"))?;
        let usage = KeyUsage::from_name(usage).ok_or_else(|| bad("unknown key usage"))?;
        if usage == KeyUsage::Snapshot && key.alg() != crate::Algorithm::EdDsa {
            return Err(bad("a snapshot key must be Ed25519"));
        }
        Ok(PublishedKey { key, status, usage })
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
            usage: KeyUsage::Code,
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
                usage: KeyUsage::Code,
            },
            PublishedKey {
                key: key(2),
                status: KeyStatus::Revoked,
                usage: KeyUsage::Code,
            },
        ])
        .unwrap();
        let retired = key(1).kid();
        assert!(set.usable(&retired, KeyUsage::Code, 100).is_ok());
        assert_eq!(
            set.usable(&retired, KeyUsage::Code, 101).unwrap_err(),
            TokenError::KeyExpired
        );
        assert_eq!(
            set.usable(&key(2).kid(), KeyUsage::Code, 0).unwrap_err(),
            TokenError::KeyRevoked
        );
        assert_eq!(
            set.usable(&key(3).kid(), KeyUsage::Code, 0).unwrap_err(),
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
                usage: KeyUsage::Code,
            },
            PublishedKey {
                key: device.public_key().clone(),
                status: KeyStatus::Retired { valid_until: 7 },
                usage: KeyUsage::Code,
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
            usage: KeyUsage::Code,
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

    #[test]
    fn a_key_verifies_only_for_its_usage() {
        let set = KeySet::new(vec![
            PublishedKey {
                key: key(1),
                status: KeyStatus::Active,
                usage: KeyUsage::Code,
            },
            PublishedKey {
                key: key(2),
                status: KeyStatus::Active,
                usage: KeyUsage::Snapshot,
            },
        ])
        .unwrap();
        assert!(set.usable(&key(1).kid(), KeyUsage::Code, 0).is_ok());
        assert!(set.usable(&key(2).kid(), KeyUsage::Snapshot, 0).is_ok());
        assert_eq!(
            set.usable(&key(1).kid(), KeyUsage::Snapshot, 0)
                .unwrap_err(),
            TokenError::WrongKeyUsage
        );
        assert_eq!(
            set.usable(&key(2).kid(), KeyUsage::Code, 0).unwrap_err(),
            TokenError::WrongKeyUsage
        );
        // The usage survives the JWKS form, and is required there.
        let json = set.to_jwks();
        assert!(
            json.contains("\"usage\": \"revocation-snapshot\""),
            "{json}"
        );
        assert_eq!(KeySet::from_jwks(&json).unwrap(), set);
        let without = json
            .replace("\"usage\": \"code\",", "")
            .replace("\"usage\": \"revocation-snapshot\",", "");
        assert!(matches!(
            KeySet::from_jwks(&without),
            Err(TokenError::InvalidKeySet(_))
        ));
        let unknown = json.replace("\"revocation-snapshot\"", "\"anything\"");
        assert!(matches!(
            KeySet::from_jwks(&unknown),
            Err(TokenError::InvalidKeySet(_))
        ));
    }
}
