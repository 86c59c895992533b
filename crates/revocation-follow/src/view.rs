//! The read handle on a follower's set, and the freshness it reports with each answer
//! (the state behind it is `state`).

use std::sync::Arc;
use std::time::Duration;

use citypass_revocation::RevocationSet;
use citypass_token::{CertSerial, Cti, DeviceId, Kid, SubjectId};
use tokio::sync::watch;

use crate::counters::MetricsSnapshot;
use crate::source_state::SourceState;
use crate::state::Shared;

/// How fresh the data behind a decision was: attach it to the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// The epoch the set is complete up to.
    pub epoch: u64,
    /// Time since the follower last heard from the log; `None`: never (not synced).
    pub age: Option<Duration>,
}

impl Freshness {
    /// Whether the data is at most `max_age` old (never-synced data is not).
    pub fn within(&self, max_age: Duration) -> bool {
        self.age.is_some_and(|age| age <= max_age)
    }
}

/// A cheap, cloneable read handle on a follower's set: what the hot path holds. Every
/// query answers from memory; [`RevocationView::freshness`] says how fresh the answer
/// is. A view outliving its follower keeps answering from the last set, and its age
/// keeps growing.
#[derive(Clone)]
pub struct RevocationView {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for RevocationView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationView")
            .field("epoch", &self.epoch())
            .field("age", &self.age())
            .field("source_state", &self.source_state())
            .finish()
    }
}

impl RevocationView {
    /// The epoch the set is complete up to.
    pub fn epoch(&self) -> u64 {
        self.shared.epoch()
    }

    /// Time since the follower last heard from the log (a List resync reaching the
    /// head and confirming the chain, a Watch message or heartbeat, a stream read with
    /// no gap outstanding while the last confirmed check is recent: see the crate
    /// documentation); `None` before the first sync. Not the time since the last
    /// entry: a quiet log read a second ago is one second old.
    pub fn age(&self) -> Option<Duration> {
        self.shared.age()
    }

    /// Epoch and age together, to attach to a decision.
    pub fn freshness(&self) -> Freshness {
        Freshness {
            epoch: self.epoch(),
            age: self.age(),
        }
    }

    /// What the follower is connected to.
    pub fn source_state(&self) -> SourceState {
        self.shared.source_state()
    }

    /// Counters and gauges (see [`MetricsSnapshot`]).
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot(
            self.epoch(),
            self.age(),
            self.len() as u64,
            self.source_state(),
        )
    }

    /// Runs `query` on the set under one read lock (several questions, one lock).
    /// Keep it short: the follower waits for it to apply new entries.
    pub fn read<T>(&self, query: impl FnOnce(&RevocationSet) -> T) -> T {
        query(&self.shared.read())
    }

    /// Runs `query` and returns its answer with the freshness of the data it read.
    pub fn decide<T>(&self, query: impl FnOnce(&RevocationSet) -> T) -> (T, Freshness) {
        let set = self.shared.read();
        let answer = query(&set);
        let epoch = set.epoch();
        drop(set);
        (
            answer,
            Freshness {
                epoch,
                age: self.age(),
            },
        )
    }

    /// A copy of the whole set (tests, snapshots; not for the hot path).
    pub fn to_set(&self) -> RevocationSet {
        self.shared.read().clone()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.shared.read().len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`RevocationSet::token_revoked`].
    pub fn token_revoked(&self, cti: &Cti) -> bool {
        self.shared.read().token_revoked(cti)
    }

    /// [`RevocationSet::certificate_revoked`].
    pub fn certificate_revoked(&self, serial: &CertSerial) -> bool {
        self.shared.read().certificate_revoked(serial)
    }

    /// [`RevocationSet::subject_revoked`].
    pub fn subject_revoked(&self, subject_id: &SubjectId, iat: u64) -> bool {
        self.shared.read().subject_revoked(subject_id, iat)
    }

    /// [`RevocationSet::device_revoked`].
    pub fn device_revoked(&self, device_id: &DeviceId, iat: u64) -> bool {
        self.shared.read().device_revoked(device_id, iat)
    }

    /// [`RevocationSet::key_revoked`].
    pub fn key_revoked(&self, kid: &Kid, iat: u64) -> bool {
        self.shared.read().key_revoked(kid, iat)
    }

    /// [`RevocationSet::issuance_blocked_subject`].
    pub fn issuance_blocked_subject(&self, subject_id: &SubjectId) -> bool {
        self.shared.read().issuance_blocked_subject(subject_id)
    }

    /// [`RevocationSet::issuance_blocked_device`].
    pub fn issuance_blocked_device(&self, device_id: &DeviceId) -> bool {
        self.shared.read().issuance_blocked_device(device_id)
    }

    /// Sees every change of [`RevocationView::epoch`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.subscribe()
    }

    /// Waits until the set is complete up to at least `epoch` (wrap it in a timeout:
    /// it waits for as long as it takes). Used by tests and to measure propagation.
    pub async fn wait_for_epoch(&self, epoch: u64) {
        let mut receiver = self.subscribe();
        // The sender lives in `shared`, which `self` keeps alive: this cannot fail.
        let _ = receiver.wait_for(|current| *current >= epoch).await;
    }

    /// Waits until the follower has heard from the log at least once (its first sync).
    pub async fn wait_synced(&self) {
        while self.age().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the data is at most `max_age` old.
    pub async fn wait_fresh(&self, max_age: Duration) {
        while !self.freshness().within(max_age) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
