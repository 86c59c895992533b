//! The verifier's OpenTelemetry instruments, on whatever global meter provider the
//! process installed (`citypass_runtime::telemetry`: OTLP when configured).
//!
//! - `citypass.verifier.decisions` (counter): one per answered scan, by `scene`,
//!   `decision` (`allow`, `deny`), `reason` (the refusal's stable name, `none` for an
//!   ALLOW: a bounded set) and `idempotent_replay`; the replay rate is its
//!   `reason=replayed` share.
//! - `citypass.verifier.decision.duration` (histogram, seconds): the decision's time in
//!   the verifier, by `scene` and `decision`.
//!
//! No attribute carries a code, a subject or anything a person could be found by.

use std::time::Duration;

use citypass_token::Scene;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};

use crate::model::Answer;

/// The decisions counter's name.
pub const DECISIONS: &str = "citypass.verifier.decisions";
/// The decision-duration histogram's name.
pub const DECISION_DURATION: &str = "citypass.verifier.decision.duration";

/// The instruments.
#[derive(Debug, Clone)]
pub struct Metrics {
    decisions: Counter<u64>,
    duration: Histogram<f64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers the instruments on the global meter provider.
    pub fn new() -> Self {
        let meter = opentelemetry::global::meter("citypass-verifier");
        Metrics {
            decisions: meter
                .u64_counter(DECISIONS)
                .with_description("Scans answered, by scene, decision and reason")
                .build(),
            duration: meter
                .f64_histogram(DECISION_DURATION)
                .with_unit("s")
                .with_description("Time to decide one scan in the verifier")
                .build(),
        }
    }

    /// Records one answered scan.
    pub fn record(&self, scene: Scene, answer: &Answer, elapsed: Duration) {
        let decision = if answer.allowed() { "allow" } else { "deny" };
        let reason = answer.refusal.as_ref().map_or("none", |r| r.code());
        self.decisions.add(
            1,
            &[
                KeyValue::new("scene", scene.name()),
                KeyValue::new("decision", decision),
                KeyValue::new("reason", reason),
                KeyValue::new("idempotent_replay", answer.idempotent_replay),
            ],
        );
        self.duration.record(
            elapsed.as_secs_f64(),
            &[
                KeyValue::new("scene", scene.name()),
                KeyValue::new("decision", decision),
            ],
        );
    }
}
