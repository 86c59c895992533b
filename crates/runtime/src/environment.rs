//! Which kind of deployment a service runs in.
//!
//! One setting, shared by every service, decides whether development shortcuts (dev
//! key rings, dev HMAC keys, in-memory stores where a shared one is needed, the
//! real-name sandbox) are allowed. The default is production, so that forgetting the
//! setting fails closed; `citypass dev` and tests choose `Dev` explicitly.

use serde::Deserialize;

/// Where a service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    /// A laptop, CI or a test: development shortcuts are allowed.
    #[serde(alias = "development")]
    Dev,
    /// Real citizens and real codes: every development shortcut is refused.
    #[default]
    #[serde(alias = "prod")]
    Production,
}

impl Environment {
    /// Whether this is a production deployment.
    pub fn is_production(self) -> bool {
        self == Environment::Production
    }
}
