//! Single-use marks: a request nonce (or a certified offline key) is accepted once.
//!
//! A signed request is a bearer of the device's authority for as long as its timestamp
//! is fresh; the nonce is what stops a captured copy from being sent again. The rule is
//! "first use wins, atomically": of two concurrent requests with one nonce exactly one
//! gets `true`. A mark must live at least as long as a request stays acceptable
//! ([`crate::nonce_ttl`]); after that the timestamp check refuses the
//! request anyway, which is what lets the store forget.
//!
//! Two backends pass the same contract tests (`tests/nonce_store.rs`):
//! - [`MemoryNonceStore`]: one process (`citypass dev`, tests). Bounded: when full of
//!   live marks it refuses new ones ([`NonceStoreError::Full`]) rather than forgetting
//!   a live mark, which would let that request be replayed.
//! - [`RedisNonceStore`]: `SET key 1 NX PX ttl`, shared by every replica of the service, which
//!   production requires (a replica with its own memory would accept a request replayed
//!   to it from another).
//!
//! Keys are built by the caller from hashes, never from raw ids, so the store (and
//! Redis) sees no personal data. [`open_nonce_store`] opens the one a service's
//! configuration names (the issuer's and payments' alike).

use futures::future::BoxFuture;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use citypass_redis::RedisClientError;
use citypass_runtime::config::RedisConfig;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

/// Why a mark could not be checked. Either way the request must be refused: a nonce
/// that cannot be checked is not known to be fresh.
#[derive(Debug, thiserror::Error)]
pub enum NonceStoreError {
    /// The in-memory store holds `capacity` live marks.
    #[error("nonce store is full")]
    Full,
    /// The backend did not answer or failed.
    #[error("nonce store backend failed")]
    Backend(#[source] redis::RedisError),
    /// A time-to-live beyond what the clock can represent from now.
    #[error("nonce time-to-live out of range")]
    TtlOutOfRange,
    /// Another backend (a service's own database) did not answer or failed.
    #[error("nonce store backend failed")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Why the configured nonce store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenNonceStoreError {
    /// The Redis client could not be made (its URL, its CA file).
    #[error(transparent)]
    Client(#[from] RedisClientError),
    /// Redis did not answer.
    #[error(transparent)]
    Connect(#[from] NonceStoreError),
}

/// The nonce store a service's configuration names: Redis at `redis` (keys under
/// `prefix`, its CA file or else `default_ca`), shared by every replica; without one,
/// memory holding at most `capacity` live marks (one replica only: production
/// configuration requires Redis).
pub async fn open_nonce_store(
    redis: Option<&RedisConfig>,
    prefix: &str,
    capacity: usize,
    default_ca: Option<&Path>,
) -> Result<Arc<dyn NonceStore>, OpenNonceStoreError> {
    Ok(match redis {
        Some(redis) => {
            let client = citypass_redis::from_config(redis, default_ca)?;
            Arc::new(RedisNonceStore::connect_client(client, prefix, redis.timeout).await?)
        }
        None => Arc::new(MemoryNonceStore::new(capacity)),
    })
}

/// First use wins, for a time-to-live.
pub trait NonceStore: Send + Sync + 'static {
    /// Marks `key` as used for `ttl`. `Ok(true)` if no live mark existed (this call is
    /// the first use), `Ok(false)` if `key` was marked within its ttl (a reuse).
    fn first_use<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, NonceStoreError>>;
}

/// The in-process backend (see the module documentation).
#[derive(Debug)]
pub struct MemoryNonceStore {
    capacity: usize,
    inner: Mutex<Marks>,
}

#[derive(Debug, Default)]
struct Marks {
    /// Key → when its mark expires.
    live: HashMap<String, Instant>,
    /// The same marks ordered by expiry, so expired ones are dropped from the front
    /// whatever mix of ttls the store holds.
    by_expiry: BTreeSet<(Instant, String)>,
}

impl Marks {
    /// Drops every expired mark: afterwards `live` holds live marks only.
    fn purge(&mut self, now: Instant) {
        while let Some((expiry, _)) = self.by_expiry.first() {
            if *expiry > now {
                break;
            }
            if let Some((_, key)) = self.by_expiry.pop_first() {
                self.live.remove(&key);
            }
        }
    }
}

impl MemoryNonceStore {
    /// A store holding at most `capacity` live marks (at least one).
    pub fn new(capacity: usize) -> Self {
        MemoryNonceStore {
            capacity: capacity.max(1),
            inner: Mutex::new(Marks::default()),
        }
    }

    /// Marks held now (expired ones are counted until the next use purges them).
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    /// Whether no mark is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Marks> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way
        // that breaks single use (each step is one insert or remove): keep going.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mark(&self, key: &str, ttl: Duration) -> Result<bool, NonceStoreError> {
        let now = Instant::now();
        let mut marks = self.lock();
        marks.purge(now);
        if marks.live.contains_key(key) {
            return Ok(false);
        }
        if marks.live.len() >= self.capacity {
            return Err(NonceStoreError::Full);
        }
        let expiry = now.checked_add(ttl).ok_or(NonceStoreError::TtlOutOfRange)?;
        marks.live.insert(key.to_owned(), expiry);
        marks.by_expiry.insert((expiry, key.to_owned()));
        Ok(true)
    }
}

impl NonceStore for MemoryNonceStore {
    fn first_use<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, NonceStoreError>> {
        let result = self.mark(key, ttl);
        Box::pin(std::future::ready(result))
    }
}

/// The Redis backend (see the module documentation).
#[derive(Clone)]
pub struct RedisNonceStore {
    connection: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisNonceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisNonceStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisNonceStore {
    /// Connects to `url` (failing if Redis does not answer within `timeout`); every
    /// key is written as `prefix` + key. Commands time out after `timeout` too, and a
    /// lost connection is re-established in the background.
    pub async fn connect(
        url: &str,
        prefix: impl Into<String>,
        timeout: Duration,
    ) -> Result<Self, NonceStoreError> {
        let client = redis::Client::open(url).map_err(NonceStoreError::Backend)?;
        Self::connect_client(client, prefix, timeout).await
    }

    /// [`RedisNonceStore::connect`] with a client made elsewhere (`citypass_redis`,
    /// for `rediss://` with the deployment's CA).
    pub async fn connect_client(
        client: redis::Client,
        prefix: impl Into<String>,
        timeout: Duration,
    ) -> Result<Self, NonceStoreError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(3);
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(NonceStoreError::Backend)?;
        Ok(Self::new(connection, prefix))
    }

    /// A store on an existing connection.
    pub fn new(connection: ConnectionManager, prefix: impl Into<String>) -> Self {
        RedisNonceStore {
            connection,
            prefix: prefix.into(),
        }
    }
}

impl NonceStore for RedisNonceStore {
    fn first_use<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, NonceStoreError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            // PX takes whole milliseconds, at least one.
            let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let reply: Option<String> = redis::cmd("SET")
                .arg(format!("{}{key}", self.prefix))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(millis)
                .query_async(&mut connection)
                .await
                .map_err(NonceStoreError::Backend)?;
            Ok(reply.is_some())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Security review, smaller findings (checked arithmetic): a time-to-live past what
    /// `Instant` holds is an error, not a panic, and marks nothing.
    #[tokio::test]
    async fn smaller_findings_an_absurd_ttl_is_an_error_not_a_panic() {
        let store = MemoryNonceStore::new(2);
        assert!(matches!(
            store.first_use("k", Duration::MAX).await,
            Err(NonceStoreError::TtlOutOfRange)
        ));
        assert!(store.is_empty());
        assert!(store.first_use("k", Duration::from_secs(1)).await.unwrap());
    }

    #[tokio::test]
    async fn mixed_ttls_expire_independently() {
        let store = MemoryNonceStore::new(2);
        assert!(
            store
                .first_use("long", Duration::from_secs(60))
                .await
                .unwrap()
        );
        assert!(
            store
                .first_use("short", Duration::from_millis(1))
                .await
                .unwrap()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        // "short" expired although "long", marked before it, has not.
        assert!(
            store
                .first_use("next", Duration::from_secs(60))
                .await
                .unwrap()
        );
        assert!(matches!(
            store.first_use("more", Duration::from_secs(60)).await,
            Err(NonceStoreError::Full)
        ));
        assert!(
            !store
                .first_use("long", Duration::from_secs(60))
                .await
                .unwrap()
        );
    }
}
