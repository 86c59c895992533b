//! One way to open Redis for every citypass service.
//!
//! `redis://` is plaintext (dev, or behind a mesh); `rediss://` is TLS, and the server's
//! certificate is checked against the deployment's CA (`redis.ca_file`, else the
//! service's `server.tls.ca_file`) rather than the system's public roots: a city runs
//! its Redis with certificates from its own CA. The TLS stack is the workspace's one,
//! rustls on ring (installed as the process default by `citypass_runtime::tls`).

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use citypass_runtime::config::RedisConfig;

/// Why a Redis client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RedisClientError {
    /// The CA file could not be read.
    #[error("cannot read the Redis CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The URL or TLS material is unusable (the redis crate's message never holds the
    /// password).
    #[error("Redis client: {0}")]
    Redis(#[from] redis::RedisError),
}

/// A client for `url`; for `rediss://`, trusting the CA certificates in `ca_pem` (PEM),
/// or the system's roots when `None`.
pub fn client(url: &str, ca_pem: Option<&[u8]>) -> Result<redis::Client, RedisClientError> {
    citypass_runtime::tls::provider();
    match ca_pem {
        Some(ca) if url.starts_with("rediss://") => Ok(redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.to_vec()),
            },
        )?),
        _ => Ok(redis::Client::open(url)?),
    }
}

/// The client `config` describes, with `default_ca` (the service's `server.tls.ca_file`)
/// when the config names no CA of its own.
pub fn from_config(
    config: &RedisConfig,
    default_ca: Option<&Path>,
) -> Result<redis::Client, RedisClientError> {
    let ca = match config.ca_file.as_deref().or(default_ca) {
        Some(path) => Some(
            std::fs::read(path).map_err(|source| RedisClientError::CaFile {
                path: path.to_owned(),
                source,
            })?,
        ),
        None => None,
    };
    client(config.url.expose(), ca.as_deref())
}
