//! Who signs snapshots: the issuer's current signing key, from the issuer's key ring.
//!
//! Offline gates trust exactly one thing, the issuer's published key set, so a snapshot
//! is signed with the ring's current signing key (the one that also signs codes), read
//! from the same key ring file the issuer reads (a Kubernetes Secret mounted into both
//! Deployments; `keys/dev/keyring.json` on a laptop). The file is re-read when it
//! changes, checked at most every `reload_interval` on the signing path, so a rotation
//! needs no restart; a file that cannot be read or parsed is refused and the current
//! key stays in service (logged). In production a ring marked `dev` is refused.
//!
//! The issuer's own reloader lives in the issuer crate, which services may not link;
//! this is the small part of it the revocation service needs.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use citypass_revocation::SignedSnapshot;
use citypass_token::{Issuer, Keyring, sha256};
use tokio::time::Instant;

use crate::error::Error;

/// Signs encoded snapshots.
pub trait SnapshotSigner: Send + Sync + 'static {
    /// Signs `bytes` with the current key.
    fn sign(&self, bytes: Vec<u8>) -> Result<SignedSnapshot, Error>;
}

struct Loaded {
    issuer: Arc<Issuer>,
    fingerprint: [u8; 32],
    checked_at: Instant,
}

/// Signs with a key ring's signing key; see the module documentation.
pub struct KeyringSigner {
    path: Option<PathBuf>,
    reload_interval: Duration,
    production: bool,
    current: Mutex<Loaded>,
}

impl std::fmt::Debug for KeyringSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyringSigner")
            .field("path", &self.path)
            .field("reload_interval", &self.reload_interval)
            .finish_non_exhaustive()
    }
}

fn parse(bytes: &[u8], production: bool) -> Result<Issuer, Error> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| Error::Signer("key ring is not UTF-8".into()))?;
    let ring = Keyring::from_json(text).map_err(|e| Error::Signer(e.to_string()))?;
    if production {
        ring.ensure_production()
            .map_err(|e| Error::Signer(e.to_string()))?;
    }
    ring.issuer().map_err(|e| Error::Signer(e.to_string()))
}

impl KeyringSigner {
    /// Loads the ring at `path`; changes are picked up within `reload_interval`.
    /// `production` refuses dev rings.
    pub fn from_file(
        path: impl Into<PathBuf>,
        reload_interval: Duration,
        production: bool,
    ) -> Result<Self, Error> {
        let path = path.into();
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::Signer(format!("cannot read {}: {e}", path.display())))?;
        let issuer = parse(&bytes, production)?;
        Ok(KeyringSigner {
            path: Some(path),
            reload_interval,
            production,
            current: Mutex::new(Loaded {
                issuer: Arc::new(issuer),
                fingerprint: sha256(&bytes),
                checked_at: Instant::now(),
            }),
        })
    }

    /// Signs with `ring`'s signing key, held in memory (`citypass dev`, tests).
    pub fn from_keyring(ring: &Keyring) -> Result<Self, Error> {
        let issuer = ring.issuer().map_err(|e| Error::Signer(e.to_string()))?;
        Ok(KeyringSigner {
            path: None,
            reload_interval: Duration::MAX,
            production: false,
            current: Mutex::new(Loaded {
                issuer: Arc::new(issuer),
                fingerprint: [0; 32],
                checked_at: Instant::now(),
            }),
        })
    }

    /// The issuer whose key signs now, after a reload check if one is due.
    fn issuer(&self) -> Arc<Issuer> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(path) = &self.path else {
            return current.issuer.clone();
        };
        if current.checked_at.elapsed() < self.reload_interval {
            return current.issuer.clone();
        }
        current.checked_at = Instant::now();
        match std::fs::read(path) {
            Ok(bytes) => {
                let fingerprint = sha256(&bytes);
                if fingerprint != current.fingerprint {
                    match parse(&bytes, self.production) {
                        Ok(issuer) => {
                            tracing::info!(kid = %issuer.key().kid(), "snapshot signing key ring reloaded");
                            current.issuer = Arc::new(issuer);
                            current.fingerprint = fingerprint;
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "key ring reload refused; keeping the current key");
                        }
                    }
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the key ring; keeping the current key");
            }
        }
        current.issuer.clone()
    }
}

impl SnapshotSigner for KeyringSigner {
    fn sign(&self, bytes: Vec<u8>) -> Result<SignedSnapshot, Error> {
        Ok(SignedSnapshot::sign(bytes, self.issuer().key()))
    }
}
