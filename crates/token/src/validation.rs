//! Time rules: when a code is too early, too late, or lives too long.
//!
//! Gates' and phones' clocks drift, so every comparison allows `skew` seconds; the
//! boundaries are inclusive (a code is still valid at exactly `exp + skew`). Lifetimes
//! are capped per kind because an offline code is made by the phone: without a cap, a
//! phone could mint a code that outlives its purpose.

use crate::TokenError;

/// Clock and lifetime rules for one verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validation {
    /// The verifier's time, Unix seconds.
    pub now: u64,
    /// Allowed clock difference, seconds.
    pub skew: u64,
    /// Longest online-token lifetime accepted (`exp - iat`).
    pub max_token_lifetime: u64,
    /// Longest device-certificate lifetime accepted.
    pub max_certificate_lifetime: u64,
    /// Longest offline-code lifetime accepted.
    pub max_offline_lifetime: u64,
}

impl Validation {
    /// Defaults: 30 s skew; tokens up to 5 minutes, certificates up to a day, offline
    /// codes up to 2 minutes.
    pub fn at(now: u64) -> Self {
        Validation {
            now,
            skew: 30,
            max_token_lifetime: 300,
            max_certificate_lifetime: 86_400,
            max_offline_lifetime: 120,
        }
    }

    /// The same rules with another skew allowance.
    pub fn with_skew(self, skew: u64) -> Self {
        Validation { skew, ..self }
    }

    /// Checks `iat`/`exp` against now and a lifetime cap.
    pub(crate) fn check_times(
        &self,
        iat: u64,
        exp: u64,
        max_lifetime: u64,
    ) -> Result<(), TokenError> {
        if exp < iat || exp - iat > max_lifetime {
            return Err(TokenError::BadLifetime);
        }
        if iat > self.now.saturating_add(self.skew) {
            return Err(TokenError::NotYetValid);
        }
        if self.now > exp.saturating_add(self.skew) {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}
