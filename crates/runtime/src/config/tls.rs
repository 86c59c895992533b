//! Where a process's TLS material lives (`server.tls`); loaded and followed by
//! `crate::tls`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::duration;

/// Where a process's TLS material lives (`server.tls` in every service's file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM bundle of the CA certificates that issue this deployment's service, gate and
    /// operator certificates (`ca.crt` of a cert-manager Secret).
    pub ca_file: PathBuf,
    /// This process's certificate chain, PEM, leaf first (`tls.crt`).
    pub cert_file: PathBuf,
    /// Its private key, PEM (PKCS#8, SEC1 or PKCS#1; `tls.key`).
    pub key_file: PathBuf,
    /// How often the files are checked for changes (default `5s`; at most `1h`).
    #[serde(
        default = "default_reload_interval",
        deserialize_with = "duration::deserialize_within::<_, 1, { duration::MAX_RELOAD_INTERVAL_MS }>"
    )]
    pub reload_interval: Duration,
    /// PEM bundle of the CA that alone issues operators' certificates. When set,
    /// operator identities are accepted only from it, and service and gate identities
    /// only from `ca_file`: whoever can obtain a service certificate cannot grant
    /// themselves operator roles. Unset (development): `ca_file` issues both.
    #[serde(default)]
    pub operator_ca_file: Option<PathBuf>,
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(5)
}

impl TlsConfig {
    /// The three files in `dir` under the names cert-manager gives them
    /// (`ca.crt`, `tls.crt`, `tls.key`).
    pub fn in_dir(dir: &Path) -> Self {
        TlsConfig {
            ca_file: dir.join("ca.crt"),
            cert_file: dir.join("tls.crt"),
            key_file: dir.join("tls.key"),
            reload_interval: default_reload_interval(),
            operator_ca_file: None,
        }
    }
}
