//! Limits on enrolment attempts, per caller address and per document.
//!
//! Every Enrol that reaches the real-name check costs a paid lookup at the national
//! system and lets its caller try one name against one document. The server-wide
//! per-address limit of anonymous callers (`server.limits.anonymous_per_second`, 50 a
//! second) is meant for binding and health, far too generous for that. So Enrol has
//! limits of its own (security finding 8), checked after the request is well-formed
//! and before the lookup:
//!
//! - per caller address (an IPv4 address or an IPv6 /64, as the server-wide limit
//!   counts): `enrol_attempts_per_address` per `enrol_attempt_window`;
//! - per document (its keyed hash, never the number): `enrol_attempts_per_document` per
//!   window, whoever asks, so that names cannot be tried against one number from many
//!   addresses.
//!
//! The allowance refills evenly over the window (a token bucket: the whole allowance
//! at once, then one attempt every window/limit). Over either limit, Enrol answers
//! RESOURCE_EXHAUSTED `ENROL_RATE_LIMITED`, the same for both (which limit it was would
//! say whether others tried this document). The counters live in each replica's memory:
//! with N replicas behind a balancer the limits are at most N times looser. Where every
//! caller arrives from one address (a proxy or mesh that hides client addresses, or
//! `citypass dev` on loopback), the per-address limit would throttle all citizens as
//! one: raise `enrol_attempts_per_address` there; the per-document limit still holds.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota};

use crate::document::DocumentHash;
use crate::error::Error;

/// The settings the limits come from, as errors name them.
const LIMITS: &str = "enrol_attempts_per_address/per_document, enrol_attempt_window";

/// The two limiters.
pub struct EnrolAttempts {
    per_address: DefaultKeyedRateLimiter<Option<IpAddr>>,
    per_document: DefaultKeyedRateLimiter<DocumentHash>,
}

impl std::fmt::Debug for EnrolAttempts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrolAttempts").finish_non_exhaustive()
    }
}

/// `limit` per `window`, all of it available at once; `what` names the settings in
/// the error.
pub(crate) fn quota(limit: u32, window: Duration, what: &str) -> Result<Quota, Error> {
    let limit = NonZeroU32::new(limit)
        .ok_or_else(|| Error::Config(format!("{what}: the limit must be at least 1")))?;
    let period = window
        .checked_div(limit.get())
        .filter(|p| !p.is_zero())
        .ok_or_else(|| Error::Config(format!("{what}: the window is too short for the limit")))?;
    Quota::with_period(period)
        .map(|q| q.allow_burst(limit))
        .ok_or_else(|| Error::Config(format!("{what}: the window must be positive")))
}

impl EnrolAttempts {
    /// `per_address` and `per_document` attempts per `window`.
    pub fn new(per_address: u32, per_document: u32, window: Duration) -> Result<Self, Error> {
        Ok(EnrolAttempts {
            per_address: DefaultKeyedRateLimiter::keyed(quota(per_address, window, LIMITS)?),
            per_document: DefaultKeyedRateLimiter::keyed(quota(per_document, window, LIMITS)?),
        })
    }

    /// Counts one attempt from `address` (unknown: all such callers share one
    /// allowance) for `document`, or refuses it with [`Error::EnrolRateLimited`].
    pub fn admit(&self, address: Option<IpAddr>, document: DocumentHash) -> Result<(), Error> {
        // Idle keys are dropped now and then so the maps stay small.
        if self.per_address.len() > 100_000 {
            self.per_address.retain_recent();
        }
        if self.per_document.len() > 100_000 {
            self.per_document.retain_recent();
        }
        let address = address.map(citypass_runtime::authz::network_of);
        if self.per_address.check_key(&address).is_err()
            || self.per_document.check_key(&document).is_err()
        {
            return Err(Error::EnrolRateLimited);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_holds_on_its_own() {
        let attempts = EnrolAttempts::new(3, 2, Duration::from_secs(3600)).unwrap();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let (one, two, three) = (
            DocumentHash([1; 32]),
            DocumentHash([2; 32]),
            DocumentHash([3; 32]),
        );
        // Per document: two, whoever asks.
        attempts.admit(Some(a), one).unwrap();
        attempts.admit(Some(b), one).unwrap();
        assert!(matches!(
            attempts.admit(Some(b), one),
            Err(Error::EnrolRateLimited)
        ));
        // Per address: three in all, whatever the documents (the refused attempt above
        // still counted for b).
        attempts.admit(Some(b), two).unwrap();
        assert!(matches!(
            attempts.admit(Some(b), three),
            Err(Error::EnrolRateLimited)
        ));
        attempts.admit(Some(a), two).unwrap();
        attempts.admit(Some(a), three).unwrap();
        assert!(matches!(
            attempts.admit(Some(a), DocumentHash([4; 32])),
            Err(Error::EnrolRateLimited)
        ));
        // An IPv6 /64 is one caller.
        let v6 = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        for (i, addr) in ["2001:db8::1", "2001:db8::2", "2001:db8::3"]
            .iter()
            .enumerate()
        {
            attempts
                .admit(v6(addr), DocumentHash([10 + i as u8; 32]))
                .unwrap();
        }
        assert!(
            attempts
                .admit(v6("2001:db8::ffff"), DocumentHash([20; 32]))
                .is_err()
        );
        assert!(
            attempts
                .admit(v6("2001:db8:0:1::1"), DocumentHash([21; 32]))
                .is_ok()
        );
    }

    #[test]
    fn limits_must_be_usable() {
        assert!(EnrolAttempts::new(0, 1, Duration::from_secs(60)).is_err());
        assert!(EnrolAttempts::new(1, 1, Duration::ZERO).is_err());
    }
}
