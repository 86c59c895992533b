//! The verifier's own types: a scan in, an answer out. No transport types here;
//! `convert.rs` turns messages into these and back.

use std::time::Duration;

use citypass_token::{CodeKind, Scene};

/// Which way a metro rider goes, as the request says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Not said: the gate's configured direction applies.
    Unspecified,
    /// Into the paid area.
    Entry,
    /// Out of the paid area.
    Exit,
}

/// One scan at a gate, checked for shape.
#[derive(Clone, PartialEq, Eq)]
pub struct Scan {
    /// The gate the request names.
    pub gate_id: String,
    /// The scene the request names.
    pub scene: Scene,
    /// The gate's id for this scan (a retry repeats it).
    pub scan_id: String,
    /// The scanned text, as read. Never logged.
    pub qr_text: String,
    /// Metro only.
    pub direction: Direction,
    /// Metro station or bus stop, for trips (unused until the transit policy).
    pub station_id: String,
}

impl std::fmt::Debug for Scan {
    /// Without the code text (personal data: it is a person's credential).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scan")
            .field("gate_id", &self.gate_id)
            .field("scene", &self.scene)
            .field("scan_id", &self.scan_id)
            .field("qr_text_len", &self.qr_text.len())
            .field("direction", &self.direction)
            .finish_non_exhaustive()
    }
}

/// Why a code was refused, beyond the shared pipeline's reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A step of the decision shared with the offline gate (`citypass_gate`): format,
    /// key, signature, time, scope, revocation, replay, offline counter.
    Code(citypass_gate::DenyReason),
    /// The gate is not in the registry.
    UnknownGate,
    /// The request's scene is not its gate's.
    SceneMismatch,
    /// The gate used this scan id before with another code.
    ScanIdConflict,
    /// The replay store (Redis) did not answer in time: fail closed.
    ServiceUnavailable,
    /// The code's sealed subject does not open under the verifier's subject keys (an
    /// unknown key id, another layout, or bytes that do not open): `UNSEAL_FAILED`.
    SubjectUnreadable,
}

impl Refusal {
    /// A stable snake-case name, for logs and spans.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Code(reason) => reason.code(),
            Refusal::UnknownGate => "unknown_gate",
            Refusal::SceneMismatch => "scene_mismatch",
            Refusal::ScanIdConflict => "scan_id_conflict",
            Refusal::ServiceUnavailable => "service_unavailable",
            Refusal::SubjectUnreadable => "unseal_failed",
        }
    }
}

impl From<citypass_gate::DenyReason> for Refusal {
    fn from(reason: citypass_gate::DenyReason) -> Self {
        Refusal::Code(reason)
    }
}

/// The freshness of what a decision used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Basis {
    /// The revocation epoch: every log entry up to it was applied.
    pub revocation_epoch: u64,
    /// Time since the follower last heard from the log; `None` before its first sync.
    pub revocation_age: Option<Duration>,
    /// Time since the key set was last confirmed.
    pub key_set_age: Option<Duration>,
}

/// The answer to one scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `None`: ALLOW; otherwise DENY and why.
    pub refusal: Option<Refusal>,
    /// The kind of code, when its prefix was read.
    pub code_kind: Option<CodeKind>,
    /// What the decision used.
    pub basis: Basis,
    /// The verifier's clock at the decision (Unix seconds).
    pub decided_at: u64,
    /// This is the stored answer of an earlier try of the same scan, not a new decision.
    pub idempotent_replay: bool,
}

impl Answer {
    /// Whether the gate opens.
    pub fn allowed(&self) -> bool {
        self.refusal.is_none()
    }
}
