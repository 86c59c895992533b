//! The issuer's keys: loaded from the key ring file, reloaded when it changes, swapped
//! atomically, published as a signed key set.
//!
//! A rotation must need no restart and fail no request (keys/README.md): the operator
//! updates the ring (a Kubernetes Secret, mounted as a file) and every replica picks it
//! up within [`crate::Config::key_reload_interval`]. The file is polled by content
//! hash rather than watched, which works the same on a Secret's symlink swap, a plain
//! rewrite and a laptop, and needs no watcher dependency. Each request takes one
//! snapshot ([`Keys::current`], an `Arc`), so a call signs and reports with one
//! consistent key even while a reload swaps the next snapshot in.
//!
//! A file that cannot be read or parsed, or a dev ring in production, is refused and
//! the current keys stay in service (logged; retried at the next poll): a half-written
//! file never takes the issuer down. Reading, refusing and noticing a change is
//! `citypass_runtime::key_file`, shared with the revocation service's snapshot key.
//!
//! The poll reads the file on tokio's blocking pool
//! (`FollowedKeyFile::changed_async`), never on an async worker, and no `std` lock
//! is held while it does: the followed file sits behind an async lock that only
//! reloads take, and the ring in service behind a `std` lock held just long enough to
//! build and swap a snapshot. Requests never take either: [`Keys::current`] is a
//! `watch` borrow (security review, smaller findings).
//!
//! The ring also holds the subject-sealing keys. The issuer seals with the current
//! one ([`PublishedKeys::issuer`]); [`PublishedKeys::subject_keys`] opens what any key
//! still in the ring sealed, picked by the key id in the sealed value, so a rotation
//! of the sealing key (keys/README.md) leaves earlier codes and certificates readable
//! until their retired key's valid-until.
//!
//! The published set is the ring's public set minus retired keys past their
//! valid-until; a retired key stays published (and verifiable) until then. When one
//! expires, the next poll republishes without it, even if the file did not change.
//! The published JWKS carries two extra top-level members, `issued_at` (Unix seconds
//! when this replica built the set) and `version` (a hash of the keys, equal on every
//! replica serving the same keys), and is signed with `citypass_token::sign_key_set` by
//! the signing key.
//!
//! The set also carries the revocation service's snapshot key, with usage
//! `revocation-snapshot`: the ring lists its public half (never its private half),
//! so gates learn which key signs snapshots from the same signed set, and accept
//! codes only from code keys (security review, finding 4).

use citypass_token::unix_now;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use citypass_proto::prost_types::Timestamp;
use citypass_proto::v1::{self as pb, GetKeySetResponse, KeyInfo};
use citypass_runtime::key_file::poll_while;
use citypass_runtime::{FollowedKeyFile, KeyFileError, KeyFormat};
use citypass_token::{
    Issuer, KeySet, KeyStatus, KeyUsage, Keyring, Kid, PublishedKey, SubjectKeyStatus, SubjectKeys,
    TokenError, sha256, sign_key_set,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Environment;

/// Why a key ring was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("cannot read key ring file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid key ring.
    #[error("key ring file {path} is invalid: {source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: TokenError,
    },
    /// A ring marked `dev` was offered to a production issuer.
    #[error("dev key ring refused in production")]
    DevRingInProduction,
    /// The ring could not be turned into a signer and a published set.
    #[error("cannot publish the key ring: {0}")]
    Publish(#[source] TokenError),
}

impl From<KeyFileError<TokenError>> for KeyError {
    fn from(err: KeyFileError<TokenError>) -> Self {
        match err {
            KeyFileError::Read { path, source } => KeyError::Read { path, source },
            KeyFileError::NotUtf8 { path } => KeyError::Invalid {
                path,
                source: TokenError::InvalidKeySet("not UTF-8".to_owned()),
            },
            KeyFileError::Invalid { path, source } => KeyError::Invalid { path, source },
            KeyFileError::DevKeysInProduction => KeyError::DevRingInProduction,
        }
    }
}

/// The key ring file format, for `citypass_runtime::key_file`.
const KEY_RING: KeyFormat<Keyring, TokenError> = KeyFormat {
    parse: Keyring::from_json,
    is_dev: |ring| ring.dev,
};

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Same content, nothing expired: the current snapshot stays.
    Unchanged,
    /// A new snapshot is in service, signing with `signing_kid`.
    Reloaded {
        /// The kid that signs from now on.
        signing_kid: Kid,
    },
}

/// One consistent state of the keys: the signer and the signed published set.
pub struct PublishedKeys {
    issuer: Issuer,
    signing_kid: Kid,
    /// Every subject key that opens (sealing, staged, retired not past valid-until).
    subject_keys: SubjectKeys,
    keyset: KeySet,
    jwks_json: Vec<u8>,
    signature: Vec<u8>,
    key_infos: Vec<KeyInfo>,
    issued_at: u64,
    version: String,
    /// Earliest valid-until of a published retired key: the set changes after it.
    next_expiry: Option<u64>,
}

impl std::fmt::Debug for PublishedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishedKeys")
            .field("signing_kid", &self.signing_kid)
            .field("subject_key_id", &self.issuer.subject_key_id())
            .field("subject_keys", &self.subject_keys)
            .field("keys", &self.keyset.keys().len())
            .field("issued_at", &self.issued_at)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl PublishedKeys {
    /// Builds the snapshot for `ring` at `now` (Unix seconds).
    fn build(ring: &Keyring, now: u64) -> Result<Self, TokenError> {
        let issuer = ring.issuer()?;
        let signing_kid = ring.signing_kid();
        let subject_keys = ring.subject_keys(now)?;
        let published: Vec<PublishedKey> = ring
            .public_keyset()?
            .keys()
            .iter()
            .filter(
                |k| !matches!(k.status, KeyStatus::Retired { valid_until } if valid_until < now),
            )
            .cloned()
            .collect();
        let keyset = KeySet::new(published)?;
        // The snapshot changes when a published retired key or a retired subject key
        // still held passes its valid-until.
        let retired_subject_keys =
            ring.subject_key_statuses()
                .into_iter()
                .filter_map(|(_, status)| match status {
                    SubjectKeyStatus::Retired { valid_until } if valid_until >= now => {
                        Some(valid_until)
                    }
                    _ => None,
                });
        let next_expiry = keyset
            .keys()
            .iter()
            .filter_map(|k| match k.status {
                KeyStatus::Retired { valid_until } => Some(valid_until),
                _ => None,
            })
            .chain(retired_subject_keys)
            .min();
        let base = keyset.to_jwks();
        let version = hex::encode(&sha256(base.as_bytes())[..8]);
        let jwks_json = with_metadata(&base, now, &version)?;
        let signature = sign_key_set(issuer.key(), &jwks_json);
        let key_infos = keyset.keys().iter().map(key_info).collect();
        Ok(PublishedKeys {
            issuer,
            signing_kid,
            subject_keys,
            keyset,
            jwks_json,
            signature,
            key_infos,
            issued_at: now,
            version,
            next_expiry,
        })
    }

    /// The signer: signs with [`PublishedKeys::signing_kid`].
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// The kid that signs codes, certificates and the key set.
    pub fn signing_kid(&self) -> Kid {
        self.signing_kid
    }

    /// The id of the subject key that seals now.
    pub fn subject_key_id(&self) -> u8 {
        self.issuer.subject_key_id()
    }

    /// Opens the subjects that any subject key still in the ring sealed, picking the
    /// key by the id in the sealed value (for a verifier holding the ring; the issuer
    /// itself only seals).
    pub fn subject_keys(&self) -> &SubjectKeys {
        &self.subject_keys
    }

    /// The published public keys.
    pub fn keyset(&self) -> &KeySet {
        &self.keyset
    }

    /// The published JWKS document, exactly the bytes that are signed.
    pub fn jwks_json(&self) -> &[u8] {
        &self.jwks_json
    }

    /// The detached key-set signature over [`PublishedKeys::jwks_json`].
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// When this snapshot was built, Unix seconds (the JWKS `issued_at`).
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }

    /// Content hash of the published keys (the JWKS `version`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The GetKeySet answer.
    pub fn to_response(&self) -> GetKeySetResponse {
        GetKeySetResponse {
            jwks_json: self.jwks_json.clone(),
            signature: self.signature.clone(),
            signing_kid: self.signing_kid.0.to_vec(),
            keys: self.key_infos.clone(),
        }
    }
}

/// The JWKS with `issued_at` and `version` added at the top level.
fn with_metadata(jwks: &str, issued_at: u64, version: &str) -> Result<Vec<u8>, TokenError> {
    let bad = |_| TokenError::InvalidKeySet("cannot extend the JWKS document".to_owned());
    let mut doc: serde_json::Value = serde_json::from_str(jwks).map_err(bad)?;
    let object = doc
        .as_object_mut()
        .ok_or_else(|| TokenError::InvalidKeySet("JWKS is not an object".to_owned()))?;
    object.insert("issued_at".to_owned(), issued_at.into());
    object.insert("version".to_owned(), version.into());
    serde_json::to_vec_pretty(&doc).map_err(bad)
}

fn key_info(key: &PublishedKey) -> KeyInfo {
    let algorithm = match key.key.alg() {
        citypass_token::Algorithm::EdDsa => pb::KeyAlgorithm::Ed25519,
        citypass_token::Algorithm::Es256 => pb::KeyAlgorithm::Es256,
    };
    let (status, valid_until) = match key.status {
        KeyStatus::Active => (pb::KeyStatus::Active, None),
        KeyStatus::Retired { valid_until } => (
            pb::KeyStatus::Retired,
            Some(Timestamp {
                seconds: i64::try_from(valid_until).unwrap_or(i64::MAX),
                nanos: 0,
            }),
        ),
        KeyStatus::Revoked => (pb::KeyStatus::Revoked, None),
    };
    let usage = match key.usage {
        KeyUsage::Code => pb::KeyUsage::Code,
        KeyUsage::Snapshot => pb::KeyUsage::RevocationSnapshot,
    };
    KeyInfo {
        kid: key.kid().0.to_vec(),
        algorithm: algorithm as i32,
        status: status as i32,
        public_key: key.key.as_bytes().to_vec(),
        // The ring records no start time: codes are accepted from publication on.
        not_before: None,
        valid_until,
        usage: usage as i32,
    }
}

/// The issuer's keys, shared by every request (see the module documentation).
pub struct Keys {
    environment: Environment,
    /// The followed file (file sources). An async lock: a reload holds it across the
    /// read on the blocking pool, so reloads take turns without blocking a worker.
    file: Option<tokio::sync::Mutex<FollowedKeyFile<Keyring, TokenError>>>,
    /// The ring in service, to republish when a retired key expires. Held only to
    /// build and swap a snapshot, never across I/O.
    ring: Mutex<Keyring>,
    current: watch::Sender<Arc<PublishedKeys>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("environment", &self.environment)
            .field("current", &*self.current.borrow())
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// Loads the ring at `path`; [`Keys::reload`] (or [`Keys::spawn_reloader`]) picks up
    /// later changes. In production a dev ring is refused.
    pub fn from_file(
        path: impl Into<PathBuf>,
        environment: Environment,
    ) -> Result<Arc<Self>, KeyError> {
        let (file, ring) = FollowedKeyFile::open(path, environment, KEY_RING)?;
        Self::start(Some(file), ring, environment)
    }

    /// Serves `ring`, held in memory (`citypass dev`, tests); [`Keys::replace`] swaps it.
    pub fn from_keyring(ring: Keyring, environment: Environment) -> Result<Arc<Self>, KeyError> {
        Self::start(None, ring, environment)
    }

    fn start(
        file: Option<FollowedKeyFile<Keyring, TokenError>>,
        ring: Keyring,
        environment: Environment,
    ) -> Result<Arc<Self>, KeyError> {
        check_environment(&ring, environment)?;
        let published = PublishedKeys::build(&ring, unix_now()).map_err(KeyError::Publish)?;
        let (current, _) = watch::channel(Arc::new(published));
        Ok(Arc::new(Keys {
            environment,
            file: file.map(tokio::sync::Mutex::new),
            ring: Mutex::new(ring),
            current,
        }))
    }

    /// The snapshot in service now. Take it once per request.
    pub fn current(&self) -> Arc<PublishedKeys> {
        self.current.borrow().clone()
    }

    /// Sees every snapshot swapped in from now on (`changed().await`), for tests and
    /// for a rotation-under-load test.
    pub fn subscribe(&self) -> watch::Receiver<Arc<PublishedKeys>> {
        self.current.subscribe()
    }

    /// Re-reads the file (file sources) and republishes if its content changed or a
    /// retired key expired. On error the current snapshot stays in service.
    ///
    /// The file is read on tokio's blocking pool (call this within a tokio runtime);
    /// no `std` lock is held while it is.
    pub async fn reload(&self) -> Result<Reload, KeyError> {
        // Held to the end, so that two reloads do not interleave read and swap.
        let mut file = match &self.file {
            Some(file) => Some(file.lock().await),
            None => None,
        };
        let fresh = match file.as_deref_mut() {
            Some(file) => file.changed_async().await?,
            None => None,
        };
        let now = unix_now();
        let expired = self.current.borrow().next_expiry.is_some_and(|t| now > t);
        if fresh.is_none() && !expired {
            return Ok(Reload::Unchanged);
        }
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let published = PublishedKeys::build(fresh.as_ref().unwrap_or(&ring), now)
            .map_err(KeyError::Publish)?;
        let signing_kid = published.signing_kid;
        if let Some(fresh) = fresh {
            *ring = fresh;
        }
        self.current.send_replace(Arc::new(published));
        Ok(Reload::Reloaded { signing_kid })
    }

    /// Serves `ring` from now on (an in-memory rotation). For a file source the next
    /// change of the file replaces it again.
    pub fn replace(&self, ring: Keyring) -> Result<Kid, KeyError> {
        check_environment(&ring, self.environment)?;
        let published = PublishedKeys::build(&ring, unix_now()).map_err(KeyError::Publish)?;
        let signing_kid = published.signing_kid;
        // Ring and snapshot swap together, as in a reload.
        let mut held = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        *held = ring;
        self.current.send_replace(Arc::new(published));
        Ok(signing_kid)
    }

    /// Calls [`Keys::reload`] every `interval` until these keys are dropped, logging
    /// what changed (kids only) and what was refused.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> JoinHandle<()> {
        poll_while(self, interval, |keys| async move {
            match keys.reload().await {
                Ok(Reload::Unchanged) => {}
                Ok(Reload::Reloaded { signing_kid }) => {
                    let subject_key_id = keys.current().subject_key_id();
                    tracing::info!(%signing_kid, subject_key_id, "key ring reloaded");
                }
                Err(err) => {
                    tracing::warn!(error = %err, "key ring reload refused; keeping the current keys");
                }
            }
        })
    }
}

fn check_environment(ring: &Keyring, environment: Environment) -> Result<(), KeyError> {
    Ok(KEY_RING.admit(ring, environment)?)
}
