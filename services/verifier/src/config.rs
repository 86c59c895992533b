//! What an operator sets for the verifier, with the checks that keep it consistent with
//! what codes and gates need.
//!
//! [`Config`] is the binary's whole file (`config.example.yaml` shows every key),
//! loaded with `citypass_runtime::config::load_env` (YAML, then `CITYPASS_…` variables
//! on top). Limits are checked at start-up ([`Config::validate`]), each refusal naming
//! its key.

use std::time::Duration;

pub use citypass_revocation_follow::{FollowMode, RevocationSettings};
use citypass_runtime::config::{KeyFile, RedisConfig, duration, list};
use citypass_runtime::{Secret, ServerConfig, UpstreamConfig};
use serde::Deserialize;

pub use citypass_runtime::Environment;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid verifier configuration: `{key}` {problem}")]
pub struct InvalidConfig {
    /// The offending key, dotted.
    pub key: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

fn invalid(key: &'static str, problem: &'static str) -> InvalidConfig {
    InvalidConfig { key, problem }
}

/// Largest `decision.skew`: the token crate's times are whole seconds and codes live
/// about a minute, so more than this would accept expired codes for longer than they
/// were valid.
pub const MAX_SKEW: Duration = Duration::from_secs(120);

/// How the decision itself is taken.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionSettings {
    /// Allowed difference between the issuer's (or phone's) clock and the verifier's,
    /// either side (default `30s`, what offline gates use; at most `2m`).
    #[serde(deserialize_with = "duration::deserialize")]
    pub skew: Duration,
}

impl Default for DecisionSettings {
    fn default() -> Self {
        DecisionSettings {
            skew: Duration::from_secs(30),
        }
    }
}

/// What offline gates' uploads may bring (`upload.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadSettings {
    /// How far back a scan may be uploaded, and how much longer an uploaded mark is
    /// kept than a live one, so that a second gate's upload within it is compared
    /// (default `24h`; from `1m` to `168h`).
    #[serde(deserialize_with = "duration::deserialize")]
    pub window: Duration,
    /// Most fraud signals kept (default 100 000; the oldest go first).
    pub fraud_log_capacity: usize,
}

impl Default for UploadSettings {
    fn default() -> Self {
        UploadSettings {
            window: Duration::from_secs(24 * 3600),
            fraud_log_capacity: 100_000,
        }
    }
}

/// The `citypass-verifier` binary's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen address, TLS, limits, telemetry (see `citypass_runtime::ServerConfig`).
    #[serde(default = "default_server")]
    pub server: ServerConfig,
    /// `dev` or `production` (the default).
    #[serde(default)]
    pub environment: Environment,
    /// The issuer's published key set (JWKS, as GetKeySet's `jwks_json` or `citypass
    /// demo --out` write it; default `keys/dev/keyset.jwks.json`, checked every `5s`):
    /// a mounted ConfigMap, reloaded on change.
    #[serde(default = "default_key_set")]
    pub key_set: KeyFile,
    /// The issuer, whose GetKeySet refreshes the key set every
    /// `key_set.reload_interval` (a set is taken only when a code key of the set in
    /// force signed it, and never an older one). Unset: the file alone.
    #[serde(default)]
    pub issuer: Option<UpstreamConfig>,
    /// The gate registry (YAML, see `gates.example.yaml`; default
    /// `keys/dev/gates.yaml`, checked every `5s`): a mounted ConfigMap, reloaded on
    /// change.
    #[serde(default = "default_gates")]
    pub gates: KeyFile,
    /// Redis for the single-use marks. Unset: an in-memory store, refused in
    /// production (replicas must share the marks).
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// A Redis Cluster for the single-use marks instead of `redis`: URLs of some of its
    /// primaries (a list, or one comma-separated variable). Commands time out after
    /// `redis.timeout` (default 500 ms); `redis` may still be where the revocation
    /// stream is read.
    #[serde(default, deserialize_with = "secret_list")]
    pub replay_cluster: Vec<Secret>,
    /// Prefix of the verifier's Redis keys (default `citypass:verifier:`).
    #[serde(default = "default_redis_key_prefix")]
    pub redis_key_prefix: String,
    /// Most marks the in-memory store holds (default 1 000 000); when it is full of
    /// live marks, codes are refused rather than a mark forgotten.
    #[serde(default = "default_replay_capacity")]
    pub replay_capacity: usize,
    /// The decision's settings.
    #[serde(default)]
    pub decision: DecisionSettings,
    /// The revocation follower's settings.
    #[serde(default)]
    pub revocation: RevocationSettings,
    /// Offline gates' uploads and the fraud log.
    #[serde(default)]
    pub upload: UploadSettings,
}

fn secret_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<Secret>, D::Error> {
    Ok(list::deserialize(deserializer)?
        .into_iter()
        .map(Secret::new)
        .collect())
}

fn default_server() -> ServerConfig {
    let mut server = ServerConfig::new("citypass-verifier");
    server.listen = ([0, 0, 0, 0], 50053).into();
    server
}

fn default_key_set() -> KeyFile {
    KeyFile::new("keys/dev/keyset.jwks.json", Duration::from_secs(5))
}

fn default_gates() -> KeyFile {
    KeyFile::new("keys/dev/gates.yaml", Duration::from_secs(5))
}

fn default_redis_key_prefix() -> String {
    "citypass:verifier:".to_owned()
}

fn default_replay_capacity() -> usize {
    1_000_000
}

impl Config {
    /// A dev configuration with every default: `environment: dev`, in-memory marks.
    pub fn dev(server: ServerConfig) -> Self {
        Config {
            server,
            environment: Environment::Dev,
            key_set: default_key_set(),
            issuer: None,
            gates: default_gates(),
            redis: None,
            replay_cluster: Vec::new(),
            redis_key_prefix: default_redis_key_prefix(),
            replay_capacity: default_replay_capacity(),
            decision: DecisionSettings::default(),
            revocation: RevocationSettings::default(),
            upload: UploadSettings::default(),
        }
    }

    /// The Redis the revocation follower reads: its own, else the verifier's.
    pub fn revocation_redis(&self) -> Option<&RedisConfig> {
        self.revocation.redis.as_ref().or(self.redis.as_ref())
    }

    /// Checks the limits and what production requires.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.decision.skew > MAX_SKEW {
            return Err(invalid("decision.skew", "must be at most 2m"));
        }
        let revocation = &self.revocation;
        revocation
            .validate()
            .map_err(|e| invalid(e.key, e.problem))?;
        if revocation.follow == FollowMode::Redis && self.revocation_redis().is_none() {
            return Err(invalid(
                "revocation.follow",
                "is redis but neither revocation.redis nor redis is set",
            ));
        }
        if self.environment == Environment::Production
            && self.redis.is_none()
            && self.replay_cluster.is_empty()
        {
            return Err(invalid(
                "redis",
                "(or replay_cluster) is required in production: replicas must share one replay store",
            ));
        }
        let window = self.upload.window;
        if window < Duration::from_secs(60) || window > Duration::from_secs(7 * 24 * 3600) {
            return Err(invalid("upload.window", "must be from 1m to 168h"));
        }
        if self.upload.fraud_log_capacity == 0 {
            return Err(invalid("upload.fraud_log_capacity", "must be at least 1"));
        }
        if self.replay_capacity == 0 {
            return Err(invalid("replay_capacity", "must be at least 1"));
        }
        if self.redis_key_prefix.is_empty() {
            return Err(invalid("redis_key_prefix", "must not be empty"));
        }
        let mut urls = vec![("revocation.service.url", revocation.service.url.as_str())];
        if let Some(issuer) = &self.issuer {
            urls.push(("issuer.url", issuer.url.as_str()));
        }
        if let Some(redis) = &self.redis {
            urls.push(("redis.url", redis.url.expose()));
        }
        if let Some(redis) = &revocation.redis {
            urls.push(("revocation.redis.url", redis.url.expose()));
        }
        for node in &self.replay_cluster {
            urls.push(("replay_cluster", node.expose()));
        }
        self.server
            .check_transport(self.environment, &urls)
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
    fn defaults_are_valid_in_dev_and_production_needs_redis() {
        let config = load(&[]).expect("loads");
        assert_eq!(config.environment, Environment::Production);
        assert_eq!(config.server.listen.port(), 50053);
        assert_eq!(config.validate().unwrap_err().key, "redis");
        Config::dev(ServerConfig::new("verifier"))
            .validate()
            .expect("dev defaults are valid");
    }

    #[test]
    fn limits_are_refused_naming_the_key() {
        let config = load(&[
            ("CITYPASS_ENVIRONMENT", "dev"),
            ("CITYPASS_DECISION__SKEW", "10m"),
        ])
        .expect("loads");
        assert_eq!(config.validate().unwrap_err().key, "decision.skew");
        let config = load(&[
            ("CITYPASS_ENVIRONMENT", "dev"),
            ("CITYPASS_REVOCATION__MAX_AGE", "1s"),
        ])
        .expect("loads");
        assert_eq!(config.validate().unwrap_err().key, "revocation.max_age");
        let config = load(&[
            ("CITYPASS_ENVIRONMENT", "dev"),
            ("CITYPASS_REVOCATION__FOLLOW", "redis"),
        ])
        .expect("loads");
        assert_eq!(config.validate().unwrap_err().key, "revocation.follow");
        let config = load(&[
            ("CITYPASS_ENVIRONMENT", "dev"),
            ("CITYPASS_UPLOAD__WINDOW", "200h"),
        ])
        .expect("loads");
        assert_eq!(config.validate().unwrap_err().key, "upload.window");
    }

    #[test]
    fn the_example_file_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml");
        let config: Config = citypass_runtime::config::load_file(&path).expect("the example loads");
        assert_eq!(config.environment, Environment::Production);
        config.validate().expect("the example is valid");
        assert!(config.redis.is_some());
    }

    #[test]
    fn a_cluster_is_a_list_and_serves_for_production() {
        let config = load(&[
            (
                "CITYPASS_REPLAY_CLUSTER",
                "rediss://10.0.0.1:6379/, rediss://10.0.0.2:6379/",
            ),
            ("CITYPASS_SERVER__SERVICE_NAME", "verifier"),
            ("CITYPASS_SERVER__INSECURE_PLAINTEXT_BEHIND_MESH", "true"),
        ])
        .expect("loads");
        assert_eq!(config.replay_cluster.len(), 2);
        assert_eq!(config.replay_cluster[1].expose(), "rediss://10.0.0.2:6379/");
        config
            .validate()
            .expect("a cluster is a shared replay store");
        assert!(
            !format!("{config:?}").contains("10.0.0.2"),
            "URLs stay secret in Debug"
        );
    }
}
