//! Why identity could not answer: one error for every call services make to it.

/// Why identity could not answer. Texts carry no ids.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The identity service is unreachable or overloaded.
    #[error("identity service unavailable")]
    Unavailable(#[source] tonic::Status),
    /// The call ran out of time.
    #[error("identity service did not answer in time")]
    DeadlineExceeded,
    /// RecordCertificate: the device no longer exists.
    #[error("device not found")]
    DeviceNotFound,
    /// RecordCertificate: the device was unbound meanwhile.
    #[error("device is not active")]
    DeviceNotActive,
    /// RecordCertificate: the device already holds as many live certificates as
    /// identity allows.
    #[error("the device holds the most live certificates allowed")]
    CertificateLimit,
    /// The answer broke the API contract (a bug on one side).
    #[error("identity service answered unexpectedly: {0}")]
    Unexpected(&'static str),
    /// Identity answered with a status the caller does not expect.
    #[error("identity service failed")]
    Failed(#[source] tonic::Status),
    /// The configured identity URL is not a valid endpoint.
    #[error("invalid identity service URL")]
    InvalidUrl(#[source] tonic::transport::Error),
}

/// A call to identity that failed on the way, as the calling service answers it:
/// DEADLINE_EXCEEDED, UNAVAILABLE, or INTERNAL for an answer it did not expect; the
/// reason is `IDENTITY_UNAVAILABLE` in every case. (What a service makes of identity's
/// refusals, a device not found or not active, is the service's own error.)
impl citypass_runtime::ServiceError for IdentityError {
    fn kind(&self) -> citypass_runtime::ErrorKind {
        use citypass_runtime::ErrorKind;
        match self {
            IdentityError::DeadlineExceeded => ErrorKind::DeadlineExceeded,
            IdentityError::Unavailable(_) => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        "IDENTITY_UNAVAILABLE"
    }
}
