//! Applying entries strictly in epoch order, whatever order they arrive in.
//!
//! The stream is in append order, not epoch order: entries from two writers may arrive
//! swapped, and an entry whose publish failed never arrives. So an entry above the next
//! epoch is held, the set advances as far as the held entries allow, and a gap that
//! stays open longer than the gap window (or holds too many entries) asks for a resync
//! from List. Entries at or below the set's epoch are dropped: overlapping sources
//! (List, then the stream) are harmless.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use citypass_revocation::{Applied, ApplyError, Entry, RevocationSet};
use tokio::time::Instant;

use crate::counters::{Counters, add, inc};

/// What one [`Sequencer::offer`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Offered {
    /// Entries newly applied.
    pub(crate) applied: usize,
    /// An entry was invalid (it was dropped; the set cannot pass its epoch without a
    /// resync).
    pub(crate) invalid: bool,
    /// The set's epoch after the offer.
    pub(crate) epoch: u64,
}

#[derive(Debug)]
pub(crate) struct Sequencer {
    pending: BTreeMap<u64, Entry>,
    gap_since: Option<Instant>,
    max_pending: usize,
}

impl Sequencer {
    /// Holds at most `max_pending` entries above a gap: beyond that the highest are
    /// dropped (List returns them), so memory stays bounded even while a resync
    /// cannot succeed.
    pub(crate) fn new(max_pending: usize) -> Self {
        Sequencer {
            pending: BTreeMap::new(),
            gap_since: None,
            max_pending: max_pending.max(1),
        }
    }

    /// Applies what can be applied of `entries` and of the held ones, and holds the rest.
    pub(crate) fn offer(
        &mut self,
        set: &mut RevocationSet,
        counters: &Counters,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Offered {
        let mut offered = Offered::default();
        let epoch = {
            for entry in entries {
                let epoch = entry.epoch;
                if epoch <= set.epoch() {
                    continue;
                }
                if epoch > set.epoch() + 1 {
                    inc(&counters.out_of_order);
                }
                self.pending.entry(epoch).or_insert(entry);
            }
            while let Some(entry) = self.pending.remove(&(set.epoch() + 1)) {
                match set.apply(entry) {
                    Ok(Applied::Applied) => offered.applied += 1,
                    Ok(Applied::AlreadyApplied) => {}
                    Err(ApplyError::Invalid { epoch, source }) => {
                        tracing::error!(epoch, error = %source, "invalid revocation entry; resyncing");
                        inc(&counters.invalid_messages);
                        offered.invalid = true;
                        break;
                    }
                    Err(ApplyError::Gap { .. }) => unreachable!("only the next epoch is applied"),
                }
            }
            let epoch = set.epoch();
            self.pending = self.pending.split_off(&(epoch + 1));
            while self.pending.len() > self.max_pending {
                self.pending.pop_last();
            }
            epoch
        };
        if self.pending.is_empty() {
            self.gap_since = None;
        } else if self.gap_since.is_none() {
            self.gap_since = Some(Instant::now());
            inc(&counters.gaps);
        }
        add(&counters.entries_applied, offered.applied as u64);
        counters
            .pending
            .store(self.pending.len() as u64, Ordering::Relaxed);
        offered.epoch = epoch;
        offered
    }

    /// Whether entries are held above a missing epoch.
    pub(crate) fn has_gap(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether the gap has been open longer than `window`, or holds as many entries as
    /// it may: time to resync.
    pub(crate) fn must_resync(&self, window: Duration) -> bool {
        self.pending.len() >= self.max_pending
            || self.gap_since.is_some_and(|t| t.elapsed() >= window)
    }

    /// Time left before the open gap's window ends (`None`: no gap).
    pub(crate) fn gap_deadline(&self, window: Duration) -> Option<Instant> {
        self.gap_since.map(|t| t + window)
    }

    /// Gives a gap that is still open after a resync a fresh window: its entries are
    /// newer than the log's head as List read it, so the missing epoch may yet arrive.
    pub(crate) fn restart_gap_window(&mut self) {
        if self.gap_since.is_some() {
            self.gap_since = Some(Instant::now());
        }
    }

    /// Forgets held entries (before reconnecting to a source that starts afresh).
    pub(crate) fn clear(&mut self, counters: &Counters) {
        self.pending.clear();
        self.gap_since = None;
        counters.pending.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use citypass_revocation::{Action, RevocationReason, RevocationSet, Target};

    /// A token revocation at `epoch` (its cti is the epoch's byte, repeated).
    pub(crate) fn token(epoch: u64) -> Entry {
        Entry {
            epoch,
            target: Target::Token([u8::try_from(epoch).unwrap(); 16]),
            action: Action::Revoke {
                reason: RevocationReason::Fraud,
                revoked_before: 10,
            },
            expires_at: Some(u64::MAX / 2),
            created_at: 10,
        }
    }

    #[test]
    fn swapped_entries_are_held_then_applied_in_order() {
        let (mut set, counters) = (RevocationSet::new(), Counters::default());
        let mut seq = Sequencer::new(10);
        assert_eq!(seq.offer(&mut set, &counters, [token(1)]).applied, 1);
        assert_eq!(seq.offer(&mut set, &counters, [token(3)]).applied, 0);
        assert!(seq.has_gap());
        assert_eq!(set.epoch(), 1);
        assert!(!seq.must_resync(Duration::from_secs(60)));
        assert!(seq.must_resync(Duration::ZERO));
        assert_eq!(
            seq.offer(&mut set, &counters, [token(2), token(1)]).applied,
            2
        );
        assert!(!seq.has_gap());
        assert_eq!(set.epoch(), 3);
        assert!(set.token_revoked(&[3; 16]));
        let m = &counters;
        assert_eq!(m.gaps.load(Ordering::Relaxed), 1);
        assert_eq!(m.out_of_order.load(Ordering::Relaxed), 1);
        assert_eq!(m.entries_applied.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn too_many_held_entries_ask_for_a_resync_and_invalid_entries_stop_the_set() {
        let (mut set, counters) = (RevocationSet::new(), Counters::default());
        let mut seq = Sequencer::new(3);
        seq.offer(&mut set, &counters, (3..=6).map(token));
        assert!(seq.must_resync(Duration::from_secs(60)));
        assert_eq!(seq.pending.len(), 3, "the highest epoch was dropped");
        assert!(seq.pending.contains_key(&3) && !seq.pending.contains_key(&6));
        seq.clear(&counters);
        assert!(!seq.has_gap());
        let mut bad = token(1);
        bad.epoch = 1;
        bad.action = Action::Reinstate {
            reason: citypass_revocation::ReinstateReason::Administrative,
        };
        let offered = seq.offer(&mut set, &counters, [bad, token(2)]);
        assert!(offered.invalid);
        assert_eq!(set.epoch(), 0);
        assert!(seq.has_gap(), "epoch 2 waits for a valid epoch 1");
    }
}
