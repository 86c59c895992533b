//! Configuration values that must never reach a log.
//!
//! Database URLs with passwords, HMAC keys and the like are read from YAML or the
//! environment like any other setting; wrapping them here means a `{config:?}` in a
//! start-up log line shows `Secret(..)` instead of the value.

use std::fmt;

use serde::Deserialize;

/// A configuration value kept out of logs (`Debug` hides it).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let s = Secret::new("postgres://u:hunter2@db/x");
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert_eq!(s.expose(), "postgres://u:hunter2@db/x");
    }
}
