//! Where subjects, devices, challenges and certificates live: one trait, two backends.
//!
//! PostgreSQL ([`postgres::PostgresStore`]) is the system of record in deployments;
//! the in-memory store ([`memory::MemoryStore`]) is the embedded default of
//! `citypass dev` and of unit tests. Both pass the same contract test suite
//! (`tests/store_contract/`), so the service cannot tell them apart.
//!
//! Every operation that must hold under concurrency is *one* store call, atomic in
//! both backends (a PostgreSQL transaction with row locks and constraints; one mutex
//! in memory): enrolment de-duplication, the device limit, single-use challenges,
//! status transitions, and certificate recording against a device being unbound. The
//! rules those operations enforce are part of the contract and listed on each method.
//! Times are passed in (`now`), never read inside a store, so both backends agree and
//! tests control the clock.

pub mod memory;
pub mod postgres;

use citypass_proto::v1::{FaceChannel, FacePurpose, SubjectStatus};
use futures::future::BoxFuture;

use citypass_pseudonym::Pseudonym;

use crate::document::{Date, DocumentHash};
use crate::enrolment::EnrolmentGrant;
use crate::error::Error;
use crate::ids::{DeviceId, SubjectId};
use crate::model::face::{
    AuditEntry, Consent, Enrolment, FaceStats, FeedEntry, NewTemplate, Withdrawal,
};
use crate::model::{
    AttributesUpdate, Certificate, CertificateOwner, CertificatePage, Challenge, Device,
    DevicePage, DeviceView, NewCertificate, NewDevice, NewSubject, StoredPseudonym, Subject,
    Timestamp,
};

pub use memory::MemoryStore;
pub use postgres::PostgresStore;

/// Outstanding challenges kept per subject; creating one more drops the oldest.
pub const MAX_OUTSTANDING_CHALLENGES: usize = 5;

/// The status reason stored on PENDING subjects closed by a verified enrolment.
pub const SUPERSEDED_REASON: &str = "superseded by a verified enrolment of the same document";

/// Storage for the identity service. See the module documentation.
pub trait Store: FaceStore + Send + Sync + 'static {
    /// The ACTIVE or SUSPENDED subject enrolled with this document, if any: `document`
    /// holds its hash under every configured document key (during a rotation, a row may
    /// carry any of them).
    fn find_enrolled_subject<'a>(
        &'a self,
        document: &'a [DocumentHash],
    ) -> BoxFuture<'a, Result<Option<Subject>, Error>>;

    /// Stores a new subject, with its document hash, that hash's key id, its transit
    /// account (value and key id) and its government pseudonym if it has one.
    ///
    /// - An ACTIVE or SUSPENDED subject with any of the document's hashes
    ///   ([`NewSubject::all_document_hashes`]) exists → [`Error::AlreadyEnrolled`] (at
    ///   most one enrolled subject per document, even under concurrent enrolments, even
    ///   when replicas hash under different current keys during a rotation).
    /// - A new ACTIVE subject closes PENDING subjects of the same document: they
    ///   become REJECTED with [`SUPERSEDED_REASON`].
    /// - PENDING and REJECTED subjects never conflict.
    fn insert_subject<'a>(
        &'a self,
        subject: NewSubject,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Subject, Error>>;

    /// One subject, or [`Error::SubjectNotFound`].
    fn get_subject<'a>(&'a self, id: SubjectId) -> BoxFuture<'a, Result<Subject, Error>>;

    /// The subject's transit account as enrolment stored it. [`Error::SubjectNotFound`].
    fn get_transit_account<'a>(
        &'a self,
        id: SubjectId,
    ) -> BoxFuture<'a, Result<StoredPseudonym, Error>>;

    /// The subject's government-service pseudonym as enrolment stored it (with its key
    /// id); `None` for a subject enrolled with another document or before the value was
    /// stored. [`Error::SubjectNotFound`].
    fn get_government_pseudonym<'a>(
        &'a self,
        id: SubjectId,
    ) -> BoxFuture<'a, Result<Option<Pseudonym>, Error>>;

    /// Applies the given attributes, keeps the others; bumps `updated_at`.
    /// [`Error::SubjectNotFound`].
    fn update_attributes<'a>(
        &'a self,
        id: SubjectId,
        update: AttributesUpdate,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Subject, Error>>;

    /// Moves a subject between ACTIVE and SUSPENDED (`status` is one of them; the
    /// caller checks). Setting the current status again changes nothing.
    /// [`Error::SubjectNotFound`]; [`Error::StatusFrozen`] from PENDING or REJECTED.
    fn set_subject_status<'a>(
        &'a self,
        id: SubjectId,
        status: SubjectStatus,
        reason: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Subject, Error>>;

    /// Stores a binding challenge for an ACTIVE subject, drops expired challenges, and
    /// keeps only the [`MAX_OUTSTANDING_CHALLENGES`] newest of the subject.
    /// [`Error::SubjectNotFound`]; [`Error::SubjectNotActive`].
    fn create_challenge<'a>(
        &'a self,
        challenge: Challenge,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Replaces the subject's enrolment secret with `grant` (IssueEnrolmentSecret).
    /// [`Error::SubjectNotFound`].
    fn grant_enrolment<'a>(
        &'a self,
        subject_id: SubjectId,
        grant: EnrolmentGrant,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Binds a device, consuming its challenge (and an enrolment secret given as its
    /// authority), all or nothing (on any error nothing changes, and the challenge and
    /// secret stay usable until they expire). In this order:
    /// [`Error::SubjectNotFound`]; [`Error::SubjectNotActive`]; [`Error::ChallengeUnknown`]
    /// (never issued, used, or issued for another subject); [`Error::ChallengeExpired`]
    /// (`expires_at <= now`); [`Error::BindingNotAuthorized`] (the secret is
    /// not the subject's current one or has expired; the authorising device is not an
    /// ACTIVE device of the subject); [`Error::DeviceLimit`] (the subject has `max_devices`
    /// ACTIVE devices); [`Error::KeyAlreadyBound`] (the key was ever bound, to anyone).
    fn bind_device<'a>(
        &'a self,
        device: NewDevice,
        max_devices: u32,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Device, Error>>;

    /// Unbinds a device of this subject (UNBOUND is terminal; unbinding again returns
    /// it unchanged). [`Error::DeviceNotFound`] also when the device belongs to another
    /// subject.
    fn unbind_device<'a>(
        &'a self,
        subject_id: SubjectId,
        device_id: DeviceId,
        reason: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Device, Error>>;

    /// The subject's devices, ordered by `bound_at` then id, one `page` of them;
    /// ACTIVE only unless `include_unbound`. [`Error::SubjectNotFound`].
    fn list_devices<'a>(
        &'a self,
        subject_id: SubjectId,
        include_unbound: bool,
        page: DevicePage,
    ) -> BoxFuture<'a, Result<Vec<Device>, Error>>;

    /// A device with its subject's status and attributes. [`Error::DeviceNotFound`].
    fn get_device<'a>(&'a self, id: DeviceId) -> BoxFuture<'a, Result<DeviceView, Error>>;

    /// Records a device certificate; its subject is the device's.
    /// [`Error::DeviceNotFound`]; [`Error::InvalidArgument`] if `subject_id` is given
    /// and is not the device's; [`Error::DeviceNotActive`]; [`Error::SerialConflict`]
    /// if the serial is recorded for another device or with another validity.
    /// Recording the same certificate again returns it (a retry), even at the limit;
    /// otherwise [`Error::CertificateLimit`] when the device already has `max_live`
    /// certificates with `not_after` after `now` (concurrent records of one device are
    /// serialised, so the limit holds).
    fn record_certificate<'a>(
        &'a self,
        certificate: NewCertificate,
        max_live: u32,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Certificate, Error>>;

    /// Certificates of a device or of all devices of a subject, ordered by
    /// `not_before` then serial, one `page` of them; with `valid_at`, only those with
    /// `not_after` later than it. [`Error::DeviceNotFound`] / [`Error::SubjectNotFound`].
    fn list_certificates<'a>(
        &'a self,
        owner: CertificateOwner,
        valid_at: Option<Timestamp>,
        page: CertificatePage,
    ) -> BoxFuture<'a, Result<Vec<Certificate>, Error>>;
}

/// Face enrolment (issue 14; see `crate::face`). Every change below is atomic with its
/// audit row and its entry in the verifier's feed, and changes of one subject's face
/// data are serialised (so the feed's sequence numbers become visible in order).
pub trait FaceStore: Send + Sync + 'static {
    /// The subject's birth date as enrolment stored it (resident IDs only).
    /// [`Error::SubjectNotFound`].
    fn get_birth_date<'a>(&'a self, id: SubjectId) -> BoxFuture<'a, Result<Option<Date>, Error>>;

    /// Records `consent`, replacing the subject's consent to the same purpose; audited
    /// (`consent`); the feed notes the subject when it has a template (its purposes
    /// changed). [`Error::SubjectNotFound`]; [`Error::SubjectNotActive`].
    fn record_face_consent<'a>(
        &'a self,
        consent: Consent,
        actor: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Consent, Error>>;

    /// The subject's live consents, in purpose order. [`Error::SubjectNotFound`].
    fn face_consents<'a>(&'a self, id: SubjectId) -> BoxFuture<'a, Result<Vec<Consent>, Error>>;

    /// Deletes the consent to `purpose` (every purpose when `None`); each deleted one is
    /// audited (`withdraw`). When no consent is left, the template row is deleted too
    /// (audited `delete`). The feed notes the subject when it had a template. Nothing
    /// to withdraw changes nothing. [`Error::SubjectNotFound`].
    fn withdraw_face_consent<'a>(
        &'a self,
        id: SubjectId,
        purpose: Option<FacePurpose>,
        channel: FaceChannel,
        actor: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Withdrawal, Error>>;

    /// Stores the subject's template, replacing any earlier one; audited (`enrol`);
    /// noted in the feed. [`Error::SubjectNotFound`]; [`Error::SubjectNotActive`];
    /// [`Error::FaceConsentRequired`] without a live consent (checked in the same
    /// transaction, so a concurrent withdrawal cannot leave a template behind).
    fn enrol_face<'a>(
        &'a self,
        template: NewTemplate,
        actor: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Enrolment, Error>>;

    /// The stored sealed template, if any (tests; never returned by an RPC).
    /// [`Error::SubjectNotFound`].
    fn face_template<'a>(
        &'a self,
        id: SubjectId,
    ) -> BoxFuture<'a, Result<Option<citypass_face::SealedTemplate>, Error>>;

    /// Counts for operators.
    fn face_stats<'a>(&'a self) -> BoxFuture<'a, Result<FaceStats, Error>>;

    /// Up to `limit` subjects whose latest change is after `after`, in sequence order,
    /// each with its template and live purposes (`None` when it has no template or no
    /// live consent).
    fn face_changes<'a>(
        &'a self,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<FeedEntry>, Error>>;

    /// The highest sequence number the feed has given out (0 when none): a follower
    /// whose cursor is above it missed changes (a restored database) and starts again.
    fn face_last_sequence<'a>(&'a self) -> BoxFuture<'a, Result<i64, Error>>;

    /// The subject's processing record, oldest first. [`Error::SubjectNotFound`].
    fn face_audit<'a>(&'a self, id: SubjectId) -> BoxFuture<'a, Result<Vec<AuditEntry>, Error>>;

    /// Marks a request nonce (`key`, a hash) used until `expires_at`: `true` on its
    /// first use, `false` while a mark lives. Drops some expired marks.
    fn first_use_nonce<'a>(
        &'a self,
        key: &'a str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<bool, Error>>;
}

/// The `SubjectNotActive` error for a subject in `status`.
pub(crate) fn not_active(status: SubjectStatus, action: &'static str) -> Error {
    Error::SubjectNotActive {
        status: status_name(status),
        action,
    }
}

/// Short upper-case name of a status, for messages.
pub(crate) fn status_name(status: SubjectStatus) -> &'static str {
    match status {
        SubjectStatus::Unspecified => "UNSPECIFIED",
        SubjectStatus::Pending => "PENDING",
        SubjectStatus::Active => "ACTIVE",
        SubjectStatus::Suspended => "SUSPENDED",
        SubjectStatus::Rejected => "REJECTED",
    }
}

/// Actions named in `SubjectNotActive` errors.
pub(crate) const ACTION_CHALLENGE: &str = "start a device binding";
pub(crate) const ACTION_BIND: &str = "bind a device";
pub(crate) const ACTION_FACE_CONSENT: &str = "consent to face recognition";
pub(crate) const ACTION_FACE_ENROL: &str = "enrol a face";

/// The processing record's actor when an app-enrolled template goes because one of the
/// subject's devices was unbound (reported lost, replaced): the face a phone's holder
/// chose is not trusted once a phone is not the citizen's, and the thief may have
/// enrolled it from another device the lost phone authorised, so any unbind takes the
/// subject's app-enrolled face (a counter's stays) and the 1:N face pass stops matching
/// it at once. The consents stay; the citizen enrols again from a phone they hold.
pub const UNBOUND_DEVICE_ACTOR: &str = "device-unbound";
