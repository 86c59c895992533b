//! The rider's transit account: identity's transit pseudonym, the only key of the
//! payments records (no subject id, name or document number is ever stored here).
//!
//! Its form is identity's (`services/identity/src/pseudonym.rs`): 32 lower-case hex
//! characters, 16 bytes, parsed with the id rules of `citypass_token` (one spelling per
//! value). It is personal data: `Debug` hides it, errors never carry it.

use std::fmt;

/// A transit account (16 bytes, written as 32 lower-case hex characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransitAccount([u8; 16]);

impl TransitAccount {
    /// The request field that carries it, named in errors.
    pub const FIELD: &'static str = "transit_account";

    /// Parses the 32-character lower-case hex form; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        citypass_token::parse_id(text).map(TransitAccount)
    }

    /// From the 16 stored bytes; `None` unless exactly 16.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(TransitAccount)
    }

    /// From 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        TransitAccount(bytes)
    }

    /// The 16 bytes (what the database stores).
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for TransitAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for TransitAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TransitAccount(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_and_a_hidden_debug_form() {
        let text = "00112233445566778899aabbccddeeff";
        let account = TransitAccount::parse(text).unwrap();
        assert_eq!(account.to_string(), text);
        assert_eq!(format!("{account:?}"), "TransitAccount(…)");
        for bad in [
            "",
            "00112233445566778899AABBCCDDEEFF",
            "0011",
            &format!("{text}0"),
        ] {
            assert_eq!(TransitAccount::parse(bad), None, "{bad}");
        }
    }
}
