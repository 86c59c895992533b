//! Time on the command line, in one place.
//!
//! citypass objects carry whole Unix seconds. The command shows every time as RFC 3339
//! in local time with the Unix value beside it (`2026-12-02T14:03:05+08:00 (1796191385)`),
//! puts it in JSON as two fields (`expires_at`, RFC 3339, and `expires_at_unix`), and
//! takes a time argument in either form ([`parse`]).
//!
//! The local offset comes from the `time` crate, which reads it only while the process
//! has one thread (the C library's time zone state is not thread-safe). [`init`] records
//! the offset at start, before any runtime spawns threads; a time shown later from a
//! multi-threaded runtime uses its own offset when it can be read and that one
//! otherwise (the instant is right either way, only the offset may differ across a
//! daylight-saving change), and UTC (`Z`) when none could be read.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Now, in Unix seconds.
pub fn now() -> anyhow::Result<u64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("system clock is before 1970")?
        .as_secs())
}

/// The local offset read at start ([`init`]).
static START_OFFSET: OnceLock<UtcOffset> = OnceLock::new();

/// Reads the local offset while the process is single-threaded; call first in `main`.
pub fn init() {
    let _ = START_OFFSET.set(UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC));
}

/// The local offset at `at`: its own if it can be read now, else the one read at
/// start, else UTC.
fn local_offset_at(at: OffsetDateTime) -> UtcOffset {
    UtcOffset::local_offset_at(at)
        .ok()
        .or_else(|| START_OFFSET.get().copied())
        .unwrap_or(UtcOffset::UTC)
}

/// `unix` as RFC 3339 in local time (`2026-12-02T14:03:05+08:00`), or `None` beyond
/// what RFC 3339 can write (after the year 9999).
pub fn rfc3339(unix: u64) -> Option<String> {
    let at = OffsetDateTime::from_unix_timestamp(i64::try_from(unix).ok()?).ok()?;
    // An offset RFC 3339 cannot write (whole seconds, as some historic zones have)
    // falls back to UTC.
    at.checked_to_offset(local_offset_at(at))
        .and_then(|local| local.format(&Rfc3339).ok())
        .or_else(|| at.format(&Rfc3339).ok())
}

/// A time as the command prints it: `2026-12-02T14:03:05+08:00 (1796191385)`.
pub fn show(unix: u64) -> String {
    match rfc3339(unix) {
        Some(text) => format!("{text} ({unix})"),
        None => format!("after 9999-12-31 ({unix})"),
    }
}

/// A system time as the command prints it (whole seconds; before 1970 shows as 1970).
pub fn show_system(at: SystemTime) -> String {
    show(at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// A protobuf timestamp's Unix seconds; `None` when unset or before 1970.
pub fn from_proto(at: Option<&citypass_proto::prost_types::Timestamp>) -> Option<u64> {
    at.and_then(citypass_proto::time::seconds)
}

/// A time argument: RFC 3339 (`2026-12-02T14:03:05+08:00`, `2026-12-02T06:03:05Z`;
/// a fraction of a second is dropped) or Unix seconds (`1796191385`). A clap value
/// parser, so a bad value is a usage error (exit 2).
pub fn parse(arg: &str) -> Result<u64, String> {
    let arg = arg.trim();
    if !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_digit()) {
        return arg
            .parse::<u64>()
            .map_err(|_| format!("{arg:?} is too large for Unix seconds"));
    }
    let at = OffsetDateTime::parse(arg, &Rfc3339).map_err(|e| {
        format!("{arg:?} is neither RFC 3339 (2026-12-02T14:03:05+08:00) nor Unix seconds ({e})")
    })?;
    u64::try_from(at.unix_timestamp()).map_err(|_| format!("{arg:?} is before 1970"))
}

/// `value` (a JSON object) with, for each `(name, time)`, the fields `name` (RFC 3339,
/// local time) and `name_unix` (integer); both `null` when the time is absent.
pub fn with_times(
    mut value: serde_json::Value,
    times: &[(&str, Option<u64>)],
) -> serde_json::Value {
    if let Some(object) = value.as_object_mut() {
        for (name, unix) in times {
            object.insert(
                (*name).to_owned(),
                unix.and_then(rfc3339)
                    .map_or(serde_json::Value::Null, Into::into),
            );
            object.insert(
                format!("{name}_unix"),
                unix.map_or(serde_json::Value::Null, Into::into),
            );
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_of_an_argument_name_the_same_second() {
        assert_eq!(parse("1796191385"), Ok(1_796_191_385));
        assert_eq!(parse("2026-12-02T14:03:05+08:00"), Ok(1_796_191_385));
        assert_eq!(parse("2026-12-02T06:03:05Z"), Ok(1_796_191_385));
        assert_eq!(parse("2026-12-02t06:03:05.75z"), Ok(1_796_191_385));
        assert_eq!(parse("0"), Ok(0));
    }

    #[test]
    fn a_malformed_time_is_refused_with_both_forms_named() {
        for bad in [
            "",
            "-5",
            "soon",
            "2026-12-02",
            "2026-12-02 14:03:05",
            "2026-13-02T14:03:05Z",
            "1969-12-31T23:59:59Z",
            "99999999999999999999999",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        let message = parse("soon").unwrap_err();
        assert!(message.contains("RFC 3339") && message.contains("Unix seconds"));
    }

    #[test]
    fn a_time_shows_as_rfc3339_with_its_unix_value_and_reads_back() {
        let shown = show(1_796_191_385);
        assert!(shown.ends_with(" (1796191385)"), "{shown}");
        let text = shown.trim_end_matches(" (1796191385)");
        assert_eq!(parse(text), Ok(1_796_191_385), "{text}");
        assert_eq!(show(u64::MAX), format!("after 9999-12-31 ({})", u64::MAX));
        assert_eq!(rfc3339(253_402_300_800), None, "year 10000");
    }

    #[test]
    fn json_carries_each_time_twice_and_null_when_absent() {
        let value = with_times(
            serde_json::json!({"kind": "x"}),
            &[
                ("expires_at", Some(1_796_191_385)),
                ("revoked_before", None),
            ],
        );
        assert_eq!(value["expires_at_unix"], 1_796_191_385);
        let text = value["expires_at"].as_str().unwrap_or_default();
        assert_eq!(parse(text), Ok(1_796_191_385));
        assert!(value["revoked_before"].is_null() && value["revoked_before_unix"].is_null());
        assert_eq!(value["kind"], "x");
    }
}
