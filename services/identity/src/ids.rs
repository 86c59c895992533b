//! Subject and device ids: 16 random bytes, written as 32 lower-case hex characters.
//!
//! **This format is a contract.** The issuer seals exactly these 16 bytes (not the hex
//! text) into every code's `sub` claim, and the verifier unseals them back into this
//! hex form to look a subject up; the payments ledger and the revocation log store the
//! same strings. A subject id is never derived from the document number or the name:
//! it is fresh randomness, so it says nothing about the person.
//!
//! Parsing is strict (exactly 32 characters `0-9a-f`): an upper-case or padded id is a
//! caller bug that should surface, not be silently accepted under a second spelling.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};

use crate::error::Error;

/// Bytes in an id.
pub use citypass_token::ID_LEN;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; ID_LEN]);

        impl $name {
            /// A fresh random id.
            pub fn generate() -> Result<Self, Error> {
                let mut bytes = [0u8; ID_LEN];
                SystemRandom::new()
                    .fill(&mut bytes)
                    .map_err(|_| Error::Randomness)?;
                Ok($name(bytes))
            }

            /// The id from its 16 raw bytes.
            pub fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
                $name(bytes)
            }

            /// The id from a stored byte string, which must be exactly 16 bytes.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                bytes.try_into().ok().map($name)
            }

            /// Parses the 32-character lower-case hex form; `field` names the request
            /// field in the error.
            pub fn parse(text: &str) -> Result<Self, Error> {
                parse_hex(text, $field).map($name)
            }

            /// The 16 raw bytes (what the issuer seals into codes).
            pub fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }
    };
}

id_type!(
    /// A subject (citizen) id.
    SubjectId,
    "subject_id"
);
id_type!(
    /// A device id, assigned at binding and never reused.
    DeviceId,
    "device_id"
);

/// Parses with the one parser every service shares (`citypass_token::parse_id`),
/// naming `field` in the error.
fn parse_hex(text: &str, field: &'static str) -> Result<[u8; ID_LEN], Error> {
    if text.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    citypass_token::parse_id(text)
        .ok_or_else(|| Error::invalid(field, "must be 32 lower-case hexadecimal characters"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_lower_case_hex() {
        let id = SubjectId::generate().unwrap();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        );
        assert_eq!(SubjectId::parse(&text).unwrap(), id);
        assert_ne!(SubjectId::generate().unwrap(), id);
    }

    #[test]
    fn malformed_ids_are_refused_with_the_field_name() {
        for bad in [
            "",
            "00",
            "0123456789ABCDEF0123456789abcdef",
            "0123456789abcdef0123456789abcdeg",
            " 0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef0",
            "é123456789abcdef0123456789abcde",
        ] {
            let err = DeviceId::parse(bad).unwrap_err();
            assert!(err.to_string().starts_with("device_id"), "{err}");
        }
    }
}
