//! The crate's one error type, and how each variant maps to a gRPC status.
//!
//! Every failure of the identity service, from request validation to the stores, is a
//! variant here, and [`ServiceError::kind`] is the only place that decides its gRPC
//! code (`citypass_runtime::status` then decides what the caller sees). The codes
//! follow `proto/citypass/v1/identity.proto`.
//!
//! Display texts of caller-facing variants go to the caller, the others to the logs, so
//! none of them may contain personal data: no names, no document numbers, no phone
//! numbers. Messages name the offending *field* and what is wrong with it, never its
//! value.

use std::borrow::Cow;

use citypass_runtime::{ErrorKind, ServiceError};

/// Everything that can go wrong in the identity service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is malformed (whatever the server's state).
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The request field, e.g. `document_number` or `certificate.serial`.
        field: &'static str,
        /// What is wrong with it (never its value).
        reason: Cow<'static, str>,
    },
    /// No subject with this id.
    #[error("subject not found")]
    SubjectNotFound,
    /// No device with this id (for this subject, where one is given).
    #[error("device not found")]
    DeviceNotFound,
    /// A subject for this document is enrolled already (ACTIVE or SUSPENDED). The
    /// store's answer; Enrol never shows it to its caller (it answers
    /// [`Error::EnrolmentNotAccepted`]).
    #[error("this document is already enrolled")]
    AlreadyEnrolled,
    /// Enrol's one answer to every enrolment it does not accept: a name the real-name
    /// system does not match with the document, a document it does not know, a
    /// document enrolled already. One code, reason and text for all, so that a caller
    /// learns nothing about anyone (security finding 8).
    #[error(
        "enrolment not accepted: the name and document do not match in the real-name system, or the document is enrolled already (this answer does not say which). Check the name as printed on the document. Enrolled before? Add this phone from a phone already bound (BindDevice with bound_device), or get a new enrolment secret at a service counter after an in-person check (IssueEnrolmentSecret)"
    )]
    EnrolmentNotAccepted,
    /// Too many Enrol attempts from this caller's address or for this document in the
    /// configured window (each costs a real-name lookup).
    #[error("too many enrolment attempts from this address or for this document: try again later")]
    EnrolRateLimited,
    /// A device made more face calls than its allowance (`face_calls_per_device`).
    #[error("too many face calls from this device: try again later")]
    FaceCallsRateLimited,
    /// The national real-name system did not answer; nothing was stored.
    #[error("the real-name system did not answer; retry later")]
    RealNameUnavailable,
    /// A subject's pseudonym must be derived under a key that is not configured (a
    /// subject stored before pseudonyms were, and its key removed too early).
    #[error("pseudonym key {0} is not configured")]
    PseudonymKeyMissing(i16),
    /// The public key is bound to a device now, or was bound before.
    #[error(
        "public_key: this key is bound already, or was bound before; generate a new device key"
    )]
    KeyAlreadyBound,
    /// The serial is recorded already, for another device or with another validity.
    #[error("certificate.serial: already recorded for another device or with a different validity")]
    SerialConflict,
    /// The subject is not ACTIVE, which the operation needs.
    #[error("subject is {status}: only an ACTIVE subject can {action}")]
    SubjectNotActive {
        /// The subject's status, e.g. `SUSPENDED`.
        status: &'static str,
        /// What was refused, e.g. `bind a device`.
        action: &'static str,
    },
    /// Status changes are only between ACTIVE and SUSPENDED.
    #[error("subject is {0}: only ACTIVE and SUSPENDED subjects can change status")]
    StatusFrozen(&'static str),
    /// The device is UNBOUND, which the operation does not allow.
    #[error("device is UNBOUND")]
    DeviceNotActive,
    /// No outstanding challenge matches (never created, already used, or for another
    /// subject).
    #[error("challenge: unknown or already used; create a new one")]
    ChallengeUnknown,
    /// The challenge was not used before its expiry.
    #[error("challenge: expired; create a new one")]
    ChallengeExpired,
    /// The subject has as many ACTIVE devices as the configured limit.
    #[error("the subject has {limit} bound devices, the limit: unbind one first")]
    DeviceLimit {
        /// The configured limit.
        limit: u32,
    },
    /// The binding has no valid authority: a wrong, used or expired enrolment secret,
    /// or an authorising device that is not an ACTIVE device of the subject or whose
    /// signature does not verify. One answer for all, so a caller learns nothing
    /// about which.
    #[error(
        "binding not authorised: give the enrolment secret from Enrol, or a signature by a device already bound to the subject"
    )]
    BindingNotAuthorized,
    /// The device already has as many live certificates as the configured limit.
    #[error("the device has {limit} live certificates, the limit: wait for one to expire")]
    CertificateLimit {
        /// The configured limit.
        limit: u32,
    },
    /// The proof of possession does not verify.
    #[error(
        "signature: does not verify as the ES256 signature by public_key over the binding message"
    )]
    BadSignature,
    /// A device-signed call's proof was refused (missing, stale, replayed, bad
    /// signature) or its nonce could not be checked.
    #[error(transparent)]
    Proof(#[from] citypass_device_proof::ProofError),
    /// The device that signed a call is UNBOUND.
    #[error("the signing device is not bound (UNBOUND): bind this phone again")]
    SigningDeviceNotActive,
    /// A device-signed call names a subject that is not the signing device's.
    #[error("subject_id: not the signing device's subject")]
    NotYourSubject,
    /// A face enrolment by an operator who is not a face counter (finding F8).
    #[error("enrolling a face at a counter needs the face-counter role")]
    FaceCounterRequired,
    /// An app enrolment over a template a counter enrolled (finding F8): the citizen
    /// withdraws first (the counter's template is deleted with the last consent).
    #[error(
        "this face was enrolled at a counter: withdraw the face consent first to enrol from the app"
    )]
    CounterTemplateExists,
    /// A face template without a live consent to any purpose.
    #[error("no face consent: record a consent (RecordFaceConsent) before enrolling a face")]
    FaceConsentRequired,
    /// A child under 14 consents through a guardian, in person at a counter.
    #[error(
        "the subject is under 14: a guardian consents in person at a service counter (guardian_subject_id)"
    )]
    GuardianConsentRequired,
    /// The named guardian cannot consent (unknown, not ACTIVE, under 18, or the child).
    #[error("guardian_subject_id: not an ACTIVE adult subject other than the child")]
    GuardianNotEligible,
    /// The service holds no birth date for the subject (a document without one, or
    /// enrolled before it was kept): an app cannot show the subject is 14 or more.
    #[error(
        "the service does not hold this subject's birth date: consent in person at a service counter"
    )]
    AgeUnknown,
    /// A face template could not be sealed or opened (a key missing, a row tampered).
    #[error("face template: {0}")]
    Template(citypass_face::TemplateError),
    /// The configuration cannot be used (start-up only).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// PostgreSQL failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// The schema migrations failed (start-up only).
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value does not decode: a bug or a hand-edited row.
    #[error("stored data is invalid: {0}")]
    Corrupt(&'static str),
    /// The system random number generator failed.
    #[error("system randomness failed")]
    Randomness,
    /// A thread panicked while holding the in-memory store's lock.
    #[error("in-memory store lock poisoned")]
    Poisoned,
}

impl Error {
    /// An [`Error::InvalidArgument`] for `field`.
    pub fn invalid(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Error::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

impl From<citypass_pseudonym::KeyError> for Error {
    fn from(err: citypass_pseudonym::KeyError) -> Self {
        Error::Config(err.0)
    }
}

impl From<citypass_token::IdError> for Error {
    fn from(err: citypass_token::IdError) -> Self {
        use citypass_token::IdError;
        match err {
            IdError::Missing { field } => Error::invalid(field, "is required"),
            IdError::Malformed { field } => {
                Error::invalid(field, "must be 32 lower-case hexadecimal characters")
            }
            IdError::Randomness => Error::Randomness,
        }
    }
}

impl ServiceError for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Error::SubjectNotFound | Error::DeviceNotFound => ErrorKind::NotFound,
            Error::AlreadyEnrolled | Error::KeyAlreadyBound | Error::SerialConflict => {
                ErrorKind::AlreadyExists
            }
            Error::SubjectNotActive { .. }
            | Error::StatusFrozen(_)
            | Error::DeviceNotActive
            | Error::ChallengeUnknown
            | Error::ChallengeExpired
            | Error::DeviceLimit { .. }
            | Error::EnrolmentNotAccepted => ErrorKind::FailedPrecondition,
            Error::BadSignature => ErrorKind::Unauthenticated,
            Error::BindingNotAuthorized => ErrorKind::PermissionDenied,
            Error::Proof(err) => err.kind(),
            Error::SigningDeviceNotActive | Error::NotYourSubject | Error::FaceCounterRequired => {
                ErrorKind::PermissionDenied
            }
            Error::FaceConsentRequired
            | Error::CounterTemplateExists
            | Error::GuardianConsentRequired
            | Error::GuardianNotEligible
            | Error::AgeUnknown => ErrorKind::FailedPrecondition,
            Error::Template(_) => ErrorKind::Internal,
            Error::CertificateLimit { .. }
            | Error::EnrolRateLimited
            | Error::FaceCallsRateLimited => ErrorKind::ResourceExhausted,
            Error::RealNameUnavailable => ErrorKind::Unavailable,
            Error::Database(err) => citypass_postgres::error_kind(err),
            Error::PseudonymKeyMissing(_)
            | Error::Config(_)
            | Error::Migrate(_)
            | Error::Corrupt(_)
            | Error::Randomness
            | Error::Poisoned => ErrorKind::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Error::BindingNotAuthorized => "BINDING_NOT_AUTHORIZED",
            Error::BadSignature => "BAD_SIGNATURE",
            Error::ChallengeUnknown => "CHALLENGE_UNKNOWN",
            Error::ChallengeExpired => "CHALLENGE_EXPIRED",
            Error::DeviceLimit { .. } => "DEVICE_LIMIT",
            Error::KeyAlreadyBound => "KEY_ALREADY_BOUND",
            Error::CertificateLimit { .. } => "CERTIFICATE_LIMIT",
            Error::EnrolmentNotAccepted => "ENROLMENT_NOT_ACCEPTED",
            Error::EnrolRateLimited => "ENROL_RATE_LIMITED",
            Error::FaceCallsRateLimited => "FACE_CALLS_RATE_LIMITED",
            Error::RealNameUnavailable => "REAL_NAME_UNAVAILABLE",
            Error::Proof(err) => err.reason(),
            Error::SigningDeviceNotActive => "DEVICE_NOT_ACTIVE",
            Error::NotYourSubject => "NOT_YOUR_SUBJECT",
            Error::FaceConsentRequired => "FACE_CONSENT_REQUIRED",
            Error::FaceCounterRequired => "FACE_COUNTER_REQUIRED",
            Error::CounterTemplateExists => "COUNTER_TEMPLATE_EXISTS",
            Error::GuardianConsentRequired => "GUARDIAN_CONSENT_REQUIRED",
            Error::GuardianNotEligible => "GUARDIAN_NOT_ELIGIBLE",
            Error::AgeUnknown => "AGE_UNKNOWN",
            other => other.kind().reason(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citypass_runtime::IntoStatus;
    use tonic::Code;

    #[test]
    fn kinds_follow_the_proto() {
        let cases = [
            (Error::invalid("name", "required"), Code::InvalidArgument),
            (Error::SubjectNotFound, Code::NotFound),
            (Error::AlreadyEnrolled, Code::AlreadyExists),
            (Error::ChallengeExpired, Code::FailedPrecondition),
            (Error::DeviceLimit { limit: 3 }, Code::FailedPrecondition),
            (Error::BadSignature, Code::Unauthenticated),
            (
                Error::Database(sqlx::Error::PoolTimedOut),
                Code::Unavailable,
            ),
            (Error::Corrupt("status"), Code::Internal),
        ];
        for (err, code) in cases {
            assert_eq!(err.into_status().code(), code);
        }
    }

    #[test]
    fn caller_facing_messages_name_the_field() {
        let status = Error::invalid("document_number", "check digit does not match").into_status();
        assert_eq!(
            status.message(),
            "document_number: check digit does not match"
        );
        let status = Error::Database(sqlx::Error::Protocol("secret".into())).into_status();
        assert!(!status.message().contains("secret"));
    }
}
