//! The identity service's configuration, and the checks that keep dev settings out of
//! production.
//!
//! Loaded by `citypass_runtime::config::load` (a YAML file, then `CITYPASS_…`
//! environment variables); every key has a development default, so
//! [`IdentityConfig::dev`] (what `citypass dev` uses) and an empty file are the same.
//!
//! | key | env | default |
//! |---|---|---|
//! | `server.*` | `CITYPASS_SERVER__…` | `citypass_runtime::ServerConfig` (service name `citypass-identity`; when any `server` key is set, `service_name` must be too) |
//! | `environment` | `CITYPASS_ENVIRONMENT` | `production` (or `dev`) |
//! | `database.*` | `CITYPASS_DATABASE__URL`, `__MAX_CONNECTIONS` | unset: in-memory store |
//! | `document_key` / `document_key_file` | `CITYPASS_DOCUMENT_KEY` / `…_FILE` | the dev key |
//! | `document_key_id` | `CITYPASS_DOCUMENT_KEY_ID` | 1 |
//! | `previous_document_keys` | (file) | none: `[{id, key or key_file}]`, recognised, never used for new rows |
//! | `pseudonym_key` / `pseudonym_key_file` | `CITYPASS_PSEUDONYM_KEY` / `…_FILE` | the dev key |
//! | `pseudonym_key_id` | `CITYPASS_PSEUDONYM_KEY_ID` | 1 |
//! | `previous_pseudonym_keys` | (file) | none (as `previous_document_keys`) |
//! | `government_key` / `government_key_file` | `CITYPASS_GOVERNMENT_KEY` / `…_FILE` | the dev key |
//! | `government_key_id` | `CITYPASS_GOVERNMENT_KEY_ID` | 1 |
//! | `face_template_key` / `face_template_key_file` | `CITYPASS_FACE_TEMPLATE_KEY` / `…_FILE` | the dev key (AES-256-GCM of face templates; the verifier holds it too) |
//! | `face_template_key_id` | `CITYPASS_FACE_TEMPLATE_KEY_ID` | 1 |
//! | `previous_face_template_keys` | (file) | none: `[{id, key or key_file}]`, open older rows, never seal |
//! | `face_proof_freshness` | `CITYPASS_FACE_PROOF_FRESHNESS` | `30s` (device-signed face calls; `1s` to `5m`) |
//! | `face_calls_per_device` | `CITYPASS_FACE_CALLS_PER_DEVICE` | 20 per window (device-signed face calls, per replica) |
//! | `face_call_window` | `CITYPASS_FACE_CALL_WINDOW` | `1h` |
//! | `face_filing_threshold` | `CITYPASS_FACE_FILING_THRESHOLD` | 100 000 people (the provincial filing rule) |
//! | `enrol_attempts_per_address` | `CITYPASS_ENROL_ATTEMPTS_PER_ADDRESS` | 10 per window |
//! | `enrol_attempts_per_document` | `CITYPASS_ENROL_ATTEMPTS_PER_DOCUMENT` | 5 per window |
//! | `enrol_attempt_window` | `CITYPASS_ENROL_ATTEMPT_WINDOW` | `1h` |
//! | `enrol_refusal_floor` | `CITYPASS_ENROL_REFUSAL_FLOOR` | `1s` |
//! | `max_devices_per_subject` | `CITYPASS_MAX_DEVICES_PER_SUBJECT` | 3 |
//! | `challenge_ttl` | `CITYPASS_CHALLENGE_TTL` | `5m` |
//! | `enrolment_secret_ttl` | `CITYPASS_ENROLMENT_SECRET_TTL` | `30m` |
//! | `certificate_max_lifetime` | `CITYPASS_CERTIFICATE_MAX_LIFETIME` | `24h` (what gates accept) |
//! | `max_live_certificates_per_device` | `CITYPASS_MAX_LIVE_CERTIFICATES_PER_DEVICE` | 8 |
//! | `clock_skew` | `CITYPASS_CLOCK_SKEW` | `60s` |
//! | `real_name_sandbox` | (file) | every check MATCHED; see [`SandboxConfig`] |
//! | `real_name` | `CITYPASS_REAL_NAME__…` | unset: the sandbox; else the provider's API, see [`RealNameConfig`] |
//!
//! Keys are 64+ hex characters (32+ bytes), given inline or as a file (a Kubernetes
//! Secret). A key written `dev:<text>` is a development key; the built-in defaults are
//! such keys. Each HMAC key has an id (1 to 32767, see `citypass_pseudonym::hmac_keys`); during a
//! rotation the old key stays listed under `previous_…_keys` (keys/README.md). With `environment: production` the service refuses to start with a dev
//! key, without a database, with plaintext transport, or with the real-name sandbox
//! (production needs `real_name`).
//! `config.example.yaml` beside this crate shows every key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use citypass_runtime::ServerConfig;
use citypass_runtime::config::{Deployment, PostgresConfig, Refusal, duration};
use serde::Deserialize;

use crate::error::Error;
use crate::realname::SandboxConfig;
use crate::realname::tencent::RealNameConfig;
use citypass_pseudonym::{HmacKeys, KeyId};

/// The document-hash key used when none is configured. Not secret: development only.
pub const DEV_DOCUMENT_KEY: &str = "dev:citypass-identity-document-key-NOT-SECRET";
/// The pseudonym key used when none is configured. Not secret: development only.
pub const DEV_PSEUDONYM_KEY: &str = "dev:citypass-scene-pseudonym-key-NOT-SECRET";

/// The face-template key used when none is configured. Not secret: development only.
pub const DEV_FACE_TEMPLATE_KEY: &str = citypass_face::template::DEV_TEMPLATE_KEY;

/// The government-service key used when none is configured. Not secret: development
/// only.
pub const DEV_GOVERNMENT_KEY: &str = "dev:citypass-government-pseudonym-key-NOT-SECRET";

pub use citypass_runtime::Environment;

pub use citypass_runtime::Secret;

/// Configuration of the identity service. See the module documentation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// Listen address, timeouts, telemetry.
    #[serde(default = "default_server")]
    pub server: ServerConfig,
    /// `production` (default) or `dev`.
    #[serde(default)]
    pub environment: Environment,
    /// The PostgreSQL store; the in-memory store when unset (dev only).
    #[serde(default)]
    pub database: Option<PostgresConfig>,
    /// HMAC key for document numbers (hex, or `dev:…`).
    #[serde(default)]
    pub document_key: Option<Secret>,
    /// File holding `document_key` (a mounted Secret).
    #[serde(default)]
    pub document_key_file: Option<PathBuf>,
    /// The id of `document_key`, stored with every document hash it makes.
    #[serde(default = "default_key_id")]
    pub document_key_id: u16,
    /// Document keys of earlier rotations: documents hashed under them are still
    /// recognised; new hashes use `document_key`.
    #[serde(default)]
    pub previous_document_keys: Vec<PreviousKey>,
    /// Key of the scene pseudonyms (`transit_account`).
    #[serde(default)]
    pub pseudonym_key: Option<Secret>,
    /// File holding `pseudonym_key`.
    #[serde(default)]
    pub pseudonym_key_file: Option<PathBuf>,
    /// The id of `pseudonym_key`, stored with every pseudonym it makes.
    #[serde(default = "default_key_id")]
    pub pseudonym_key_id: u16,
    /// Pseudonym keys of earlier rotations (needed only for subjects enrolled before
    /// pseudonyms were stored, whose pseudonym is derived under their key id).
    #[serde(default)]
    pub previous_pseudonym_keys: Vec<PreviousKey>,
    /// Key of the government-service pseudonym (held by the city's government
    /// systems too): computed at enrolment of a resident ID and stored with its id.
    #[serde(default)]
    pub government_key: Option<Secret>,
    /// File holding `government_key`.
    #[serde(default)]
    pub government_key_file: Option<PathBuf>,
    /// The id of `government_key`, stored with every government pseudonym it makes.
    #[serde(default = "default_key_id")]
    pub government_key_id: u16,
    /// Key of the face templates at rest (AES-256-GCM, `citypass_face::template`); the
    /// verifier holds the same keys to open the templates of its gallery.
    #[serde(default)]
    pub face_template_key: Option<Secret>,
    /// File holding `face_template_key`.
    #[serde(default)]
    pub face_template_key_file: Option<PathBuf>,
    /// The id of `face_template_key`, stored with every template it seals.
    #[serde(default = "default_key_id")]
    pub face_template_key_id: u16,
    /// Face-template keys of earlier rotations: they open older rows, never seal.
    #[serde(default)]
    pub previous_face_template_keys: Vec<PreviousKey>,
    /// A device-signed face call's timestamp within this of the service's clock.
    #[serde(
        default = "default_face_proof_freshness",
        deserialize_with = "duration::deserialize_positive"
    )]
    pub face_proof_freshness: Duration,
    /// Device-signed face calls one device may make per `face_call_window` (each face
    /// write takes its turn behind one lock: SECURITY.md, face finding F2).
    #[serde(default = "default_face_calls_per_device")]
    pub face_calls_per_device: u32,
    /// The window of `face_calls_per_device`.
    #[serde(
        default = "default_face_call_window",
        deserialize_with = "duration::deserialize_positive"
    )]
    pub face_call_window: Duration,
    /// People enrolled at which the provincial filing is due (and said so).
    #[serde(default = "default_face_filing_threshold")]
    pub face_filing_threshold: u64,
    /// Enrol attempts one caller address (an IPv6 /64) may make per
    /// `enrol_attempt_window`; each costs a real-name lookup.
    #[serde(default = "default_enrol_attempts_per_address")]
    pub enrol_attempts_per_address: u32,
    /// Enrol attempts per document (whoever makes them) per `enrol_attempt_window`, so
    /// that names cannot be tried against one number from many addresses.
    #[serde(default = "default_enrol_attempts_per_document")]
    pub enrol_attempts_per_document: u32,
    /// The window of the two limits above (the allowance refills evenly over it).
    #[serde(
        default = "default_enrol_attempt_window",
        deserialize_with = "duration::deserialize_positive"
    )]
    pub enrol_attempt_window: Duration,
    /// A refused Enrol is answered no sooner than this after it began, so that its
    /// timing does not tell a matching name from a mismatching one (security finding 8).
    #[serde(
        default = "default_enrol_refusal_floor",
        deserialize_with = "duration::deserialize"
    )]
    pub enrol_refusal_floor: Duration,
    /// ACTIVE devices a subject may have at once.
    #[serde(default = "default_max_devices")]
    pub max_devices_per_subject: u32,
    /// How long a binding challenge stays usable.
    #[serde(
        default = "default_challenge_ttl",
        deserialize_with = "duration::deserialize_positive"
    )]
    pub challenge_ttl: Duration,
    /// How long the enrolment secret (the authority to bind a first device) stays
    /// usable after Enrol or IssueEnrolmentSecret.
    #[serde(
        default = "default_enrolment_secret_ttl",
        deserialize_with = "duration::deserialize_positive"
    )]
    pub enrolment_secret_ttl: Duration,
    /// The longest validity RecordCertificate accepts (`not_after` at most this far
    /// after now, plus `clock_skew`); the issuer's own maximum must not exceed it.
    #[serde(
        default = "default_certificate_max_lifetime",
        deserialize_with = "duration::deserialize_positive"
    )]
    pub certificate_max_lifetime: Duration,
    /// Live (unexpired) certificates a device may hold at once.
    #[serde(default = "default_max_live_certificates")]
    pub max_live_certificates_per_device: u32,
    /// How far the issuer's clock may be ahead of this service's.
    #[serde(
        default = "default_clock_skew",
        deserialize_with = "duration::deserialize_positive"
    )]
    pub clock_skew: Duration,
    /// Outcomes of the sandbox real-name check.
    #[serde(default)]
    pub real_name_sandbox: SandboxConfig,
    /// The real-name provider's API (production); unset: the sandbox.
    #[serde(default)]
    pub real_name: Option<RealNameConfig>,
}

/// A key of an earlier rotation, with its id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousKey {
    /// Its id (the one it had while current).
    pub id: u16,
    /// The key (hex, or `dev:…`).
    #[serde(default)]
    pub key: Option<Secret>,
    /// File holding the key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

fn default_key_id() -> u16 {
    1
}

fn default_face_proof_freshness() -> Duration {
    Duration::from_secs(30)
}

fn default_face_calls_per_device() -> u32 {
    20
}

fn default_face_call_window() -> Duration {
    Duration::from_secs(3600)
}

fn default_face_filing_threshold() -> u64 {
    crate::face::FILING_THRESHOLD
}

fn default_enrol_attempts_per_address() -> u32 {
    10
}

fn default_enrol_attempts_per_document() -> u32 {
    5
}

fn default_enrol_attempt_window() -> Duration {
    Duration::from_secs(3600)
}

fn default_enrol_refusal_floor() -> Duration {
    Duration::from_secs(1)
}

fn default_server() -> ServerConfig {
    ServerConfig::new("citypass-identity")
}

fn default_max_devices() -> u32 {
    3
}

fn default_challenge_ttl() -> Duration {
    Duration::from_secs(300)
}

fn default_enrolment_secret_ttl() -> Duration {
    Duration::from_secs(30 * 60)
}

fn default_certificate_max_lifetime() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_max_live_certificates() -> u32 {
    8
}

fn default_clock_skew() -> Duration {
    Duration::from_secs(60)
}

/// A key with its provenance (one parser for every service's HMAC keys).
pub use citypass_pseudonym::Key;

impl IdentityConfig {
    /// Every default: development environment, in-memory store, dev keys, sandbox
    /// checks that all match. What `citypass dev` runs.
    pub fn dev() -> Self {
        IdentityConfig {
            server: default_server(),
            environment: Environment::Dev,
            database: None,
            document_key: None,
            document_key_file: None,
            document_key_id: default_key_id(),
            previous_document_keys: Vec::new(),
            pseudonym_key: None,
            pseudonym_key_file: None,
            pseudonym_key_id: default_key_id(),
            previous_pseudonym_keys: Vec::new(),
            government_key: None,
            government_key_file: None,
            government_key_id: default_key_id(),
            face_template_key: None,
            face_template_key_file: None,
            face_template_key_id: default_key_id(),
            previous_face_template_keys: Vec::new(),
            face_proof_freshness: default_face_proof_freshness(),
            face_calls_per_device: default_face_calls_per_device(),
            face_call_window: default_face_call_window(),
            face_filing_threshold: default_face_filing_threshold(),
            enrol_attempts_per_address: default_enrol_attempts_per_address(),
            enrol_attempts_per_document: default_enrol_attempts_per_document(),
            enrol_attempt_window: default_enrol_attempt_window(),
            enrol_refusal_floor: default_enrol_refusal_floor(),
            max_devices_per_subject: default_max_devices(),
            challenge_ttl: default_challenge_ttl(),
            enrolment_secret_ttl: default_enrolment_secret_ttl(),
            certificate_max_lifetime: default_certificate_max_lifetime(),
            max_live_certificates_per_device: default_max_live_certificates(),
            clock_skew: default_clock_skew(),
            real_name_sandbox: SandboxConfig::default(),
            real_name: None,
        }
    }

    /// Checks the settings that do not depend on the store or the real-name backend,
    /// and refuses development shortcuts in production.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_devices_per_subject == 0 {
            return Err(Error::Config(
                "max_devices_per_subject: must be at least 1".into(),
            ));
        }
        if self.max_live_certificates_per_device == 0 {
            return Err(Error::Config(
                "max_live_certificates_per_device: must be at least 1".into(),
            ));
        }
        if self.certificate_max_lifetime > Duration::from_secs(24 * 3600) {
            return Err(Error::Config(
                "certificate_max_lifetime: at most 24h (what gates accept)".into(),
            ));
        }
        if self.enrol_attempts_per_address == 0 || self.enrol_attempts_per_document == 0 {
            return Err(Error::Config(
                "enrol_attempts_per_address and enrol_attempts_per_document: must be at least 1"
                    .into(),
            ));
        }
        if self.enrol_refusal_floor > Duration::from_secs(10) {
            return Err(Error::Config(
                "enrol_refusal_floor: at most 10s (it holds the caller's call open)".into(),
            ));
        }
        if self.face_proof_freshness > Duration::from_secs(300) {
            return Err(Error::Config("face_proof_freshness: at most 5m".into()));
        }
        if self.face_filing_threshold == 0 {
            return Err(Error::Config(
                "face_filing_threshold: must be at least 1".into(),
            ));
        }
        self.document_keys()?;
        self.pseudonym_keys()?;
        self.government_keys()?;
        self.face_template_keys()?;
        let refused = |e: Refusal| Error::Config(e.to_string());
        Deployment::new(&self.server, self.environment)
            .database(
                self.database.as_ref(),
                Some("is required in production: the in-memory store loses everything on restart"),
            )
            .map_err(refused)?
            .check_transport()
            .map_err(refused)
    }

    /// Refuses the real-name sandbox in production (where `real_name` must name the
    /// provider), and a sandbox configured beside the provider.
    pub fn check_sandbox_allowed(&self) -> Result<(), Error> {
        if self.real_name.is_some() {
            if self.real_name_sandbox != SandboxConfig::default() {
                return Err(Error::Config(
                    "real_name and real_name_sandbox are both set: the provider answers every check, so remove the sandbox".into(),
                ));
            }
            return Ok(());
        }
        if self.environment == Environment::Production {
            return Err(Error::Config(
                "environment is production but the only real-name check available is the sandbox, which would verify everyone; production needs real_name: {provider: tencent, …}".into(),
            ));
        }
        Ok(())
    }

    /// The document-hash key (the dev key if none is configured).
    pub fn document_key(&self) -> Result<Key, Error> {
        self.key(
            "document_key",
            self.document_key.as_ref(),
            self.document_key_file.as_deref(),
            Some(DEV_DOCUMENT_KEY),
        )
    }

    /// The pseudonym key (the dev key if none is configured).
    pub fn pseudonym_key(&self) -> Result<Key, Error> {
        self.key(
            "pseudonym_key",
            self.pseudonym_key.as_ref(),
            self.pseudonym_key_file.as_deref(),
            Some(DEV_PSEUDONYM_KEY),
        )
    }

    /// The government-service key (the dev key if none is configured).
    pub fn government_key(&self) -> Result<Key, Error> {
        self.key(
            "government_key",
            self.government_key.as_ref(),
            self.government_key_file.as_deref(),
            Some(DEV_GOVERNMENT_KEY),
        )
    }

    /// The face-template keys, the current one first (it seals; every one opens).
    pub fn face_template_keys(&self) -> Result<citypass_face::TemplateKeys, Error> {
        let current = self.key(
            "face_template_key",
            self.face_template_key.as_ref(),
            self.face_template_key_file.as_deref(),
            Some(DEV_FACE_TEMPLATE_KEY),
        )?;
        let mut previous = Vec::with_capacity(self.previous_face_template_keys.len());
        for (i, p) in self.previous_face_template_keys.iter().enumerate() {
            let what = format!("previous_face_template_keys[{i}]");
            previous.push((
                p.id,
                self.key(&what, p.key.as_ref(), p.key_file.as_deref(), None)?,
            ));
        }
        let refs: Vec<(u16, &[u8])> = previous.iter().map(|(id, k)| (*id, k.bytes())).collect();
        citypass_face::TemplateKeys::new((self.face_template_key_id, current.bytes()), &refs)
            .map_err(|e| Error::Config(format!("face_template_key: {e}")))
    }

    /// The government-service key with its id (no previous keys: the value is
    /// computed at enrolment only, and stored).
    pub fn government_keys(&self) -> Result<HmacKeys, Error> {
        self.keys(
            "government_key",
            (self.government_key_id, self.government_key()?),
            &[],
        )
    }

    /// Every document key with its id, the current one first.
    pub fn document_keys(&self) -> Result<HmacKeys, Error> {
        self.keys(
            "document_key",
            (self.document_key_id, self.document_key()?),
            &self.previous_document_keys,
        )
    }

    /// Every pseudonym key with its id, the current one first.
    pub fn pseudonym_keys(&self) -> Result<HmacKeys, Error> {
        self.keys(
            "pseudonym_key",
            (self.pseudonym_key_id, self.pseudonym_key()?),
            &self.previous_pseudonym_keys,
        )
    }

    fn keys(
        &self,
        name: &str,
        current: (u16, Key),
        previous: &[PreviousKey],
    ) -> Result<HmacKeys, Error> {
        let id = |n: u16, what: &str| {
            KeyId::new(n).ok_or_else(|| Error::Config(format!("{what}: must be 1 to 32767")))
        };
        let current_id = id(current.0, &format!("{name}_id"))?;
        let mut old = Vec::with_capacity(previous.len());
        for (i, p) in previous.iter().enumerate() {
            let what = format!("previous_{name}s[{i}]");
            let key = self.key(&what, p.key.as_ref(), p.key_file.as_deref(), None)?;
            old.push((id(p.id, &format!("{what}.id"))?, key));
        }
        let old_refs: Vec<(KeyId, &[u8])> = old.iter().map(|(i, k)| (*i, k.bytes())).collect();
        HmacKeys::new((current_id, current.1.bytes()), &old_refs)
            .map_err(|e| Error::Config(format!("{name}: {e}")))
    }

    fn key(
        &self,
        name: &str,
        inline: Option<&Secret>,
        file: Option<&Path>,
        dev_default: Option<&str>,
    ) -> Result<Key, Error> {
        let key = match (inline, file) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(format!(
                    "{name} and {name}_file are both set: choose one"
                )));
            }
            (Some(secret), None) => Key::parse(secret.expose(), name)?,
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::Config(format!("{name}_file {}: {e}", path.display())))?;
                Key::parse(&text, name)?
            }
            (None, None) => match dev_default {
                Some(dev) => Key::parse(dev, name)?,
                None => {
                    return Err(Error::Config(format!(
                        "{name}: key or key_file is required"
                    )));
                }
            },
        };
        if key.is_dev() && self.environment == Environment::Production {
            return Err(Error::Config(format!(
                "environment is production but {name} is a development key: set {name} or {name}_file to 32+ secret bytes in hex"
            )));
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<IdentityConfig, citypass_runtime::ConfigError> {
        citypass_runtime::config::load_from(None, "CITYPASS", vars.iter().copied())
    }

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn no_configuration_means_production_which_refuses_dev_keys() {
        let config = load(&[]).unwrap();
        assert_eq!(config.environment, Environment::Production);
        assert!(config.validate().is_err(), "dev keys refused in production");
    }

    #[test]
    fn the_example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml");
        let mut config: IdentityConfig = citypass_runtime::config::load_file(&path).unwrap();
        assert!(config.server.tls.is_some() && config.database.is_some());
        // The key files are mounted Secrets; stand in for them.
        let dir = std::env::temp_dir().join(format!("citypass-example-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("document_key"), HEX_KEY).unwrap();
        std::fs::write(dir.join("document_key.1"), HEX_KEY.replace('0', "a")).unwrap();
        std::fs::write(dir.join("pseudonym_key"), HEX_KEY).unwrap();
        std::fs::write(dir.join("government_key"), HEX_KEY).unwrap();
        std::fs::write(dir.join("face_template_key"), HEX_KEY).unwrap();
        config.document_key_file = Some(dir.join("document_key"));
        config.face_template_key_file = Some(dir.join("face_template_key"));
        config.previous_document_keys[0].key_file = Some(dir.join("document_key.1"));
        config.pseudonym_key_file = Some(dir.join("pseudonym_key"));
        config.government_key_file = Some(dir.join("government_key"));
        config.validate().unwrap();
        // Production's real-name check is the provider's API, never the sandbox.
        assert!(config.real_name.is_some());
        config.check_sandbox_allowed().unwrap();
        let ids: Vec<u16> = config
            .document_keys()
            .unwrap()
            .ids()
            .map(|id| u16::try_from(id.stored()).unwrap())
            .collect();
        assert_eq!(ids, vec![2, 1]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn dev_environment_gives_dev_defaults() {
        let config = load(&[("CITYPASS_ENVIRONMENT", "dev")]).unwrap();
        assert_eq!(config.environment, Environment::Dev);
        assert_eq!(config.max_devices_per_subject, 3);
        assert_eq!(config.challenge_ttl, Duration::from_secs(300));
        assert_eq!(config.server.service_name, "citypass-identity");
        assert!(config.document_key().unwrap().is_dev());
        config.validate().unwrap();
        config.check_sandbox_allowed().unwrap();
    }

    #[test]
    fn environment_variables_set_the_keys() {
        let config = load(&[
            ("CITYPASS_MAX_DEVICES_PER_SUBJECT", "5"),
            ("CITYPASS_CHALLENGE_TTL", "30s"),
            ("CITYPASS_DOCUMENT_KEY", HEX_KEY),
            ("CITYPASS_DATABASE__URL", "postgres://u:pw@db/identity"),
        ])
        .unwrap();
        assert_eq!(config.max_devices_per_subject, 5);
        assert_eq!(config.challenge_ttl, Duration::from_secs(30));
        let key = config.document_key().unwrap();
        assert!(!key.is_dev());
        assert_eq!(key.bytes().len(), 32);
        // Secrets stay out of Debug output.
        let debug = format!("{config:?}");
        assert!(!debug.contains("pw@db"), "{debug}");
        assert!(!debug.contains(HEX_KEY), "{debug}");
        assert!(load(&[("CITYPASS_NO_SUCH_KEY", "1")]).is_err());
    }

    #[test]
    fn production_refuses_dev_keys_memory_and_the_sandbox() {
        let mut config = load(&[("CITYPASS_ENVIRONMENT", "production")]).unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("document_key is a development key"), "{err}");
        config.document_key = Some(Secret::new(HEX_KEY));
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("pseudonym_key is a development key"), "{err}");
        config.pseudonym_key = Some(Secret::new(HEX_KEY));
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("government_key is a development key"), "{err}");
        config.government_key = Some(Secret::new(HEX_KEY));
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("face_template_key is a development key"),
            "{err}"
        );
        config.face_template_key = Some(Secret::new(HEX_KEY));
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("database"), "{err}");
        config.database = Some(PostgresConfig::new("postgres://db/identity"));
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("server.tls"), "{err}");
        config.server.tls = Some(citypass_runtime::TlsConfig::in_dir(Path::new("/tls")));
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("database.url"),
            "plaintext PostgreSQL refused: {err}"
        );
        config.database = Some(PostgresConfig::new(
            "postgres://db/identity?sslmode=verify-full&sslrootcert=/tls/ca.crt",
        ));
        config.validate().unwrap();
        assert!(config.check_sandbox_allowed().is_err());
        // An explicit dev key is just as refused.
        config.document_key = Some(Secret::new(DEV_DOCUMENT_KEY));
        assert!(config.validate().is_err());
    }

    #[test]
    fn keys_are_checked_and_may_come_from_files() {
        assert!(Key::parse("abcd", "k").is_err());
        assert!(Key::parse("zz", "k").is_err());
        assert!(Key::parse("dev:", "k").is_err());
        let dir =
            std::env::temp_dir().join(format!("citypass-identity-key-{}", std::process::id()));
        std::fs::write(&dir, format!("{HEX_KEY}\n")).unwrap();
        let mut config = IdentityConfig::dev();
        config.document_key_file = Some(dir.clone());
        assert_eq!(config.document_key().unwrap().bytes()[31], 0x1f);
        config.document_key = Some(Secret::new(HEX_KEY));
        assert!(
            config.document_key().is_err(),
            "inline and file are exclusive"
        );
        let _ = std::fs::remove_file(dir);
    }

    #[test]
    fn key_ids_are_checked_and_previous_keys_follow_the_same_rules() {
        let mut config = IdentityConfig::dev();
        assert_eq!(config.document_keys().unwrap().ids().count(), 1);
        config.document_key_id = 0;
        assert!(config.validate().is_err(), "ids start at 1");
        config.document_key_id = 2;
        config.previous_document_keys = vec![PreviousKey {
            id: 2,
            key: Some(Secret::new(HEX_KEY)),
            key_file: None,
        }];
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
        config.previous_document_keys[0].id = 1;
        config.validate().unwrap();
        config.previous_document_keys[0].key = None;
        assert!(config.validate().is_err(), "a previous key needs its key");
        // Production refuses a dev key among the previous ones too.
        let mut config = load(&[("CITYPASS_ENVIRONMENT", "production")]).unwrap();
        config.document_key = Some(Secret::new(HEX_KEY));
        config.pseudonym_key = Some(Secret::new(HEX_KEY));
        config.previous_pseudonym_keys = vec![PreviousKey {
            id: 7,
            key: Some(Secret::new("dev:old")),
            key_file: None,
        }];
        let err = config.pseudonym_keys().unwrap_err().to_string();
        assert!(err.contains("development key"), "{err}");
    }

    #[test]
    fn limits_must_be_positive() {
        let mut config = IdentityConfig::dev();
        config.max_devices_per_subject = 0;
        assert!(config.validate().is_err());
        assert!(load(&[("CITYPASS_CHALLENGE_TTL", "0s")]).is_err());
        let mut config = IdentityConfig::dev();
        config.enrol_attempts_per_document = 0;
        assert!(config.validate().is_err());
        let config = load(&[
            ("CITYPASS_ENVIRONMENT", "dev"),
            ("CITYPASS_ENROL_ATTEMPTS_PER_ADDRESS", "3"),
            ("CITYPASS_ENROL_REFUSAL_FLOOR", "0s"),
        ])
        .unwrap();
        assert_eq!(config.enrol_attempts_per_address, 3);
        assert_eq!(config.enrol_refusal_floor, Duration::ZERO);
    }
}
