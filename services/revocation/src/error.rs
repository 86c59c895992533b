//! The crate's one error type, and how each variant becomes a gRPC status.
//!
//! [`ServiceError::kind`] decides the code for every variant and
//! `citypass_runtime::to_status` (`IntoStatus::into_status`, called only in
//! [`crate::service`]) what the caller sees.
//!
//! Texts of caller-facing variants go to the caller; they name the field and what is
//! wrong with it, never a target id.

use std::borrow::Cow;

use citypass_revocation::TargetError;
use citypass_runtime::{ErrorKind, ServiceError};

/// Everything that can go wrong in the revocation service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is malformed.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The request field.
        field: &'static str,
        /// What is wrong with it (never its value).
        reason: Cow<'static, str>,
    },
    /// A target id is malformed (its text names the field).
    #[error(transparent)]
    Target(#[from] TargetError),
    /// Reinstate: the target's latest entry is not a revocation.
    #[error("the target is not revoked: nothing to reinstate")]
    NotRevoked,
    /// ListRevocations/WatchRevocations from an epoch the log has not reached.
    #[error("epoch {epoch} is beyond the head of the log ({head})")]
    EpochBeyondHead {
        /// The epoch asked for.
        epoch: u64,
        /// The log's head.
        head: u64,
    },
    /// PostgreSQL failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// The schema migrations failed (start-up only).
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The identity service could not list certificates.
    #[error("certificate directory: {0}")]
    Directory(#[from] DirectoryError),
    /// The snapshot could not be signed (no usable key).
    #[error("snapshot signing key unavailable: {0}")]
    Signer(String),
    /// This replica has not heard from the log recently enough to vouch for its data.
    #[error("revocation data is stale: the log has not been read for {0:?}")]
    Stale(std::time::Duration),
    /// The server is shutting down: a Watch stream ends so that the watcher reconnects
    /// to a replica that stays.
    #[error("the server is shutting down: reconnect")]
    ShuttingDown,
    /// A stored row does not decode: a bug or a hand-edited row.
    #[error("stored data is invalid: {0}")]
    Corrupt(&'static str),
    /// The configuration cannot be used (start-up only).
    #[error("invalid configuration: {0}")]
    Config(String),
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

impl ServiceError for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument { .. } | Error::Target(_) => ErrorKind::InvalidArgument,
            Error::EpochBeyondHead { .. } => ErrorKind::OutOfRange,
            Error::NotRevoked => ErrorKind::FailedPrecondition,
            Error::Database(err) => citypass_postgres::error_kind(err),
            Error::Directory(err) => err.kind(),
            Error::Stale(_) | Error::ShuttingDown => ErrorKind::Unavailable,
            Error::Migrate(_) | Error::Signer(_) | Error::Corrupt(_) | Error::Config(_) => {
                ErrorKind::Internal
            }
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Error::ShuttingDown => "SHUTTING_DOWN",
            other => other.kind().reason(),
        }
    }
}

/// Why the certificates could not be listed. Texts carry no ids.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Identity is unreachable, overloaded or too slow.
    #[error("identity service unavailable")]
    Unavailable(#[source] tonic::Status),
    /// The answer broke the API contract (a bug on one side).
    #[error("identity service answered unexpectedly: {0}")]
    Unexpected(&'static str),
    /// Identity refused the request (a bug on our side).
    #[error("identity service refused the request")]
    Failed(#[source] tonic::Status),
    /// The configured identity URL is not a valid endpoint.
    #[error("invalid identity service URL")]
    InvalidUrl(#[source] tonic::transport::Error),
}

impl DirectoryError {
    /// The status kind of a Revoke that failed because of this.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DirectoryError::Unavailable(_) => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citypass_runtime::IntoStatus;
    use tonic::Code;

    #[test]
    fn codes_follow_the_proto() {
        let cases = [
            (
                Error::invalid("target_kind", "required"),
                Code::InvalidArgument,
            ),
            (Error::Target(TargetError::Empty), Code::InvalidArgument),
            (Error::NotRevoked, Code::FailedPrecondition),
            (
                Error::EpochBeyondHead { epoch: 9, head: 3 },
                Code::OutOfRange,
            ),
            (Error::Database(sqlx::Error::PoolClosed), Code::Unavailable),
            (
                Error::Database(sqlx::Error::PoolTimedOut),
                Code::Unavailable,
            ),
            (
                Error::Stale(std::time::Duration::from_secs(9)),
                Code::Unavailable,
            ),
            (Error::Corrupt("action"), Code::Internal),
        ];
        for (err, code) in cases {
            assert_eq!(err.into_status().code(), code);
        }
        let status = Error::EpochBeyondHead { epoch: 9, head: 3 }.into_status();
        assert_eq!(
            status.message(),
            "epoch 9 is beyond the head of the log (3)"
        );
        let status = Error::Target(TargetError::Empty).into_status();
        assert_eq!(status.message(), "target_id: required");
    }
}
