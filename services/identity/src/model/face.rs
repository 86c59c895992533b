//! Face enrolment's records (issue 14), as the logic (`crate::face`) and the stores
//! share them: consents, sealed templates, the feed, the processing record. No record
//! holds an embedding in clear: a template is always a `SealedTemplate`.

use citypass_face::SealedTemplate;
use citypass_proto::v1::{FaceChannel, FacePurpose};

use crate::ids::{DeviceId, SubjectId};
use crate::model::Timestamp;

/// A live consent to one purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub subject_id: SubjectId,
    pub purpose: FacePurpose,
    /// Version of the notice text shown.
    pub text_version: String,
    /// FACE_PASS: station and venue ids; empty for COUNTER_CHECK.
    pub places: Vec<String>,
    /// The guardian who consented for a child under 14.
    pub guardian: Option<SubjectId>,
    pub channel: FaceChannel,
    pub granted_at: Timestamp,
}

/// A consent as asked for, fields well-formed (the rules are checked here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRequest {
    pub subject_id: SubjectId,
    pub purpose: FacePurpose,
    pub text_version: String,
    pub places: Vec<String>,
    pub guardian: Option<SubjectId>,
}

/// A template to store: sealed already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTemplate {
    pub subject_id: SubjectId,
    pub sealed: SealedTemplate,
    pub channel: FaceChannel,
    /// The enrolling device (app enrolments only).
    pub device: Option<DeviceId>,
}

/// What an enrolment stored (never the template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    pub subject_id: SubjectId,
    /// The live consents' purposes, in purpose order.
    pub purposes: Vec<FacePurpose>,
    pub channel: FaceChannel,
    pub enrolled_at: Timestamp,
    /// People enrolled before and after this enrolment (for the filing threshold).
    pub enrolled_before: u64,
    pub enrolled_after: u64,
}

/// What a withdrawal did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Withdrawal {
    /// The purposes that were consented and are withdrawn now.
    pub withdrawn: Vec<FacePurpose>,
    /// Whether the template row was deleted (no consent left).
    pub template_deleted: bool,
}

/// Counts for operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaceStats {
    /// People with a template.
    pub enrolled_people: u64,
    /// People with a live COUNTER_CHECK consent.
    pub counter_check_consents: u64,
    /// People with a live FACE_PASS consent.
    pub face_pass_consents: u64,
}

/// A template as the verifier's feed carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedTemplate {
    pub sealed: SealedTemplate,
    /// Live consents' purposes, in purpose order.
    pub purposes: Vec<FacePurpose>,
    /// The FACE_PASS consent's places (empty without one).
    pub face_pass_places: Vec<String>,
    pub enrolled_at: Timestamp,
    pub channel: FaceChannel,
    /// The enrolling device (app enrolments only).
    pub device: Option<DeviceId>,
}

/// One subject's state at its latest change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    pub sequence: i64,
    pub subject_id: SubjectId,
    /// `None`: removed (no template, or no live consent).
    pub template: Option<FeedTemplate>,
}

/// A processing-record row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub subject_id: SubjectId,
    /// `consent`, `withdraw`, `enrol` or `delete`.
    pub action: &'static str,
    pub purpose: Option<FacePurpose>,
    pub channel: FaceChannel,
    pub actor: String,
    pub at: Timestamp,
}

/// Audit actions.
pub const AUDIT_CONSENT: &str = "consent";
pub const AUDIT_WITHDRAW: &str = "withdraw";
pub const AUDIT_ENROL: &str = "enrol";
pub const AUDIT_DELETE: &str = "delete";

/// The audit action stored as `text`, if it is one.
pub fn audit_action(text: &str) -> Option<&'static str> {
    [AUDIT_CONSENT, AUDIT_WITHDRAW, AUDIT_ENROL, AUDIT_DELETE]
        .into_iter()
        .find(|a| *a == text)
}
