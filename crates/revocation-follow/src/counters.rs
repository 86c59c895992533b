//! A follower's counters and gauges, as plain atomics, and the snapshot callers read
//! them through. `metrics` exports the same numbers as OpenTelemetry instruments.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::source_state::SourceState;

/// The follower's counters (exported by `metrics` under `citypass.revocation.*`).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) entries_applied: AtomicU64,
    pub(crate) stream_messages: AtomicU64,
    pub(crate) invalid_messages: AtomicU64,
    pub(crate) out_of_order: AtomicU64,
    pub(crate) gaps: AtomicU64,
    pub(crate) resyncs: AtomicU64,
    pub(crate) resync_failures: AtomicU64,
    pub(crate) conflicts: AtomicU64,
    pub(crate) rebuilds: AtomicU64,
    pub(crate) list_pages: AtomicU64,
    pub(crate) redis_errors: AtomicU64,
    pub(crate) watch_messages: AtomicU64,
    pub(crate) watch_errors: AtomicU64,
    pub(crate) pruned: AtomicU64,
    pub(crate) pending: AtomicU64,
    pub(crate) epoch: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn inc(counter: &AtomicU64) {
    add(counter, 1);
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A follower's metrics at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Entries applied to the set, from any source (`citypass.revocation.entries_applied`).
    pub entries_applied: u64,
    /// Stream messages read (`citypass.revocation.stream_messages` with `source=redis`).
    pub stream_messages: u64,
    /// Stream messages or ListRevocations/WatchRevocations entries that did not decode or apply; each forces
    /// a resync (`revocation_follower_invalid_messages_total`).
    pub invalid_messages: u64,
    /// Stream entries that arrived above a missing epoch and were held
    /// (`revocation_follower_out_of_order_total`).
    pub out_of_order: u64,
    /// Gaps opened: times the follower started holding entries for a missing epoch
    /// (`citypass.revocation.gaps`).
    pub gaps: u64,
    /// Completed List resyncs, start-up included (`citypass.revocation.resyncs`).
    pub resyncs: u64,
    /// Failed List resyncs (`citypass.revocation.resync_failures`).
    pub resync_failures: u64,
    /// Entries whose chain hash conflicted with the one applied (or held) at their
    /// epoch; each makes the follower ask the service
    /// (`citypass.revocation.chain_conflicts`).
    pub conflicts: u64,
    /// Times the set was found off the service's chain (it had applied an entry the
    /// service's log does not have) and was rebuilt from List
    /// (`citypass.revocation.rebuilds`).
    pub rebuilds: u64,
    /// ListRevocations pages read (`revocation_follower_list_pages_total`).
    pub list_pages: u64,
    /// Redis errors, connection failures and disconnects (`citypass.revocation.redis_errors`).
    pub redis_errors: u64,
    /// Watch messages received, heartbeats included ([`STREAM_MESSAGES`] with
    /// `source=watch`).
    pub watch_messages: u64,
    /// WatchRevocations streams that failed, ended or fell silent
    /// (`revocation_follower_watch_errors_total`).
    pub watch_errors: u64,
    /// Entries dropped by pruning (`revocation_follower_pruned_total`).
    pub pruned: u64,
    /// Entries held above a gap now (`revocation_follower_pending`).
    pub pending: u64,
    /// The epoch the set is complete up to (`citypass.revocation.epoch`).
    pub epoch: u64,
    /// Time since the log was last heard from; `None` before the first sync ([`AGE`],
    /// in seconds, not reported when `None`).
    pub age: Option<Duration>,
    /// Entries in the set (`revocation_follower_entries`).
    pub entries: u64,
    /// What the follower is connected to.
    pub source_state: SourceState,
}

impl Counters {
    /// The counters with the view's gauges, at one moment.
    pub(crate) fn snapshot(
        &self,
        epoch: u64,
        age: Option<Duration>,
        entries: u64,
        source_state: SourceState,
    ) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            entries_applied: get(&self.entries_applied),
            stream_messages: get(&self.stream_messages),
            invalid_messages: get(&self.invalid_messages),
            out_of_order: get(&self.out_of_order),
            gaps: get(&self.gaps),
            resyncs: get(&self.resyncs),
            resync_failures: get(&self.resync_failures),
            conflicts: get(&self.conflicts),
            rebuilds: get(&self.rebuilds),
            list_pages: get(&self.list_pages),
            redis_errors: get(&self.redis_errors),
            watch_messages: get(&self.watch_messages),
            watch_errors: get(&self.watch_errors),
            pruned: get(&self.pruned),
            pending: get(&self.pending),
            epoch,
            age,
            entries,
            source_state,
        }
    }
}
