//! Applying entries strictly in epoch order, whatever order they arrive in, and only
//! if they continue the set's hash chain.
//!
//! The stream is in append order, not epoch order: entries from two writers may arrive
//! swapped, and an entry whose publish failed never arrives. So an entry above the next
//! epoch is held, the set advances as far as the held entries allow, and a gap that
//! stays open longer than the gap window (or holds too many entries) asks for a resync
//! from List. Entries at or below the set's epoch are dropped: overlapping sources
//! (List, then the stream) are harmless.
//!
//! Redis is not trusted (security review, finding 6): a message may be forged. Every
//! entry is applied with its carried chain hash ([`RevocationSet::apply_chained`]): one
//! that does not follow the set's chain is refused (`invalid`). The sequencer also
//! remembers the chain hash the set had at its recent epochs, so that an entry for an
//! epoch already applied, or a second entry held for one epoch, with another chain
//! hash is noticed (`conflict`): one of the two is not the service's. Which one, only
//! the service can say: the caller asks it (a resync, which compares the set's chain
//! with the service's and rebuilds the set if the set is the one that is wrong).
//! Entries from the service itself (ListRevocations, WatchRevocations: [`Origin::Service`]) replace whatever
//! the stream offered for the same epoch.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::Duration;

use citypass_revocation::{Applied, ApplyError, ChainHash, Chained, Head, RevocationSet};
use tokio::time::Instant;

use crate::counters::{Counters, add, inc};

/// Chain hashes remembered for recent epochs (about 128 KiB): an entry for an older
/// epoch cannot be compared, and the periodic check covers it instead.
pub(crate) const RECENT_CHAINS: usize = 4096;

/// Where offered entries come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The Redis Stream: anyone who can write to Redis may have written it.
    Stream,
    /// The revocation service (ListRevocations, WatchRevocations), over authenticated TLS: the log itself.
    Service,
}

/// The chain hashes the set had at its latest epochs.
#[derive(Debug, Clone)]
pub(crate) struct RecentChains {
    /// Epoch of `chains[0]`.
    first: u64,
    chains: VecDeque<ChainHash>,
}

impl RecentChains {
    /// Starting at `head`.
    pub(crate) fn new(head: Head) -> Self {
        RecentChains {
            first: head.epoch,
            chains: VecDeque::from([head.chain]),
        }
    }

    /// The set moved on to `head` (the next epoch).
    pub(crate) fn push(&mut self, head: Head) {
        if head.epoch != self.first + self.chains.len() as u64 {
            *self = RecentChains::new(head);
            return;
        }
        self.chains.push_back(head.chain);
        if self.chains.len() > RECENT_CHAINS {
            self.chains.pop_front();
            self.first += 1;
        }
    }

    /// The chain hash at `epoch`, if remembered.
    pub(crate) fn at(&self, epoch: u64) -> Option<ChainHash> {
        let index = usize::try_from(epoch.checked_sub(self.first)?).ok()?;
        self.chains.get(index).copied()
    }
}

/// What one [`Sequencer::offer`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Offered {
    /// Entries newly applied.
    pub(crate) applied: usize,
    /// An entry was invalid or did not follow the set's chain (it was dropped; the set
    /// cannot pass its epoch without a resync).
    pub(crate) invalid: bool,
    /// An entry for an epoch already applied (or already held) had another chain hash
    /// than the one applied (or held): the set or the entry is not the service's log.
    pub(crate) conflict: bool,
    /// The set's epoch after the offer.
    pub(crate) epoch: u64,
}

#[derive(Debug)]
pub(crate) struct Sequencer {
    pending: BTreeMap<u64, Chained>,
    gap_since: Option<Instant>,
    max_pending: usize,
    recent: RecentChains,
}

impl Sequencer {
    /// Holds at most `max_pending` entries above a gap: beyond that the highest are
    /// dropped (List returns them), so memory stays bounded even while a resync
    /// cannot succeed.
    pub(crate) fn new(max_pending: usize, head: Head) -> Self {
        Sequencer {
            pending: BTreeMap::new(),
            gap_since: None,
            max_pending: max_pending.max(1),
            recent: RecentChains::new(head),
        }
    }

    /// The chain hash the set had at `epoch`, if it is recent enough to be remembered.
    pub(crate) fn chain_at(&self, epoch: u64) -> Option<ChainHash> {
        self.recent.at(epoch)
    }

    /// Starts over from a rebuilt set at `head`, with the chain hashes it went through:
    /// held entries at or below its epoch are dropped, the others stay held (each is
    /// checked against the new chain when its turn comes).
    pub(crate) fn restart(&mut self, recent: RecentChains, head: Head, counters: &Counters) {
        self.recent = recent;
        self.pending = self.pending.split_off(&(head.epoch + 1));
        if self.pending.is_empty() {
            self.gap_since = None;
        }
        counters
            .pending
            .store(self.pending.len() as u64, Ordering::Relaxed);
    }

    /// Applies what can be applied of `entries` and of the held ones, and holds the rest.
    pub(crate) fn offer(
        &mut self,
        set: &mut RevocationSet,
        counters: &Counters,
        from: Origin,
        entries: impl IntoIterator<Item = Chained>,
    ) -> Offered {
        let mut offered = Offered::default();
        let epoch = {
            for chained in entries {
                let epoch = chained.entry.epoch;
                if epoch <= set.epoch() {
                    if self.recent.at(epoch).is_some_and(|c| c != chained.chain) {
                        tracing::warn!(
                            epoch,
                            ?from,
                            "a revocation entry conflicts with the one applied at its epoch"
                        );
                        inc(&counters.conflicts);
                        offered.conflict = true;
                    }
                    continue;
                }
                if epoch > set.epoch() + 1 {
                    inc(&counters.out_of_order);
                }
                match (self.pending.get(&epoch), from) {
                    (None, _) | (Some(_), Origin::Service) => {
                        self.pending.insert(epoch, chained);
                    }
                    (Some(held), Origin::Stream) if held.chain != chained.chain => {
                        tracing::warn!(
                            epoch,
                            "two stream entries for one epoch; asking the service"
                        );
                        inc(&counters.conflicts);
                        offered.conflict = true;
                    }
                    (Some(_), Origin::Stream) => {}
                }
            }
            while let Some(chained) = self.pending.remove(&(set.epoch() + 1)) {
                match set.apply_chained(chained) {
                    Ok(Applied::Applied) => {
                        offered.applied += 1;
                        self.recent.push(set.head());
                    }
                    Ok(Applied::AlreadyApplied) => {}
                    Err(ApplyError::Invalid { epoch, source }) => {
                        tracing::error!(epoch, error = %source, "invalid revocation entry; resyncing");
                        inc(&counters.invalid_messages);
                        offered.invalid = true;
                        break;
                    }
                    Err(ApplyError::Chain { epoch }) => {
                        tracing::warn!(
                            epoch,
                            ?from,
                            "a revocation entry does not follow the chain; resyncing"
                        );
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
    use citypass_revocation::{Action, Entry, RevocationSet, Target};
    use citypass_token::Cti;

    /// The log of `tokens(n)`: token revocations at epochs 1..=n, chained.
    pub(crate) fn log(n: u64) -> Vec<Chained> {
        let mut chain = ChainHash::GENESIS;
        (1..=n)
            .map(|epoch| {
                let chained = Chained::link(&chain, plain(epoch));
                chain = chained.chain;
                chained
            })
            .collect()
    }

    /// The log's entry at `epoch`, chained as the log chains it.
    pub(crate) fn token(epoch: u64) -> Chained {
        log(epoch).pop().unwrap()
    }

    /// A token revocation at `epoch` (its cti is the epoch's byte, repeated).
    pub(crate) fn plain(epoch: u64) -> Entry {
        Entry {
            epoch,
            target: Target::Token(Cti::from_bytes([u8::try_from(epoch % 256).unwrap(); 16])),
            action: Action::Revoke {
                compromised: false,
                revoked_before: 10,
            },
            expires_at: Some(u64::MAX / 2),
            created_at: 10,
        }
    }

    fn offer(
        seq: &mut Sequencer,
        set: &mut RevocationSet,
        counters: &Counters,
        entries: impl IntoIterator<Item = Chained>,
    ) -> Offered {
        seq.offer(set, counters, Origin::Stream, entries)
    }

    #[test]
    fn swapped_entries_are_held_then_applied_in_order() {
        let (mut set, counters) = (RevocationSet::new(), Counters::default());
        let mut seq = Sequencer::new(10, set.head());
        assert_eq!(offer(&mut seq, &mut set, &counters, [token(1)]).applied, 1);
        assert_eq!(offer(&mut seq, &mut set, &counters, [token(3)]).applied, 0);
        assert!(seq.has_gap());
        assert_eq!(set.epoch(), 1);
        assert!(!seq.must_resync(Duration::from_secs(60)));
        assert!(seq.must_resync(Duration::ZERO));
        assert_eq!(
            offer(&mut seq, &mut set, &counters, [token(2), token(1)]).applied,
            2
        );
        assert!(!seq.has_gap());
        assert_eq!(set.epoch(), 3);
        assert!(set.token_revoked(&Cti::from_bytes([3; 16])));
        let m = &counters;
        assert_eq!(m.gaps.load(Ordering::Relaxed), 1);
        assert_eq!(m.out_of_order.load(Ordering::Relaxed), 1);
        assert_eq!(m.entries_applied.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn too_many_held_entries_ask_for_a_resync_and_invalid_entries_stop_the_set() {
        let (mut set, counters) = (RevocationSet::new(), Counters::default());
        let mut seq = Sequencer::new(3, set.head());
        offer(&mut seq, &mut set, &counters, log(6).into_iter().skip(2));
        assert!(seq.must_resync(Duration::from_secs(60)));
        assert_eq!(seq.pending.len(), 3, "the highest epoch was dropped");
        assert!(seq.pending.contains_key(&3) && !seq.pending.contains_key(&6));
        seq.clear(&counters);
        assert!(!seq.has_gap());
        let mut bad = token(1);
        bad.entry.action = Action::Reinstate;
        let offered = offer(&mut seq, &mut set, &counters, [bad, token(2)]);
        assert!(offered.invalid);
        assert_eq!(set.epoch(), 0);
        assert!(seq.has_gap(), "epoch 2 waits for a valid epoch 1");
    }

    /// Security finding 6: a stream entry that does not continue the set's chain is
    /// refused; one that conflicts with what was applied or held at its epoch is
    /// reported; the service's entry replaces a held stream entry.
    #[test]
    fn finding_6_entries_off_the_chain_are_refused_and_conflicts_reported() {
        let (mut set, counters) = (RevocationSet::new(), Counters::default());
        let mut seq = Sequencer::new(10, set.head());
        let real = log(3);
        assert_eq!(
            offer(&mut seq, &mut set, &counters, [real[0].clone()]).applied,
            1
        );

        // The real entry 2 with a chain hash that does not follow: refused.
        let mut off_chain = real[1].clone();
        off_chain.chain = ChainHash([9; 32]);
        let offered = offer(&mut seq, &mut set, &counters, [off_chain]);
        assert!(offered.invalid && !offered.conflict);
        assert_eq!(set.epoch(), 1);

        // A forgery that chains (its hash computed by the forger) is applied...
        let forged = Chained::link(
            &real[0].chain,
            Entry {
                epoch: 2,
                ..plain(200)
            },
        );
        assert_eq!(offer(&mut seq, &mut set, &counters, [forged]).applied, 1);
        assert_eq!(seq.chain_at(2), Some(set.chain()));
        // ...and the real entry for that epoch shows the conflict.
        let offered = offer(&mut seq, &mut set, &counters, [real[1].clone()]);
        assert!(offered.conflict);
        assert_eq!(offered.applied, 0);
        // The real entry 3 does not follow the forged chain.
        assert!(offer(&mut seq, &mut set, &counters, [real[2].clone()]).invalid);
        assert_eq!(counters.conflicts.load(Ordering::Relaxed), 1);

        // Held entries: a second stream entry for a held epoch is a conflict; the
        // service's entry replaces the held one.
        let (mut set, counters) = (RevocationSet::new(), Counters::default());
        let mut seq = Sequencer::new(10, set.head());
        let mut stray = real[1].clone();
        stray.chain = ChainHash([7; 32]);
        assert!(!offer(&mut seq, &mut set, &counters, [stray]).conflict);
        assert!(offer(&mut seq, &mut set, &counters, [real[1].clone()]).conflict);
        let offered = seq.offer(
            &mut set,
            &counters,
            Origin::Service,
            [real[1].clone(), real[0].clone()],
        );
        assert_eq!(offered.applied, 2);
        assert!(!offered.invalid && !offered.conflict);
        assert_eq!(set.chain(), real[1].chain);
    }

    #[test]
    fn recent_chains_are_bounded_and_restart_on_a_jump() {
        let mut recent = RecentChains::new(Head::GENESIS);
        for chained in log(u64::try_from(RECENT_CHAINS).unwrap() + 10) {
            recent.push(Head {
                epoch: chained.entry.epoch,
                chain: chained.chain,
            });
        }
        assert_eq!(recent.at(0), None);
        assert_eq!(recent.at(10), None);
        assert!(recent.at(11).is_some());
        assert!(recent.at(4106).is_some());
        assert_eq!(recent.at(4107), None);
        recent.push(Head {
            epoch: 9000,
            chain: ChainHash([1; 32]),
        });
        assert_eq!(recent.at(9000), Some(ChainHash([1; 32])));
        assert_eq!(recent.at(4106), None);
    }
}
