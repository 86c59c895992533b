//! Durations in configuration are written with their unit (`250ms`, `5s`, `2m`, `1h`).
//!
//! A bare number is refused on purpose: `timeout: 5` could mean seconds or milliseconds, and
//! guessing wrong by a factor of 1000 is the kind of mistake that only shows under load.
//! Use it on a field with `#[serde(deserialize_with = "citypass_runtime::config::duration::deserialize")]`.
//!
//! Every duration a service is configured with has a documented maximum, checked as
//! the file is read ([`deserialize_within`]), so that an absurd value (`1000000h`) is
//! refused at start-up naming its key, rather than overflowing a time computed from it
//! or turning a timeout into "never" (security review, smaller findings).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration `{0}`: expected a whole number followed by a unit ms, s, m or h (e.g. 250ms, 5s)"
)]
pub struct DurationError(pub String);

/// Parses `<whole number><unit>` with unit `ms`, `s`, `m` or `h`.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let err = || DurationError(text.to_owned());
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits.parse().map_err(|_| err())?;
    let millis = match unit.trim() {
        "ms" => Some(value),
        "s" => value.checked_mul(1_000),
        "m" => value.checked_mul(60_000),
        "h" => value.checked_mul(3_600_000),
        _ => None,
    }
    .ok_or_else(err)?;
    Ok(Duration::from_millis(millis))
}

/// Serde adapter for a `Duration` field.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// Serde adapter for an `Option<Duration>` field (use with `#[serde(default)]`).
pub fn deserialize_option<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    text.map(|t| parse(&t).map_err(serde::de::Error::custom))
        .transpose()
}

/// Serde adapter for a `Duration` that must not be zero (a zero timeout fails every call).
pub fn deserialize_positive<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    let duration = deserialize(deserializer)?;
    if duration.is_zero() {
        return Err(serde::de::Error::custom("must be greater than zero"));
    }
    Ok(duration)
}

/// Longest `server.request_timeout` and upstream `request_timeout`: 5 minutes. A call
/// that needs longer is a stream, which deadlines do not cut.
pub const MAX_CALL_TIMEOUT_MS: u64 = 300_000;
/// Longest `server.shutdown_delay` and `server.shutdown_drain_timeout`: 5 minutes (a
/// Kubernetes grace period is 30 s by default).
pub const MAX_SHUTDOWN_MS: u64 = 300_000;
/// Longest upstream `connect_timeout` and `redis.timeout`: 1 minute.
pub const MAX_CONNECT_TIMEOUT_MS: u64 = 60_000;
/// Longest `reload_interval` of a followed file (TLS material, a key file): 1 hour;
/// a rotation takes effect within it.
pub const MAX_RELOAD_INTERVAL_MS: u64 = 3_600_000;

/// Serde adapter for a `Duration` between `MIN_MS` and `MAX_MS` milliseconds,
/// inclusive: `deserialize_with = "duration::deserialize_within::<_, 1, 300_000>"`. The
/// error says the bounds, and the loader adds the key it belongs to.
pub fn deserialize_within<'de, D: Deserializer<'de>, const MIN_MS: u64, const MAX_MS: u64>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    let duration = deserialize(deserializer)?;
    check_within(
        duration,
        Duration::from_millis(MIN_MS),
        Duration::from_millis(MAX_MS),
    )
    .map_err(serde::de::Error::custom)?;
    Ok(duration)
}

/// Checks that `duration` lies within `min..=max`; the error names both bounds.
pub fn check_within(duration: Duration, min: Duration, max: Duration) -> Result<(), String> {
    if duration.is_zero() && !min.is_zero() {
        return Err(format!(
            "must be greater than zero (and at most {})",
            show(max)
        ));
    }
    if duration < min || duration > max {
        return Err(format!(
            "{} is out of range: must be between {} and {}",
            show(duration),
            show(min),
            show(max)
        ));
    }
    Ok(())
}

/// A duration in the largest unit that writes it exactly (`5m`, `1500ms`), the way a
/// configuration file would.
pub fn show(duration: Duration) -> String {
    let ms = duration.as_millis();
    match ms {
        0 => "0s".to_owned(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse(" 2m "), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bounds_are_inclusive_and_said() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(300));
        assert!(check_within(min, min, max).is_ok());
        assert!(check_within(max, min, max).is_ok());
        assert_eq!(
            check_within(Duration::from_secs(3_600_000), min, max).unwrap_err(),
            "1000h is out of range: must be between 1s and 5m"
        );
        assert_eq!(
            check_within(Duration::from_millis(999), min, max).unwrap_err(),
            "999ms is out of range: must be between 1s and 5m"
        );
    }

    #[test]
    fn refuses_ambiguous_or_malformed() {
        for bad in [
            "5",
            "",
            "s",
            "1.5s",
            "-1s",
            "5 sec",
            "99999999999999999999h",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
