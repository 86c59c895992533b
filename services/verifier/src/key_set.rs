//! The issuer's published key set, as the verifier holds it.
//!
//! The verifier reads the JWKS that the issuer publishes (GetKeySet's `jwks_json`, the
//! `keyset.jwks.json` that `citypass demo --out` writes), mounted as a file, and
//! follows it with the runtime's key-file loader, as the issuer follows its ring: a
//! changed file that parses replaces the set at once, one that does not keeps the set
//! in force. The file is the trust anchor (an operator's act).
//!
//! With `issuer` configured, the verifier also asks the issuer's GetKeySet every
//! `key_set.reload_interval` and takes a set only as a gate does: signed by a code key
//! that the set **in force** holds and may use now (so a set can introduce its
//! successor key but never vouch for itself), and not issued before the set in force
//! (`issued_at`, no rollback; a different set with the same `issued_at` is refused too,
//! and so is a set without `issued_at` or dated more than [`MAX_ISSUED_AHEAD`] ahead,
//! which would otherwise hold off every later set). A refused or unreachable answer
//! keeps the set in force.
//!
//! The key set's **age** is the time since it was last confirmed (a file poll that
//! found it unchanged or loaded it, a GetKeySet answer that was taken or repeated it),
//! reported with every decision.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use citypass_proto::v1::GetKeySetRequest;
use citypass_proto::v1::issuer_service_client::IssuerServiceClient;
use citypass_runtime::Environment;
use citypass_runtime::key_file::{FollowedKeyFile, KeyFileError, KeyFormat};
use citypass_token::{KeySet, KeyUsage, Kid, TokenError, unix_now, verify_key_set};
use tonic::transport::Channel;

/// A key set file: the set and its `issued_at` (0 when the document has none).
type Published = (KeySet, u64);

const FORMAT: KeyFormat<Published, TokenError> = KeyFormat {
    parse: |text| Ok((KeySet::from_jwks(text)?, issued_at_of(text))),
    // A public key set holds nothing secret; dev codes are kept out of production by
    // the issuer's refusal of dev rings.
    is_dev: |_| false,
};

/// The `issued_at` member the issuer adds to the JWKS it publishes.
fn issued_at_of(text: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|doc| doc.get("issued_at").and_then(serde_json::Value::as_u64))
        .unwrap_or(0)
}

/// Why a GetKeySet answer was not taken (the set in force stays).
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The issuer did not answer.
    #[error("GetKeySet failed: {0}")]
    Unavailable(String),
    /// The document or the kid is malformed.
    #[error("the published key set is invalid: {0}")]
    Invalid(#[source] TokenError),
    /// The signing key is not a code key the set in force holds and may use now.
    #[error("the key set is signed by a key the set in force does not trust")]
    UntrustedSigner(#[source] TokenError),
    /// The signature does not verify.
    #[error("the key set's signature does not verify")]
    BadSignature(#[source] TokenError),
    /// Issued before the set in force, or another set issued at the same time.
    #[error("the key set is older than the one in force")]
    Rollback,
    /// Without `issued_at`, or with one beyond [`MAX_ISSUED_AHEAD`] from now: a set
    /// dated in the future would hold off every later set as a rollback.
    #[error("the key set has no issued_at, or one in the future")]
    BadIssuedAt,
}

/// How far ahead of this verifier's clock a published set's `issued_at` may be.
pub const MAX_ISSUED_AHEAD: u64 = 300;

/// The key set in force and when it was last confirmed.
#[derive(Debug)]
pub struct Keys {
    current: ArcSwap<KeySet>,
    confirmed: Mutex<Instant>,
    /// `issued_at` of the set in force (0: unknown).
    issued_at: AtomicU64,
}

impl Keys {
    /// A key set held in memory (tests), confirmed now.
    pub fn fixed(set: KeySet) -> Arc<Self> {
        Arc::new(Keys {
            current: ArcSwap::from_pointee(set),
            confirmed: Mutex::new(Instant::now()),
            issued_at: AtomicU64::new(0),
        })
    }

    /// Loads the JWKS at `path` now and follows it every `reload_interval`, with a task
    /// that ends when the returned handle is dropped. Call inside a tokio runtime.
    pub fn follow(
        path: &Path,
        reload_interval: Duration,
        environment: Environment,
    ) -> Result<Arc<Self>, KeyFileError<TokenError>> {
        let (file, (set, issued_at)) = FollowedKeyFile::open(path, environment, FORMAT)?;
        let keys = Keys::fixed(set);
        keys.issued_at.store(issued_at, Ordering::Relaxed);
        file.follow(
            &keys,
            reload_interval,
            "key set",
            |keys, fresh| match fresh {
                Some((set, issued_at)) => {
                    tracing::info!(keys = set.keys().len(), "key set reloaded");
                    keys.replace(set);
                    keys.issued_at.store(issued_at, Ordering::Relaxed);
                }
                None => keys.confirm(),
            },
        );
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

    /// Checks a GetKeySet answer against the set in force (see the module
    /// documentation) and takes it; `Ok(false)` when it is the set in force again.
    pub fn offer(
        &self,
        jwks_json: &[u8],
        signature: &[u8],
        signing_kid: &[u8],
    ) -> Result<bool, RefreshError> {
        let text = std::str::from_utf8(jwks_json)
            .map_err(|_| RefreshError::Invalid(TokenError::InvalidKeySet("not UTF-8".into())))?;
        let set = KeySet::from_jwks(text).map_err(RefreshError::Invalid)?;
        let kid = Kid::from_slice(signing_kid).map_err(RefreshError::Invalid)?;
        let current = self.current.load_full();
        let signer = current
            .usable(&kid, KeyUsage::Code, unix_now())
            .map_err(RefreshError::UntrustedSigner)?;
        verify_key_set(signer, jwks_json, signature).map_err(RefreshError::BadSignature)?;
        let issued_at = issued_at_of(text);
        if issued_at == 0 || issued_at > unix_now().saturating_add(MAX_ISSUED_AHEAD) {
            return Err(RefreshError::BadIssuedAt);
        }
        let in_force = self.issued_at.load(Ordering::Relaxed);
        if issued_at < in_force {
            return Err(RefreshError::Rollback);
        }
        if issued_at == in_force {
            if set != *current {
                return Err(RefreshError::Rollback);
            }
            self.confirm();
            return Ok(false);
        }
        self.replace(set);
        self.issued_at.store(issued_at, Ordering::Relaxed);
        Ok(true)
    }

    /// Asks `issuer` for its key set every `interval` and offers each answer, with a
    /// task that ends when the returned handle is dropped. Call inside a tokio runtime.
    pub fn refresh_from(
        self: &Arc<Self>,
        mut issuer: IssuerServiceClient<Channel>,
        interval: Duration,
    ) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(keys) = weak.upgrade() else { return };
                let offered = match issuer.get_key_set(GetKeySetRequest {}).await {
                    Ok(answer) => {
                        let answer = answer.into_inner();
                        keys.offer(&answer.jwks_json, &answer.signature, &answer.signing_kid)
                    }
                    Err(status) => Err(RefreshError::Unavailable(status.code().to_string())),
                };
                match offered {
                    Ok(true) => tracing::info!("key set refreshed from the issuer"),
                    Ok(false) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "key set not refreshed; keeping the one in force");
                    }
                }
            }
        });
    }

    fn confirm(&self) {
        *self
            .confirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citypass_token::{Issuer, IssuerKey, KeyStatus, PublishedKey, SubjectKey, sign_key_set};

    fn issuer(seed: u8) -> Issuer {
        Issuer::new(
            "citypass-test",
            IssuerKey::from_seed(&[seed; 32]).unwrap(),
            SubjectKey::from_bytes(&[8; 32]).unwrap(),
        )
    }

    fn set(issuers: &[&Issuer]) -> KeySet {
        KeySet::new(
            issuers
                .iter()
                .map(|i| PublishedKey {
                    key: i.key().public_key().clone(),
                    status: KeyStatus::Active,
                    usage: KeyUsage::Code,
                })
                .collect(),
        )
        .unwrap()
    }

    /// `set` as GetKeySet publishes it, with `issued_at` (none when 0), signed by `signer`.
    fn offer(
        keys: &Keys,
        set: &KeySet,
        issued_at: u64,
        signer: &Issuer,
    ) -> Result<bool, RefreshError> {
        let mut doc: serde_json::Value = serde_json::from_str(&set.to_jwks()).unwrap();
        if issued_at != 0 {
            doc["issued_at"] = issued_at.into();
        }
        let json = serde_json::to_vec(&doc).unwrap();
        keys.offer(
            &json,
            &sign_key_set(signer.key(), &json),
            &signer.key().kid().0,
        )
    }

    /// Review of the verifier (key set refresh): a set without `issued_at`, one dated
    /// far ahead (which would hold off every later set), and a different set under the
    /// `issued_at` in force are refused; the same set again is a confirmation.
    #[test]
    fn review_issued_at_must_be_present_not_ahead_and_not_reused() {
        let (a, b) = (issuer(1), issuer(2));
        let keys = Keys::fixed(set(&[&a]));
        let now = unix_now();
        assert!(matches!(
            offer(&keys, &set(&[&a, &b]), 0, &a),
            Err(RefreshError::BadIssuedAt)
        ));
        assert!(matches!(
            offer(&keys, &set(&[&a, &b]), now + MAX_ISSUED_AHEAD + 60, &a),
            Err(RefreshError::BadIssuedAt)
        ));
        assert!(matches!(offer(&keys, &set(&[&a, &b]), now, &a), Ok(true)));
        assert!(matches!(offer(&keys, &set(&[&a, &b]), now, &a), Ok(false)));
        assert!(matches!(
            offer(&keys, &set(&[&a]), now, &a),
            Err(RefreshError::Rollback)
        ));
        assert!(matches!(
            offer(&keys, &set(&[&a]), now - 1, &a),
            Err(RefreshError::Rollback)
        ));
        assert_eq!(keys.current().0.keys().len(), 2);
    }
}
