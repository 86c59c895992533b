//! The issuer's published key set, as the verifier holds it.
//!
//! The verifier reads the JWKS that the issuer publishes (GetKeySet's `jwks_json`, the
//! `keyset.jwks.json` that `citypass demo --out` writes), mounted as a file, and
//! follows it with the runtime's key-file loader, as the issuer follows its ring: a
//! changed file that parses replaces the set at once, one that does not keeps the set
//! in force. The key set's **age** is the time since the file was last read and
//! confirmed (a poll that found it unchanged or loaded a new one), reported with every
//! decision.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use citypass_runtime::Environment;
use citypass_runtime::key_file::{FollowedKeyFile, KeyFileError, KeyFormat};
use citypass_token::{KeySet, TokenError};

const FORMAT: KeyFormat<KeySet, TokenError> = KeyFormat {
    parse: KeySet::from_jwks,
    // A public key set holds nothing secret; dev codes are kept out of production by
    // the issuer's refusal of dev rings.
    is_dev: |_| false,
};

/// The key set in force and when it was last confirmed.
#[derive(Debug)]
pub struct Keys {
    current: ArcSwap<KeySet>,
    confirmed: Mutex<Instant>,
}

impl Keys {
    /// A key set held in memory (tests), confirmed now.
    pub fn fixed(set: KeySet) -> Arc<Self> {
        Arc::new(Keys {
            current: ArcSwap::from_pointee(set),
            confirmed: Mutex::new(Instant::now()),
        })
    }

    /// Loads the JWKS at `path` now and follows it every `reload_interval`, with a task
    /// that ends when the returned handle is dropped. Call inside a tokio runtime.
    pub fn follow(
        path: &Path,
        reload_interval: Duration,
        environment: Environment,
    ) -> Result<Arc<Self>, KeyFileError<TokenError>> {
        let (mut file, set) = FollowedKeyFile::open(path, environment, FORMAT)?;
        let keys = Keys::fixed(set);
        let weak = Arc::downgrade(&keys);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(reload_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(keys) = weak.upgrade() else { return };
                match file.changed_async().await {
                    Ok(Some(set)) => {
                        tracing::info!(keys = set.keys().len(), "key set reloaded");
                        keys.replace(set);
                    }
                    Ok(None) => keys.confirm(),
                    Err(err) => {
                        tracing::warn!(error = %err, "key set not reloaded; keeping the one in force");
                    }
                }
            }
        });
        Ok(keys)
    }

    /// The set in force and its age.
    pub fn current(&self) -> (Arc<KeySet>, Duration) {
        let age = self
            .confirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed();
        (self.current.load_full(), age)
    }

    /// Puts `set` in force (confirmed now).
    pub fn replace(&self, set: KeySet) {
        self.current.store(Arc::new(set));
        self.confirm();
    }

    fn confirm(&self) {
        *self
            .confirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }
}
