//! A key file that a service reads and follows: the issuer's key ring
//! (`keyring: {path: …}`), the revocation service's snapshot key
//! (`snapshot_key: {path: …}`). Loading and following it is [`crate::key_file`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration;

/// A key file, checked for changes every `reload_interval` (a mounted Secret in
/// Kubernetes; `keys/dev/…` for development). Each service gives the whole setting a
/// default of its own; when the setting is written, `path` is required.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// The file.
    pub path: PathBuf,
    /// How often it is checked (default `5s`; at most `1h`).
    #[serde(
        default = "default_reload_interval",
        deserialize_with = "duration::deserialize_within::<_, 1, { duration::MAX_RELOAD_INTERVAL_MS }>"
    )]
    pub reload_interval: Duration,
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(5)
}

impl KeyFile {
    /// The file at `path`, checked every `reload_interval`.
    pub fn new(path: impl Into<PathBuf>, reload_interval: Duration) -> Self {
        KeyFile {
            path: path.into(),
            reload_interval,
        }
    }

    /// The development key ring, `keys/dev/keyring.json`, checked every 5 s.
    pub fn dev_keyring() -> Self {
        Self::new("keys/dev/keyring.json", default_reload_interval())
    }

    /// The development snapshot key, `keys/dev/snapshot-key.json`, checked every 5 s.
    pub fn dev_snapshot_key() -> Self {
        Self::new("keys/dev/snapshot-key.json", default_reload_interval())
    }
}
