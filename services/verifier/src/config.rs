//! What an operator sets for the verifier, with the checks that keep it consistent with
//! what codes and gates need.
//!
//! [`Config`] is the binary's whole file (`config.example.yaml` shows every key),
//! loaded with `citypass_runtime::config::load_env` (YAML, then `CITYPASS_…` variables
//! on top). Limits are checked at start-up ([`Config::validate`]), each refusal naming
//! its key.

use std::time::Duration;

pub use citypass_revocation_follow::{FollowMode, RevocationSettings};
use citypass_runtime::config::{Deployment, KeyFile, RedisConfig, duration, list};
use citypass_runtime::{Secret, ServerConfig, UpstreamConfig};
use serde::Deserialize;

pub use citypass_runtime::Environment;

use crate::face::{FacePolicy, FaceSettings};
use crate::scene::ScenesConfig;

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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// primaries (a list, or one comma-separated variable), or `{urls_file: PATH}`, a
    /// mounted Secret holding them (one a line, or comma-separated), read when the
    /// configuration loads: a URL may carry a password. Commands time out after
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
    /// The code's holder: subject keys, identity's profiles, scene pseudonym keys.
    /// Unset: subjects are not opened (refused in production: subject revocations
    /// would not reach online codes).
    #[serde(default)]
    pub subjects: Option<SubjectsSettings>,
    /// Payments, whose TapIn and TapOut the transit policy (metro, bus) calls with the
    /// verifier's own certificate (`server.tls`, as for identity); each call is bounded
    /// by the scene's deadline too. Unset: every transit tap is unavailable, so metro
    /// and bus gates follow their fail mode (refused in production: a transit gate
    /// would never charge).
    #[serde(default)]
    pub payments: Option<UpstreamConfig>,
    /// The scene policies: per scene `fail` (`closed`|`open`) and `deadline`; scenic
    /// venues' capacity, entries per person and UTC offset.
    #[serde(default)]
    pub scenes: ScenesConfig,
    /// The counters' face check: per counter scene `off` (default), `offered` or
    /// `required`; the match `threshold` and `band_width` (see [`FaceSettings`]).
    #[serde(default)]
    pub face: FaceSettings,
    /// Most venue-days the in-memory venue store holds (default 10 000; with `redis`,
    /// the counts live there).
    #[serde(default = "default_venue_capacity")]
    pub venue_capacity: usize,
    /// Offline gates' uploads and the fraud log.
    #[serde(default)]
    pub upload: UploadSettings,
}

fn default_venue_capacity() -> usize {
    10_000
}

/// Longest `subjects.max_age`: how long an attribute change or a suspension may take
/// to reach the gates.
pub const MAX_PROFILE_AGE: Duration = Duration::from_secs(600);

/// Where the verifier gets a code's holder from (`subjects:`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectsSettings {
    /// The subject-key file (`citypass-subject-keys/v1`, subject keys only, as
    /// `citypass keys` writes it beside the ring as `subject-keys.json`; a mounted
    /// Secret), followed.
    pub keys: KeyFile,
    /// The identity service, asked GetSubjectProfile on a cache miss (its
    /// `request_timeout` bounds each call, as does the gate's deadline).
    pub identity: UpstreamConfig,
    /// How long a profile is reused (default `60s`; at most `10m`).
    #[serde(
        default = "default_profile_age",
        deserialize_with = "duration::deserialize"
    )]
    pub max_age: Duration,
    /// Most subjects cached (default 100 000).
    #[serde(default = "default_profile_capacity")]
    pub capacity: usize,
    /// The scene pseudonym key (hospital, venues): 32+ bytes in hex, or `dev:…`.
    #[serde(default)]
    pub pseudonym_key: Option<Secret>,
    /// File holding `pseudonym_key` (a mounted Secret).
    #[serde(default)]
    pub pseudonym_key_file: Option<std::path::PathBuf>,
    /// The id of `pseudonym_key` (default 1).
    #[serde(default = "default_pseudonym_key_id")]
    pub pseudonym_key_id: u16,
}

fn default_profile_age() -> Duration {
    Duration::from_secs(60)
}

fn default_profile_capacity() -> usize {
    100_000
}

fn default_pseudonym_key_id() -> u16 {
    1
}

impl SubjectsSettings {
    /// Settings with defaults for the key file at `keys` and identity at `identity`,
    /// with a development pseudonym key.
    pub fn dev(keys: KeyFile, identity: UpstreamConfig) -> Self {
        SubjectsSettings {
            keys,
            identity,
            max_age: default_profile_age(),
            capacity: default_profile_capacity(),
            pseudonym_key: Some(Secret::new(DEV_SCENE_PSEUDONYM_KEY)),
            pseudonym_key_file: None,
            pseudonym_key_id: default_pseudonym_key_id(),
        }
    }

    /// The scene pseudonym keys, read (the file) and checked: production refuses a
    /// dev key.
    pub fn pseudonym_keys(
        &self,
        environment: Environment,
    ) -> Result<citypass_pseudonym::HmacKeys, String> {
        let text = match (&self.pseudonym_key, &self.pseudonym_key_file) {
            (Some(_), Some(_)) => {
                return Err("subjects.pseudonym_key and pseudonym_key_file are both set".into());
            }
            (Some(secret), None) => secret.expose().to_owned(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("subjects.pseudonym_key_file {}: {e}", path.display()))?,
            (None, None) => {
                return Err("subjects.pseudonym_key (or pseudonym_key_file) is required".into());
            }
        };
        let key = citypass_pseudonym::Key::parse(&text, "subjects.pseudonym_key")
            .map_err(|e| e.to_string())?;
        if key.is_dev() && environment == Environment::Production {
            return Err("subjects.pseudonym_key is a development key in production".into());
        }
        let id = citypass_pseudonym::KeyId::new(self.pseudonym_key_id)
            .ok_or("subjects.pseudonym_key_id must be 1 to 32767")?;
        citypass_pseudonym::HmacKeys::new((id, key.bytes()), &[]).map_err(|e| e.to_string())
    }
}

/// The verifier's development scene pseudonym key. Not secret.
pub const DEV_SCENE_PSEUDONYM_KEY: &str = "dev:citypass-verifier-scene-pseudonym-key-NOT-SECRET";

/// `replay_cluster` as written: a list, comma-separated text, or a file of URLs.
#[derive(Deserialize)]
#[serde(untagged)]
enum NodesAsWritten {
    File(NodesFile),
    #[serde(deserialize_with = "list::deserialize")]
    Inline(Vec<String>),
}

/// `replay_cluster: {urls_file: /etc/citypass/stores/replay-cluster}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodesFile {
    urls_file: std::path::PathBuf,
}

fn secret_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<Secret>, D::Error> {
    use serde::de::Error;
    let urls = match NodesAsWritten::deserialize(deserializer).map_err(|_| {
        D::Error::custom("must be a list of URLs, comma-separated URLs, or {urls_file: PATH}")
    })? {
        NodesAsWritten::Inline(urls) => urls,
        NodesAsWritten::File(NodesFile { urls_file }) => {
            // The error names the file, never its content.
            let text = std::fs::read_to_string(&urls_file)
                .map_err(|e| D::Error::custom(format!("urls_file {}: {e}", urls_file.display())))?;
            let urls: Vec<String> = text
                .split([',', '\n', '\r'])
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect();
            if urls.is_empty() {
                return Err(D::Error::custom(format!(
                    "urls_file {}: the file names no URL",
                    urls_file.display()
                )));
            }
            urls
        }
    };
    Ok(urls.into_iter().map(Secret::new).collect())
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
            subjects: None,
            payments: None,
            scenes: ScenesConfig::default(),
            face: FaceSettings::default(),
            venue_capacity: default_venue_capacity(),
            upload: UploadSettings::default(),
        }
    }

    /// The Redis the revocation follower reads: its own, else the verifier's.
    pub fn revocation_redis(&self) -> Option<&RedisConfig> {
        self.revocation.redis_or(self.redis.as_ref())
    }

    /// Checks the limits and what production requires.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.decision.skew > MAX_SKEW {
            return Err(invalid("decision.skew", "must be at most 2m"));
        }
        self.revocation
            .validate_with(self.redis.as_ref())
            .map_err(|e| invalid(e.key, e.problem))?;
        if self.environment == Environment::Production
            && self.redis.is_none()
            && self.replay_cluster.is_empty()
        {
            return Err(invalid(
                "redis",
                "(or replay_cluster) is required in production: replicas must share one replay store",
            ));
        }
        match &self.subjects {
            None if self.environment == Environment::Production => {
                return Err(invalid(
                    "subjects",
                    "is required in production: without subject keys, subject revocations do not reach online codes",
                ));
            }
            Some(subjects) if subjects.max_age > MAX_PROFILE_AGE => {
                return Err(invalid("subjects.max_age", "must be at most 10m"));
            }
            Some(subjects) if subjects.capacity == 0 => {
                return Err(invalid("subjects.capacity", "must be at least 1"));
            }
            _ => {}
        }
        if self.payments.is_none() && self.environment == Environment::Production {
            return Err(invalid(
                "payments",
                "is required in production: without it metro and bus gates never charge a fare",
            ));
        }
        self.scenes
            .check()
            .map_err(|(key, problem)| invalid(key, problem))?;
        self.face
            .check()
            .map_err(|(key, problem)| invalid(key, problem))?;
        let face_on = self.face.hospital != FacePolicy::Off
            || self.face.government != FacePolicy::Off
            || self.face.feed.is_some();
        if face_on && self.subjects.is_none() {
            return Err(invalid(
                "face",
                "needs subjects (the holder a face is compared with, and identity's feed)",
            ));
        }
        if self.venue_capacity == 0 {
            return Err(invalid("venue_capacity", "must be at least 1"));
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
        let mut deployment = Deployment::new(&self.server, self.environment);
        self.revocation.name_urls(&mut deployment);
        if let Some(issuer) = &self.issuer {
            deployment.url("issuer.url", issuer.url.as_str());
        }
        deployment.redis("redis.url", self.redis.as_ref());
        for node in &self.replay_cluster {
            deployment.url("replay_cluster", node.expose());
        }
        if let Some(subjects) = &self.subjects {
            deployment.url("subjects.identity.url", subjects.identity.url.as_str());
        }
        if let Some(payments) = &self.payments {
            deployment.url("payments.url", payments.url.as_str());
        }
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
        assert_eq!(config.face.government, crate::face::FacePolicy::Required);
        let subjects = config.subjects.expect("subjects");
        assert_eq!(subjects.max_age, Duration::from_secs(60));
        let payments = config.payments.expect("payments");
        assert_eq!(payments.request_timeout, Duration::from_millis(300));
    }

    #[test]
    fn subjects_are_required_in_production_and_bounded() {
        let config = load(&[
            ("CITYPASS_REDIS__URL", "rediss://redis:6379/"),
            ("CITYPASS_SERVER__SERVICE_NAME", "verifier"),
            ("CITYPASS_SERVER__INSECURE_PLAINTEXT_BEHIND_MESH", "true"),
        ])
        .expect("loads");
        assert_eq!(config.validate().unwrap_err().key, "subjects");
        let config = load(&[
            ("CITYPASS_ENVIRONMENT", "dev"),
            (
                "CITYPASS_SUBJECTS__KEYS__PATH",
                "keys/dev/subject-keys.json",
            ),
            ("CITYPASS_SUBJECTS__IDENTITY__URL", "http://127.0.0.1:50051"),
            ("CITYPASS_SUBJECTS__MAX_AGE", "1h"),
        ])
        .expect("loads");
        assert_eq!(config.validate().unwrap_err().key, "subjects.max_age");
        let subjects = config.subjects.unwrap();
        assert!(subjects.pseudonym_keys(Environment::Dev).is_err(), "no key");
        let mut with_dev_key = subjects.clone();
        with_dev_key.pseudonym_key = Some(Secret::new(DEV_SCENE_PSEUDONYM_KEY));
        assert!(with_dev_key.pseudonym_keys(Environment::Dev).is_ok());
        assert!(
            with_dev_key
                .pseudonym_keys(Environment::Production)
                .is_err()
        );
    }

    #[test]
    fn payments_are_required_in_production() {
        let production = [
            ("CITYPASS_REDIS__URL", "rediss://redis:6379/"),
            ("CITYPASS_SERVER__SERVICE_NAME", "verifier"),
            ("CITYPASS_SERVER__INSECURE_PLAINTEXT_BEHIND_MESH", "true"),
            (
                "CITYPASS_SUBJECTS__KEYS__PATH",
                "/etc/citypass/subject-keys.json",
            ),
            ("CITYPASS_SUBJECTS__IDENTITY__URL", "http://identity:50051"),
        ];
        let config = load(&production).expect("loads");
        assert_eq!(config.validate().unwrap_err().key, "payments");
        let mut with_payments = production.to_vec();
        with_payments.push(("CITYPASS_PAYMENTS__URL", "http://payments:50055"));
        let config = load(&with_payments).expect("loads");
        config.validate().expect("payments configured");
    }

    #[test]
    fn a_face_policy_needs_the_holder() {
        let mut config = Config::dev(ServerConfig::new("verifier"));
        config.subjects = None;
        config.face.hospital = FacePolicy::Required;
        assert_eq!(config.validate().unwrap_err().key, "face");
        config.subjects = Some(SubjectsSettings::dev(
            KeyFile::new("keys/dev/subject-keys.json", Duration::from_secs(5)),
            UpstreamConfig::new("https://identity:50051"),
        ));
        config.validate().expect("with the holder");
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
            (
                "CITYPASS_SUBJECTS__KEYS__PATH",
                "/etc/citypass/subject-keys.json",
            ),
            ("CITYPASS_SUBJECTS__IDENTITY__URL", "http://identity:50051"),
            ("CITYPASS_PAYMENTS__URL", "http://payments:50055"),
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

    #[test]
    fn a_cluster_comes_from_a_secret_file_that_errors_never_show() {
        let dir = tempfile::tempdir().expect("a directory");
        let file = dir.path().join("replay-cluster");
        std::fs::write(
            &file,
            "rediss://:s3cret@10.0.0.1:6380/\nrediss://:s3cret@10.0.0.2:6380/\n\n",
        )
        .expect("the file");
        let path = file.display().to_string();
        let config = load(&[("CITYPASS_REPLAY_CLUSTER__URLS_FILE", path.as_str())]).expect("loads");
        let urls: Vec<&str> = config.replay_cluster.iter().map(Secret::expose).collect();
        assert_eq!(
            urls,
            [
                "rediss://:s3cret@10.0.0.1:6380/",
                "rediss://:s3cret@10.0.0.2:6380/"
            ]
        );
        assert!(!format!("{config:?}").contains("s3cret"));

        std::fs::write(&file, "\n").expect("the file");
        let err = load(&[("CITYPASS_REPLAY_CLUSTER__URLS_FILE", path.as_str())])
            .expect_err("an empty file")
            .to_string();
        assert!(err.contains("names no URL"), "{err}");
        let err = load(&[("CITYPASS_REPLAY_CLUSTER__URLS_FILE", "/no/such/file")])
            .expect_err("a missing file")
            .to_string();
        assert!(err.contains("/no/such/file"), "{err}");
        let err = load(&[("CITYPASS_REPLAY_CLUSTER__URL_FILE", path.as_str())])
            .expect_err("a misspelt key")
            .to_string();
        assert!(err.contains("replay_cluster"), "{err}");
    }
}
