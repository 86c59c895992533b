//! The verifier's own types: a scan in, an answer out. No transport types here;
//! `convert.rs` turns messages into these and back.

use std::time::Duration;

use citypass_face::Embedding;
use citypass_proto::v1::{AssuranceLevel, ChargeStatus, FareClass};
use citypass_token::{CodeKind, Scene};

use crate::face::FaceCheck;

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
#[derive(Clone, PartialEq)]
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
    /// Counter scenes: the embedding of the face at the counter (biometric data: never
    /// logged, never stored).
    pub live_face: Option<Embedding>,
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
            .field("live_face", &self.live_face.is_some())
            .finish_non_exhaustive()
    }
}

/// What a holder presented at a gate: a code (of its kind) or their face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresentedKind {
    /// A `CP1:` online code.
    Online,
    /// A `CP2:` offline code.
    Offline,
    /// A face at a face-pass gate (no code).
    Face,
}

impl From<CodeKind> for PresentedKind {
    fn from(kind: CodeKind) -> Self {
        match kind {
            CodeKind::Online => PresentedKind::Online,
            CodeKind::Offline => PresentedKind::Offline,
        }
    }
}

/// A face at a face-pass gate (VerifyFace), checked for shape. The gate is the
/// authenticated caller; its scene and place come from the registry.
#[derive(Clone, PartialEq)]
pub struct FaceScan {
    /// The gate's id for this scan (a retry repeats it).
    pub scan_id: String,
    /// The gate's embedding of the face (biometric data: never logged, never stored).
    pub live_face: Embedding,
    /// The gate's liveness score, when it ran its check.
    pub liveness: Option<f32>,
    /// Metro only.
    pub direction: Direction,
}

impl std::fmt::Debug for FaceScan {
    /// Without the embedding.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceScan")
            .field("scan_id", &self.scan_id)
            .field("liveness", &self.liveness)
            .field("direction", &self.direction)
            .finish_non_exhaustive()
    }
}

/// Why a face at a face-pass gate was refused before any holder was found: each one
/// tells the gate to ask for the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FacePassRefusal {
    /// The gate does not offer face pass.
    NotHere,
    /// An unattended gate sent no liveness check.
    LivenessRequired,
    /// An unattended gate's liveness score is below the threshold.
    LivenessFailed,
    /// Nobody consenting here matches clearly enough (threshold or margin).
    NotRecognised,
    /// The gallery is stale or was never filled (fail-closed).
    Unavailable,
}

impl FacePassRefusal {
    /// A stable snake-case name, for logs, spans and metrics.
    pub fn code(self) -> &'static str {
        match self {
            FacePassRefusal::NotHere => "face_pass_not_here",
            FacePassRefusal::LivenessRequired => "liveness_required",
            FacePassRefusal::LivenessFailed => "liveness_failed",
            FacePassRefusal::NotRecognised => "face_not_recognised",
            FacePassRefusal::Unavailable => "face_pass_unavailable",
        }
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
    /// The replay store (Redis) or a scene's dependency did not answer in time, and
    /// the scene fails closed.
    ServiceUnavailable,
    /// The code's sealed subject does not open under the verifier's subject keys (an
    /// unknown key id, another layout, or bytes that do not open): `UNSEAL_FAILED`.
    SubjectUnreadable,
    /// The scene's policy refused the holder.
    Policy(PolicyRefusal),
    /// A face at a face-pass gate found no holder (or may not be matched here).
    FacePass(FacePassRefusal),
}

/// Why a scene's policy refused a code's holder (`scene/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyRefusal {
    /// The holder is not an active subject.
    SubjectInactive,
    /// Identity does not know the holder.
    UnknownSubject,
    /// The code's sealed subject does not open.
    UnsealFailed,
    /// Hospital, government: assurance below real-name verified.
    RealNameRequired,
    /// Scenic: the venue's capacity for the day is reached.
    CapacityReached,
    /// Scenic: the holder entered the venue as often as it allows today.
    AlreadyEnteredToday,
    /// Government: the holder has no government-service pseudonym.
    NoGovernmentPseudonym,
    /// Transit: no active payment link.
    NoPaymentLink,
    /// Transit: unpaid arrears.
    Arrears,
    /// Transit: a metro entry while a trip is still open.
    TripAlreadyOpen,
}

impl PolicyRefusal {
    /// Every refusal, for the stored answer's names.
    pub const ALL: [PolicyRefusal; 10] = [
        PolicyRefusal::SubjectInactive,
        PolicyRefusal::UnknownSubject,
        PolicyRefusal::UnsealFailed,
        PolicyRefusal::RealNameRequired,
        PolicyRefusal::CapacityReached,
        PolicyRefusal::AlreadyEnteredToday,
        PolicyRefusal::NoGovernmentPseudonym,
        PolicyRefusal::NoPaymentLink,
        PolicyRefusal::Arrears,
        PolicyRefusal::TripAlreadyOpen,
    ];

    /// A stable snake-case name, for logs, spans and the stored answer.
    pub fn code(self) -> &'static str {
        match self {
            PolicyRefusal::SubjectInactive => "subject_inactive",
            PolicyRefusal::UnknownSubject => "unknown_subject",
            PolicyRefusal::UnsealFailed => "unseal_failed",
            PolicyRefusal::RealNameRequired => "real_name_required",
            PolicyRefusal::CapacityReached => "capacity_reached",
            PolicyRefusal::AlreadyEnteredToday => "already_entered_today",
            PolicyRefusal::NoGovernmentPseudonym => "no_government_pseudonym",
            PolicyRefusal::NoPaymentLink => "no_payment_link",
            PolicyRefusal::Arrears => "arrears",
            PolicyRefusal::TripAlreadyOpen => "trip_already_open",
        }
    }

    /// The refusal named `code`.
    pub fn from_code(code: &str) -> Option<Self> {
        PolicyRefusal::ALL.into_iter().find(|r| r.code() == code)
    }
}

/// What a scene's policy tells the gate on ALLOW: only what the scene needs.
#[derive(Clone, PartialEq, Eq)]
pub enum SceneResult {
    /// A hospital desk: the patient pseudonym and the insurance fact, nothing else.
    Hospital {
        /// `Subjects::pseudonym(Hospital)`.
        patient_pseudonym: String,
        /// Whether medical insurance is linked.
        medical_insurance_linked: bool,
    },
    /// A scenic gate: the visitor at this venue, their entries today, what is left.
    Scenic {
        /// `Subjects::pseudonym(Venue(venue))`.
        venue_pseudonym: String,
        /// The visitor's entries today, this one included.
        entries_today: u32,
        /// The venue's capacity left today after this entry.
        remaining_capacity: u32,
    },
    /// A government service hall counter: who stands there.
    Government {
        /// The name as a counter may show it.
        masked_name: String,
        /// The holder's assurance level.
        assurance_level: AssuranceLevel,
        /// The government-service pseudonym.
        government_pseudonym: String,
    },
    /// A metro or bus gate: the trip and its charge.
    Transit(TransitTrip),
}

/// A transit scan's trip, as payments answered it.
#[derive(Clone, PartialEq, Eq)]
pub struct TransitTrip {
    /// The trip opened or closed.
    pub trip_id: String,
    /// Fare charged by this scan, minor units.
    pub fare_minor_units: i64,
    /// ISO 4217 currency of the fare.
    pub currency_code: String,
    /// The charge's state when the gate was answered.
    pub charge_status: ChargeStatus,
    /// The rider's transit pseudonym.
    pub transit_account: String,
    /// The rider's fare class.
    pub fare_class: FareClass,
}

impl std::fmt::Debug for SceneResult {
    /// Without pseudonyms or names (personal data).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SceneResult::Hospital {
                medical_insurance_linked,
                ..
            } => f
                .debug_struct("Hospital")
                .field("medical_insurance_linked", medical_insurance_linked)
                .finish_non_exhaustive(),
            SceneResult::Scenic {
                entries_today,
                remaining_capacity,
                ..
            } => f
                .debug_struct("Scenic")
                .field("entries_today", entries_today)
                .field("remaining_capacity", remaining_capacity)
                .finish_non_exhaustive(),
            SceneResult::Government {
                assurance_level, ..
            } => f
                .debug_struct("Government")
                .field("assurance_level", assurance_level)
                .finish_non_exhaustive(),
            SceneResult::Transit(trip) => f
                .debug_struct("Transit")
                .field("fare_minor_units", &trip.fare_minor_units)
                .field("charge_status", &trip.charge_status)
                .field("fare_class", &trip.fare_class)
                .finish_non_exhaustive(),
        }
    }
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
            Refusal::Policy(refusal) => refusal.code(),
            Refusal::FacePass(refusal) => refusal.code(),
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
    /// The kind of code (when its prefix was read), or a face.
    pub code_kind: Option<PresentedKind>,
    /// What the decision used.
    pub basis: Basis,
    /// The verifier's clock at the decision (Unix seconds).
    pub decided_at: u64,
    /// This is the stored answer of an earlier try of the same scan, not a new decision.
    pub idempotent_replay: bool,
    /// What the scene's policy produced (ALLOW only).
    pub scene: Option<SceneResult>,
    /// Allowed under a fail-open policy while a dependency was down.
    pub fail_open: bool,
    /// Counter scenes with a face policy, on ALLOW: the face check.
    pub face: Option<FaceCheck>,
}

impl Answer {
    /// Whether the gate opens.
    pub fn allowed(&self) -> bool {
        self.refusal.is_none()
    }
}

/// A scene result as the replay store keeps it with a settled answer: only facts that
/// are not personal data. Pseudonyms, the masked name and the transit account are
/// derived again from the code (and identity's cached profile) when a retry is
/// answered, so the store holds no one's pseudonym or name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SceneFacts {
    /// Hospital: the insurance fact.
    Hospital {
        /// Whether medical insurance is linked.
        medical_insurance_linked: bool,
    },
    /// Scenic: the counts.
    Scenic {
        /// The visitor's entries today, this one included.
        entries_today: u32,
        /// The venue's capacity left today after this entry.
        remaining_capacity: u32,
    },
    /// Government: the assurance level.
    Government {
        /// The holder's assurance level.
        assurance_level: AssuranceLevel,
    },
    /// Transit: the trip and its charge, without the account.
    Transit {
        /// The trip opened or closed.
        trip_id: String,
        /// Fare charged by this scan, minor units.
        fare_minor_units: i64,
        /// ISO 4217 currency of the fare.
        currency_code: String,
        /// The charge's state when the gate was answered.
        charge_status: ChargeStatus,
        /// The rider's fare class.
        fare_class: FareClass,
    },
}

impl SceneResult {
    /// What the replay store keeps of this result.
    pub fn facts(&self) -> SceneFacts {
        match self {
            SceneResult::Hospital {
                medical_insurance_linked,
                ..
            } => SceneFacts::Hospital {
                medical_insurance_linked: *medical_insurance_linked,
            },
            SceneResult::Scenic {
                entries_today,
                remaining_capacity,
                ..
            } => SceneFacts::Scenic {
                entries_today: *entries_today,
                remaining_capacity: *remaining_capacity,
            },
            SceneResult::Government {
                assurance_level, ..
            } => SceneFacts::Government {
                assurance_level: *assurance_level,
            },
            SceneResult::Transit(trip) => SceneFacts::Transit {
                trip_id: trip.trip_id.clone(),
                fare_minor_units: trip.fare_minor_units,
                currency_code: trip.currency_code.clone(),
                charge_status: trip.charge_status,
                fare_class: trip.fare_class,
            },
        }
    }
}

/// A gate's void of its own tap (VoidScan), checked for shape.
#[derive(Clone, PartialEq, Eq)]
pub struct VoidScan {
    /// The gate the request names.
    pub gate_id: String,
    /// The scan to void.
    pub scan_id: String,
    /// The code scanned. Never logged.
    pub qr_text: String,
}

impl std::fmt::Debug for VoidScan {
    /// Without the code text (personal data).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoidScan")
            .field("gate_id", &self.gate_id)
            .field("scan_id", &self.scan_id)
            .finish_non_exhaustive()
    }
}

/// What a void did to the tap's trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voided {
    /// The trip.
    pub trip_id: String,
    /// True: voided, nothing charged; false: an exit undone, the trip open again.
    pub trip_voided: bool,
}
