//! Pauses between reconnect attempts: exponential with jitter, reset by a success.
//!
//! A fixed pause makes every follower of a restarted revocation service or Redis come
//! back in lockstep, at the same instants; a growing, jittered pause spreads them out
//! and stops a long outage from costing a connection attempt per `retry_interval`.
//! The pause never exceeds `retry_max_interval`, so a follower reconnects within that
//! long of the source returning (its data ages meanwhile and fails closed on its own).
//! The schedule is `backon`'s (already in the tree through `redis`).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use crate::config::FollowerConfig;

/// The pauses of one run of failures.
pub(crate) struct Retry {
    builder: ExponentialBuilder,
    pauses: ExponentialBackoff,
    ceiling: Duration,
}

impl Retry {
    /// Pauses from `retry_interval`, doubling, up to `retry_max_interval`, jittered.
    pub(crate) fn new(config: &FollowerConfig) -> Self {
        let builder = ExponentialBuilder::default()
            .with_min_delay(config.retry_interval)
            .with_max_delay(config.retry_max_interval)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Retry {
            pauses: builder.build(),
            builder,
            ceiling: config.retry_max_interval,
        }
    }

    /// The pause before the next attempt.
    pub(crate) fn next_pause(&mut self) -> Duration {
        self.pauses.next().unwrap_or(self.ceiling).min(self.ceiling)
    }

    /// An attempt succeeded: the next failure starts from the shortest pause again.
    pub(crate) fn reset(&mut self) {
        self.pauses = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_stay_bounded_and_reset() {
        let mut config = FollowerConfig::watch();
        config.retry_interval = Duration::from_millis(100);
        config.retry_max_interval = Duration::from_millis(800);
        let mut retry = Retry::new(&config);
        let pauses: Vec<Duration> = (0..8).map(|_| retry.next_pause()).collect();
        assert!(pauses[0] >= Duration::from_millis(100), "{pauses:?}");
        assert!(pauses[0] < Duration::from_millis(400), "{pauses:?}");
        assert!(
            pauses.iter().all(|p| *p <= Duration::from_millis(800)),
            "{pauses:?}"
        );
        assert!(
            pauses[7] >= Duration::from_millis(400),
            "it grew: {pauses:?}"
        );
        retry.reset();
        assert!(retry.next_pause() < Duration::from_millis(400));
    }
}
