//! What the app keeps between runs: ids, the bound device key, the offline key and
//! its certificate, and the offline counter.
//!
//! The counter only grows and is saved with every offline code made, because a gate
//! refuses a counter at or below one it has seen for the same certificate.

use serde::{Deserialize, Serialize};

/// The app's persistent state (contains private keys: store it owner-only; `Debug`
/// shows ids only, never a key).
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppState {
    /// The enrolled subject's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_id: Option<String>,
    /// The enrolment secret from Enrol (hex), until a binding uses it: the authority
    /// to bind the first device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrolment_secret: Option<String>,
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

/// An offline key, its device certificate and the code counter (`Debug` hides the key).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
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

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("subject_id", &self.subject_id)
            .field(
                "enrolment_secret",
                &self.enrolment_secret.as_ref().map(|_| "<hidden>"),
            )
            .field("device_id", &self.device_id)
            .field(
                "device_key_pkcs8",
                &self.device_key_pkcs8.as_ref().map(|_| "<hidden>"),
            )
            .field("offline", &self.offline)
            .finish()
    }
}

impl std::fmt::Debug for OfflineState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfflineState")
            .field("key_pkcs8", &"<hidden>")
            .field("counter", &self.counter)
            .field("clock_offset", &self.clock_offset)
            .finish_non_exhaustive()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Security review, smaller findings: `AppState` derived `Debug` over private keys,
    /// so a `{state:?}` in a log line would print them.
    #[test]
    fn smaller_findings_app_state_debug_hides_private_keys() {
        let state = AppState {
            subject_id: Some("00112233445566778899aabbccddeeff".to_owned()),
            enrolment_secret: Some("5ec12e75ec12e7".to_owned()),
            device_id: Some("ffeeddccbbaa99887766554433221100".to_owned()),
            device_key_pkcs8: Some("308187020100deadbeefdevicekey".to_owned()),
            offline: Some(OfflineState {
                key_pkcs8: "308187020100cafebabeofflinekey".to_owned(),
                certificate: "d28443a10126".to_owned(),
                counter: 7,
                clock_offset: -2,
            }),
        };
        let shown = format!("{state:?}");
        assert!(!shown.contains("deadbeefdevicekey"), "{shown}");
        assert!(!shown.contains("cafebabeofflinekey"), "{shown}");
        assert!(!shown.contains("5ec12e75ec12e7"), "{shown}");
        assert!(
            shown.contains("ffeeddccbbaa99887766554433221100"),
            "ids stay visible"
        );
        assert!(shown.contains("counter: 7"), "{shown}");
    }
}
