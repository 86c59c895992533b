//! The subject keys the verifier opens codes' sealed subjects with, followed from
//! their own file (`subjects.keys`, a `citypass-subject-keys/v1` document that
//! `subject-keys.json`, which `citypass keys` writes beside the issuer's ring): subject keys only,
//! never a signing seed, so a verifier that leaks its secrets cannot mint a code.
//!
//! The file is followed with the runtime's key-file loader, like the key set: a changed
//! file that parses replaces the keys, one that does not keeps them (logged); a dev
//! file is refused in production. Each poll also drops retired keys past their
//! valid-until (the issuer retires a key for as long as codes sealed under it live).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use citypass_runtime::Environment;
use citypass_runtime::key_file::{FollowedKeyFile, KeyFileError, KeyFormat, poll_while};
use citypass_token::{SubjectKeyFile, SubjectKeys, TokenError, unix_now};

const FORMAT: KeyFormat<SubjectKeyFile, TokenError> = KeyFormat {
    parse: SubjectKeyFile::from_json,
    is_dev: |file| file.dev,
};

/// The subject keys in force.
pub struct SealingKeys {
    file: ArcSwap<SubjectKeyFile>,
    keys: ArcSwap<SubjectKeys>,
}

impl std::fmt::Debug for SealingKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealingKeys")
            .field("ids", &self.keys.load().ids())
            .finish()
    }
}

impl SealingKeys {
    /// Keys held in memory (tests, embeddings), never reloaded.
    pub fn fixed(file: SubjectKeyFile) -> Result<Arc<Self>, TokenError> {
        let keys = file.subject_keys(unix_now())?;
        Ok(Arc::new(SealingKeys {
            file: ArcSwap::from_pointee(file),
            keys: ArcSwap::from_pointee(keys),
        }))
    }

    /// Reads the file at `path` now and follows it every `reload_interval` (call inside
    /// a tokio runtime).
    pub fn follow(
        path: &Path,
        reload_interval: Duration,
        environment: Environment,
    ) -> Result<Arc<Self>, KeyFileError<TokenError>> {
        let (followed, file) = FollowedKeyFile::open(path, environment, FORMAT)?;
        let sealing = Self::fixed(file).map_err(|source| KeyFileError::Invalid {
            path: path.to_path_buf(),
            source,
        })?;
        // Each poll also re-reads the keys from the file in force, whose keys age out.
        let followed = Arc::new(tokio::sync::Mutex::new(followed));
        poll_while(&sealing, reload_interval, move |sealing| {
            let followed = followed.clone();
            async move {
                match followed.lock().await.changed_async().await {
                    Ok(Some(file)) => {
                        tracing::info!("subject keys reloaded");
                        sealing.file.store(Arc::new(file));
                    }
                    Ok(None) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "subject keys not reloaded; keeping those in force");
                    }
                }
                match sealing.file.load().subject_keys(unix_now()) {
                    Ok(keys) => sealing.keys.store(Arc::new(keys)),
                    Err(err) => {
                        tracing::warn!(error = %err, "subject keys unusable; keeping those in force")
                    }
                }
            }
        });
        Ok(sealing)
    }

    /// The keys that open now.
    pub fn current(&self) -> Arc<SubjectKeys> {
        self.keys.load_full()
    }
}
