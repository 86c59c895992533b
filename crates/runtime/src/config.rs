//! Layered configuration: a YAML file, then environment variables on top.
//!
//! The file holds what an operator reviews and versions (a ConfigMap); the environment holds
//! what differs per deployment or is injected by the platform (addresses, endpoints). The
//! environment always wins, so one file can serve every environment.
//!
//! # Environment convention
//!
//! With prefix `CITYPASS`, a variable `CITYPASS_<KEY>` sets `<key>` (lower-cased), and a
//! double underscore `__` descends one level. Single underscores stay part of the key:
//!
//! | variable | sets |
//! |---|---|
//! | `CITYPASS_SERVER__LISTEN=0.0.0.0:50051` | `server.listen` |
//! | `CITYPASS_SERVER__REQUEST_TIMEOUT=2s` | `server.request_timeout` |
//! | `CITYPASS_SERVER__OTLP_ENDPOINT=` (empty) | unsets the optional `server.otlp_endpoint` |
//! | `CITYPASS_REDIS_URL=redis://…` | `redis_url` |
//! | `CITYPASS_PEERS=a:1,b:2` | the list `peers`, for a field read with [`list::deserialize`] |
//!
//! `<PREFIX>_CONFIG` is reserved for the path of the file itself ([`config_path_from_env`]),
//! and `<PREFIX>_CLI_…` for the `citypass` command's own settings (`CITYPASS_CLI_CREDENTIAL`
//! and the like): services ignore them, so exporting one in a shell never stops a
//! service from starting.
//! Values are typed by the field they land in: `"64"` becomes a number for a number field
//! and stays text for a text field.
//!
//! Structs using [`ServerConfig`] nest it under a key (conventionally `server`), and reject
//! unknown keys, so a misspelt variable or key is an error rather than a silently ignored
//! setting.
//!
//! figment does the merging and the typing, with two providers of ours: `file` (the YAML
//! read up front, so an unreadable or malformed file is its own error, and duplicate keys
//! are refused) and `variables` (the convention above: figment's own `Env` guesses types
//! from the look of a value, which would turn a numeric password into a number).

mod deployment;
pub mod duration;
mod file;
mod key_file;
mod limits;
pub mod list;
mod store;
mod tls;
mod variables;

pub use deployment::{Deployment, Refusal};
pub use key_file::KeyFile;
pub use limits::CallerLimits;
pub use store::{PostgresConfig, RedisConfig};
pub use tls::TlsConfig;

use std::ffi::OsString;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use figment::Figment;

use self::file::File;
use self::variables::Variables;
use crate::environment::Environment;

/// Why configuration could not be loaded. Every variant names the file, key or variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not well-formed YAML (the message carries line and column).
    #[error("config file {path} is not valid YAML: {source}")]
    Parse {
        path: PathBuf,
        /// Boxed: the parser's error is large and this path is cold.
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// The file parses, but its top level is not a mapping of keys.
    #[error("config file {path}: the top level must be a mapping of keys")]
    NotAMapping { path: PathBuf },
    /// A variable with the prefix cannot be used as a key.
    #[error("environment variable {var}: {reason}")]
    Environment { var: String, reason: &'static str },
    /// A value does not fit its field, a required key is missing, or a key is unknown.
    #[error("config key `{key}` (from {origin}): {message}")]
    Invalid {
        /// Dotted path, e.g. `server.request_timeout`; empty for the top level.
        key: String,
        origin: Origin,
        message: String,
    },
}

/// Where an offending value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An environment variable (its full name).
    Environment(String),
    /// The config file.
    File(PathBuf),
    /// Neither: no file was given and the key has no default.
    Defaults,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Environment(var) => write!(f, "environment variable {var}"),
            Origin::File(path) => write!(f, "config file {}", path.display()),
            Origin::Defaults => f.write_str("defaults; no config file given"),
        }
    }
}

/// Loads `T` from the YAML file at `path` (if any), overridden by the process environment.
///
/// `env_prefix` is given without the trailing underscore (`"CITYPASS"`).
pub fn load<T: DeserializeOwned>(path: Option<&Path>, env_prefix: &str) -> Result<T, ConfigError> {
    load_from(path, env_prefix, std::env::vars_os())
}

/// The file at `path` alone, without any environment variable: what a checked-in
/// example configuration says by itself.
pub fn load_file<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    load_from(path.into(), "", std::iter::empty::<(OsString, OsString)>())
}

/// [`load`] with an explicit environment, so tests need not mutate the process's.
///
/// figment merges the file and the variables and types the result; values are extracted
/// lossily because a variable's value is always text (see [`variables`]).
/// Variables are any pairs of text (`("CITYPASS_X", "1")` in tests).
pub fn load_from<T, I, K, V>(
    path: Option<&Path>,
    env_prefix: &str,
    vars: I,
) -> Result<T, ConfigError>
where
    T: DeserializeOwned,
    I: IntoIterator<Item = (K, V)>,
    K: Into<OsString>,
    V: Into<OsString>,
{
    let mut figment = Figment::new();
    if let Some(path) = path {
        figment = figment.merge(File::read(path)?);
    }
    let vars = vars.into_iter().map(|(k, v)| (k.into(), v.into()));
    figment = figment.merge(Variables::collect(env_prefix, vars)?);
    figment.extract_lossy().map_err(|errors| {
        // figment reports every error it found; the first one is enough to act on.
        let error = errors.into_iter().next();
        let (key, origin, message) = match error {
            Some(error) => (
                error.path.join("."),
                origin_of(&error),
                error.kind.to_string(),
            ),
            None => (
                String::new(),
                Origin::Defaults,
                "invalid configuration".into(),
            ),
        };
        ConfigError::Invalid {
            key,
            origin,
            message,
        }
    })
}

/// Where the value that `error` is about came from.
fn origin_of(error: &figment::Error) -> Origin {
    let Some(metadata) = &error.metadata else {
        return Origin::Defaults;
    };
    match &metadata.source {
        Some(figment::Source::File(path)) => Origin::File(path.clone()),
        _ if metadata.name == variables::NAME => {
            let key: Vec<&str> = error.path.iter().map(String::as_str).collect();
            Origin::Environment(
                metadata.interpolate(&error.profile.clone().unwrap_or_default(), &key),
            )
        }
        _ => Origin::Defaults,
    }
}

/// Loads `T` from the file named by `<PREFIX>_CONFIG` (if set) and the environment: what
/// every service's `main` does first.
pub fn load_env<T: DeserializeOwned>(env_prefix: &str) -> Result<T, ConfigError> {
    load(config_path_from_env(env_prefix).as_deref(), env_prefix)
}

/// The config file named by `<PREFIX>_CONFIG`, if set.
pub fn config_path_from_env(env_prefix: &str) -> Option<PathBuf> {
    std::env::var_os(format!("{env_prefix}_CONFIG")).map(PathBuf::from)
}

/// What every gRPC service needs to run, whatever it does.
///
/// Only `service_name` is required; everything else has a production-sensible default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Reported to tracing backends as `service.name`.
    pub service_name: String,
    /// Address to listen on (default `0.0.0.0:50051`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Longest a call may take before it is answered `DEADLINE_EXCEEDED` (default `5s`;
    /// at most `5m`). A caller's shorter `grpc-timeout` still applies.
    #[serde(
        default = "default_request_timeout",
        deserialize_with = "duration::deserialize_within::<_, 1, { duration::MAX_CALL_TIMEOUT_MS }>"
    )]
    pub request_timeout: Duration,
    /// Calls in flight across all connections; the next one is shed with
    /// `RESOURCE_EXHAUSTED` rather than queued (default 1024).
    #[serde(default = "default_concurrency_limit")]
    pub concurrency_limit: NonZeroUsize,
    /// After a shutdown signal, how long to keep serving while reporting `NOT_SERVING`, so
    /// that load balancers stop sending before the listener closes (default `0s`; in
    /// Kubernetes a preStop sleep usually does this job; at most `5m`).
    #[serde(
        default,
        deserialize_with = "duration::deserialize_within::<_, 0, { duration::MAX_SHUTDOWN_MS }>"
    )]
    pub shutdown_delay: Duration,
    /// How long in-flight calls may take to finish once the listener is closed (default
    /// `10s`; at most `5m`).
    #[serde(
        default = "default_drain_timeout",
        deserialize_with = "duration::deserialize_within::<_, 0, { duration::MAX_SHUTDOWN_MS }>"
    )]
    pub shutdown_drain_timeout: Duration,
    /// OTLP/gRPC collector endpoint for traces and metrics (e.g. `http://otel-collector:4317`);
    /// no export if unset.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Where to serve the metrics for Prometheus to scrape (`GET /metrics`, plain HTTP,
    /// e.g. `0.0.0.0:9464`); no endpoint if unset. The metrics carry no personal data;
    /// keep the port to the scraper (a network policy in Kubernetes).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Where to answer health `Check` in plaintext for the kubelet's gRPC probes (e.g.
    /// `0.0.0.0:8086`), which cannot speak TLS; no other RPC is served there (see
    /// [`probe`](crate::probe)). No probe listener if unset.
    #[serde(default)]
    pub health_listen: Option<SocketAddr>,
    /// `tracing` filter directives for the log output, e.g. `info,citypass=debug` (default `info`).
    #[serde(default = "default_log_filter")]
    pub log_filter: String,
    /// `text` (default) for people, `json` for a log pipeline: one object per line, with
    /// the request span's fields and the OpenTelemetry ids (`openTelemetry.traceId`,
    /// `.spanId`), so that the trace id quoted in an error leads to its log lines.
    #[serde(default)]
    pub log_format: LogFormat,
    /// The process's TLS identity: served to callers, presented to upstreams. Required in
    /// production unless `insecure_plaintext_behind_mesh` is set.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Serve plaintext and allow `http://` upstreams in production, because a service
    /// mesh terminates mTLS in front of this process. Logged at start-up. Default false.
    #[serde(default)]
    pub insecure_plaintext_behind_mesh: bool,
    /// Serve gRPC reflection (default false: it lists the API to anyone who asks).
    #[serde(default)]
    pub reflection: bool,
    /// Per-caller request rate and open-call limits.
    #[serde(default)]
    pub limits: CallerLimits,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Why a configuration would send or accept plaintext where it must not.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct TransportError {
    /// The offending key, dotted.
    pub key: &'static str,
    /// What is wrong.
    pub problem: &'static str,
}

impl ServerConfig {
    /// A configuration with every default, for tests and the all-in-one `citypass dev`.
    pub fn new(service_name: impl Into<String>) -> Self {
        ServerConfig {
            service_name: service_name.into(),
            listen: default_listen(),
            request_timeout: default_request_timeout(),
            concurrency_limit: default_concurrency_limit(),
            shutdown_delay: Duration::ZERO,
            shutdown_drain_timeout: default_drain_timeout(),
            otlp_endpoint: None,
            metrics_listen: None,
            health_listen: None,
            log_filter: default_log_filter(),
            log_format: LogFormat::Text,
            tls: None,
            insecure_plaintext_behind_mesh: false,
            reflection: false,
            limits: CallerLimits::default(),
        }
    }

    /// Refuses plaintext in production: a listener without TLS, or an upstream, Redis
    /// or PostgreSQL URL without it (`upstreams` as `(key, url)` pairs), unless
    /// `insecure_plaintext_behind_mesh` says a mesh does the encryption (then it warns).
    pub fn check_transport(
        &self,
        environment: Environment,
        upstreams: &[(&'static str, &str)],
    ) -> Result<(), TransportError> {
        let plaintext_upstream = upstreams.iter().find(|(_, url)| is_plaintext_url(url));
        if !environment.is_production() {
            return Ok(());
        }
        if self.insecure_plaintext_behind_mesh {
            if self.tls.is_none() || plaintext_upstream.is_some() {
                tracing::warn!(
                    "insecure_plaintext_behind_mesh: plaintext in production, relying on a mesh for mTLS"
                );
            }
            return Ok(());
        }
        if self.tls.is_none() {
            return Err(TransportError {
                key: "server.tls",
                problem: "is required in production (or set server.insecure_plaintext_behind_mesh: true where a mesh terminates mTLS)",
            });
        }
        if let Some((key, _)) = plaintext_upstream {
            return Err(TransportError {
                key,
                problem: "is a plaintext URL, refused in production (use https://, rediss:// or sslmode=verify-full)",
            });
        }
        Ok(())
    }
}

/// Whether a URL sends in clear: `http://`, `redis://`, or a PostgreSQL URL without
/// `sslmode=verify-full` / `verify-ca`.
pub fn is_plaintext_url(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL at all: nothing says it is encrypted.
        return true;
    };
    match scheme.to_ascii_lowercase().as_str() {
        "https" | "rediss" => false,
        "postgres" | "postgresql" => {
            let query = rest.split_once('?').map_or("", |(_, q)| q);
            !query.split('&').any(|pair| {
                matches!(
                    pair.split_once('=').map(|(k, v)| (k, v.to_ascii_lowercase())),
                    Some(("sslmode", v)) if v == "verify-full" || v == "verify-ca"
                )
            })
        }
        _ => true,
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, 50051))
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_concurrency_limit() -> NonZeroUsize {
    // Evaluated at compile time: cannot fail at run time.
    const LIMIT: NonZeroUsize = NonZeroUsize::new(1024).unwrap();
    LIMIT
}

fn default_drain_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_log_filter() -> String {
    "info".to_owned()
}

#[cfg(test)]
mod tests {
    use super::is_plaintext_url;

    #[test]
    fn only_verified_tls_urls_count_as_encrypted() {
        for plain in [
            "http://identity:50051",
            "HTTP://identity:50051",
            "redis://redis/",
            "Redis://redis/",
            "postgres://db/x",
            "postgres://u:sslmode=verify-full@db/x",
            "postgres://db/x?sslmode=require",
            "postgres://db/x?sslmode=verify-fullish",
            "identity:50051",
        ] {
            assert!(is_plaintext_url(plain), "{plain}");
        }
        for encrypted in [
            "https://identity:50051",
            "HTTPS://identity:50051",
            "rediss://redis/",
            "postgres://db/x?sslmode=verify-full&sslrootcert=/tls/ca.crt",
            "postgresql://db/x?application_name=a&sslmode=VERIFY-CA",
        ] {
            assert!(!is_plaintext_url(encrypted), "{encrypted}");
        }
    }
}
