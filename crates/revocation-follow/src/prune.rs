//! Dropping expired token and certificate entries, now and then, so the set stays
//! bounded by what can still be presented.

use std::time::Duration;

use tokio::time::Instant;

use crate::counters::add;
use crate::state::Shared;

/// Drops expired entries now; returns how many.
pub(crate) fn prune(shared: &Shared) -> usize {
    let pruned = shared.write().prune(citypass_token::unix_now());
    add(&shared.metrics.pruned, pruned as u64);
    pruned
}

/// Prunes the set every `every`.
pub(crate) struct Pruner {
    every: Duration,
    next: Instant,
}

impl Pruner {
    pub(crate) fn new(every: Duration) -> Self {
        Pruner {
            every,
            next: Instant::now() + every,
        }
    }

    pub(crate) fn next(&self) -> Instant {
        self.next
    }

    pub(crate) fn maybe(&mut self, shared: &Shared) {
        let now = Instant::now();
        if now >= self.next {
            prune(shared);
            self.next = now + self.every;
        }
    }
}

/// A wait of at least a millisecond (`XREAD BLOCK 0` would block forever).
pub(crate) fn clamp(wait: Duration) -> Duration {
    wait.max(Duration::from_millis(1))
}
