//! The revocation follower: the one way citypass services read revocations.
//!
//! A [`Follower`] keeps the full [`RevocationSet`] in memory for a verifier or the
//! issuer and keeps it current from the revocation service's log:
//!
//! - **Redis** ([`Source::Redis`], deployments): tails the Redis Stream the service
//!   publishes every committed entry to (`XREAD BLOCK` from the last stream id), and
//!   resyncs from RevocationService.ListRevocations (paged, since its epoch) at start-up, on a gap
//!   that does not fill within the gap window, after losing Redis (it then polls List
//!   until Redis is back, so enforcement continues through the service), and every
//!   `check_interval` as a safety net for publishes that failed silently and as the
//!   check of the set's chain against the service's head. See `redis_source` for the
//!   exact protocol.
//! - **Watch** ([`Source::Watch`], `citypass dev` and offline tooling): follows
//!   RevocationService.WatchRevocations over gRPC; the service's heartbeats bound the age.
//!
//! Entries are applied strictly in epoch order: stream order is append order, so an
//! entry above a missing epoch is held for the gap window, and the set never has a
//! hole ([`RevocationSet::apply`] refuses one).
//!
//! **Redis is not trusted** (security review, finding 6): whoever can write to it can
//! append a forged message, delete one, or replace one. Every entry carries the log's
//! hash chain (`citypass_revocation::chain`) and is applied only if it continues the
//! set's chain; every List page and Watch heartbeat carries the service's head (epoch
//! and chain hash, signed), and a resync ends only once the set's chain hash is the
//! service's. A stream entry off the chain, or one that conflicts with what was applied
//! at its epoch, makes the follower ask the service; a set found off the service's
//! chain (it applied a forgery that chained onto its head) cannot un-apply it, so it is
//! rebuilt from ListRevocations since epoch 0, checked all the way, and swapped in (counted in
//! `rebuilds`). A deleted message shows as a gap, or, when nothing follows it, at the
//! next periodic check.
//!
//! Readers hold a [`RevocationView`]: cheap to clone, every query answered from memory
//! under a read lock, with the [`Freshness`] (epoch and age) of the data. **Age** is
//! the time since the follower last heard from the log: a List resync that reached the
//! head and confirmed the chain, a Watch message (heartbeats included), or a stream
//! read with no gap outstanding while the last confirmed check is at most
//! `check_interval + request_timeout` old; not the time since the last entry. So with
//! List checks failing the data ages even while Redis answers, and any Redis error
//! marks the stream untrusted: the age then grows until List answers again. Callers
//! act on the age (the issuer refuses to issue on data older than its `max_age`).
//!
//! Memory stays bounded: expired token and certificate entries are pruned every
//! `prune_interval`, and entries held above a gap are capped (`max_pending`).
//!
//! ```no_run
//! # async fn run() -> Result<(), citypass_revocation_follow::FollowerError> {
//! use citypass_revocation_follow::{Follower, FollowerConfig};
//! let follower = Follower::connect(
//!     "http://revocation:50054",
//!     FollowerConfig::redis_default_key("redis://redis:6379/"),
//! )?;
//! let view = follower.view();
//! view.wait_synced().await;
//! let subject = citypass_token::SubjectId::parse("0123456789abcdef0123456789abcdef")
//!     .expect("a well-formed id");
//! let (blocked, freshness) = view.decide(|set| set.issuance_blocked_subject(&subject));
//! # let _ = (blocked, freshness);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod check;
mod config;
mod counters;
mod metrics;
mod prune;
mod redis_source;
mod resync;
mod retry;
mod sequencer;
mod settings;
mod source_state;
mod state;
mod view;
mod watch_source;

use std::ops::Deref;
use std::time::Duration;

pub use check::{
    FollowerCheck, NothingRevoked, RevocationCheck, RevocationError, RevocationStatus,
};
pub use citypass_revocation::stream::DEFAULT_STREAM_KEY;
pub use citypass_revocation::{Kinds, RevocationSet, TargetKind};
pub use config::{FollowerConfig, Source};
pub use counters::MetricsSnapshot;
pub use settings::{FollowMode, InvalidSettings, MAX_MAX_AGE, MIN_MAX_AGE, RevocationSettings};
/// Names of the OpenTelemetry instruments a follower registers on the global meter.
pub mod metric_names {
    pub use crate::metrics::{
        AGE, CHAIN_CONFLICTS, ENTRIES_APPLIED, EPOCH, GAPS, REBUILDS, REDIS_ERRORS,
        RESYNC_FAILURES, RESYNCS, SOURCE_ATTRIBUTE, STREAM_MESSAGES,
    };
}
pub use resync::RevocationClient;
pub use source_state::SourceState;
pub use view::{Freshness, RevocationView};

use tokio::task::JoinHandle;
use tonic::transport::Endpoint;

use crate::state::Shared;

/// Why a follower could not start.
#[derive(Debug, thiserror::Error)]
pub enum FollowerError {
    /// The settings are unusable.
    #[error("invalid follower configuration: {0}")]
    Config(String),
    /// The RevocationService URL is not a valid URI.
    #[error("invalid revocation service URL: {0}")]
    ServiceUrl(String),
    /// The Redis URL does not parse.
    #[error("invalid Redis URL: {0}")]
    RedisUrl(#[source] redis::RedisError),
}

/// Keeps a [`RevocationSet`] current (see the crate documentation). Derefs to its
/// [`RevocationView`]. Dropping the follower stops its task; views taken from it keep
/// answering from the last set, with a growing age.
pub struct Follower {
    view: RevocationView,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("view", &self.view)
            .finish_non_exhaustive()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Deref for Follower {
    type Target = RevocationView;

    fn deref(&self) -> &RevocationView {
        &self.view
    }
}

/// A RevocationService client for `url` that connects on first use (and reconnects
/// after failures), with `connect_timeout` per attempt.
pub fn connect_lazy(
    url: &str,
    connect_timeout: Duration,
) -> Result<RevocationClient, FollowerError> {
    let channel = Endpoint::from_shared(url.to_owned())
        .map_err(|err| FollowerError::ServiceUrl(err.to_string()))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .connect_lazy();
    Ok(RevocationClient::new(channel))
}

impl Follower {
    /// Starts following with `service` for ListRevocations/WatchRevocations; returns at once (the first sync
    /// happens in the background: see [`RevocationView::wait_synced`]). Call inside a
    /// tokio runtime.
    pub fn start(config: FollowerConfig, service: RevocationClient) -> Result<Self, FollowerError> {
        config.validate()?;
        let shared = Shared::new(RevocationSet::with_kinds(config.kinds), config.max_pending);
        metrics::register(&shared, &config.source);
        let task = match config.source.clone() {
            Source::Redis { url, stream_key } => {
                let redis = citypass_redis::client(&url, config.redis_ca.as_deref())
                    .map_err(|e| FollowerError::Config(e.to_string()))?;
                tokio::spawn(redis_source::run(
                    shared.clone(),
                    service,
                    config,
                    redis,
                    stream_key,
                ))
            }
            Source::Watch => tokio::spawn(watch_source::run(shared.clone(), service, config)),
        };
        Ok(Follower {
            view: RevocationView { shared },
            task,
        })
    }

    /// [`Follower::start`] with a lazily connecting client for `service_url` (e.g.
    /// `http://revocation:50054`).
    pub fn connect(service_url: &str, config: FollowerConfig) -> Result<Self, FollowerError> {
        let client = connect_lazy(service_url, config.request_timeout)?;
        Self::start(config, client)
    }

    /// A read handle (cheap; clone it freely).
    pub fn view(&self) -> RevocationView {
        self.view.clone()
    }

    /// Drops expired token and certificate entries now (the follower also does it
    /// every `prune_interval`); returns how many.
    pub fn prune_now(&self) -> usize {
        prune::prune(&self.view.shared)
    }
}
