//! Fan-out: every committed entry is appended to a Redis Stream that verifiers tail.
//!
//! The log in PostgreSQL is the truth; the stream only makes propagation fast. So an
//! entry is published *after* its commit, and a failed publish never fails the Revoke:
//! it is logged and counted ([`FanOutStats`]), and followers fill the hole from List
//! (they see the gap in epochs, or resync after losing Redis). The message format is
//! defined in `citypass_revocation::stream` so the follower decodes exactly what is
//! written here:
//!
//! ```text
//! XADD <key> MAXLEN ~ <cap> * epoch <epoch> entry <citypass_revocation::stream::encode_entry>
//! ```
//!
//! Each message carries the entry's chain hash (stream version 2): whoever can write to
//! Redis can forge, delete or replace messages, and the chain hash is how followers
//! notice (see `citypass_revocation::chain`).
//!
//! The stream is capped (approximately, which Redis trims cheaply) because it is a
//! buffer, not a history: a follower further behind than the cap resyncs from List.
//!
//! [`LocalPublisher`] is the embedded mode's fan-out (`citypass dev`, no Redis): an
//! in-process broadcast of the same entries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use citypass_revocation::Entry;
use citypass_revocation::stream::{FIELD_ENTRY, FIELD_EPOCH, encode_entry, epoch_field};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::broadcast;

use crate::model::Record;
use futures::future::BoxFuture;

/// Why a publish failed. Never fails a revocation.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Redis failed or did not answer in time.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The publish did not finish in time.
    #[error("publish timed out after {0:?}")]
    Timeout(Duration),
}

/// Appends committed records to the fan-out, in the order given.
pub trait Publisher: Send + Sync + 'static {
    /// Publishes `records` (epoch order). Errors are the caller's to log and count.
    fn publish<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), PublishError>>;
}

/// Counts of publishes, for metrics and tests.
#[derive(Debug, Default)]
pub struct FanOutStats {
    published: AtomicU64,
    failed: AtomicU64,
}

impl FanOutStats {
    /// Entries published.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Entries whose publish failed (followers get them from List).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    pub(crate) fn record(&self, count: usize, ok: bool) {
        let counter = if ok { &self.published } else { &self.failed };
        counter.fetch_add(count as u64, Ordering::Relaxed);
    }
}

/// The Redis Stream publisher.
#[derive(Clone)]
pub struct RedisPublisher {
    connection: ConnectionManager,
    key: String,
    max_len: u64,
    timeout: Duration,
}

impl std::fmt::Debug for RedisPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPublisher")
            .field("key", &self.key)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl RedisPublisher {
    /// Connects to `url` (failing if Redis does not answer within `timeout`); appends
    /// to stream `key`, trimmed to about `max_len` entries. Each publish takes at most
    /// `timeout`; a lost connection is re-established in the background.
    pub async fn connect(
        url: &str,
        key: impl Into<String>,
        max_len: u64,
        timeout: Duration,
    ) -> Result<Self, PublishError> {
        Self::connect_client(redis::Client::open(url)?, key, max_len, timeout).await
    }

    /// [`RedisPublisher::connect`] with a client made elsewhere (`citypass_redis`, for
    /// `rediss://` with the deployment's CA).
    pub async fn connect_client(
        client: redis::Client,
        key: impl Into<String>,
        max_len: u64,
        timeout: Duration,
    ) -> Result<Self, PublishError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_with_config(client, config).await?;
        Ok(RedisPublisher {
            connection,
            key: key.into(),
            max_len,
            timeout,
        })
    }

    /// The stream key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl Publisher for RedisPublisher {
    fn publish<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), PublishError>> {
        Box::pin(async move {
            if records.is_empty() {
                return Ok(());
            }
            let mut pipe = redis::pipe();
            for record in records {
                pipe.cmd("XADD")
                    .arg(&self.key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(self.max_len)
                    .arg("*")
                    .arg(FIELD_EPOCH)
                    .arg(epoch_field(&record.entry))
                    .arg(FIELD_ENTRY)
                    .arg(encode_entry(&record.chained()))
                    .ignore();
            }
            let mut connection = self.connection.clone();
            tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut connection))
                .await
                .map_err(|_| PublishError::Timeout(self.timeout))??;
            Ok(())
        })
    }
}

/// The embedded fan-out: an in-process broadcast of published entries.
#[derive(Debug, Clone)]
pub struct LocalPublisher {
    sender: broadcast::Sender<Arc<Entry>>,
}

impl LocalPublisher {
    /// A broadcast keeping up to `capacity` entries for slow receivers (a receiver that
    /// falls further behind gets `Lagged` and must resync from List).
    pub fn new(capacity: usize) -> Self {
        LocalPublisher {
            sender: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// Receives every entry published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Entry>> {
        self.sender.subscribe()
    }
}

impl Default for LocalPublisher {
    fn default() -> Self {
        LocalPublisher::new(4096)
    }
}

impl Publisher for LocalPublisher {
    fn publish<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), PublishError>> {
        for record in records {
            // No receiver is not an error: nobody is following yet.
            let _ = self.sender.send(Arc::new(record.entry.clone()));
        }
        Box::pin(std::future::ready(Ok(())))
    }
}
