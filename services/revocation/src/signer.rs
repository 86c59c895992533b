//! Who signs snapshots and heads: the snapshot key, a key of its own.
//!
//! The revocation service holds one key, the snapshot-signing key
//! (`citypass_token::SnapshotKey`, `keys/dev/snapshot-key.json` on a laptop, a
//! Kubernetes Secret of its own in a deployment), and never the issuer's key ring: no
//! code-signing seed and no subject-sealing key. Whoever breaks into it can sign
//! snapshots and heads, not mint codes or unseal subjects (security review, finding 4).
//! The issuer publishes the key's public half with usage `revocation-snapshot`, and
//! gates accept snapshots only from a key of that usage (keys/README.md: rotating it).
//! The same key signs the log's head (`citypass_revocation::SignedHead`) that List and
//! WatchRevocations heartbeats carry (finding 6), domain-separated from snapshots by its magic.
//!
//! The file is read with `citypass_runtime::key_file` (the loader the issuer's key ring
//! uses too) and followed by a background task of its own, which re-reads it every
//! `reload_interval` on a blocking thread (`spawn_blocking`) and publishes a new key
//! through a `tokio::sync::watch`: the signing path only takes the current key, never
//! touches the file and never waits on a lock a file read holds. A rotation needs no
//! restart; a file that cannot be read or parsed is refused and the current key stays
//! in service (logged). In production a key marked `dev` is refused, at start and at
//! every reload.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use citypass_revocation::{Head, SignedHead, SignedSnapshot};
use citypass_runtime::key_file::poll_while;
use citypass_runtime::{Environment, FollowedKeyFile, KeyFileError, KeyFormat};
use citypass_token::{Kid, SnapshotKey, TokenError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::Error;

/// Signs encoded snapshots and the log's head.
pub trait SnapshotSigner: Send + Sync + 'static {
    /// Signs `bytes` with the current key.
    fn sign(&self, bytes: Vec<u8>) -> Result<SignedSnapshot, Error>;

    /// Signs `head`, read at `created_at` (Unix seconds), with the current key.
    fn sign_head(&self, head: Head, created_at: u64) -> Result<SignedHead, Error>;
}

/// The snapshot key file format, for `citypass_runtime::key_file`.
const SNAPSHOT_KEY: KeyFormat<SnapshotKey, TokenError> = KeyFormat {
    parse: SnapshotKey::from_json,
    is_dev: |key| key.dev,
};

/// Why the snapshot key was refused.
pub type SignerError = KeyFileError<TokenError>;

type KeyFile = FollowedKeyFile<SnapshotKey, TokenError>;

/// What the signer and its reloader share.
struct Shared {
    current: watch::Sender<Arc<SnapshotKey>>,
    /// The file; locked only by a reload, on a blocking thread.
    file: Option<Mutex<KeyFile>>,
}

/// Signs with the snapshot key; see the module documentation.
pub struct SnapshotKeySigner {
    path: Option<PathBuf>,
    reload_interval: Duration,
    shared: Arc<Shared>,
    reloader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SnapshotKeySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotKeySigner")
            .field("path", &self.path)
            .field("reload_interval", &self.reload_interval)
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

impl Drop for SnapshotKeySigner {
    fn drop(&mut self) {
        if let Some(reloader) = self.reloader.take() {
            reloader.abort();
        }
    }
}

impl SnapshotKeySigner {
    /// Loads the snapshot key at `path` (now, blocking: call it at start-up); changes
    /// are picked up within `reload_interval` by a background task, spawned on the
    /// current tokio runtime (without one, the key is never reloaded: call it inside a
    /// runtime). In production a dev key is refused.
    pub fn from_file(
        path: impl Into<PathBuf>,
        reload_interval: Duration,
        environment: Environment,
    ) -> Result<Self, SignerError> {
        let path = path.into();
        let (file, key) = FollowedKeyFile::open(path.clone(), environment, SNAPSHOT_KEY)?;
        let shared = Arc::new(Shared {
            current: watch::channel(Arc::new(key)).0,
            file: Some(Mutex::new(file)),
        });
        let reloader = match tokio::runtime::Handle::try_current() {
            Ok(_) => Some(poll_while(
                &shared,
                reload_interval.max(Duration::from_millis(1)),
                |shared| async move { reload(&shared).await },
            )),
            Err(_) => {
                tracing::warn!(path = %path.display(), "no tokio runtime: the snapshot key will not be reloaded");
                None
            }
        };
        Ok(SnapshotKeySigner {
            path: Some(path),
            reload_interval,
            shared,
            reloader,
        })
    }

    /// Signs with `key`, held in memory (tests).
    pub fn from_key(key: SnapshotKey) -> Self {
        SnapshotKeySigner {
            path: None,
            reload_interval: Duration::MAX,
            shared: Arc::new(Shared {
                current: watch::channel(Arc::new(key)).0,
                file: None,
            }),
            reloader: None,
        }
    }

    /// The id of the key that signs now.
    pub fn kid(&self) -> Kid {
        self.key().kid()
    }

    /// Re-reads the key file now, off the async threads (what the reloader does every
    /// `reload_interval`); returns the key in service afterwards.
    pub async fn reload_now(&self) -> Kid {
        reload(&self.shared).await;
        self.kid()
    }

    /// The key that signs now: no file access, no lock a reload holds.
    fn key(&self) -> Arc<SnapshotKey> {
        self.shared.current.borrow().clone()
    }
}

/// One reload check: the file is read on a blocking thread; a new key is published.
async fn reload(shared: &Arc<Shared>) {
    if shared.file.is_none() {
        return;
    }
    let reading = shared.clone();
    let result = tokio::task::spawn_blocking(move || {
        let Some(file) = &reading.file else {
            return Ok(None);
        };
        file.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .changed()
    })
    .await;
    match result {
        Ok(Ok(None)) => {}
        Ok(Ok(Some(key))) => {
            tracing::info!(kid = %key.kid(), "snapshot key reloaded");
            shared.current.send_replace(Arc::new(key));
        }
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "snapshot key reload refused; keeping the current key");
        }
        Err(err) => {
            tracing::warn!(error = %err, "snapshot key reload did not finish; keeping the current key");
        }
    }
}

impl SnapshotSigner for SnapshotKeySigner {
    fn sign(&self, bytes: Vec<u8>) -> Result<SignedSnapshot, Error> {
        Ok(SignedSnapshot::sign(bytes, &self.key()))
    }

    fn sign_head(&self, head: Head, created_at: u64) -> Result<SignedHead, Error> {
        Ok(SignedHead::sign(head, created_at, &self.key()))
    }
}
