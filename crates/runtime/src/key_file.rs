//! Key files a service loads at start and follows: the issuer's key ring, the
//! revocation service's snapshot key. One loader for both, so they read, refuse and
//! reload the same way.
//!
//! A rotation must need no restart: the operator updates the file (a Kubernetes
//! Secret, mounted) and every replica picks it up. The file is polled by the SHA-256 of
//! its content rather than watched, which works the same on a Secret's symlink swap, a
//! plain rewrite and a laptop, and needs no watcher dependency. The caller decides
//! when to poll ([`FollowedKeyFile::changed`]) and how to swap the keys in.
//!
//! A file that cannot be read or parsed, or dev keys in production, is refused: the
//! caller keeps the keys it has (and logs), and the same content is tried again at the
//! next poll, so a half-written file never takes a service down and a fixed one is
//! picked up. Keys marked `dev` are refused in production at start and at every
//! reload, so a key made on a laptop never signs anything real.
//!
//! Reading a file blocks. A caller polling from the async runtime uses
//! [`FollowedKeyFile::changed_async`], which reads, hashes and parses on tokio's
//! blocking pool, so a slow or stuck volume never stalls a worker thread (security
//! review, smaller findings); [`FollowedKeyFile::changed`] is the same poll for a
//! caller already off the runtime. [`FollowedKeyFile::follow`] does the polling on a
//! task of its own for a holder of the keys; [`poll_while`] is that task's clock, for a
//! holder that polls its own way.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::environment::Environment;

/// How one kind of key file is read: the parser of its JSON text and its dev mark.
pub struct KeyFormat<T, E> {
    /// Parses the file's text (the format's own checks).
    pub parse: fn(&str) -> Result<T, E>,
    /// Whether the keys are marked for development (refused in production).
    pub is_dev: fn(&T) -> bool,
}

impl<T, E> Clone for KeyFormat<T, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, E> Copy for KeyFormat<T, E> {}

impl<T, E> std::fmt::Debug for KeyFormat<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFormat").finish_non_exhaustive()
    }
}

/// Why a key file (or keys held in memory) was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError<E: std::error::Error + 'static> {
    /// The file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not UTF-8 text.
    #[error("key file {path} is not UTF-8")]
    NotUtf8 { path: PathBuf },
    /// The format refused the content.
    #[error("key file {path} is invalid: {source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: E,
    },
    /// Keys marked `dev` were offered in production.
    #[error("dev keys refused in production")]
    DevKeysInProduction,
}

impl<T, E: std::error::Error + 'static> KeyFormat<T, E> {
    /// Refuses dev keys in production: for keys held in memory, and for every file
    /// read.
    pub fn admit(&self, keys: &T, environment: Environment) -> Result<(), KeyFileError<E>> {
        if environment.is_production() && (self.is_dev)(keys) {
            return Err(KeyFileError::DevKeysInProduction);
        }
        Ok(())
    }

    fn read(
        &self,
        path: &Path,
        environment: Environment,
    ) -> Result<(T, [u8; 32]), KeyFileError<E>> {
        let bytes = read_bytes(path)?;
        self.parse_bytes(path, environment, &bytes)
    }

    /// Parses the bytes read from `path` (once: the fingerprint and the keys come from
    /// the same read).
    fn parse_bytes(
        &self,
        path: &Path,
        environment: Environment,
        bytes: &[u8],
    ) -> Result<(T, [u8; 32]), KeyFileError<E>> {
        let fingerprint = sha256(bytes);
        let text = std::str::from_utf8(bytes).map_err(|_| KeyFileError::NotUtf8 {
            path: path.to_owned(),
        })?;
        let keys = (self.parse)(text).map_err(|source| KeyFileError::Invalid {
            path: path.to_owned(),
            source,
        })?;
        self.admit(&keys, environment)?;
        Ok((keys, fingerprint))
    }
}

fn read_bytes<E: std::error::Error + 'static>(path: &Path) -> Result<Vec<u8>, KeyFileError<E>> {
    std::fs::read(path).map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })
}

/// One poll: `Some` with the keys and their fingerprint when the content differs from
/// `fingerprint` and is accepted. Blocks on the file system.
fn poll<T, E: std::error::Error + 'static>(
    path: &Path,
    environment: Environment,
    format: KeyFormat<T, E>,
    fingerprint: [u8; 32],
) -> Result<Option<(T, [u8; 32])>, KeyFileError<E>> {
    let bytes = read_bytes(path)?;
    if sha256(&bytes) == fingerprint {
        return Ok(None);
    }
    format.parse_bytes(path, environment, &bytes).map(Some)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

/// A key file being followed: its path, and the content last accepted from it.
pub struct FollowedKeyFile<T, E> {
    path: PathBuf,
    environment: Environment,
    format: KeyFormat<T, E>,
    /// SHA-256 of the content last accepted.
    fingerprint: [u8; 32],
}

impl<T, E> std::fmt::Debug for FollowedKeyFile<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FollowedKeyFile")
            .field("path", &self.path)
            .field("environment", &self.environment)
            .finish_non_exhaustive()
    }
}

impl<T, E: std::error::Error + 'static> FollowedKeyFile<T, E> {
    /// Reads the file at `path` now; its keys, and the file to follow.
    pub fn open(
        path: impl Into<PathBuf>,
        environment: Environment,
        format: KeyFormat<T, E>,
    ) -> Result<(Self, T), KeyFileError<E>> {
        let path = path.into();
        let (keys, fingerprint) = format.read(&path, environment)?;
        let file = FollowedKeyFile {
            path,
            environment,
            format,
            fingerprint,
        };
        Ok((file, keys))
    }

    /// Re-reads the file: `Some` with the new keys when its content changed and is
    /// accepted (it is then the content in service), `None` when it did not change, an
    /// error when the new content is refused (tried again at the next call).
    ///
    /// It blocks on the file system: on the async runtime, use
    /// [`FollowedKeyFile::changed_async`].
    pub fn changed(&mut self) -> Result<Option<T>, KeyFileError<E>> {
        let fresh = poll(&self.path, self.environment, self.format, self.fingerprint)?;
        Ok(self.accept(fresh))
    }

    fn accept(&mut self, fresh: Option<(T, [u8; 32])>) -> Option<T> {
        let (keys, fingerprint) = fresh?;
        self.fingerprint = fingerprint;
        Some(keys)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl<T: Send + 'static, E: std::error::Error + Send + 'static> FollowedKeyFile<T, E> {
    /// [`FollowedKeyFile::changed`] for a caller on the async runtime: the file is
    /// read, hashed and parsed on tokio's blocking pool, and no worker thread waits for
    /// the file system. Must be called within a tokio runtime. If the blocking task
    /// cannot finish (the runtime is shutting down), the poll fails as a read error and
    /// nothing changes.
    pub async fn changed_async(&mut self) -> Result<Option<T>, KeyFileError<E>> {
        let (path, environment, format, fingerprint) = (
            self.path.clone(),
            self.environment,
            self.format,
            self.fingerprint,
        );
        let fresh =
            tokio::task::spawn_blocking(move || poll(&path, environment, format, fingerprint))
                .await
                .map_err(|err| KeyFileError::Read {
                    path: self.path.clone(),
                    source: std::io::Error::other(format!(
                        "the blocking read did not finish: {err}"
                    )),
                })??;
        Ok(self.accept(fresh))
    }

    /// Follows the file for `holder`, every `interval` on a task of its own
    /// ([`poll_while`]): `apply` gets the holder and `Some(keys)` for content accepted,
    /// `None` for the same content; content refused is logged (the file named `what`)
    /// and the holder keeps what it has.
    pub fn follow<H, F>(
        self,
        holder: &Arc<H>,
        interval: Duration,
        what: &'static str,
        apply: F,
    ) -> JoinHandle<()>
    where
        H: Send + Sync + 'static,
        F: Fn(&H, Option<T>) + Send + Sync + 'static,
    {
        let apply = Arc::new(apply);
        let file = Arc::new(tokio::sync::Mutex::new(self));
        poll_while(holder, interval, move |holder| {
            let (file, apply) = (file.clone(), apply.clone());
            async move {
                match file.lock().await.changed_async().await {
                    Ok(keys) => apply(&holder, keys),
                    Err(err) => tracing::warn!(
                        error = %err,
                        file = what,
                        "key file not reloaded; keeping what is in force"
                    ),
                }
            }
        })
    }
}

/// Calls `poll` with the holder every `interval` (the first one interval from now: the
/// holder was just loaded) on a task of its own, which ends once `holder` is dropped.
/// A poll that overruns delays the next rather than bunching them. Call within a tokio
/// runtime.
pub fn poll_while<H, F, Fut>(holder: &Arc<H>, interval: Duration, mut poll: F) -> JoinHandle<()>
where
    H: Send + Sync + 'static,
    F: FnMut(Arc<H>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let holder = Arc::downgrade(holder);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(holder) = holder.upgrade() else {
                return;
            };
            poll(holder).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Keys {
        dev: bool,
        value: u32,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("bad")]
    struct Bad;

    const FORMAT: KeyFormat<Keys, Bad> = KeyFormat {
        parse: |text| {
            let (dev, value) = text.split_once(':').ok_or(Bad)?;
            Ok(Keys {
                dev: dev == "dev",
                value: value.parse().map_err(|_| Bad)?,
            })
        },
        is_dev: |keys| keys.dev,
    };

    #[test]
    fn a_changed_file_is_offered_once_and_a_bad_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(&path, "dev:1").unwrap();
        let (mut file, keys) = FollowedKeyFile::open(&path, Environment::Dev, FORMAT).unwrap();
        assert_eq!(keys.value, 1);
        assert!(file.changed().unwrap().is_none());

        std::fs::write(&path, "dev:").unwrap();
        assert!(matches!(file.changed(), Err(KeyFileError::Invalid { .. })));
        assert!(
            matches!(file.changed(), Err(KeyFileError::Invalid { .. })),
            "refused content is tried again"
        );
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(matches!(file.changed(), Err(KeyFileError::NotUtf8 { .. })));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(file.changed(), Err(KeyFileError::Read { .. })));

        std::fs::write(&path, "dev:2").unwrap();
        assert_eq!(file.changed().unwrap().map(|k| k.value), Some(2));
        assert!(file.changed().unwrap().is_none());
    }

    /// The async poll reads off the runtime's workers: while the file blocks (a FIFO
    /// nobody writes yet), a single-threaded runtime keeps running other tasks.
    #[cfg(unix)]
    #[tokio::test(flavor = "current_thread")]
    async fn the_async_poll_reads_off_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(&path, "dev:1").unwrap();
        let (mut file, _) = FollowedKeyFile::open(&path, Environment::Dev, FORMAT).unwrap();
        assert!(file.changed_async().await.unwrap().is_none());

        std::fs::remove_file(&path).unwrap();
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("no mkfifo here; skipped");
            return;
        }
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(300));
                std::fs::write(&path, "dev:2").unwrap();
            })
        };
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        };
        let fresh = file.changed_async().await.unwrap();
        ticker.abort();
        writer.join().unwrap();
        assert_eq!(fresh.map(|k| k.value), Some(2));
        assert!(
            ticks.load(std::sync::atomic::Ordering::Relaxed) >= 5,
            "the runtime ran other tasks while the file blocked"
        );
    }

    #[test]
    fn production_refuses_dev_keys_at_start_and_at_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(&path, "dev:1").unwrap();
        assert!(matches!(
            FollowedKeyFile::open(&path, Environment::Production, FORMAT),
            Err(KeyFileError::DevKeysInProduction)
        ));
        std::fs::write(&path, "prod:1").unwrap();
        let (mut file, _) = FollowedKeyFile::open(&path, Environment::Production, FORMAT).unwrap();
        std::fs::write(&path, "dev:2").unwrap();
        assert!(matches!(
            file.changed(),
            Err(KeyFileError::DevKeysInProduction)
        ));
        let dev = Keys {
            dev: true,
            value: 3,
        };
        assert!(FORMAT.admit(&dev, Environment::Production).is_err());
        assert!(FORMAT.admit(&dev, Environment::Dev).is_ok());
    }
}
