//! What came back: each answer's latency from its request's intended send time, and
//! its outcome by the kind of code it carried.
//!
//! Latencies go into an HdrHistogram (microseconds, three significant digits), which
//! keeps the tail exact at any count for a few kilobytes; averages would hide the
//! turnstile that waited a second.

use std::collections::BTreeMap;
use std::time::Duration;

use citypass_proto::v1::{Decision, DenyReason, VerifyResponse};
use hdrhistogram::Histogram;

use crate::mix::CodeKind;

/// The longest latency recorded as itself (one hour); longer ones count as this.
const HIGHEST_MICROS: u64 = 3_600_000_000;

/// One request's outcome.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// The gate may open.
    Allowed,
    /// Denied, with the reason's name (`REPLAYED`, …).
    Denied(String),
    /// A code was issued (IssueToken).
    Issued,
    /// No decision: a gRPC status, by its code's name.
    Failed(String),
}

impl Outcome {
    /// The outcome of a Verify call.
    pub fn of(result: &Result<VerifyResponse, tonic::Status>) -> Outcome {
        match result {
            Ok(response) if response.decision == Decision::Allow as i32 => Outcome::Allowed,
            Ok(response) => Outcome::Denied(reason_name(response.deny_reason)),
            Err(status) => Outcome::Failed(format!("{:?}", status.code())),
        }
    }

    /// `ALLOW`, `DENY <reason>` or `ERROR <code>`.
    pub fn label(&self) -> String {
        match self {
            Outcome::Allowed => "ALLOW".to_owned(),
            Outcome::Denied(reason) => format!("DENY {reason}"),
            Outcome::Issued => "ISSUED".to_owned(),
            Outcome::Failed(code) => format!("ERROR {code}"),
        }
    }
}

/// A deny reason's name without the enum's prefix (`REPLAYED`), or its number.
pub fn reason_name(value: i32) -> String {
    DenyReason::try_from(value).map_or_else(
        |_| format!("reason {value}"),
        |r| {
            r.as_str_name()
                .trim_start_matches("DENY_REASON_")
                .to_owned()
        },
    )
}

/// Everything recorded in one run.
#[derive(Debug, Clone)]
pub struct Recording {
    /// Latency from the intended send time to the answer, microseconds.
    pub latency: Histogram<u64>,
    /// Outcomes by the kind of code sent.
    pub by_kind: BTreeMap<CodeKind, BTreeMap<Outcome, u64>>,
    /// When the last answer came, from the run's start.
    pub last_answer: Duration,
}

/// An empty histogram of microseconds, 1 µs to an hour, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)
        .expect("constant bounds within hdrhistogram's limits")
}

/// `duration` in whole microseconds, at least 1 (the histogram's lowest value).
pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl Default for Recording {
    fn default() -> Self {
        Recording {
            latency: latency_histogram(),
            by_kind: BTreeMap::new(),
            last_answer: Duration::ZERO,
        }
    }
}

impl Recording {
    /// Records one answer.
    pub fn record(&mut self, kind: CodeKind, outcome: Outcome, latency: Duration, at: Duration) {
        self.latency.saturating_record(micros(latency));
        *self
            .by_kind
            .entry(kind)
            .or_default()
            .entry(outcome)
            .or_default() += 1;
        self.last_answer = self.last_answer.max(at);
    }

    /// How many answers (decisions and errors) were recorded.
    pub fn answered(&self) -> u64 {
        self.latency.len()
    }

    /// Outcome counts over every kind.
    pub fn outcomes(&self) -> BTreeMap<Outcome, u64> {
        let mut all = BTreeMap::new();
        for outcomes in self.by_kind.values() {
            for (outcome, n) in outcomes {
                *all.entry(outcome.clone()).or_default() += n;
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_counted_by_kind_and_overall() {
        let mut r = Recording::default();
        let ms = Duration::from_millis;
        r.record(CodeKind::Fresh, Outcome::Allowed, ms(2), ms(10));
        r.record(
            CodeKind::Forged,
            Outcome::Denied("BAD_SIGNATURE".into()),
            ms(4),
            ms(30),
        );
        r.record(
            CodeKind::Fresh,
            Outcome::Failed("Unavailable".into()),
            ms(9000),
            ms(20),
        );
        assert_eq!(r.answered(), 3);
        assert_eq!(r.last_answer, ms(30));
        assert_eq!(r.by_kind[&CodeKind::Fresh].len(), 2);
        assert_eq!(r.outcomes()[&Outcome::Allowed], 1);
        // The tail is kept as it was, not averaged away.
        assert!(r.latency.max() >= 8_990_000, "{}", r.latency.max());
        assert_eq!(reason_name(DenyReason::Replayed as i32), "REPLAYED");
        assert_eq!(reason_name(9999), "reason 9999");
    }
}
