//! How a [`crate::Follower`] follows the log: its source and its timings.

use std::fmt;
use std::time::Duration;

use citypass_revocation::Kinds;
use citypass_revocation::stream::DEFAULT_STREAM_KEY;

/// Where new entries come from. Resyncs always read RevocationService.ListRevocations.
#[derive(Clone, PartialEq, Eq)]
pub enum Source {
    /// Tail the Redis Stream the service publishes to (deployments): `XREAD BLOCK` from
    /// the last stream id, List at start-up, on a gap, after losing Redis, and as a
    /// periodic check.
    Redis {
        /// Redis URL, e.g. `redis://redis:6379/` (kept out of `Debug`: it may hold a
        /// password).
        url: String,
        /// The stream key ([`DEFAULT_STREAM_KEY`] unless the service is configured
        /// otherwise).
        stream_key: String,
    },
    /// Follow RevocationService.WatchRevocations over gRPC (`citypass dev`, whose service has no
    /// Redis; offline gates): the backlog, then new entries, with heartbeats that bound
    /// the age of the data.
    Watch,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Redis { stream_key, .. } => f
                .debug_struct("Redis")
                .field("url", &"<redacted>")
                .field("stream_key", stream_key)
                .finish(),
            Source::Watch => f.write_str("Watch"),
        }
    }
}

/// Settings of a follower. [`FollowerConfig::redis`] and [`FollowerConfig::watch`]
/// give production defaults; tests shorten the intervals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerConfig {
    /// Where new entries come from.
    pub source: Source,
    /// Kinds the set keeps (default all; others still advance the epoch).
    pub kinds: Kinds,
    /// Entries asked for per List page (default 1000; the service may cap it).
    pub list_page_size: u32,
    /// How long stream entries above a missing epoch are held, waiting for it (stream
    /// order is append order, so two writers' entries may arrive swapped), before the
    /// follower resyncs from List (default `200ms`).
    pub gap_window: Duration,
    /// Most entries held above a gap (default 10 000): reaching it triggers a resync at
    /// once, and entries beyond it are dropped (List returns them).
    pub max_pending: usize,
    /// `XREAD BLOCK` time (default `1s`): an idle stream is read this often, and each
    /// read counts as hearing from the log.
    pub block: Duration,
    /// `XREAD COUNT` (default 1000).
    pub read_count: usize,
    /// While the stream is healthy, ListRevocations since the epoch this often (default `5s`): a
    /// failed publish that no later entry reveals as a gap is still picked up, and the
    /// set's chain hash is compared with the service's head. Stream reads keep the
    /// data fresh only while the last such check succeeded within `check_interval +
    /// request_timeout`.
    pub check_interval: Duration,
    /// While Redis is lost, ListRevocations since the epoch this often (default `1s`), so
    /// enforcement continues through the service.
    pub poll_interval: Duration,
    /// First pause before reconnecting to Redis or Watch, or retrying a failed resync
    /// (default `500ms`); it doubles, jittered, while attempts keep failing.
    pub retry_interval: Duration,
    /// Longest pause between reconnect attempts (default `5s`).
    pub retry_max_interval: Duration,
    /// Longest one List page, Redis command (beyond its block time), connection or
    /// Watch call may take (default `5s`).
    pub request_timeout: Duration,
    /// A Watch stream silent for this long is dropped and reopened (default `5s`; the
    /// service sends a heartbeat about every second).
    pub watch_silence: Duration,
    /// How often expired token and certificate entries are dropped (default `60s`).
    pub prune_interval: Duration,
    /// CA certificates (PEM) that sign a `rediss://` server's certificate (default:
    /// none, the system's roots).
    pub redis_ca: Option<Vec<u8>>,
}

impl FollowerConfig {
    fn with_source(source: Source) -> Self {
        FollowerConfig {
            source,
            kinds: Kinds::ALL,
            list_page_size: 1000,
            gap_window: Duration::from_millis(200),
            max_pending: 10_000,
            block: Duration::from_secs(1),
            read_count: 1000,
            check_interval: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            retry_interval: Duration::from_millis(500),
            retry_max_interval: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            watch_silence: Duration::from_secs(5),
            prune_interval: Duration::from_secs(60),
            redis_ca: None,
        }
    }

    /// Tail the stream `stream_key` at `redis_url`, with the default timings.
    pub fn redis(redis_url: impl Into<String>, stream_key: impl Into<String>) -> Self {
        Self::with_source(Source::Redis {
            url: redis_url.into(),
            stream_key: stream_key.into(),
        })
    }

    /// Tail the default stream key at `redis_url`.
    pub fn redis_default_key(redis_url: impl Into<String>) -> Self {
        Self::redis(redis_url, DEFAULT_STREAM_KEY)
    }

    /// Follow Watch, with the default timings.
    pub fn watch() -> Self {
        Self::with_source(Source::Watch)
    }

    /// Checks that every interval is positive and the limits are usable.
    pub fn validate(&self) -> Result<(), crate::FollowerError> {
        let positive = [
            ("gap_window", self.gap_window),
            ("block", self.block),
            ("check_interval", self.check_interval),
            ("poll_interval", self.poll_interval),
            ("retry_interval", self.retry_interval),
            ("retry_max_interval", self.retry_max_interval),
            ("request_timeout", self.request_timeout),
            ("watch_silence", self.watch_silence),
            ("prune_interval", self.prune_interval),
        ];
        for (name, value) in positive {
            if value < Duration::from_millis(1) {
                return Err(crate::FollowerError::Config(format!(
                    "{name} must be at least 1ms"
                )));
            }
        }
        if self.retry_max_interval < self.retry_interval {
            return Err(crate::FollowerError::Config(
                "retry_max_interval must be at least retry_interval".into(),
            ));
        }
        if self.list_page_size == 0 || self.read_count == 0 || self.max_pending == 0 {
            return Err(crate::FollowerError::Config(
                "list_page_size, read_count and max_pending must be at least 1".into(),
            ));
        }
        if let Source::Redis { stream_key, .. } = &self.source
            && stream_key.is_empty()
        {
            return Err(crate::FollowerError::Config(
                "the stream key must not be empty".into(),
            ));
        }
        Ok(())
    }
}
