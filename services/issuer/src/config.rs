//! What an operator sets for the issuer, with the checks that keep it consistent with
//! what gates accept.
//!
//! Two layers: [`IssuanceConfig`] is what the issuing logic itself needs (lifetimes,
//! proof freshness, identity cache, scene policy) and is all that an embedding such as
//! `citypass dev` has to supply ([`IssuanceConfig::default`] is a sane dev and
//! production default). [`Config`] is the binary's whole file: the runtime's server
//! section, where keys come from, where identity and Redis are. It is loaded with
//! `citypass_runtime::config::load` (YAML, then `CITYPASS_…` variables on top).
//!
//! Limits are checked at start-up ([`Config::validate`]) rather than discovered at the
//! gate: a token lifetime above the verifiers' cap, for example, would produce codes
//! that every gate refuses. Every duration has a documented maximum, so that no time
//! computed from one (a code's `exp`, a cache entry's expiry, a nonce's) can overflow:
//! the issuance durations below are checked by [`IssuanceConfig::validate`] and
//! [`RevocationSettings::validate`], the shared ones (`server.*`, `keyring`, upstream
//! and Redis timeouts) as the file is read (`citypass_runtime::config::duration`), each
//! refusal naming its key.

use std::time::Duration;

use citypass_runtime::config::{Deployment, KeyFile, RedisConfig, duration};
use citypass_runtime::{ServerConfig, UpstreamConfig};
use serde::Deserialize;

pub use citypass_revocation_follow::{FollowMode, RevocationSettings};

use crate::policy::MinAssurance;

/// Longest online-token lifetime gates accept (`citypass_token::Validation` default).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// Longest certificate lifetime gates accept (`citypass_token::Validation` default).
pub const MAX_CERTIFICATE_LIFETIME: Duration = Duration::from_secs(86_400);
/// Longest proof freshness window accepted: a wider window keeps more nonces and lets
/// a captured request be replayed to a replica with another nonce store for longer.
pub const MAX_PROOF_FRESHNESS: Duration = Duration::from_secs(300);
/// Longest `issuance.identity_cache_ttl`: the cache is how long an unbind or a
/// suspension may take to stop issuance, so it stays short.
pub const MAX_IDENTITY_CACHE_TTL: Duration = Duration::from_secs(60);

/// Which kind of deployment this is. In production, dev key rings are refused (at
/// start-up and at every reload) and a shared nonce store (Redis) is required, since
/// replicas must see each other's nonces.
pub use citypass_runtime::Environment;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid issuer configuration: `{key}` {problem}")]
pub struct InvalidConfig {
    /// The offending key, dotted.
    pub key: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

fn invalid(key: &'static str, problem: &'static str) -> InvalidConfig {
    InvalidConfig { key, problem }
}

/// What the issuing logic needs. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IssuanceConfig {
    /// Lifetime of an online code (default `60s`; at most 5 minutes, what gates accept).
    #[serde(deserialize_with = "duration::deserialize_positive")]
    pub token_lifetime: Duration,
    /// Certificate lifetime when the request names none (default `24h`).
    #[serde(deserialize_with = "duration::deserialize_positive")]
    pub certificate_lifetime: Duration,
    /// Longest certificate lifetime granted, whatever is requested (default `24h`, also
    /// the most gates accept).
    #[serde(deserialize_with = "duration::deserialize_positive")]
    pub certificate_max_lifetime: Duration,
    /// How far a request's timestamp may be from the issuer's clock, either side
    /// (default `30s`). Nonces are remembered for twice this plus a second.
    #[serde(deserialize_with = "duration::deserialize_positive")]
    pub proof_freshness: Duration,
    /// How long a GetDevice answer from identity is reused (default `3s`; `0s` turns
    /// the cache off; at most `60s`): the longest an unbind or suspension takes to stop
    /// issuance.
    #[serde(deserialize_with = "duration::deserialize")]
    pub identity_cache_ttl: Duration,
    /// Most devices held in that cache (default 100 000).
    pub identity_cache_capacity: usize,
    /// Least assurance level for the hospital scene (default `real_name_verified`).
    pub hospital_min_assurance: MinAssurance,
    /// Side of the SVG rendered when a request asks for one, in pixels (default 256).
    pub svg_min_px: u32,
}

impl Default for IssuanceConfig {
    fn default() -> Self {
        IssuanceConfig {
            token_lifetime: Duration::from_secs(60),
            certificate_lifetime: Duration::from_secs(86_400),
            certificate_max_lifetime: Duration::from_secs(86_400),
            proof_freshness: Duration::from_secs(30),
            identity_cache_ttl: Duration::from_secs(3),
            identity_cache_capacity: 100_000,
            hospital_min_assurance: MinAssurance::RealNameVerified,
            svg_min_px: 256,
        }
    }
}

impl IssuanceConfig {
    /// Checks the limits described on each field.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.token_lifetime < Duration::from_secs(1) || self.token_lifetime > MAX_TOKEN_LIFETIME
        {
            return Err(invalid(
                "issuance.token_lifetime",
                "must be between 1s and 300s (what gates accept)",
            ));
        }
        if self.certificate_max_lifetime < Duration::from_secs(1)
            || self.certificate_max_lifetime > MAX_CERTIFICATE_LIFETIME
        {
            return Err(invalid(
                "issuance.certificate_max_lifetime",
                "must be between 1s and 24h (what gates accept)",
            ));
        }
        if self.certificate_lifetime < Duration::from_secs(1)
            || self.certificate_lifetime > self.certificate_max_lifetime
        {
            return Err(invalid(
                "issuance.certificate_lifetime",
                "must be between 1s and certificate_max_lifetime",
            ));
        }
        if self.proof_freshness < Duration::from_secs(1)
            || self.proof_freshness > MAX_PROOF_FRESHNESS
        {
            return Err(invalid(
                "issuance.proof_freshness",
                "must be between 1s and 5m",
            ));
        }
        if self.identity_cache_ttl > MAX_IDENTITY_CACHE_TTL {
            return Err(invalid(
                "issuance.identity_cache_ttl",
                "must be at most 60s (how long an unbind may take to stop issuance)",
            ));
        }
        if self.identity_cache_capacity == 0 {
            return Err(invalid(
                "issuance.identity_cache_capacity",
                "must be at least 1",
            ));
        }
        if self.svg_min_px == 0 || self.svg_min_px > 4096 {
            return Err(invalid("issuance.svg_min_px", "must be between 1 and 4096"));
        }
        Ok(())
    }

    /// How long a nonce must be remembered (see [`citypass_device_proof::nonce_ttl`]).
    pub fn nonce_ttl(&self) -> Duration {
        citypass_device_proof::nonce_ttl(self.proof_freshness)
    }
}

/// The `citypass-issuer` binary's configuration (`config.example.yaml` shows every
/// key).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen address, TLS, limits, telemetry (see `citypass_runtime::ServerConfig`).
    #[serde(default = "default_server")]
    pub server: ServerConfig,
    /// `dev` or `production` (the default).
    #[serde(default)]
    pub environment: Environment,
    /// The key ring file (a mounted Secret in Kubernetes; default
    /// `keys/dev/keyring.json`, checked every `5s`). It holds the code-signing seeds,
    /// the subject key, and the public halves of the snapshot keys to publish.
    #[serde(default = "KeyFile::dev_keyring")]
    pub keyring: KeyFile,
    /// The identity service (default `http://127.0.0.1:50051`, 2 s connect).
    #[serde(default = "default_identity")]
    pub identity: UpstreamConfig,
    /// Redis for the nonce store. Unset: an in-memory store, refused in production.
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// Prefix of the issuer's Redis keys (default `citypass:issuer:`).
    #[serde(default = "default_redis_key_prefix")]
    pub redis_key_prefix: String,
    /// Most nonces the in-memory store holds (default 1 000 000); when it is full,
    /// signed requests are refused rather than a live nonce forgotten.
    #[serde(default = "default_nonce_capacity")]
    pub nonce_capacity: usize,
    /// The issuing logic's settings.
    #[serde(default)]
    pub issuance: IssuanceConfig,
    /// The revocation follower's settings.
    #[serde(default)]
    pub revocation: RevocationSettings,
}

fn default_server() -> ServerConfig {
    ServerConfig::new("citypass-issuer")
}

fn default_identity() -> UpstreamConfig {
    UpstreamConfig::new("http://127.0.0.1:50051")
}

fn default_redis_key_prefix() -> String {
    "citypass:issuer:".to_owned()
}

fn default_nonce_capacity() -> usize {
    1_000_000
}

impl Config {
    /// A dev configuration with every default: `environment: dev`, in-memory nonces.
    pub fn dev(server: ServerConfig) -> Self {
        Config {
            server,
            environment: Environment::Dev,
            keyring: KeyFile::dev_keyring(),
            identity: default_identity(),
            redis: None,
            redis_key_prefix: default_redis_key_prefix(),
            nonce_capacity: default_nonce_capacity(),
            issuance: IssuanceConfig::default(),
            revocation: RevocationSettings::default(),
        }
    }

    /// The Redis the revocation follower reads: its own, else the issuer's.
    pub fn revocation_redis(&self) -> Option<&RedisConfig> {
        self.revocation.redis_or(self.redis.as_ref())
    }

    /// Checks the issuance limits and what production requires.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        self.issuance.validate()?;
        self.revocation
            .validate_with(self.redis.as_ref())
            .map_err(|e| invalid(e.key, e.problem))?;
        let mut deployment = Deployment::new(&self.server, self.environment);
        deployment
            .require(
                "redis",
                self.redis.is_some(),
                "is required in production: replicas must share one nonce store",
            )
            .map_err(|e| invalid(e.key, e.problem))?;
        if self.nonce_capacity == 0 {
            return Err(invalid("nonce_capacity", "must be at least 1"));
        }
        deployment
            .url("identity.url", self.identity.url.as_str())
            .redis("redis.url", self.redis.as_ref());
        self.revocation.name_urls(&mut deployment);
        deployment
            .check_transport()
            .map_err(|e| invalid(e.key, e.problem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config, citypass_runtime::ConfigError> {
        citypass_runtime::config::load_from(None, "CITYPASS", vars.iter().copied())
    }

    #[test]
    fn defaults_are_valid_and_production_needs_redis() {
        let config = load(&[("CITYPASS_SERVER__SERVICE_NAME", "issuer")]).expect("loads");
        assert_eq!(config.environment, Environment::Production);
        assert_eq!(config.issuance, IssuanceConfig::default());
        assert_eq!(config.validate().unwrap_err().key, "redis");

        let config = load(&[
            ("CITYPASS_SERVER__SERVICE_NAME", "issuer"),
            ("CITYPASS_REDIS__URL", "rediss://127.0.0.1:6379/"),
            ("CITYPASS_SERVER__INSECURE_PLAINTEXT_BEHIND_MESH", "true"),
        ])
        .expect("loads");
        config.validate().expect("valid");
        Config::dev(ServerConfig::new("issuer"))
            .validate()
            .expect("dev defaults are valid");
    }

    #[test]
    fn revocation_settings_load_and_are_checked() {
        let config = load(&[
            ("CITYPASS_SERVER__SERVICE_NAME", "issuer"),
            ("CITYPASS_ENVIRONMENT", "dev"),
            (
                "CITYPASS_REVOCATION__SERVICE__URL",
                "http://revocation:50054",
            ),
            ("CITYPASS_REVOCATION__FOLLOW", "watch"),
            ("CITYPASS_REVOCATION__MAX_AGE", "15s"),
        ])
        .expect("loads");
        assert_eq!(config.revocation.service.url, "http://revocation:50054");
        assert_eq!(config.revocation.follow, FollowMode::Watch);
        assert_eq!(config.revocation.max_age, Duration::from_secs(15));
        config.validate().expect("valid");

        let mut config = Config::dev(ServerConfig::new("issuer"));
        assert_eq!(config.revocation, RevocationSettings::default());
        config.revocation.max_age = Duration::from_secs(1);
        assert_eq!(config.validate().unwrap_err().key, "revocation.max_age");
        config.revocation.max_age = Duration::from_secs(10);
        config.revocation.follow = FollowMode::Redis;
        assert_eq!(config.validate().unwrap_err().key, "revocation.follow");
        config.redis = Some(RedisConfig::new("redis://127.0.0.1:6379/"));
        config
            .validate()
            .expect("redis mode with the issuer's Redis");
        assert!(
            load(&[
                ("CITYPASS_SERVER__SERVICE_NAME", "issuer"),
                ("CITYPASS_REVOCATION__FOLLOW", "pubsub"),
            ])
            .is_err(),
            "an unknown mode is an error"
        );
    }

    #[test]
    fn the_example_file_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml");
        let config: Config = citypass_runtime::config::load_file(&path).unwrap();
        config.validate().unwrap();
        assert!(config.server.tls.is_some() && config.redis.is_some());
        let mut plaintext = config.clone();
        plaintext.identity.url = "http://identity:50051".to_owned();
        assert_eq!(plaintext.validate().unwrap_err().key, "identity.url");
        let mut no_tls = config;
        no_tls.server.tls = None;
        assert_eq!(no_tls.validate().unwrap_err().key, "server.tls");
    }

    #[test]
    fn environment_sets_nested_issuance_keys() {
        let config = load(&[
            ("CITYPASS_SERVER__SERVICE_NAME", "issuer"),
            ("CITYPASS_ENVIRONMENT", "dev"),
            ("CITYPASS_ISSUANCE__TOKEN_LIFETIME", "45s"),
            ("CITYPASS_ISSUANCE__HOSPITAL_MIN_ASSURANCE", "in_person"),
        ])
        .expect("loads");
        assert_eq!(config.issuance.token_lifetime, Duration::from_secs(45));
        assert_eq!(
            config.issuance.hospital_min_assurance,
            MinAssurance::InPerson
        );
        assert!(
            load(&[
                ("CITYPASS_SERVER__SERVICE_NAME", "issuer"),
                ("CITYPASS_ISSUANCE__TOKEN_LIFETIM", "45s"),
            ])
            .is_err(),
            "a misspelt key is an error"
        );
    }

    /// Security review, smaller findings: configured lifetimes had no upper bound, so
    /// an absurd one reached `now + lifetime` unchecked. Each is now refused at start-up,
    /// naming its key: the issuance ones by `validate`, the shared ones as the
    /// configuration is read.
    #[test]
    fn smaller_findings_an_absurd_lifetime_is_refused_naming_the_key() {
        const ABSURD: &str = "1000000000h";
        for key in [
            "token_lifetime",
            "certificate_lifetime",
            "certificate_max_lifetime",
            "proof_freshness",
            "identity_cache_ttl",
        ] {
            let var = format!("CITYPASS_ISSUANCE__{}", key.to_ascii_uppercase());
            let config = load(&[
                ("CITYPASS_SERVER__SERVICE_NAME", "issuer"),
                ("CITYPASS_ENVIRONMENT", "dev"),
                (&var, ABSURD),
            ])
            .expect("loads; validate judges");
            let err = config.validate().unwrap_err();
            assert_eq!(err.key, format!("issuance.{key}"), "{var}: {err}");
        }
        let config = load(&[
            ("CITYPASS_SERVER__SERVICE_NAME", "issuer"),
            ("CITYPASS_ENVIRONMENT", "dev"),
            ("CITYPASS_REVOCATION__MAX_AGE", ABSURD),
        ])
        .unwrap();
        assert_eq!(config.validate().unwrap_err().key, "revocation.max_age");

        for key in [
            "server.request_timeout",
            "server.shutdown_delay",
            "server.shutdown_drain_timeout",
            "keyring.reload_interval",
            "identity.connect_timeout",
            "identity.request_timeout",
            "revocation.service.request_timeout",
            "redis.timeout",
        ] {
            let var = format!("CITYPASS_{}", key.replace('.', "__").to_ascii_uppercase());
            let mut vars = vec![
                ("CITYPASS_SERVER__SERVICE_NAME", "issuer"),
                ("CITYPASS_ENVIRONMENT", "dev"),
                (var.as_str(), ABSURD),
            ];
            if key == "keyring.reload_interval" {
                vars.push(("CITYPASS_KEYRING__PATH", "keys/dev/keyring.json"));
            }
            if key == "redis.timeout" {
                vars.push(("CITYPASS_REDIS__URL", "redis://127.0.0.1:6379/"));
            }
            match load(&vars) {
                Err(citypass_runtime::ConfigError::Invalid {
                    key: at, message, ..
                }) => {
                    assert_eq!(at, key, "{message}");
                    assert!(message.contains("out of range"), "{key}: {message}");
                }
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[test]
    fn limits_gates_would_refuse_are_refused() {
        let too_long = IssuanceConfig {
            token_lifetime: Duration::from_secs(301),
            ..IssuanceConfig::default()
        };
        assert_eq!(
            too_long.validate().unwrap_err().key,
            "issuance.token_lifetime"
        );
        let cert = IssuanceConfig {
            certificate_max_lifetime: Duration::from_secs(90_000),
            ..IssuanceConfig::default()
        };
        assert_eq!(
            cert.validate().unwrap_err().key,
            "issuance.certificate_max_lifetime"
        );
        let default_above_max = IssuanceConfig {
            certificate_max_lifetime: Duration::from_secs(3_600),
            ..IssuanceConfig::default()
        };
        assert_eq!(
            default_above_max.validate().unwrap_err().key,
            "issuance.certificate_lifetime"
        );
    }
}
