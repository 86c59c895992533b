//! The crate's one error type, and how each variant maps to a gRPC status.
//!
//! Every failure of the payments service, from input checks to the stores, is a
//! variant here, and [`ServiceError::kind`] is the only place that decides its gRPC
//! code; [`ServiceError::reason`] gives the `google.rpc.ErrorInfo` reason. The codes
//! follow `proto/citypass/v1/payments.proto`.
//!
//! Display texts go to the caller (caller-facing kinds) or to the logs (the others),
//! so none may carry personal data: no transit account, provider token, last 4 digits
//! or card number. Messages name the offending *field*, never its value.

use std::borrow::Cow;

use citypass_device_proof::ProofError;
use citypass_identity_client::IdentityError;
use citypass_revocation_follow::RevocationError;
use citypass_runtime::{ErrorKind, ServiceError};

use crate::fare::FareError;

/// Everything that can go wrong in the payments service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is malformed (whatever the server's state).
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The request field, e.g. `provider_token`.
        field: &'static str,
        /// What is wrong with it (never its value).
        reason: Cow<'static, str>,
    },
    /// A metro station the fare table does not know.
    #[error("station_id: not a station of the fare table")]
    UnknownStation,
    /// A bus route the fare table does not know.
    #[error("station_id: not a bus route of the fare table")]
    UnknownRoute,
    /// The two stations are not joined by the network.
    #[error("station_id: no metro path joins the entry and exit stations")]
    NoPath,
    /// The transit account has an active link already.
    #[error("a payment link is active for this transit account: unlink it first")]
    AlreadyLinked,
    /// The transit account has no active link.
    #[error("no payment link is active for this transit account")]
    NotLinked,
    /// A tap needs a payment link, and there is none and no open trip to close.
    #[error("no payment link is active for this transit account and no trip is open")]
    NoPaymentLink,
    /// The gate's scan id was used for another rider, or for the other direction.
    #[error("scan_id: already used by this gate for another tap; use a fresh scan id")]
    ScanReused,
    /// The tap was voided by its gate; a voided scan is not taken again.
    #[error("scan_id: this tap was voided by its gate; use a fresh scan id")]
    TapVoided,
    /// No tap with this gate and scan id for this transit account.
    #[error("no tap with this gate_id and scan_id for this transit account")]
    TapNotFound,
    /// The void came after the configured window, or after its charge left.
    #[error("the tap can no longer be voided: {0}")]
    VoidTooLate(&'static str),
    /// Something happened to the trip after the tap being voided.
    #[error("the trip has moved on since this tap (another tap followed): it cannot be voided")]
    TripMovedOn,
    /// Another gate accepted a later scan of the tap's trip (a double tap recorded as
    /// a repeat): the rider went through there, so the trip stands.
    #[error("another gate accepted a later scan of this trip: the tap cannot be voided")]
    TapRepeated,
    /// The tap was uploaded late by an offline gate, or its trip was re-priced by such a
    /// tap: the rider went through long ago, so a gate's void cannot undo it.
    #[error(
        "the tap was uploaded late by an offline gate, or its trip was re-priced by one: it cannot be voided"
    )]
    LateTapNotVoidable,
    /// A citizen's call whose device proof is missing, stale, malformed, badly signed
    /// or replayed (or whose nonce could not be checked).
    #[error("{0}")]
    Proof(ProofError),
    /// A citizen's call from a device identity does not know.
    #[error("device not found")]
    DeviceNotFound,
    /// A citizen's call from a device that is no longer bound.
    #[error("device is not active: bind it again")]
    DeviceNotActive,
    /// A citizen's call naming a transit account that is not its device's subject's.
    #[error("transit_account: not the signing device's account")]
    NotYourAccount,
    /// A citizen's call whose subject is revoked in the revocation log.
    #[error("the subject is revoked")]
    SubjectRevoked,
    /// A citizen's call from a device revoked in the revocation log (reported lost or
    /// compromised), even if identity still shows it bound.
    #[error("the device is revoked")]
    DeviceRevoked,
    /// The revocation data is older than allowed (or never synced): no citizen's call
    /// is served on it.
    #[error("revocation state unavailable")]
    Revocation(#[source] RevocationError),
    /// Identity could not answer a citizen's call's lookups.
    #[error("identity lookup failed")]
    Identity(#[source] IdentityError),
    /// The service was started without an identity service: citizens' calls cannot be
    /// checked, so none is served.
    #[error("citizen calls are not served: no identity service is configured")]
    NoIdentity,
    /// RepayArrears with nothing owed.
    #[error("nothing is owed by this transit account")]
    NothingOwed,
    /// A provider notification signed by no key trusted for its provider, or whose
    /// signature does not verify.
    #[error("the notification's signature does not verify with a trusted key of its provider")]
    NotificationSignature,
    /// A provider notification naming a key that no charge was sent under.
    #[error("out_trade_no: no charge was sent under this key")]
    ChargeNotFound,
    /// A provider notification whose amount is not the charge's: applied to nothing.
    #[error("amount_fen: not the amount of the charge sent under this key")]
    AmountMismatch,
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
    /// A sum of money that cannot be represented (impossible with a checked fare table;
    /// refused rather than wrapped).
    #[error("amount out of range: {0}")]
    AmountOutOfRange(&'static str),
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

impl From<FareError> for Error {
    fn from(err: FareError) -> Self {
        match err {
            FareError::UnknownStation => Error::UnknownStation,
            FareError::UnknownRoute => Error::UnknownRoute,
            FareError::NoPath => Error::NoPath,
        }
    }
}

impl ServiceError for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument { .. }
            | Error::UnknownStation
            | Error::UnknownRoute
            | Error::NoPath => ErrorKind::InvalidArgument,
            Error::NotLinked | Error::TapNotFound | Error::NothingOwed | Error::ChargeNotFound => {
                ErrorKind::NotFound
            }
            Error::NotificationSignature => ErrorKind::Unauthenticated,
            Error::AlreadyLinked | Error::ScanReused => ErrorKind::AlreadyExists,
            Error::Proof(proof) => proof.kind(),
            Error::DeviceNotFound => ErrorKind::NotFound,
            Error::DeviceNotActive
            | Error::NotYourAccount
            | Error::SubjectRevoked
            | Error::DeviceRevoked => ErrorKind::PermissionDenied,
            Error::Revocation(_) => ErrorKind::Unavailable,
            Error::Identity(identity) => identity.kind(),
            Error::NoIdentity => ErrorKind::Unavailable,
            Error::NoPaymentLink
            | Error::TapVoided
            | Error::VoidTooLate(_)
            | Error::TripMovedOn
            | Error::TapRepeated
            | Error::LateTapNotVoidable
            | Error::AmountMismatch => ErrorKind::FailedPrecondition,
            Error::Database(err) => citypass_postgres::error_kind(err),
            Error::Config(_)
            | Error::Migrate(_)
            | Error::Corrupt(_)
            | Error::AmountOutOfRange(_)
            | Error::Randomness
            | Error::Poisoned => ErrorKind::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Error::UnknownStation => "UNKNOWN_STATION",
            Error::UnknownRoute => "UNKNOWN_ROUTE",
            Error::NoPath => "NO_PATH",
            Error::AlreadyLinked => "ALREADY_LINKED",
            Error::NotLinked => "NOT_LINKED",
            Error::NoPaymentLink => "NO_PAYMENT_LINK",
            Error::ScanReused => "SCAN_REUSED",
            Error::TapVoided => "TAP_VOIDED",
            Error::TapNotFound => "TAP_NOT_FOUND",
            Error::VoidTooLate(_) => "VOID_TOO_LATE",
            Error::TripMovedOn => "TRIP_MOVED_ON",
            Error::TapRepeated => "TAP_REPEATED",
            Error::LateTapNotVoidable => "LATE_TAP_NOT_VOIDABLE",
            Error::NothingOwed => "NOTHING_OWED",
            Error::NotificationSignature => "NOTIFICATION_SIGNATURE_INVALID",
            Error::ChargeNotFound => "CHARGE_NOT_FOUND",
            Error::AmountMismatch => "AMOUNT_MISMATCH",
            // The issuer's reasons for the same checks, so an app reads both alike.
            Error::Proof(proof) => proof.reason(),
            Error::DeviceNotFound => "DEVICE_NOT_FOUND",
            Error::DeviceNotActive => "DEVICE_NOT_ACTIVE",
            Error::NotYourAccount => "NOT_YOUR_ACCOUNT",
            Error::SubjectRevoked => "SUBJECT_REVOKED",
            Error::DeviceRevoked => "DEVICE_REVOKED",
            Error::Revocation(_) => "REVOCATION_DATA_UNAVAILABLE",
            Error::Identity(_) | Error::NoIdentity => "IDENTITY_UNAVAILABLE",
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
    fn kinds_and_reasons_follow_the_proto() {
        let cases = [
            (
                Error::invalid("last4", "4 digits"),
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            ),
            (
                Error::UnknownStation,
                Code::InvalidArgument,
                "UNKNOWN_STATION",
            ),
            (Error::AlreadyLinked, Code::AlreadyExists, "ALREADY_LINKED"),
            (Error::NotLinked, Code::NotFound, "NOT_LINKED"),
            (
                Error::NoPaymentLink,
                Code::FailedPrecondition,
                "NO_PAYMENT_LINK",
            ),
            (Error::TapRepeated, Code::FailedPrecondition, "TAP_REPEATED"),
            (
                Error::VoidTooLate("window"),
                Code::FailedPrecondition,
                "VOID_TOO_LATE",
            ),
            (
                Error::Database(sqlx::Error::PoolTimedOut),
                Code::Unavailable,
                "UNAVAILABLE",
            ),
            (Error::Corrupt("status"), Code::Internal, "INTERNAL"),
            (
                Error::Proof(ProofError::Missing),
                Code::Unauthenticated,
                "PROOF_MISSING",
            ),
            (
                Error::Proof(ProofError::Reused),
                Code::Unauthenticated,
                "NONCE_REUSED",
            ),
            (Error::DeviceNotFound, Code::NotFound, "DEVICE_NOT_FOUND"),
            (
                Error::DeviceNotActive,
                Code::PermissionDenied,
                "DEVICE_NOT_ACTIVE",
            ),
            (
                Error::NotYourAccount,
                Code::PermissionDenied,
                "NOT_YOUR_ACCOUNT",
            ),
            (Error::NoIdentity, Code::Unavailable, "IDENTITY_UNAVAILABLE"),
            (
                Error::SubjectRevoked,
                Code::PermissionDenied,
                "SUBJECT_REVOKED",
            ),
            (
                Error::DeviceRevoked,
                Code::PermissionDenied,
                "DEVICE_REVOKED",
            ),
            (
                Error::Revocation(RevocationError {
                    reason: "not synced".into(),
                }),
                Code::Unavailable,
                "REVOCATION_DATA_UNAVAILABLE",
            ),
        ];
        for (err, code, reason) in cases {
            let status = err.into_status();
            assert_eq!(status.code(), code);
            assert_eq!(
                citypass_runtime::reason_of(&status).as_deref(),
                Some(reason)
            );
        }
    }

    #[test]
    fn internal_details_stay_out_of_the_status() {
        let status = Error::Database(sqlx::Error::Protocol("secret".into())).into_status();
        assert!(!status.message().contains("secret"));
    }
}
