//! What the app keeps between runs: ids, the bound device key, the offline key and
//! its certificate, and the offline counter.
//!
//! The counter only grows and is saved with every offline code made, because a gate
//! refuses a counter at or below one it has seen for the same certificate.

use serde::{Deserialize, Serialize};

/// The app's persistent state (contains private keys: store it owner-only).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppState {
    /// The enrolled subject's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_id: Option<String>,
    /// The bound device's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The bound device key, PKCS#8, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_key_pkcs8: Option<String>,
    /// The current offline key and its certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline: Option<OfflineState>,
}

/// An offline key, its device certificate and the code counter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OfflineState {
    /// PKCS#8, hex.
    pub key_pkcs8: String,
    /// The certificate's COSE_Sign1 bytes, hex.
    pub certificate: String,
    /// The last counter value used.
    pub counter: u64,
    /// Server time minus phone time when the certificate was issued, seconds: offline
    /// codes carry server time, so a phone with a wrong clock still makes valid codes.
    pub clock_offset: i64,
}

impl AppState {
    /// Parses saved state.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// The form to save.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
