//! The subject-key file: the subject-sealing keys alone, for a service that must open
//! sealed subjects but never sign (the verifier).
//!
//! The issuer's key ring ([`crate::Keyring`]) holds the code-signing seeds *and* the
//! subject keys; the verifier needs only the second, so every `citypass keys` command
//! that changes the ring also writes them into a file of their own,
//! `subject-keys.json` (a Secret mounted only into the verifier):
//!
//! ```json
//! { "format": "citypass-subject-keys/v1", "dev": false,
//!   "keys": [ { "id": 1, "key": "<32 bytes base64url>" },
//!             { "id": 0, "key": "…", "valid_until": 1800000000 } ] }
//! ```
//!
//! Every key of the ring that opens (sealing, staged, and retired ones until their
//! valid-until, so that a rotation keeps codes sealed under the old key opening until
//! they expire). A file holding anything else (a signing seed) does not parse: the
//! format has no field for one and refuses unknown fields. `dev: true` marks files
//! exported from a development ring; production refuses them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use crate::TokenError;
use crate::seal::{SubjectKey, SubjectKeys};

const FORMAT: &str = "citypass-subject-keys/v1";

/// The subject keys a verifier opens with, as its file holds them.
pub struct SubjectKeyFile {
    /// Exported from a development ring; refused by production configuration.
    pub dev: bool,
    keys: Vec<FileKey>,
}

impl std::fmt::Debug for SubjectKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectKeyFile")
            .field("dev", &self.dev)
            .field("ids", &self.keys.iter().map(|k| k.id).collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    id: u8,
    /// 32 bytes, base64url.
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    valid_until: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    dev: bool,
    keys: Vec<FileKey>,
}

fn bad(what: impl Into<String>) -> TokenError {
    TokenError::InvalidKeySet(what.into())
}

impl SubjectKeyFile {
    /// The file of these keys: `(id, secret, valid_until)`.
    pub fn new(dev: bool, keys: &[(u8, [u8; 32], Option<u64>)]) -> Self {
        SubjectKeyFile {
            dev,
            keys: keys
                .iter()
                .map(|(id, secret, valid_until)| FileKey {
                    id: *id,
                    key: B64.encode(secret),
                    valid_until: *valid_until,
                })
                .collect(),
        }
    }

    /// Parses a subject-key file: its format, 32-byte keys, unique ids, at least one.
    pub fn from_json(json: &str) -> Result<Self, TokenError> {
        let file: File =
            serde_json::from_str(json).map_err(|e| bad(format!("not a subject-key file: {e}")))?;
        if file.format != FORMAT {
            return Err(bad(format!("format must be {FORMAT}")));
        }
        if file.keys.is_empty() {
            return Err(bad("a subject-key file needs at least one key"));
        }
        let parsed = SubjectKeyFile {
            dev: file.dev,
            keys: file.keys,
        };
        parsed.all_keys()?;
        Ok(parsed)
    }

    /// The file form. It holds secrets: write it with owner-only permissions.
    pub fn to_json(&self) -> String {
        let file = File {
            format: FORMAT.to_owned(),
            dev: self.dev,
            keys: self.keys.clone(),
        };
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// Every key (whatever its valid-until), to check the file.
    fn all_keys(&self) -> Result<SubjectKeys, TokenError> {
        self.keys_where(|_| true)
    }

    /// The keys that open at `now` (Unix seconds): those without a valid-until and
    /// retired ones not past it.
    pub fn subject_keys(&self, now: u64) -> Result<SubjectKeys, TokenError> {
        self.keys_where(|k| k.valid_until.is_none_or(|t| t >= now))
    }

    fn keys_where(&self, keep: impl Fn(&FileKey) -> bool) -> Result<SubjectKeys, TokenError> {
        let keys = self
            .keys
            .iter()
            .filter(|k| keep(k))
            .map(|k| {
                let secret = B64
                    .decode(&k.key)
                    .map_err(|_| bad("subject key must be 32 bytes of base64url"))?;
                SubjectKey::with_id(k.id, &secret)
            })
            .collect::<Result<Vec<_>, _>>()?;
        SubjectKeys::new(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_one() {
        let file = SubjectKeyFile::new(true, &[(1, [1; 32], None), (0, [0; 32], Some(100))]);
        let json = file.to_json();
        assert!(json.contains(FORMAT));
        let back = SubjectKeyFile::from_json(&json).unwrap();
        assert!(back.dev);
        assert_eq!(back.subject_keys(100).unwrap().ids(), vec![1, 0]);
        assert_eq!(back.subject_keys(101).unwrap().ids(), vec![1], "retired");
        assert!(!format!("{back:?}").contains(&B64.encode([1u8; 32])));

        let twice = SubjectKeyFile::new(false, &[(1, [1; 32], None), (1, [2; 32], None)]);
        assert!(SubjectKeyFile::from_json(&twice.to_json()).is_err());
        assert!(SubjectKeyFile::from_json(r#"{"format":"x","dev":false,"keys":[]}"#).is_err());
        let empty = format!(r#"{{"format":"{FORMAT}","dev":false,"keys":[]}}"#);
        assert!(SubjectKeyFile::from_json(&empty).is_err());
        let short =
            format!(r#"{{"format":"{FORMAT}","dev":false,"keys":[{{"id":1,"key":"AAAA"}}]}}"#);
        assert!(SubjectKeyFile::from_json(&short).is_err());
        // A key ring (signing seeds) is not a subject-key file.
        let ring = format!(
            r#"{{"format":"{FORMAT}","dev":false,"keys":[],"signing_kid":"00","seed":"x"}}"#
        );
        assert!(SubjectKeyFile::from_json(&ring).is_err());
    }
}
