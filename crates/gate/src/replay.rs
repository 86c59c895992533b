//! First use wins: a bounded memory of the `cti`s this gate has accepted.
//!
//! An entry is needed only until its code expires (plus skew): after that, the code
//! fails on time anyway. So memory is bounded by (scans per code lifetime), and a
//! hard cap protects against a flood; when the cap is reached even after dropping
//! expired entries, the gate refuses rather than forgetting (fail closed).

use std::collections::{BTreeMap, HashMap};

use citypass_token::Cti;

/// Seen `cti`s with the time after which each may be forgotten.
#[derive(Debug)]
pub struct ReplayMemory {
    capacity: usize,
    forget_at: HashMap<Cti, u64>,
    /// Expiry index for pruning in time order: (forget_at, cti).
    by_time: BTreeMap<(u64, Cti), ()>,
}

/// Why a `cti` was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// First use: recorded.
    First,
    /// Seen before.
    Replayed,
    /// The memory is full of live entries; refuse rather than forget.
    Full,
}

impl ReplayMemory {
    /// A memory for at most `capacity` live codes.
    pub fn new(capacity: usize) -> Self {
        ReplayMemory {
            capacity,
            forget_at: HashMap::new(),
            by_time: BTreeMap::new(),
        }
    }

    /// Records `cti` as used at `now`, to be remembered until `forget_at`.
    pub fn record(&mut self, cti: Cti, forget_at: u64, now: u64) -> ReplayOutcome {
        if self.forget_at.contains_key(&cti) {
            return ReplayOutcome::Replayed;
        }
        self.prune(now);
        if self.forget_at.len() >= self.capacity {
            return ReplayOutcome::Full;
        }
        self.forget_at.insert(cti, forget_at);
        self.by_time.insert((forget_at, cti), ());
        ReplayOutcome::First
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.forget_at.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.forget_at.is_empty()
    }

    fn prune(&mut self, now: u64) {
        while let Some((&(t, cti), ())) = self.by_time.first_key_value() {
            if t >= now {
                break;
            }
            self.by_time.remove(&(t, cti));
            self.forget_at.remove(&cti);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_use_wins_and_expired_entries_are_forgotten() {
        let mut m = ReplayMemory::new(2);
        assert_eq!(
            m.record(Cti::from_bytes([1; 16]), 100, 0),
            ReplayOutcome::First
        );
        assert_eq!(
            m.record(Cti::from_bytes([1; 16]), 100, 50),
            ReplayOutcome::Replayed
        );
        assert_eq!(
            m.record(Cti::from_bytes([2; 16]), 200, 50),
            ReplayOutcome::First
        );
        assert_eq!(
            m.record(Cti::from_bytes([3; 16]), 300, 60),
            ReplayOutcome::Full
        );
        // After the first entry's time, room is made for a new one.
        assert_eq!(
            m.record(Cti::from_bytes([3; 16]), 300, 101),
            ReplayOutcome::First
        );
        assert_eq!(m.len(), 2);
    }
}
