//! Every way an issuer call can fail, and what kind of failure each is.
//!
//! One enum, so that the mapping to gRPC statuses is decided in one place:
//! [`ServiceError::kind`] here, and `citypass_runtime::to_status` for what the caller
//! sees. Texts of caller-facing kinds go to the caller, the others to the logs, so no
//! text here carries an id, a key, a nonce or token bytes: only which rule failed.

use citypass_runtime::{ErrorKind, ServiceError};
use citypass_token::TokenError;

use crate::identity_client::IdentityError;
use citypass_device_proof::NonceStoreError;
use citypass_device_proof::ProofError;
use citypass_revocation_follow::RevocationError;

/// Why an issuer call failed.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// `subject_id` is not the identity service's format.
    #[error("subject_id must be 32 lowercase hex characters")]
    MalformedSubjectId,
    /// `device_id` is not 32 lowercase hex characters (identity's format).
    #[error("device_id must be 32 lowercase hex characters")]
    MalformedDeviceId,
    /// `offline_public_key` is not a valid P-256 point.
    #[error("offline_public_key must be an uncompressed P-256 point (65 bytes) on the curve")]
    MalformedOfflineKey,
    /// `offline_public_key` was certified before.
    #[error("offline_public_key was certified before: make a fresh key for each certificate")]
    OfflineKeyReused,
    /// `offline_public_key` is the device's bound key.
    #[error("offline_public_key must be a fresh key, not the bound device key")]
    OfflineKeyIsDeviceKey,
    /// `requested_lifetime` is zero, negative or malformed.
    #[error("requested_lifetime must be positive")]
    BadLifetime,
    /// The device proof failed (or could not be checked).
    #[error(transparent)]
    Proof(ProofError),
    /// Identity knows no such device.
    #[error("device not found")]
    DeviceNotFound,
    /// The device is bound to another subject than the request names.
    #[error("device is not bound to this subject")]
    NotSubjectsDevice,
    /// The device is unbound.
    #[error("device is not active")]
    DeviceNotActive,
    /// The device holds as many live certificates as identity allows; one must expire
    /// first.
    #[error("the device holds the most live certificates allowed: use one it has")]
    CertificateLimit,
    /// The subject is pending, suspended or rejected.
    #[error("subject is not active")]
    SubjectNotActive,
    /// The subject is revoked.
    #[error("subject is revoked")]
    SubjectRevoked,
    /// The device is revoked.
    #[error("device is revoked")]
    DeviceRevoked,
    /// The request named only scenes the subject may not have.
    #[error("none of the requested scenes is allowed for this subject")]
    NoSceneAllowed,
    /// GetDevice failed.
    #[error("device lookup at identity failed")]
    Identity(#[source] IdentityError),
    /// RecordCertificate failed: no certificate is returned.
    #[error("recording the certificate at identity failed")]
    Record(#[source] IdentityError),
    /// The revocation state is unknown.
    #[error("revocation check failed")]
    Revocation(#[source] RevocationError),
    /// The single-use mark of an offline key could not be set.
    #[error("offline key store failed")]
    OfflineKeyStore(#[source] NonceStoreError),
    /// Signing or rendering failed (a bug or broken keys).
    #[error("signing failed")]
    Token(#[source] TokenError),
    /// A blocking task (SVG rendering) panicked or was cancelled.
    #[error("rendering task failed")]
    Task(#[source] tokio::task::JoinError),
    /// The call's deadline passed while waiting on a dependency.
    #[error("deadline exceeded")]
    DeadlineExceeded,
}

impl IssuerError {
    /// The error for a failed RecordCertificate: precise when identity said what was
    /// wrong with the device, else unavailable.
    pub(crate) fn record(err: IdentityError) -> Self {
        match err {
            IdentityError::DeviceNotFound => IssuerError::DeviceNotFound,
            IdentityError::DeviceNotActive => IssuerError::DeviceNotActive,
            IdentityError::CertificateLimit => IssuerError::CertificateLimit,
            other => IssuerError::Record(other),
        }
    }
}

impl From<RevocationError> for IssuerError {
    fn from(err: RevocationError) -> Self {
        IssuerError::Revocation(err)
    }
}

impl ServiceError for IssuerError {
    /// Stable reasons an app acts on: `CLOCK_SKEW` (fix the clock), `BAD_SIGNATURE`,
    /// `NONCE_REUSED` (sign again), `DEVICE_NOT_ACTIVE` (bind again), and so on.
    fn reason(&self) -> &'static str {
        use IssuerError as E;
        match self {
            E::MalformedSubjectId => "MALFORMED_SUBJECT_ID",
            E::MalformedDeviceId => "MALFORMED_DEVICE_ID",
            E::MalformedOfflineKey => "MALFORMED_OFFLINE_KEY",
            E::OfflineKeyReused => "OFFLINE_KEY_REUSED",
            E::OfflineKeyIsDeviceKey => "OFFLINE_KEY_IS_DEVICE_KEY",
            E::BadLifetime => "BAD_LIFETIME",
            E::Proof(proof) => proof.reason(),
            E::DeviceNotFound => "DEVICE_NOT_FOUND",
            E::NotSubjectsDevice => "DEVICE_NOT_SUBJECTS",
            E::DeviceNotActive => "DEVICE_NOT_ACTIVE",
            E::CertificateLimit => "CERTIFICATE_LIMIT",
            E::SubjectNotActive => "SUBJECT_NOT_ACTIVE",
            E::SubjectRevoked => "SUBJECT_REVOKED",
            E::DeviceRevoked => "DEVICE_REVOKED",
            E::NoSceneAllowed => "NO_SCENE_ALLOWED",
            E::Identity(_) | E::Record(_) => "IDENTITY_UNAVAILABLE",
            E::Revocation(_) => "REVOCATION_DATA_UNAVAILABLE",
            E::OfflineKeyStore(_) => "OFFLINE_KEY_STORE_UNAVAILABLE",
            E::Token(_) | E::Task(_) => "INTERNAL",
            E::DeadlineExceeded => "DEADLINE_EXCEEDED",
        }
    }

    fn kind(&self) -> ErrorKind {
        use IssuerError as E;
        match self {
            E::MalformedSubjectId
            | E::MalformedDeviceId
            | E::MalformedOfflineKey
            | E::OfflineKeyReused
            | E::OfflineKeyIsDeviceKey
            | E::BadLifetime => ErrorKind::InvalidArgument,
            E::Proof(proof) => proof.kind(),
            E::DeviceNotFound => ErrorKind::NotFound,
            E::NotSubjectsDevice
            | E::DeviceNotActive
            | E::SubjectNotActive
            | E::SubjectRevoked
            | E::DeviceRevoked
            | E::NoSceneAllowed => ErrorKind::PermissionDenied,
            E::CertificateLimit => ErrorKind::ResourceExhausted,
            E::Identity(identity) => identity.kind(),
            E::DeadlineExceeded => ErrorKind::DeadlineExceeded,
            E::Record(_) | E::Revocation(_) | E::OfflineKeyStore(_) => ErrorKind::Unavailable,
            E::Token(_) | E::Task(_) => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citypass_runtime::IntoStatus;
    use tonic::Code;

    #[test]
    fn statuses_are_precise() {
        let cases = [
            (IssuerError::MalformedSubjectId, Code::InvalidArgument),
            (
                IssuerError::Proof(ProofError::BadSignature),
                Code::Unauthenticated,
            ),
            (
                IssuerError::Proof(ProofError::Reused),
                Code::Unauthenticated,
            ),
            (IssuerError::Proof(ProofError::Stale), Code::Unauthenticated),
            (
                IssuerError::Proof(ProofError::Store(NonceStoreError::Full)),
                Code::Unavailable,
            ),
            (IssuerError::DeviceNotFound, Code::NotFound),
            (IssuerError::SubjectNotActive, Code::PermissionDenied),
            (
                IssuerError::record(IdentityError::DeadlineExceeded),
                Code::Unavailable,
            ),
            (
                IssuerError::record(IdentityError::DeviceNotActive),
                Code::PermissionDenied,
            ),
            (IssuerError::Token(TokenError::Crypto), Code::Internal),
        ];
        for (err, code) in cases {
            assert_eq!(err.into_status().code(), code);
        }
    }

    #[test]
    fn internal_texts_do_not_reach_the_caller() {
        let status = IssuerError::Record(IdentityError::Unexpected("detail")).into_status();
        assert!(!status.message().contains("detail"));
        let status = IssuerError::Proof(ProofError::BadSignature).into_status();
        assert_eq!(status.message(), "bad device signature");
    }
}
