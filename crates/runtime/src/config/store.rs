//! The stores a service may use, as every service's configuration names them.
//!
//! A store's URL carries its password, so it may come from a file instead
//! (`url_file`, a mounted Secret; never an environment variable in a cluster): the file
//! is read once, when the configuration is loaded, and its trailing line break dropped.
//! Exactly one of `url` and `url_file` is given, as for identity's keys (`key` /
//! `key_file`). A changed password takes a restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::duration;
use crate::secret::Secret;

/// A PostgreSQL database (`database: {url: …}`). In production the URL must ask for a
/// verified TLS connection (`sslmode=verify-full` or `verify-ca`, with `sslrootcert=`
/// naming the CA file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "PostgresFields")]
pub struct PostgresConfig {
    /// `postgres://user:password@host:5432/db?sslmode=verify-full&sslrootcert=/etc/citypass/tls/ca.crt`
    /// (`url`, or read from the file `url_file`).
    pub url: Secret,
    /// Connections per replica (default 10).
    pub max_connections: u32,
}

fn default_max_connections() -> u32 {
    10
}

/// [`PostgresConfig`] as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostgresFields {
    #[serde(default)]
    url: Option<Secret>,
    #[serde(default)]
    url_file: Option<PathBuf>,
    #[serde(default = "default_max_connections")]
    max_connections: u32,
}

impl TryFrom<PostgresFields> for PostgresConfig {
    type Error = String;

    fn try_from(fields: PostgresFields) -> Result<Self, String> {
        Ok(PostgresConfig {
            url: url_or_file(fields.url, fields.url_file.as_deref())?,
            max_connections: fields.max_connections,
        })
    }
}

/// The URL given inline, or read from `file` (one of the two).
fn url_or_file(url: Option<Secret>, file: Option<&Path>) -> Result<Secret, String> {
    match (url, file) {
        (Some(url), None) => Ok(url),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("url_file {}: {e}", path.display()))?;
            let url = text.trim_end_matches(['\n', '\r']);
            if url.is_empty() {
                return Err(format!("url_file {}: the file is empty", path.display()));
            }
            Ok(Secret::new(url))
        }
        (Some(_), Some(_)) => Err("url and url_file are both set: choose one".to_owned()),
        (None, None) => Err("url or url_file is required".to_owned()),
    }
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
#[serde(try_from = "RedisFields")]
pub struct RedisConfig {
    /// `rediss://:password@redis:6380/` (`url`, or read from the file `url_file`).
    pub url: Secret,
    /// Longest a connection attempt or a command may take (default `500ms`; at most
    /// `1m`).
    pub timeout: Duration,
    /// CA bundle that signs the server's certificate for `rediss://` (default: the
    /// service's `server.tls.ca_file`).
    pub ca_file: Option<PathBuf>,
}

fn default_redis_timeout() -> Duration {
    Duration::from_millis(500)
}

/// [`RedisConfig`] as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisFields {
    #[serde(default)]
    url: Option<Secret>,
    #[serde(default)]
    url_file: Option<PathBuf>,
    #[serde(
        default = "default_redis_timeout",
        deserialize_with = "duration::deserialize_within::<_, 1, { duration::MAX_CONNECT_TIMEOUT_MS }>"
    )]
    timeout: Duration,
    #[serde(default)]
    ca_file: Option<PathBuf>,
}

impl TryFrom<RedisFields> for RedisConfig {
    type Error = String;

    fn try_from(fields: RedisFields) -> Result<Self, String> {
        Ok(RedisConfig {
            url: url_or_file(fields.url, fields.url_file.as_deref())?,
            timeout: fields.timeout,
            ca_file: fields.ca_file,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn postgres(yaml: &str) -> Result<PostgresConfig, String> {
        serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
    }

    fn redis(yaml: &str) -> Result<RedisConfig, String> {
        serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn a_store_url_comes_inline_or_from_a_file_and_never_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        std::fs::write(&file, "postgres://app:s3cret@db/citypass\n").unwrap();
        let path = file.display();

        let inline = postgres("url: postgres://db/x\nmax_connections: 3").unwrap();
        assert_eq!(
            (inline.url.expose(), inline.max_connections),
            ("postgres://db/x", 3)
        );
        let from_file = postgres(&format!("url_file: {path}")).unwrap();
        assert_eq!(from_file.url.expose(), "postgres://app:s3cret@db/citypass");
        assert_eq!(from_file.max_connections, 10);
        std::fs::write(&file, "rediss://:pw@redis:6380/").unwrap();
        let r = redis(&format!("url_file: {path}\ntimeout: 2s")).unwrap();
        assert_eq!(
            (r.url.expose(), r.timeout),
            ("rediss://:pw@redis:6380/", Duration::from_secs(2))
        );

        for (yaml, says) in [
            (
                format!("url: postgres://db/x\nurl_file: {path}"),
                "both set",
            ),
            (
                "max_connections: 3".to_owned(),
                "url or url_file is required",
            ),
            (
                "url_file: /no/such/file".to_owned(),
                "url_file /no/such/file",
            ),
            ("url: postgres://db/x\nurl_fil: y".to_owned(), "url_fil"),
        ] {
            let err = postgres(&yaml).unwrap_err();
            assert!(err.contains(says), "{yaml}: {err}");
            // The password never shows in an error.
            assert!(!err.contains("s3cret"), "{err}");
        }
        std::fs::write(&file, "\n").unwrap();
        assert!(
            redis(&format!("url_file: {path}"))
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            redis("url: redis://r/\ntimeout: 2h").is_err(),
            "timeout bound kept"
        );
    }
}
