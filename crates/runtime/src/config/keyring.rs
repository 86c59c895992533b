//! A key ring file that a service reads and follows (`keyring: {path: …}`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration;

/// A key file, checked for changes every `reload_interval` (a mounted Secret in
/// Kubernetes; `keys/dev/keyring.json` for development).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRingFile {
    /// The file.
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// How often it is checked (default `5s`).
    #[serde(
        default = "default_reload_interval",
        deserialize_with = "duration::deserialize_positive"
    )]
    pub reload_interval: Duration,
}

fn default_path() -> PathBuf {
    PathBuf::from("keys/dev/keyring.json")
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(5)
}

impl Default for KeyRingFile {
    fn default() -> Self {
        KeyRingFile {
            path: default_path(),
            reload_interval: default_reload_interval(),
        }
    }
}

impl KeyRingFile {
    /// The file at `path`, checked every `reload_interval`.
    pub fn new(path: impl Into<PathBuf>, reload_interval: Duration) -> Self {
        KeyRingFile {
            path: path.into(),
            reload_interval,
        }
    }
}
