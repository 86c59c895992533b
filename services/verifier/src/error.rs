//! Every way a verifier call can fail (as opposed to a code being refused, which is a
//! normal DENY answer), and what kind of failure each is.
//!
//! One enum, so that the mapping to gRPC statuses is decided in one place:
//! [`ServiceError::kind`] here, and `citypass_runtime::to_status` for what the caller
//! sees. No text here carries a gate's request fields, a code or an id.

use citypass_runtime::{ErrorKind, ServiceError};

/// Why a verifier call was not answered.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// `gate_id` is empty.
    #[error("gate_id is required")]
    MissingGateId,
    /// `scan_id` is empty or longer than 128 bytes.
    #[error("scan_id is required, at most 128 bytes")]
    BadScanId,
    /// `scene` is unspecified or unknown.
    #[error("scene is required")]
    MissingScene,
    /// `qr_text` is empty.
    #[error("qr_text is required")]
    MissingCode,
    /// `direction` is not a known value.
    #[error("direction is not a known value")]
    BadDirection,
    /// `station_id` is longer than 128 bytes.
    #[error("station_id is at most 128 bytes")]
    BadStationId,
    /// A metro gate that goes both ways was not told which way this scan goes.
    #[error("direction is required at a gate that goes both ways")]
    DirectionRequired,
    /// The direction is not the gate's (or the gate is not a metro gate).
    #[error("direction does not match the gate")]
    DirectionMismatch,
    /// A VerifyStream message without its request.
    #[error("request is required")]
    MissingRequest,
    /// The call has no authenticated gate (the table lets only gates through, so this
    /// is a server without TLS or a mesh that forwards no identity).
    #[error("the caller is not an authenticated gate")]
    NotAGate,
    /// The request names another gate than the caller's certificate.
    #[error("gate_id is not the authenticated gate")]
    GateMismatch,
    /// An upload from a gate the registry does not hold.
    #[error("the gate is not in the gate registry")]
    UnknownGate,
    /// An upload naming another scene than its gate's.
    #[error("scene is not the gate's scene")]
    SceneMismatch,
    /// An upload of more scans than one call takes.
    #[error("at most 64 scans per upload")]
    TooManyScans,
    /// A ListFraudSignals page token this service did not give out.
    #[error("page_token is not one this service gave out")]
    BadPageToken,
    /// `page_size` is negative.
    #[error("page_size must not be negative")]
    BadPageSize,
    /// The fraud log did not answer.
    #[error("the fraud log is unavailable")]
    FraudLogUnavailable,
    /// A void at a gate that is neither a metro gate nor a bus reader.
    #[error("only metro gates and bus readers void taps")]
    NotATransitGate,
    /// A void whose code no longer checks (or whose holder cannot be read).
    #[error("the code does not check")]
    CodeRefused,
    /// Payments has no tap of this gate and scan for the code's holder.
    #[error("no such tap")]
    TapNotFound,
    /// Payments refused the void (its reason: `VOID_TOO_LATE`, `TRIP_MOVED_ON`,
    /// `TAP_REPEATED`, otherwise `VOID_REFUSED`).
    #[error("the void was refused ({0})")]
    VoidRefused(&'static str),
    /// A live face sent to a scene whose face policy is `off` (or that has no counter).
    #[error("this scene takes no face")]
    FaceNotUsedHere,
    /// A VerifyFace request without a live face.
    #[error("live_face is required")]
    MissingFace,
    /// The gate made more VerifyFace calls than its allowance
    /// (`face.pass.per_gate_per_second`).
    #[error("too many face-pass calls from this gate")]
    FacePassRateLimited,
    /// A live face that is not 512 finite numbers of unit length.
    #[error("live_face is not a usable embedding: {0}")]
    BadFaceEmbedding(citypass_face::EmbeddingError),
    /// Payments (or identity, for the holder) did not answer in time.
    #[error("payments unavailable")]
    TransitUnavailable,
}

impl ServiceError for VerifierError {
    fn reason(&self) -> &'static str {
        use VerifierError as E;
        match self {
            E::MissingGateId => "MISSING_GATE_ID",
            E::BadScanId => "BAD_SCAN_ID",
            E::MissingScene => "MISSING_SCENE",
            E::MissingCode => "MISSING_CODE",
            E::BadDirection => "BAD_DIRECTION",
            E::BadStationId => "BAD_STATION_ID",
            E::DirectionRequired => "DIRECTION_REQUIRED",
            E::DirectionMismatch => "DIRECTION_MISMATCH",
            E::MissingRequest => "MISSING_REQUEST",
            E::NotAGate => "NOT_A_GATE",
            E::GateMismatch => "GATE_MISMATCH",
            E::UnknownGate => "UNKNOWN_GATE",
            E::SceneMismatch => "SCENE_MISMATCH",
            E::TooManyScans => "TOO_MANY_SCANS",
            E::BadPageToken => "BAD_PAGE_TOKEN",
            E::BadPageSize => "BAD_PAGE_SIZE",
            E::FraudLogUnavailable => "FRAUD_LOG_UNAVAILABLE",
            E::NotATransitGate => "NOT_A_TRANSIT_GATE",
            E::CodeRefused => "CODE_REFUSED",
            E::TapNotFound => "TAP_NOT_FOUND",
            E::VoidRefused(reason) => reason,
            E::TransitUnavailable => "PAYMENTS_UNAVAILABLE",
            E::FaceNotUsedHere => "FACE_NOT_USED_HERE",
            E::BadFaceEmbedding(_) => "BAD_FACE_EMBEDDING",
            E::MissingFace => "MISSING_FACE",
            E::FacePassRateLimited => "FACE_PASS_RATE_LIMITED",
        }
    }

    fn kind(&self) -> ErrorKind {
        use VerifierError as E;
        match self {
            E::MissingGateId
            | E::BadScanId
            | E::MissingScene
            | E::MissingCode
            | E::BadDirection
            | E::BadStationId
            | E::DirectionRequired
            | E::DirectionMismatch
            | E::MissingRequest
            | E::SceneMismatch
            | E::TooManyScans
            | E::BadPageToken
            | E::BadPageSize
            | E::FaceNotUsedHere
            | E::BadFaceEmbedding(_)
            | E::MissingFace => ErrorKind::InvalidArgument,
            E::NotAGate | E::GateMismatch => ErrorKind::PermissionDenied,
            E::UnknownGate | E::NotATransitGate | E::CodeRefused | E::VoidRefused(_) => {
                ErrorKind::FailedPrecondition
            }
            E::TapNotFound => ErrorKind::NotFound,
            E::FraudLogUnavailable | E::TransitUnavailable => ErrorKind::Unavailable,
            E::FacePassRateLimited => ErrorKind::ResourceExhausted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citypass_runtime::{IntoStatus, reason_of};
    use tonic::Code;

    #[test]
    fn statuses_are_precise() {
        let cases = [
            (
                VerifierError::BadScanId,
                Code::InvalidArgument,
                "BAD_SCAN_ID",
            ),
            (
                VerifierError::GateMismatch,
                Code::PermissionDenied,
                "GATE_MISMATCH",
            ),
            (
                VerifierError::NotAGate,
                Code::PermissionDenied,
                "NOT_A_GATE",
            ),
            (VerifierError::TapNotFound, Code::NotFound, "TAP_NOT_FOUND"),
            (
                VerifierError::VoidRefused("VOID_TOO_LATE"),
                Code::FailedPrecondition,
                "VOID_TOO_LATE",
            ),
            (
                VerifierError::TransitUnavailable,
                Code::Unavailable,
                "PAYMENTS_UNAVAILABLE",
            ),
        ];
        for (err, code, reason) in cases {
            let status = err.into_status();
            assert_eq!(status.code(), code);
            assert_eq!(reason_of(&status).as_deref(), Some(reason));
        }
    }
}
