//! What an operator sets for the revocation service.
//!
//! Two layers, like the issuer's: [`Settings`] is what the service logic needs (page
//! sizes, heartbeat and polling intervals, clock allowances) and is all an embedding
//! such as `citypass dev` supplies ([`Settings::default`] is a sane dev and production
//! default). [`Config`] is the binary's whole file, loaded with
//! `citypass_runtime::config::load` (YAML, then `CITYPASS_…` variables on top):
//!
//! | key | env | default |
//! |---|---|---|
//! | `server.*` | `CITYPASS_SERVER__…` | `citypass_runtime::ServerConfig` (service name `citypass-revocation`; `server.tls` is the service's certificate) |
//! | `environment` | `CITYPASS_ENVIRONMENT` | `production` (`dev` allows memory log, dev snapshot key, no Redis, plaintext) |
//! | `database.*` | `CITYPASS_DATABASE__URL`, `__MAX_CONNECTIONS` | unset: in-memory log |
//! | `redis.*` | `CITYPASS_REDIS__URL`, `__TIMEOUT` | unset: in-process fan-out only |
//! | `stream_key` | `CITYPASS_STREAM_KEY` | `citypass:revocation:log` |
//! | `stream_max_len` | `CITYPASS_STREAM_MAX_LEN` | 100000 |
//! | `identity.*` | `CITYPASS_IDENTITY__URL`, `__CONNECT_TIMEOUT`, `__REQUEST_TIMEOUT` | `http://127.0.0.1:50051` |
//! | `snapshot_key.*` | `CITYPASS_SNAPSHOT_KEY__PATH`, `__RELOAD_INTERVAL` | `keys/dev/snapshot-key.json`, `5s` |
//! | `revocation.*` | `CITYPASS_REVOCATION__…` | [`Settings`] |
//!
//! `config.example.yaml` beside this crate shows every key. There is no `keyring`: the
//! service signs snapshots with a key of its own and never reads the issuer's key
//! ring (security review, finding 4); a file that still names one is refused as an
//! unknown key.

use std::time::Duration;

use citypass_runtime::config::{
    Deployment, KeyFile, PostgresConfig, RedisConfig, Refusal, duration,
};
use citypass_runtime::{ServerConfig, UpstreamConfig};
use serde::Deserialize;

use crate::error::Error;

/// What the service logic needs. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// List page size when the request names none (default 500).
    pub list_page_size: u32,
    /// Largest List page (default 5000); larger requests are capped.
    pub list_max_page_size: u32,
    /// Watch sends a message at least this often (default `1s`).
    #[serde(deserialize_with = "duration::deserialize_positive")]
    pub heartbeat_interval: Duration,
    /// How often each replica reads the log for entries written by other replicas
    /// (default `200ms`); its own writes are seen at once.
    #[serde(deserialize_with = "duration::deserialize_positive")]
    pub poll_interval: Duration,
    /// A replica that has not read the log for this long stops vouching for its data:
    /// WatchRevocations streams end UNAVAILABLE and GetRevocationSnapshot fails (default `5s`).
    #[serde(deserialize_with = "duration::deserialize_positive")]
    pub stale_after: Duration,
    /// The clock skew verifiers and gates allow (default `30s`, the
    /// `citypass_token::Validation` default): token and certificate entries are kept
    /// this long past the code's or certificate's end.
    #[serde(deserialize_with = "duration::deserialize")]
    pub clock_skew: Duration,
    /// How far in the future a requested `revoked_before` may be (default `5s`).
    #[serde(deserialize_with = "duration::deserialize")]
    pub revoked_before_skew: Duration,
    /// Longest code lifetime gates accept (default `5m`): a token entry's longest life.
    #[serde(deserialize_with = "duration::deserialize_positive")]
    pub token_max_lifetime: Duration,
    /// Longest certificate lifetime gates accept (default `24h`).
    #[serde(deserialize_with = "duration::deserialize_positive")]
    pub certificate_max_lifetime: Duration,
    /// After a device or subject revocation, list its certificates again after this
    /// delay and revoke any recorded meanwhile (default `5s`; `0s` turns it off).
    #[serde(deserialize_with = "duration::deserialize")]
    pub cascade_sweep_delay: Duration,
    /// Keep sweeping, at doubling intervals from `cascade_sweep_delay`, until this long
    /// after the revocation (default `5m`): longer than any issuer's `revocation.max_age` (at most 5 min),
    /// the longest an issuer can go on certifying before it hears of the revocation.
    #[serde(deserialize_with = "duration::deserialize")]
    pub cascade_sweep_window: Duration,
    /// Entries each replica keeps in memory to serve Watch without reading the log
    /// (default 10000).
    pub recent_entries: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            list_page_size: 500,
            list_max_page_size: 5000,
            heartbeat_interval: Duration::from_secs(1),
            poll_interval: Duration::from_millis(200),
            stale_after: Duration::from_secs(5),
            clock_skew: Duration::from_secs(30),
            revoked_before_skew: Duration::from_secs(5),
            token_max_lifetime: Duration::from_secs(300),
            certificate_max_lifetime: Duration::from_secs(86_400),
            cascade_sweep_delay: Duration::from_secs(5),
            cascade_sweep_window: Duration::from_secs(300),
            recent_entries: 10_000,
        }
    }
}

impl Settings {
    /// Checks the limits.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::Config(m.to_owned()));
        if self.list_page_size == 0 || self.list_max_page_size < self.list_page_size {
            return bad(
                "revocation.list_page_size must be at least 1 and at most list_max_page_size",
            );
        }
        if self.stale_after <= self.poll_interval {
            return bad("revocation.stale_after must be longer than poll_interval");
        }
        Ok(())
    }
}

/// Which kind of deployment this is (shared by every service). Production needs
/// PostgreSQL and Redis and refuses a dev snapshot key; `dev` allows the in-memory log,
/// the in-process fan-out and a dev snapshot key.
pub use citypass_runtime::Environment;

pub use citypass_runtime::Secret;

/// The binary's configuration. See the module documentation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen address, TLS, limits, telemetry.
    #[serde(default = "default_server")]
    pub server: ServerConfig,
    /// `production` (default) or `dev`.
    #[serde(default)]
    pub environment: Environment,
    /// The PostgreSQL log; the in-memory log when unset (dev only).
    #[serde(default)]
    pub database: Option<PostgresConfig>,
    /// Redis for the fan-out stream; in-process only when unset (dev only).
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// The stream key.
    #[serde(default = "default_stream_key")]
    pub stream_key: String,
    /// Approximate cap of the stream.
    #[serde(default = "default_stream_max_len")]
    pub stream_max_len: u64,
    /// The identity service (ListCertificates).
    #[serde(default = "default_identity")]
    pub identity: UpstreamConfig,
    /// The snapshot-signing key file (`citypass_token::SnapshotKey`), the only key the
    /// service holds; a mounted Secret of its own in Kubernetes.
    #[serde(default = "KeyFile::dev_snapshot_key")]
    pub snapshot_key: KeyFile,
    /// The service logic's settings.
    #[serde(default)]
    pub revocation: Settings,
}

fn default_server() -> ServerConfig {
    ServerConfig::new("citypass-revocation")
}

fn default_stream_key() -> String {
    citypass_revocation::stream::DEFAULT_STREAM_KEY.to_owned()
}

fn default_stream_max_len() -> u64 {
    100_000
}

fn default_identity() -> UpstreamConfig {
    UpstreamConfig::new("http://127.0.0.1:50051")
}

impl Config {
    /// Every default with `environment: dev`: in-memory log, in-process fan-out.
    pub fn dev() -> Self {
        Config {
            server: default_server(),
            environment: Environment::Dev,
            database: None,
            redis: None,
            stream_key: default_stream_key(),
            stream_max_len: default_stream_max_len(),
            identity: default_identity(),
            snapshot_key: KeyFile::dev_snapshot_key(),
            revocation: Settings::default(),
        }
    }

    /// Checks the settings, and refuses development shortcuts and plaintext in
    /// production.
    pub fn validate(&self) -> Result<(), Error> {
        self.revocation.validate()?;
        if self.stream_max_len == 0 {
            return Err(Error::Config("stream_max_len must be at least 1".into()));
        }
        let refused = |e: Refusal| Error::Config(e.to_string());
        let mut deployment = Deployment::new(&self.server, self.environment);
        deployment
            .url("identity.url", self.identity.url.as_str())
            .database(
                self.database.as_ref(),
                Some("is required in production: the in-memory log loses every revocation on restart"),
            )
            .map_err(refused)?;
        deployment
            .require(
                "redis",
                self.redis.is_some(),
                "is required in production: verifiers follow the Redis stream",
            )
            .map_err(refused)?;
        deployment
            .redis("redis.url", self.redis.as_ref())
            .check_transport()
            .map_err(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config, citypass_runtime::ConfigError> {
        citypass_runtime::config::load_from(None, "CITYPASS", vars.iter().copied())
    }

    #[test]
    fn defaults_and_environment_overrides() {
        let config = load(&[]).unwrap();
        assert_eq!(config.environment, Environment::Production);
        assert_eq!(config.revocation, Settings::default());
        assert!(
            config.validate().is_err(),
            "production needs PostgreSQL and Redis"
        );

        let config = load(&[
            ("CITYPASS_ENVIRONMENT", "dev"),
            ("CITYPASS_REVOCATION__POLL_INTERVAL", "50ms"),
            ("CITYPASS_DATABASE__URL", "postgres://u:pw@db/revocation"),
        ])
        .unwrap();
        assert_eq!(config.revocation.poll_interval, Duration::from_millis(50));
        config.validate().unwrap();
        assert!(!format!("{config:?}").contains("pw@db"));
        assert!(load(&[("CITYPASS_NO_SUCH_KEY", "1")]).is_err());
    }

    #[test]
    fn the_example_file_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml");
        let config: Config = citypass_runtime::config::load_file(&path).unwrap();
        config.validate().unwrap();
        assert!(config.server.tls.is_some());
        assert!(config.database.is_some() && config.redis.is_some());
    }

    #[test]
    fn production_refuses_plaintext() {
        let mut config = Config::dev();
        config.environment = Environment::Production;
        config.database = Some(PostgresConfig::new(
            "postgres://db/revocation?sslmode=verify-full&sslrootcert=/tls/ca.crt",
        ));
        config.redis = Some(RedisConfig::new("rediss://redis/"));
        config.identity = UpstreamConfig::new("https://identity:50051");
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("server.tls"), "{err}");
        config.server.tls = Some(citypass_runtime::TlsConfig::in_dir(std::path::Path::new(
            "/tls",
        )));
        config.validate().unwrap();
        config.identity = UpstreamConfig::new("http://identity:50051");
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("identity.url"), "{err}");
    }

    #[test]
    fn production_needs_both_stores() {
        let mut config = Config::dev();
        config.validate().unwrap();
        config.environment = Environment::Production;
        config.database = Some(PostgresConfig::new("postgres://db/revocation"));
        assert!(config.validate().is_err());
        config.redis = Some(RedisConfig::new("redis://redis/"));
        config.server.insecure_plaintext_behind_mesh = true;
        config.validate().unwrap();
        config.revocation.stale_after = config.revocation.poll_interval;
        assert!(config.validate().is_err());
    }
}
