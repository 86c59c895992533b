//! Who signs snapshots: the snapshot key, a key of its own.
//!
//! The revocation service holds one key, the snapshot-signing key
//! (`citypass_token::SnapshotKey`, `keys/dev/snapshot-key.json` on a laptop, a
//! Kubernetes Secret of its own in a deployment), and never the issuer's key ring: no
//! code-signing seed and no subject-sealing key. Whoever breaks into it can sign
//! snapshots, not mint codes or unseal subjects (security review, finding 4). The
//! issuer publishes the key's public half with usage `revocation-snapshot`, and gates
//! accept snapshots only from a key of that usage (keys/README.md: rotating it).
//!
//! The file is read with `citypass_runtime::key_file` (the loader the issuer's key ring
//! uses too) and re-read when it changes, checked at most every `reload_interval` on
//! the signing path, so a rotation needs no restart; a file that cannot be read or
//! parsed is refused and the current key stays in service (logged). In production a
//! key marked `dev` is refused, at start and at every reload.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use citypass_revocation::SignedSnapshot;
use citypass_runtime::{Environment, FollowedKeyFile, KeyFileError, KeyFormat};
use citypass_token::{SnapshotKey, TokenError};
use tokio::time::Instant;

use crate::error::Error;

/// Signs encoded snapshots.
pub trait SnapshotSigner: Send + Sync + 'static {
    /// Signs `bytes` with the current key.
    fn sign(&self, bytes: Vec<u8>) -> Result<SignedSnapshot, Error>;
}

/// The snapshot key file format, for `citypass_runtime::key_file`.
const SNAPSHOT_KEY: KeyFormat<SnapshotKey, TokenError> = KeyFormat {
    parse: SnapshotKey::from_json,
    is_dev: |key| key.dev,
};

/// Why the snapshot key was refused.
pub type SignerError = KeyFileError<TokenError>;

struct Loaded {
    key: Arc<SnapshotKey>,
    file: Option<FollowedKeyFile<SnapshotKey, TokenError>>,
    checked_at: Instant,
}

/// Signs with the snapshot key; see the module documentation.
pub struct SnapshotKeySigner {
    path: Option<PathBuf>,
    reload_interval: Duration,
    current: Mutex<Loaded>,
}

impl std::fmt::Debug for SnapshotKeySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotKeySigner")
            .field("path", &self.path)
            .field("reload_interval", &self.reload_interval)
            .finish_non_exhaustive()
    }
}

impl SnapshotKeySigner {
    /// Loads the snapshot key at `path`; changes are picked up within
    /// `reload_interval`. In production a dev key is refused.
    pub fn from_file(
        path: impl Into<PathBuf>,
        reload_interval: Duration,
        environment: Environment,
    ) -> Result<Self, SignerError> {
        let path = path.into();
        let (file, key) = FollowedKeyFile::open(path.clone(), environment, SNAPSHOT_KEY)?;
        Ok(SnapshotKeySigner {
            path: Some(path),
            reload_interval,
            current: Mutex::new(Loaded {
                key: Arc::new(key),
                file: Some(file),
                checked_at: Instant::now(),
            }),
        })
    }

    /// Signs with `key`, held in memory (tests).
    pub fn from_key(key: SnapshotKey) -> Self {
        SnapshotKeySigner {
            path: None,
            reload_interval: Duration::MAX,
            current: Mutex::new(Loaded {
                key: Arc::new(key),
                file: None,
                checked_at: Instant::now(),
            }),
        }
    }

    /// The key that signs now, after a reload check if one is due.
    fn key(&self) -> Arc<SnapshotKey> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.checked_at.elapsed() < self.reload_interval {
            return current.key.clone();
        }
        current.checked_at = Instant::now();
        let Some(file) = &mut current.file else {
            return current.key.clone();
        };
        match file.changed() {
            Ok(None) => {}
            Ok(Some(key)) => {
                tracing::info!(kid = %key.kid(), "snapshot key reloaded");
                current.key = Arc::new(key);
            }
            Err(err) => {
                tracing::warn!(error = %err, "snapshot key reload refused; keeping the current key");
            }
        }
        current.key.clone()
    }
}

impl SnapshotSigner for SnapshotKeySigner {
    fn sign(&self, bytes: Vec<u8>) -> Result<SignedSnapshot, Error> {
        Ok(SignedSnapshot::sign(bytes, &self.key()))
    }
}
