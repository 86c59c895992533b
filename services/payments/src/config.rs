//! What an operator sets for the payments service.
//!
//! [`Settings`] is what the logic needs (tap timing, the city's day); [`Config`] is the
//! binary's whole file, loaded with `citypass_runtime::config::load` (YAML, then
//! `CITYPASS_…` variables on top):
//!
//! | key | env | default |
//! |---|---|---|
//! | `server.*` | `CITYPASS_SERVER__…` | `citypass_runtime::ServerConfig` (service name `citypass-payments`, listen `0.0.0.0:50055`) |
//! | `environment` | `CITYPASS_ENVIRONMENT` | `production` (`dev` allows the memory store, the built-in fare table, plaintext) |
//! | `database.*` | `CITYPASS_DATABASE__URL`, `__MAX_CONNECTIONS` | unset: in-memory store (dev only) |
//! | `fares_file` | `CITYPASS_FARES_FILE` | unset: the checked-in `config/fares.yaml`, built in (dev only) |
//! | `payments.*` | `CITYPASS_PAYMENTS__…` | [`Settings`] (tap timing, the gates' clock skew, the city's day, the expiry pass, the outbox worker) |
//! | `sandbox.*` | `CITYPASS_SANDBOX__DELAY`, `__TIMEOUTS_AFTER_SUCCESS` | unset (`Config::dev`: set): the sandbox provider, dev only |
//! | `notification_keys` | (YAML only) | none: every NotifyCharge is refused; `Config::dev`: the sandbox's dev key. Each `{provider, id, public_key}` (Ed25519, 64 hex digits); only the sandbox's notifications are built |
//! | `identity.*` | `CITYPASS_IDENTITY__URL`, … | unset: citizens' calls answer UNAVAILABLE (production requires it) |
//! | `revocation.*` | `CITYPASS_REVOCATION__SERVICE__URL`, `__FOLLOW`, `__MAX_AGE`, … | unset; required with `identity`: `citypass_revocation_follow::RevocationSettings` (revoked devices and subjects are refused) |
//! | `citizen.*` | `CITYPASS_CITIZEN__PROOF_FRESHNESS`, `__IDENTITY_CACHE_TTL`, `__IDENTITY_CACHE_CAPACITY`, `__NONCE_CAPACITY` | [`CitizenSettings`] |
//! | `redis.*` | `CITYPASS_REDIS__URL`, … | unset: request nonces in memory (dev only; production requires Redis) |
//! | `redis_key_prefix` | `CITYPASS_REDIS_KEY_PREFIX` | `citypass:payments:` |
//!
//! `config.example.yaml` beside this crate shows every key.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use citypass_revocation_follow::RevocationSettings;
use citypass_runtime::config::{Deployment, PostgresConfig, RedisConfig, Refusal, duration};
use citypass_runtime::{ServerConfig, UpstreamConfig};
use serde::Deserialize;

use crate::error::Error;
use crate::fare::FareTable;
use crate::link::Provider;
use crate::notification::{DEV_NOTIFICATION_KEY_ID, NotificationKeys, dev_sandbox_signer};
use crate::tap::TapSettings;

pub use citypass_runtime::Environment;

/// The fare table `citypass dev` and the tests price with (`config/fares.yaml`).
pub const DEV_FARES: &str = include_str!("../config/fares.yaml");

/// What the logic needs. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// A second scan at the same station or on the same route within this long is a
    /// double tap: recorded, not charged (default `60s`, at most `10m`).
    #[serde(deserialize_with = "duration::deserialize")]
    pub double_tap: Duration,
    /// How long after a tap its gate may void it (default `10s`, `1s` to `1m`).
    #[serde(deserialize_with = "duration::deserialize_positive")]
    pub void_window: Duration,
    /// Minutes east of UTC of the city's local time, where its days (the daily cap)
    /// begin (default 480, Beijing).
    pub utc_offset_minutes: i32,
    /// How often trips left open past the fare table's `max_trip` are closed at the
    /// maximum fare (default `60s`, at most `1h`).
    #[serde(deserialize_with = "duration::deserialize_positive")]
    pub expiry_interval: Duration,
    /// How often the outbox worker sends pending charges (default `1s`, at most `1m`).
    #[serde(deserialize_with = "duration::deserialize_positive")]
    pub outbox_interval: Duration,
    /// How far a TapIn's or TapOut's `tapped_at` may be from the server's clock, either
    /// way; further is INVALID_ARGUMENT `tapped_at` (default `5m`, `1s` to `1h`).
    #[serde(deserialize_with = "duration::deserialize_positive")]
    pub max_clock_skew: Duration,
    /// How far back a RecordOfflineTap's `tapped_at` (an offline gate's scan, uploaded
    /// through the verifier) may lie: set it to the verifier's `upload.window`
    /// (default `24h`, `1m` to `168h`, as that window).
    #[serde(deserialize_with = "duration::deserialize_positive")]
    pub late_tap_window: Duration,
}

/// The default `payments.late_tap_window` (the verifier's default `upload.window`).
pub const DEFAULT_LATE_TAP_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The sandbox provider (dev only): every link is charged through it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSettings {
    /// Waited before each answer (default none).
    #[serde(deserialize_with = "duration::deserialize")]
    pub delay: Duration,
    /// How many times each charge's first calls charge and then time out (default 0).
    pub timeouts_after_success: u32,
}

/// A provider's notification key the service trusts (`notification_keys[]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationKeySettings {
    /// The provider: `sandbox` (the only one whose notifications are built).
    pub provider: String,
    /// The key's id, as notifications name it.
    pub id: String,
    /// The Ed25519 public key, 64 hex digits.
    pub public_key: String,
}

/// How citizens' device-signed calls are checked (`citizen.*`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CitizenSettings {
    /// A request's proof timestamp within this of the server's clock, either way
    /// (default `30s`, `1s` to `5m`, as the issuer's).
    #[serde(deserialize_with = "duration::deserialize")]
    pub proof_freshness: Duration,
    /// How long a GetDevice answer from identity is reused: the longest an unbind takes
    /// to stop the device's calls (default `3s`, at most `1m`; `0s` turns it off).
    #[serde(deserialize_with = "duration::deserialize")]
    pub identity_cache_ttl: Duration,
    /// Most devices whose answers are held (default 100 000).
    pub identity_cache_capacity: usize,
    /// Most request nonces held by the in-memory nonce store (dev; default 100 000).
    pub nonce_capacity: usize,
}

impl Default for CitizenSettings {
    fn default() -> Self {
        CitizenSettings {
            proof_freshness: Duration::from_secs(30),
            identity_cache_ttl: Duration::from_secs(3),
            identity_cache_capacity: 100_000,
            nonce_capacity: 100_000,
        }
    }
}

impl CitizenSettings {
    /// Checks the bounds above.
    pub fn validate(&self) -> Result<(), Error> {
        if self.proof_freshness < Duration::from_secs(1)
            || self.proof_freshness > Duration::from_secs(300)
        {
            return Err(Error::Config(
                "citizen.proof_freshness must be 1s to 5m".into(),
            ));
        }
        if self.identity_cache_ttl > Duration::from_secs(60) {
            return Err(Error::Config(
                "citizen.identity_cache_ttl must be at most 1m".into(),
            ));
        }
        if self.identity_cache_capacity == 0 || self.nonce_capacity == 0 {
            return Err(Error::Config(
                "citizen.identity_cache_capacity and citizen.nonce_capacity must be at least 1"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl Default for Settings {
    fn default() -> Self {
        let tap = TapSettings::default();
        Settings {
            double_tap: tap.double_tap,
            void_window: tap.void_window,
            utc_offset_minutes: tap.utc_offset_s / 60,
            expiry_interval: Duration::from_secs(60),
            outbox_interval: Duration::from_secs(1),
            max_clock_skew: Duration::from_secs(300),
            late_tap_window: DEFAULT_LATE_TAP_WINDOW,
        }
    }
}

impl Settings {
    /// The tap rules' settings, checked.
    pub fn tap_settings(&self) -> Result<TapSettings, Error> {
        if self.outbox_interval.is_zero() || self.outbox_interval > Duration::from_secs(60) {
            return Err(Error::Config(
                "payments.outbox_interval must be more than 0 and at most 1m".into(),
            ));
        }
        if self.max_clock_skew.is_zero() || self.max_clock_skew > Duration::from_secs(3600) {
            return Err(Error::Config(
                "payments.max_clock_skew must be more than 0 and at most 1h".into(),
            ));
        }
        if self.late_tap_window < Duration::from_secs(60)
            || self.late_tap_window > Duration::from_secs(7 * 24 * 3600)
        {
            return Err(Error::Config(
                "payments.late_tap_window must be 1m to 168h".into(),
            ));
        }
        if self.expiry_interval.is_zero() || self.expiry_interval > Duration::from_secs(3600) {
            return Err(Error::Config(
                "payments.expiry_interval must be more than 0 and at most 1h".into(),
            ));
        }
        let settings = TapSettings {
            double_tap: self.double_tap,
            void_window: self.void_window,
            utc_offset_s: self.utc_offset_minutes.checked_mul(60).ok_or_else(|| {
                Error::Config("payments.utc_offset_minutes is out of range".into())
            })?,
        };
        settings.validate().map_err(|e| {
            Error::Config(format!(
                "payments.{}",
                e.to_string().trim_start_matches("invalid configuration: ")
            ))
        })?;
        Ok(settings)
    }
}

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
    /// The PostgreSQL store; the in-memory store when unset (dev only).
    #[serde(default)]
    pub database: Option<PostgresConfig>,
    /// The fare table (YAML, see `config/fares.yaml`); the built-in dev table when
    /// unset (dev only).
    #[serde(default)]
    pub fares_file: Option<PathBuf>,
    /// The logic's settings.
    #[serde(default)]
    pub payments: Settings,
    /// The sandbox provider, through which the outbox worker charges every link (dev
    /// only). Unset: no provider adapter, charges stay in the outbox (real adapters are
    /// not built yet).
    #[serde(default)]
    pub sandbox: Option<SandboxSettings>,
    /// The providers' notification keys NotifyCharge trusts; none: every notification
    /// is refused.
    #[serde(default)]
    pub notification_keys: Vec<NotificationKeySettings>,
    /// The identity service, which says which device signs for which transit account.
    /// Unset: the citizen's calls answer UNAVAILABLE (production requires it).
    #[serde(default)]
    pub identity: Option<UpstreamConfig>,
    /// The revocation log, followed for citizens' calls: a revoked device or subject is
    /// refused. Required with `identity`.
    #[serde(default)]
    pub revocation: Option<RevocationSettings>,
    /// How citizens' calls are checked.
    #[serde(default)]
    pub citizen: CitizenSettings,
    /// Where request nonces are remembered, shared by every replica; in memory when
    /// unset (dev only).
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// Prefix of every Redis key this service writes.
    #[serde(default = "default_redis_key_prefix")]
    pub redis_key_prefix: String,
}

fn default_redis_key_prefix() -> String {
    "citypass:payments:".to_owned()
}

fn default_server() -> ServerConfig {
    let mut server = ServerConfig::new("citypass-payments");
    server.listen = ([0, 0, 0, 0], 50055).into();
    server
}

impl Config {
    /// Every default with `environment: dev`: memory store, built-in fare table, the
    /// sandbox provider.
    pub fn dev() -> Self {
        Config {
            server: default_server(),
            environment: Environment::Dev,
            database: None,
            fares_file: None,
            payments: Settings::default(),
            sandbox: Some(SandboxSettings::default()),
            notification_keys: vec![NotificationKeySettings {
                provider: Provider::Sandbox.name().to_owned(),
                id: DEV_NOTIFICATION_KEY_ID.to_owned(),
                public_key: hex::encode(dev_sandbox_signer().public_key()),
            }],
            identity: None,
            revocation: None,
            citizen: CitizenSettings::default(),
            redis: None,
            redis_key_prefix: default_redis_key_prefix(),
        }
    }

    /// The Redis the revocation follower reads: its own, else the service's.
    pub fn revocation_redis(&self) -> Option<&RedisConfig> {
        self.revocation
            .as_ref()
            .and_then(|r| r.redis_or(self.redis.as_ref()))
    }

    /// Checks the settings, and refuses development shortcuts and plaintext in
    /// production.
    pub fn validate(&self) -> Result<(), Error> {
        self.payments.tap_settings()?;
        self.notification_keys()?;
        self.citizen.validate()?;
        let refused = |e: Refusal| Error::Config(e.to_string());
        let mut deployment = Deployment::new(&self.server, self.environment);
        deployment
            .database(
                self.database.as_ref(),
                Some("is required in production: the in-memory store loses every trip and charge on restart"),
            )
            .map_err(refused)?;
        if self.environment == Environment::Production && self.sandbox.is_some() {
            return Err(Error::Config(
                "environment is production but sandbox is set: the sandbox provider charges nobody"
                    .into(),
            ));
        }
        if let Some(revocation) = &self.revocation {
            revocation
                .validate_with(self.redis.as_ref())
                .map_err(|e| Error::Config(format!("{}: {}", e.key, e.problem)))?;
        } else if self.identity.is_some() {
            return Err(Error::Config(
                "identity is set but revocation is not: citizens' calls must be checked against the revocation log".into(),
            ));
        }
        let required = [
            (
                "identity",
                self.identity.is_some(),
                "is required in production: citizens' calls cannot be checked",
            ),
            (
                "redis",
                self.redis.is_some(),
                "is required in production: replicas must share request nonces",
            ),
            (
                "fares_file",
                self.fares_file.is_some(),
                "is required in production: the built-in table is for development",
            ),
        ];
        for (key, present, problem) in required {
            deployment.require(key, present, problem).map_err(refused)?;
        }
        if let Some(identity) = &self.identity {
            deployment.url("identity.url", identity.url.as_str());
        }
        if let Some(revocation) = &self.revocation {
            revocation.name_urls(&mut deployment);
        }
        deployment
            .redis("redis.url", self.redis.as_ref())
            .check_transport()
            .map_err(refused)
    }

    /// The notification keys NotifyCharge trusts (`notification_keys`).
    pub fn notification_keys(&self) -> Result<NotificationKeys, Error> {
        let mut keys = NotificationKeys::new();
        for key in &self.notification_keys {
            let provider = Provider::from_name(&key.provider).ok_or_else(|| {
                Error::Config(format!(
                    "notification_keys: unknown provider {}",
                    key.provider
                ))
            })?;
            if provider != Provider::Sandbox {
                return Err(Error::Config(format!(
                    "notification_keys: {}'s notifications are not built yet (only the sandbox's)",
                    key.provider
                )));
            }
            if self.environment != Environment::Dev {
                // The sandbox is dev only, and its development key is public.
                return Err(Error::Config(format!(
                    "notification_keys {}: a sandbox key outside environment dev",
                    key.id
                )));
            }
            let public_key = hex::decode(&key.public_key).map_err(|_| {
                Error::Config(format!(
                    "notification_keys {}: public_key is not hex",
                    key.id
                ))
            })?;
            keys.insert(provider, &key.id, &public_key)?;
        }
        Ok(keys)
    }

    /// The fare table: `fares_file`, or the built-in dev table.
    pub fn fare_table(&self) -> Result<Arc<FareTable>, Error> {
        let text = match &self.fares_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| Error::Config(format!("fares_file {}: {e}", path.display())))?,
            None => DEV_FARES.to_owned(),
        };
        FareTable::from_yaml(&text)
            .map(Arc::new)
            .map_err(|e| Error::Config(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citypass_revocation_follow::FollowMode;

    fn load(vars: &[(&str, &str)]) -> Result<Config, citypass_runtime::ConfigError> {
        citypass_runtime::config::load_from(None, "CITYPASS", vars.iter().copied())
    }

    #[test]
    fn defaults_and_environment_overrides() {
        let config = load(&[]).unwrap();
        assert_eq!(config.environment, Environment::Production);
        assert_eq!(config.payments, Settings::default());
        assert!(config.validate().is_err(), "production needs PostgreSQL");

        let config = load(&[
            ("CITYPASS_ENVIRONMENT", "dev"),
            ("CITYPASS_PAYMENTS__VOID_WINDOW", "5s"),
            ("CITYPASS_DATABASE__URL", "postgres://u:pw@db/payments"),
        ])
        .unwrap();
        assert_eq!(config.payments.void_window, Duration::from_secs(5));
        config.validate().unwrap();
        assert!(!format!("{config:?}").contains("pw@db"));
        assert!(load(&[("CITYPASS_NO_SUCH_KEY", "1")]).is_err());
        let config = load(&[
            ("CITYPASS_ENVIRONMENT", "dev"),
            ("CITYPASS_PAYMENTS__VOID_WINDOW", "5m"),
        ])
        .unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("void_window"), "{err}");
        let config = load(&[
            ("CITYPASS_ENVIRONMENT", "dev"),
            ("CITYPASS_CITIZEN__PROOF_FRESHNESS", "10m"),
        ])
        .unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("proof_freshness"), "{err}");
    }

    #[test]
    fn the_example_file_loads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let config: Config =
            citypass_runtime::config::load_file(&dir.join("config.example.yaml")).unwrap();
        config.validate().unwrap();
        assert!(config.server.tls.is_some() && config.database.is_some());
        assert!(config.identity.is_some() && config.redis.is_some());
        assert_eq!(
            config.revocation.as_ref().map(|r| r.follow),
            Some(FollowMode::Redis)
        );
        assert_eq!(config.citizen, CitizenSettings::default());
        let mut dev = Config::dev();
        dev.fares_file = Some(dir.join("config/fares.yaml"));
        assert!(dev.fare_table().unwrap().has_station("xidan"));
    }

    #[test]
    fn production_refuses_the_dev_shortcuts() {
        let mut config = Config::dev();
        config.validate().unwrap();
        config.fare_table().unwrap();
        config.environment = Environment::Production;
        config.server.insecure_plaintext_behind_mesh = true;
        config.database = Some(PostgresConfig::new("postgres://db/payments"));
        // The sandbox's notification key (its development key is public): a
        // notification signed with it would settle any sandbox charge.
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("notification_keys") && err.contains("outside environment dev"),
            "{err}"
        );
        config.notification_keys.clear();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("sandbox"), "{err}");
        config.sandbox = None;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("identity"), "{err}");
        config.identity = Some(UpstreamConfig::new("http://identity:50051"));
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("revocation"), "{err}");
        config.revocation = Some(RevocationSettings {
            service: UpstreamConfig::new("http://revocation:50054"),
            follow: FollowMode::Redis,
            ..RevocationSettings::default()
        });
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("revocation.follow"), "{err}");
        config.revocation.as_mut().unwrap().follow = FollowMode::Watch;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("redis"), "{err}");
        config.redis = Some(RedisConfig::new("redis://redis:6379/"));
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("fares_file"), "{err}");
        config.fares_file = Some(PathBuf::from("/etc/citypass/fares.yaml"));
        config.validate().unwrap();
        config.fares_file = Some(PathBuf::from("/no/such/fares.yaml"));
        assert!(config.fare_table().is_err());
    }
}
