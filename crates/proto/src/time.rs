//! Protobuf timestamps and the Unix seconds citypass works in: one conversion each way.

use std::time::{SystemTime, UNIX_EPOCH};

use prost_types::Timestamp;

/// Unix seconds as a timestamp (saturating at `i64::MAX`).
pub fn timestamp(seconds: u64) -> Timestamp {
    Timestamp {
        seconds: i64::try_from(seconds).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// A system time as a timestamp, to the nanosecond (before 1970: seconds go negative,
/// as the API allows).
pub fn system_timestamp(at: SystemTime) -> Timestamp {
    match at.duration_since(UNIX_EPOCH) {
        Ok(since) => Timestamp {
            seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
        },
        Err(before) => {
            let before = before.duration();
            let nanos = i32::try_from(before.subsec_nanos()).unwrap_or(0);
            let seconds = -i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            if nanos == 0 {
                Timestamp { seconds, nanos: 0 }
            } else {
                Timestamp {
                    seconds: seconds - 1,
                    nanos: 1_000_000_000 - nanos,
                }
            }
        }
    }
}

/// A timestamp's whole Unix seconds, if it is at or after 1970.
pub fn seconds(timestamp: &Timestamp) -> Option<u64> {
    u64::try_from(timestamp.seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn conversions_agree() {
        assert_eq!(timestamp(1_700_000_000).seconds, 1_700_000_000);
        assert_eq!(timestamp(u64::MAX).seconds, i64::MAX);
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(
            system_timestamp(at),
            Timestamp {
                seconds: 1_700_000_000,
                nanos: 5
            }
        );
        let before = UNIX_EPOCH - Duration::new(1, 250_000_000);
        assert_eq!(
            system_timestamp(before),
            Timestamp {
                seconds: -2,
                nanos: 750_000_000
            }
        );
        assert_eq!(seconds(&timestamp(42)), Some(42));
        assert_eq!(
            seconds(&Timestamp {
                seconds: -1,
                nanos: 0
            }),
            None
        );
    }
}
