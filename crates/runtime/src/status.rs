//! The one place where a service's errors become gRPC statuses.
//!
//! Each crate's error type says what *kind* of failure it is ([`ServiceError::kind`]); this
//! module alone decides what the caller sees. The rule that matters: a caller learns what
//! was wrong with *its request*, never what went wrong *inside the server*. Internal errors
//! (and unavailable dependencies, and our own timeouts) are logged with their full cause
//! chain and answered with a fixed message plus the trace id, so an operator can find the
//! log line and a caller learns nothing about our internals or anyone's personal data.
//!
//! Error `Display` texts must therefore never contain personal data or token bytes: the
//! text of a caller-facing kind goes to the caller, and the text of any other kind goes to
//! the logs.

use opentelemetry::trace::TraceContextExt;
use tonic::{Code, Status};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// What kind of failure an error is, in gRPC's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed, whatever the server's state.
    InvalidArgument,
    /// What the request names does not exist.
    NotFound,
    /// What the request would create exists already.
    AlreadyExists,
    /// The system is not in a state in which the request can be honoured (e.g. arrears).
    FailedPrecondition,
    /// The caller is known but not allowed to do this.
    PermissionDenied,
    /// The caller could not be identified.
    Unauthenticated,
    /// A quota or rate limit of the caller is used up.
    ResourceExhausted,
    /// The request names a position past the end of something (e.g. an epoch beyond
    /// the head of a log): the caller may retry once it exists.
    OutOfRange,
    /// A dependency is unreachable; the caller may retry with backoff.
    Unavailable,
    /// The work did not finish in time.
    DeadlineExceeded,
    /// A bug or an unexpected failure; never the caller's fault.
    Internal,
}

impl ErrorKind {
    /// The gRPC status code for this kind.
    pub fn code(self) -> Code {
        match self {
            ErrorKind::InvalidArgument => Code::InvalidArgument,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::AlreadyExists => Code::AlreadyExists,
            ErrorKind::FailedPrecondition => Code::FailedPrecondition,
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::ResourceExhausted => Code::ResourceExhausted,
            ErrorKind::OutOfRange => Code::OutOfRange,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
            ErrorKind::Internal => Code::Internal,
        }
    }

    /// Whether the error's own text may be shown to the caller. True only for kinds that
    /// describe the caller's request; the others describe the server's insides.
    pub fn is_caller_facing(self) -> bool {
        !matches!(
            self,
            ErrorKind::Internal | ErrorKind::Unavailable | ErrorKind::DeadlineExceeded
        )
    }

    fn generic_message(self) -> &'static str {
        match self {
            ErrorKind::Unavailable => "service temporarily unavailable",
            ErrorKind::DeadlineExceeded => "request timed out",
            _ => "internal error",
        }
    }
}

/// The `domain` of every `google.rpc.ErrorInfo` citypass returns.
pub const ERROR_DOMAIN: &str = "citypass";

impl ErrorKind {
    /// The kind's name, the reason of errors that name none of their own.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
            ErrorKind::NotFound => "NOT_FOUND",
            ErrorKind::AlreadyExists => "ALREADY_EXISTS",
            ErrorKind::FailedPrecondition => "FAILED_PRECONDITION",
            ErrorKind::PermissionDenied => "PERMISSION_DENIED",
            ErrorKind::Unauthenticated => "UNAUTHENTICATED",
            ErrorKind::ResourceExhausted => "RESOURCE_EXHAUSTED",
            ErrorKind::OutOfRange => "OUT_OF_RANGE",
            ErrorKind::Unavailable => "UNAVAILABLE",
            ErrorKind::DeadlineExceeded => "DEADLINE_EXCEEDED",
            ErrorKind::Internal => "INTERNAL",
        }
    }
}

/// Implemented by every crate's error type: how it maps to a gRPC status.
pub trait ServiceError: std::error::Error {
    /// The kind of failure.
    fn kind(&self) -> ErrorKind;

    /// A machine-readable reason (`UPPER_SNAKE_CASE`, stable, no personal data), sent as
    /// a `google.rpc.ErrorInfo` detail so that a caller tells "fix your clock" from "bad
    /// signature" without parsing text. Defaults to the kind's name.
    fn reason(&self) -> &'static str {
        self.kind().reason()
    }
}

/// A status carrying `reason` as a `google.rpc.ErrorInfo` in domain [`ERROR_DOMAIN`].
pub fn status_with_reason(code: Code, message: impl Into<String>, reason: &'static str) -> Status {
    use tonic_types::{ErrorDetails, StatusExt as _};
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new()),
    )
}

/// The ErrorInfo reason a status carries, if any (for clients and tests).
pub fn reason_of(status: &Status) -> Option<String> {
    use tonic_types::StatusExt as _;
    status
        .get_details_error_info()
        .filter(|info| info.domain == ERROR_DOMAIN)
        .map(|info| info.reason)
}

/// Converts a service error to the status the caller receives, logging what the caller
/// must not see.
pub fn to_status<E: ServiceError + ?Sized>(err: &E) -> Status {
    let kind = err.kind();
    let reason = err.reason();
    if kind.is_caller_facing() {
        return status_with_reason(kind.code(), err.to_string(), reason);
    }
    let chain = cause_chain(err);
    match kind {
        ErrorKind::Internal => tracing::error!(error = %chain, "internal error"),
        _ => tracing::warn!(error = %chain, code = ?kind.code(), "request failed"),
    }
    let message = match current_trace_id() {
        Some(trace_id) => format!("{} (trace {trace_id})", kind.generic_message()),
        None => kind.generic_message().to_owned(),
    };
    status_with_reason(kind.code(), message, reason)
}

/// `err.into_status()` / `.map_err(IntoStatus::into_status)` for any [`ServiceError`].
pub trait IntoStatus {
    /// See [`to_status`].
    fn into_status(self) -> Status;
}

impl<E: ServiceError> IntoStatus for E {
    fn into_status(self) -> Status {
        to_status(&self)
    }
}

/// `outer: middle: inner`, so one log line holds the whole story.
fn cause_chain<E: std::error::Error + ?Sized>(err: &E) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// The trace id of the current span, if it is being traced: a safe handle for the caller
/// to quote and the operator to search for.
fn current_trace_id() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum StoreError {
        #[error("subject not found")]
        NotFound,
        #[error("query failed")]
        Query(#[source] std::io::Error),
    }

    impl ServiceError for StoreError {
        fn kind(&self) -> ErrorKind {
            match self {
                StoreError::NotFound => ErrorKind::NotFound,
                StoreError::Query(_) => ErrorKind::Internal,
            }
        }
    }

    #[test]
    fn caller_facing_kinds_keep_their_message() {
        let status = StoreError::NotFound.into_status();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "subject not found");
        assert_eq!(reason_of(&status).as_deref(), Some("NOT_FOUND"));
        let hidden = StoreError::Query(std::io::Error::other("x")).into_status();
        assert_eq!(reason_of(&hidden).as_deref(), Some("INTERNAL"));
    }

    #[test]
    fn internal_errors_hide_their_text() {
        let secret = "connection to 10.1.2.3 refused for user alice@example.com";
        let err = StoreError::Query(std::io::Error::other(secret));
        let status = to_status(&err);
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
        assert!(!status.message().contains("10.1.2.3"));
        assert!(!status.message().contains("query failed"));
        assert!(
            cause_chain(&err).contains(secret),
            "the log keeps the cause"
        );
    }

    #[test]
    fn a_traced_internal_error_quotes_the_trace_id_only() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber =
            crate::telemetry::subscriber("off", crate::config::LogFormat::Text, &provider)
                .expect("subscriber");
        let _installed = tracing::subscriber::set_default(subscriber);
        let span = tracing::info_span!("request");
        let _entered = span.enter();
        let trace_id = span.context().span().span_context().trace_id().to_string();

        let status = StoreError::Query(std::io::Error::other("secret detail")).into_status();
        assert_eq!(
            status.message(),
            format!("internal error (trace {trace_id})")
        );
    }

    #[test]
    fn every_kind_has_its_code() {
        assert_eq!(ErrorKind::Unavailable.code(), Code::Unavailable);
        assert_eq!(ErrorKind::ResourceExhausted.code(), Code::ResourceExhausted);
        assert!(!ErrorKind::DeadlineExceeded.is_caller_facing());
        assert!(ErrorKind::PermissionDenied.is_caller_facing());
    }
}
