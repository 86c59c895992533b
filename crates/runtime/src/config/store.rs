//! The stores a service may use, as every service's configuration names them.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration;
use crate::secret::Secret;

/// A PostgreSQL database (`database: {url: …}`). In production the URL must ask for a
/// verified TLS connection (`sslmode=verify-full` or `verify-ca`, with `sslrootcert=`
/// naming the CA file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:5432/db?sslmode=verify-full&sslrootcert=/etc/citypass/tls/ca.crt`.
    pub url: Secret,
    /// Connections per replica (default 10).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_max_connections() -> u32 {
    10
}

impl PostgresConfig {
    /// A database at `url` with the default pool size.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresConfig {
            url: Secret::new(url),
            max_connections: default_max_connections(),
        }
    }
}

/// A Redis server (`redis: {url: …}`); `rediss://` in production.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `rediss://:password@redis:6380/`.
    pub url: Secret,
    /// Longest a connection attempt or a command may take (default `500ms`; at most
    /// `1m`).
    #[serde(
        default = "default_redis_timeout",
        deserialize_with = "duration::deserialize_within::<_, 1, { duration::MAX_CONNECT_TIMEOUT_MS }>"
    )]
    pub timeout: Duration,
    /// CA bundle that signs the server's certificate for `rediss://` (default: the
    /// service's `server.tls.ca_file`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_redis_timeout() -> Duration {
    Duration::from_millis(500)
}

impl RedisConfig {
    /// A Redis at `url` with the default timeout.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: Secret::new(url),
            timeout: default_redis_timeout(),
            ca_file: None,
        }
    }
}
