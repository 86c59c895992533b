//! Per-caller limits of a server (`server.limits`), enforced by `crate::authz`.

use std::num::NonZeroU32;

use serde::Deserialize;

/// Per-caller limits (`server.limits`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallerLimits {
    /// Calls per second one authenticated caller (a service, a gate, an operator) may
    /// make, sustained, to RPCs that admit it by name (default 10 000: the issuer's
    /// device lookups at identity follow the city's code requests).
    pub per_caller_per_second: NonZeroU32,
    /// Calls per second from one address (an IPv6 /64) to RPCs open to anyone:
    /// citizens' apps, device-signed requests, health (default 50).
    pub anonymous_per_second: NonZeroU32,
    /// Calls one caller may have open at once; a stream counts until it ends
    /// (default 64).
    pub open_calls_per_caller: usize,
}

impl Default for CallerLimits {
    fn default() -> Self {
        CallerLimits {
            per_caller_per_second: NonZeroU32::new(10_000).unwrap_or(NonZeroU32::MIN),
            anonymous_per_second: NonZeroU32::new(50).unwrap_or(NonZeroU32::MIN),
            open_calls_per_caller: 64,
        }
    }
}
