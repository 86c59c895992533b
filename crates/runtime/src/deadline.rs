//! The time by which a call must be answered, carried to the work done for it.
//!
//! Work for a caller who has stopped waiting is pure waste, and under overload it is the
//! waste that keeps a service overloaded. So the server stack stamps every admitted call
//! with a [`Deadline`]: the earlier of the server's `request_timeout` and the caller's
//! `grpc-timeout`. Handlers bound their Redis and PostgreSQL calls with it and pass what
//! is left to downstream gRPC calls ([`Deadline::apply`]), so one gate's deadline holds
//! from the gate to the fare.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// gRPC's deadline header.
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// When the current call must be answered. Found in every admitted request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(Instant);

/// The deadline passed before the work finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline exceeded")]
pub struct DeadlineExceeded;

impl Deadline {
    /// `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Deadline(Instant::now() + timeout)
    }

    /// The deadline of an incoming call (set by the server stack), if any.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<Self> {
        request.extensions().get::<Deadline>().copied()
    }

    /// The instant itself.
    pub fn instant(self) -> Instant {
        self.0
    }

    /// Time left; zero once passed.
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Runs `work`, giving up at the deadline.
    pub async fn run<F: Future>(self, work: F) -> Result<F::Output, DeadlineExceeded> {
        tokio::time::timeout_at(self.0, work)
            .await
            .map_err(|_| DeadlineExceeded)
    }

    /// Sends what is left of this deadline with an outgoing call (`grpc-timeout`).
    pub fn apply<T>(self, request: &mut tonic::Request<T>) {
        request.set_timeout(self.remaining());
    }

    /// The earlier of `server_timeout` and the caller's `grpc-timeout` header, from now.
    /// A malformed header is ignored: the server's own limit still holds.
    pub(crate) fn for_request(headers: &http::HeaderMap, server_timeout: Duration) -> Self {
        let caller = headers
            .get(GRPC_TIMEOUT)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_grpc_timeout);
        Deadline::after(caller.map_or(server_timeout, |c| c.min(server_timeout)))
    }
}

/// `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n), per the gRPC spec.
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || !value.is_ascii() {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_units() {
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "S", "123456789S", "5x", "-5S", "５S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn the_earlier_limit_wins() {
        let mut headers = http::HeaderMap::new();
        headers.insert(GRPC_TIMEOUT, http::HeaderValue::from_static("100m"));
        let deadline = Deadline::for_request(&headers, Duration::from_secs(5));
        assert!(deadline.remaining() <= Duration::from_millis(100));

        headers.insert(GRPC_TIMEOUT, http::HeaderValue::from_static("1H"));
        let deadline = Deadline::for_request(&headers, Duration::from_secs(5));
        assert!(deadline.remaining() > Duration::from_secs(4));
        assert!(deadline.remaining() <= Duration::from_secs(5));
    }
}
