//! The verifier's OpenTelemetry instruments, on whatever global meter provider the
//! process installed (`citypass_runtime::telemetry`: OTLP when configured).
//!
//! - `citypass.verifier.decisions` (counter): one per answered scan, by `scene`,
//!   `decision` (`allow`, `deny`), `reason` (the refusal's stable name, `none` for an
//!   ALLOW: a bounded set) and `idempotent_replay`; the replay rate is its
//!   `reason=replayed` share.
//! - `citypass.verifier.decision.duration` (histogram, seconds): the decision's time in
//!   the verifier, by `scene` and `decision`.
//! - `citypass.verifier.key_set.age` (gauge, seconds): how long ago the key set in force
//!   was last confirmed (a poll of its file or a GetKeySet answer); the revocation
//!   set's age is the follower's `citypass.revocation.age`.
//!
//! - `citypass.verifier.fail_open` (counter): scans allowed under a scene's fail-open
//!   policy while a dependency was down, by `scene`, for reconciliation.
//!
//! - `citypass.verifier.batched_signatures` (counter): issuer signatures VerifyStream
//!   decided in a batch, by `outcome` (`passed`: the batch equation held;
//!   `fell_back`: it failed and each was checked alone).
//!
//! - `citypass.verifier.face_pass` (counter): faces answered at face-pass gates
//!   (VerifyFace), by `outcome` (`allow`, or the refusal's stable name, e.g.
//!   `face_not_recognised`, `liveness_required`, `replayed`).
//!
//! No attribute carries a code, a subject or anything a person could be found by.

use std::sync::{Arc, Weak};
use std::time::Duration;

use citypass_token::{BatchOutcome, Scene};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};

use crate::key_set::Keys;
use crate::model::Answer;

/// The decisions counter's name.
pub const DECISIONS: &str = "citypass.verifier.decisions";
/// The decision-duration histogram's name.
pub const DECISION_DURATION: &str = "citypass.verifier.decision.duration";
/// The fail-open counter's name.
pub const FAIL_OPEN: &str = "citypass.verifier.fail_open";
/// The batched-signatures counter's name.
pub const BATCHED_SIGNATURES: &str = "citypass.verifier.batched_signatures";
/// The face-pass counter's name.
pub const FACE_PASS: &str = "citypass.verifier.face_pass";
/// The key-set age gauge's name.
pub const KEY_SET_AGE: &str = "citypass.verifier.key_set.age";

/// The instruments.
#[derive(Debug, Clone)]
pub struct Metrics {
    decisions: Counter<u64>,
    duration: Histogram<f64>,
    fail_open: Counter<u64>,
    batched: Counter<u64>,
    face_pass: Counter<u64>,
}

impl Metrics {
    /// Registers the instruments on the global meter provider; the key-set age is read
    /// from `keys` at each collection while they live.
    pub fn new(keys: &Arc<Keys>) -> Self {
        let meter = opentelemetry::global::meter("citypass-verifier");
        let keys: Weak<Keys> = Arc::downgrade(keys);
        meter
            .f64_observable_gauge(KEY_SET_AGE)
            .with_description("Seconds since the key set in force was last confirmed")
            .with_unit("s")
            .with_callback(move |observer| {
                if let Some(keys) = keys.upgrade() {
                    observer.observe(keys.current().1.as_secs_f64(), &[]);
                }
            })
            .build();
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
            fail_open: meter
                .u64_counter(FAIL_OPEN)
                .with_description("Scans allowed under a fail-open policy, by scene")
                .build(),
            batched: meter
                .u64_counter(BATCHED_SIGNATURES)
                .with_description("Issuer signatures decided in a VerifyStream batch, by outcome")
                .build(),
            face_pass: meter
                .u64_counter(FACE_PASS)
                .with_description("Faces answered at face-pass gates, by outcome")
                .build(),
        }
    }

    /// Records one scan allowed under `scene`'s fail-open policy.
    pub fn fail_open(&self, scene: Scene) {
        self.fail_open
            .add(1, &[KeyValue::new("scene", scene.name())]);
    }

    /// Records what one batch of signatures did (nothing for signatures left alone).
    pub fn batch(&self, outcome: BatchOutcome) {
        let (n, label) = match outcome {
            BatchOutcome::Alone => return,
            BatchOutcome::Passed(n) => (n, "passed"),
            BatchOutcome::FellBack(n) => (n, "fell_back"),
        };
        self.batched.add(
            u64::try_from(n).unwrap_or(u64::MAX),
            &[KeyValue::new("outcome", label)],
        );
    }

    /// Records one face answered at a face-pass gate.
    pub fn face_pass(&self, answer: &Answer) {
        let outcome = answer.refusal.as_ref().map_or("allow", |r| r.code());
        self.face_pass.add(1, &[KeyValue::new("outcome", outcome)]);
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

/// The uploads counter's name: one per uploaded scan, by `scene` and `outcome`.
pub const UPLOADS: &str = "citypass.verifier.uploads";
/// The uploaded-taps counter's name: one per uploaded metro or bus scan passed on to
/// payments, by `scene` and `result`.
pub const UPLOADED_TAPS: &str = "citypass.verifier.uploaded_taps";
/// The fraud-signals counter's name: by `scene` and `kind`.
pub const FRAUD_SIGNALS: &str = "citypass.verifier.fraud_signals";

/// The instruments of offline uploads (`upload.rs`).
#[derive(Debug, Clone)]
pub struct UploadMetrics {
    uploads: Counter<u64>,
    taps: Counter<u64>,
    signals: Counter<u64>,
}

impl UploadMetrics {
    /// Registers the instruments on the global meter provider.
    pub fn new() -> Self {
        let meter = opentelemetry::global::meter("citypass-verifier");
        UploadMetrics {
            uploads: meter
                .u64_counter(UPLOADS)
                .with_description("Scans uploaded by offline gates, by scene and outcome")
                .build(),
            taps: meter
                .u64_counter(UPLOADED_TAPS)
                .with_description(
                    "Uploaded metro and bus scans passed on to payments, by scene and result",
                )
                .build(),
            signals: meter
                .u64_counter(FRAUD_SIGNALS)
                .with_description("Codes or offline counters found used by two scans")
                .build(),
        }
    }

    /// Records one uploaded scan's outcome.
    pub fn record(&self, scene: Scene, outcome: &'static str) {
        self.uploads.add(
            1,
            &[
                KeyValue::new("scene", scene.name()),
                KeyValue::new("outcome", outcome),
            ],
        );
    }

    /// Records what payments did with one uploaded transit scan (`unavailable` when
    /// payments or identity did not answer).
    pub fn tap(&self, scene: Scene, result: &'static str) {
        self.taps.add(
            1,
            &[
                KeyValue::new("scene", scene.name()),
                KeyValue::new("result", result),
            ],
        );
    }

    /// Records one fraud signal.
    pub fn signal(&self, scene: Scene, kind: &'static str) {
        self.signals.add(
            1,
            &[
                KeyValue::new("scene", scene.name()),
                KeyValue::new("kind", kind),
            ],
        );
    }
}

impl Default for UploadMetrics {
    fn default() -> Self {
        UploadMetrics::new()
    }
}
