//! The state a follower shares with its readers.
//!
//! The set sits behind a [`RwLock`]: a hot-path query takes the read lock for the
//! length of one hash lookup, and the follower takes the write lock only to apply a
//! batch of entries or to prune. Copying the whole set per update (an `ArcSwap` of
//! snapshots) would make each revocation cost O(set) instead; a read lock is a couple
//! of atomic operations, far below a signature check per scan.
//!
//! The age is kept apart from the set, in an atomic, so that asking "how fresh?" never
//! waits for a writer. So is the time of the last *confirmed* check: a List resync
//! that reached the service's head and found the set's chain hash equal to the
//! service's. Stream reads keep the data fresh only while that confirmation is recent
//! (see `redis_source`).

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use citypass_revocation::{ChainHash, Chained, RevocationSet};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::counters::Counters;
use crate::sequencer::{Offered, Origin, RecentChains, Sequencer};
use crate::source_state::SourceState;

/// The set, its sequencer, freshness and counters, shared by a follower's task and
/// every [`crate::RevocationView`].
pub(crate) struct Shared {
    set: RwLock<RevocationSet>,
    /// Entries held above a gap; locked before `set` when both are.
    sequencer: Mutex<Sequencer>,
    base: Instant,
    /// Nanoseconds after `base` when the log was last heard from, plus one; 0: never.
    heard: AtomicU64,
    /// Nanoseconds after `base` of the last confirmed check, plus one; 0: never.
    confirmed: AtomicU64,
    epoch: watch::Sender<u64>,
    source_state: AtomicU8,
    pub(crate) metrics: Counters,
}

impl Shared {
    pub(crate) fn new(set: RevocationSet, max_pending: usize) -> Arc<Self> {
        let epoch = set.epoch();
        Arc::new(Shared {
            sequencer: Mutex::new(Sequencer::new(max_pending, set.head())),
            set: RwLock::new(set),
            base: Instant::now(),
            heard: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            epoch: watch::channel(epoch).0,
            source_state: AtomicU8::new(SourceState::Starting.code()),
            metrics: Counters::default(),
        })
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, RevocationSet> {
        self.set
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, RevocationSet> {
        self.set
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn sequencer(&self) -> MutexGuard<'_, Sequencer> {
        self.sequencer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `entries` from `from` in epoch order and on the chain (see
    /// [`Sequencer::offer`]). Waiters learn the new epoch from [`Shared::heard`], not
    /// here: see there.
    pub(crate) fn offer(
        &self,
        from: Origin,
        entries: impl IntoIterator<Item = Chained>,
    ) -> Offered {
        let mut sequencer = self.sequencer();
        sequencer.offer(&mut self.write(), &self.metrics, from, entries)
    }

    /// The chain hash the set had at `epoch`, if recent enough to be remembered.
    pub(crate) fn chain_at(&self, epoch: u64) -> Option<ChainHash> {
        self.sequencer().chain_at(epoch)
    }

    /// Swaps in `set`, rebuilt from the service, with the chain hashes it went
    /// through. If it is behind the epoch announced so far (the old set had applied a
    /// forged entry beyond the log's head), the announcement goes back to it at once:
    /// an epoch the log does not have must not be vouched for.
    pub(crate) fn replace(&self, set: RevocationSet, recent: RecentChains) {
        let head = set.head();
        {
            let mut sequencer = self.sequencer();
            *self.write() = set;
            sequencer.restart(recent, head, &self.metrics);
        }
        if head.epoch < self.epoch() {
            self.metrics.epoch.store(head.epoch, Ordering::Relaxed);
            self.epoch.send_replace(head.epoch);
        }
    }

    /// Records contact with the log now, then tells waiters the epoch the set has
    /// reached. In this order: whoever wakes up for an epoch and decides at once finds
    /// the freshness that vouches for it, never an age from before it (a caller that
    /// waited for a revocation and then saw "stale" or "not synced" refused a rider
    /// for nothing). Entries applied above a gap are announced once the gap closes.
    pub(crate) fn heard(&self) {
        self.heard.store(self.stamp(), Ordering::Release);
        self.publish_epoch(self.applied_epoch());
    }

    /// Records a confirmed check now (the set's chain hash equals the service's).
    pub(crate) fn confirmed(&self) {
        self.confirmed.store(self.stamp(), Ordering::Release);
    }

    /// Forgets the last confirmation: the set was found off the service's chain, so
    /// nothing vouches for it until a resync (a rebuild) succeeds.
    pub(crate) fn unconfirm(&self) {
        self.confirmed.store(0, Ordering::Release);
    }

    /// Whether the last confirmed check is at most `window` old.
    pub(crate) fn confirmed_within(&self, window: Duration) -> bool {
        since(self.base, self.confirmed.load(Ordering::Acquire)).is_some_and(|age| age <= window)
    }

    pub(crate) fn age(&self) -> Option<Duration> {
        since(self.base, self.heard.load(Ordering::Acquire))
    }

    /// Now, as nanoseconds after `base` plus one.
    fn stamp(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    /// The epoch announced to readers: applied, and vouched for by [`Shared::heard`].
    pub(crate) fn epoch(&self) -> u64 {
        *self.epoch.borrow()
    }

    /// The epoch the set has applied (where the next ListRevocations or WatchRevocations starts).
    pub(crate) fn applied_epoch(&self) -> u64 {
        self.read().epoch()
    }

    /// Sees every change of the epoch.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    /// Publishes the set's epoch to waiters (after the write lock is released).
    fn publish_epoch(&self, epoch: u64) {
        self.metrics.epoch.store(epoch, Ordering::Relaxed);
        self.epoch.send_if_modified(|current| {
            let changed = *current < epoch;
            if changed {
                *current = epoch;
            }
            changed
        });
    }

    pub(crate) fn set_source_state(&self, state: SourceState) {
        self.source_state.store(state.code(), Ordering::Relaxed);
    }

    pub(crate) fn source_state(&self) -> SourceState {
        SourceState::from_code(self.source_state.load(Ordering::Relaxed))
    }
}

/// Time since a stamp made by [`Shared::stamp`]; `None` for 0 (never).
fn since(base: Instant, stamp: u64) -> Option<Duration> {
    match stamp {
        0 => None,
        stamp => Some(
            base.elapsed()
                .saturating_sub(Duration::from_nanos(stamp - 1)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequencer::tests::token;

    /// Whoever wakes for an epoch finds the freshness that vouches for it: an epoch is
    /// announced only once the log was heard from, never before.
    #[test]
    fn fail_closed_glitch_an_epoch_is_announced_only_with_its_freshness() {
        let shared = Shared::new(RevocationSet::new(), 10);
        let mut epochs = shared.subscribe();
        assert_eq!(
            shared.offer(Origin::Service, [token(1), token(2)]).applied,
            2
        );
        assert_eq!(shared.applied_epoch(), 2);
        assert_eq!(shared.epoch(), 0, "applied, not yet vouched for");
        assert!(!epochs.has_changed().unwrap_or(true));
        assert_eq!(shared.age(), None);
        shared.heard();
        assert!(epochs.has_changed().unwrap_or(false));
        assert_eq!(*epochs.borrow_and_update(), 2);
        assert!(shared.age().is_some(), "the age came first");
    }
}
