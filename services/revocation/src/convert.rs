//! Between the generated proto messages and the model: the only place that knows both.
//!
//! Entries themselves convert in `citypass_revocation::proto` (feature `proto`), which
//! followers share; the request-side checks (kinds, reasons, times) are here. Enum
//! numbers are the same on both sides.

use citypass_proto::prost_types::Timestamp;
use citypass_proto::v1 as pb;
use citypass_revocation::{ReinstateReason, RevocationReason, TargetKind};

use crate::error::Error;
pub use citypass_proto::time::timestamp;

use crate::model::Record;

/// A request's timestamp as Unix seconds, rounded up: codes carry whole seconds, and
/// `iat < 100.5` is `iat < 101` for them. Refuses negative or malformed timestamps.
pub fn seconds_ceil(field: &'static str, t: &Timestamp) -> Result<u64, Error> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(Error::invalid(field, "nanos must be within 0..1e9"));
    }
    let seconds = u64::try_from(t.seconds)
        .map_err(|_| Error::invalid(field, "before 1970 is not accepted"))?;
    // Far beyond any valid time; refused by the callers' range checks.
    Ok(seconds.saturating_add(u64::from(t.nanos > 0)))
}

/// The kind named by a request field.
pub fn target_kind(field: &'static str, code: i32) -> Result<TargetKind, Error> {
    TargetKind::from_code(code).ok_or_else(|| {
        if code == 0 {
            Error::invalid(
                field,
                "required: TARGET_KIND_UNSPECIFIED is not a target kind",
            )
        } else {
            Error::invalid(field, format!("unknown target kind {code}"))
        }
    })
}

/// The revocation reason named by a request field.
pub fn revocation_reason(code: i32) -> Result<RevocationReason, Error> {
    RevocationReason::from_code(code)
        .ok_or_else(|| Error::invalid("reason", format!("unknown revocation reason {code}")))
}

/// The reinstatement reason named by a request field.
pub fn reinstate_reason(code: i32) -> Result<ReinstateReason, Error> {
    ReinstateReason::from_code(code)
        .ok_or_else(|| Error::invalid("reason", format!("unknown reinstate reason {code}")))
}

/// A log record as the API's entry.
pub fn entry(record: &Record) -> pb::RevocationEntry {
    citypass_revocation::proto::to_proto(&record.entry, &record.actor, &record.note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_times_round_up_to_whole_seconds() {
        let t = |seconds, nanos| Timestamp { seconds, nanos };
        assert_eq!(seconds_ceil("f", &t(100, 0)).unwrap(), 100);
        assert_eq!(seconds_ceil("f", &t(100, 1)).unwrap(), 101);
        assert!(seconds_ceil("f", &t(-1, 0)).is_err());
        assert!(seconds_ceil("f", &t(100, 1_000_000_000)).is_err());
        assert!(seconds_ceil("f", &t(100, -1)).is_err());
    }

    #[test]
    fn kinds_are_required() {
        assert_eq!(
            target_kind("target_kind", 0).unwrap_err().to_string(),
            "target_kind: required: TARGET_KIND_UNSPECIFIED is not a target kind"
        );
        assert_eq!(
            target_kind("target_kind", 9).unwrap_err().to_string(),
            "target_kind: unknown target kind 9"
        );
        assert_eq!(target_kind("k", 5).unwrap(), TargetKind::Key);
    }
}
