//! Subject, device, code and certificate ids: 16 random bytes, written as 32 lowercase
//! hex characters.
//!
//! **This format is a contract.** The identity service makes ids; the issuer seals
//! exactly the 16 bytes of a subject id into codes (which keeps the online QR inside
//! version 9); revocation entries, gates and the payments ledger name devices and
//! subjects by them. A subject id is never derived from the document number or the
//! name: it is fresh randomness, so it says nothing about the person.
//!
//! One type per kind of id ([`SubjectId`], [`DeviceId`], a code's [`Cti`], a device
//! certificate's [`CertSerial`]), here at the bottom of the
//! tree, so every service and the gate agree on what is well-formed: exactly 32
//! characters `0-9a-f`; anything else (upper case, other lengths) is refused rather
//! than normalised, so one id has one spelling.
//!
//! Ids are personal data (they link codes, devices and payments to one citizen), so
//! their `Debug` form hides the value: an id that slips into a log line or an error's
//! debug output says only which kind of id it was. `Display` gives the text form, for
//! the wire and storage, and must be asked for explicitly.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};

/// Bytes in every id: subject, device, `cti`, certificate serial.
pub const ID_LEN: usize = 16;

/// Why an id could not be read or made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The text was empty.
    #[error("{field} is required")]
    Missing {
        /// The request field the id came from (`subject_id`, `device_id`).
        field: &'static str,
    },
    /// The text was not exactly 32 lowercase hex characters (or the bytes not 16).
    #[error("{field} must be 32 lower-case hexadecimal characters")]
    Malformed {
        /// The request field the id came from.
        field: &'static str,
    },
    /// The system's random number generator failed.
    #[error("no randomness to make an id")]
    Randomness,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; ID_LEN]);

        impl $name {
            /// The request field that carries this kind of id, named in errors.
            pub const FIELD: &'static str = $field;

            /// A fresh random id.
            pub fn generate() -> Result<Self, IdError> {
                let mut bytes = [0u8; ID_LEN];
                SystemRandom::new()
                    .fill(&mut bytes)
                    .map_err(|_| IdError::Randomness)?;
                Ok($name(bytes))
            }

            /// The id from its 16 raw bytes.
            pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
                $name(bytes)
            }

            /// The id from a stored or decoded byte string, which must be exactly 16 bytes.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
                bytes
                    .try_into()
                    .map($name)
                    .map_err(|_| IdError::Malformed { field: $field })
            }

            /// Parses the 32-character lower-case hex form.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                if text.is_empty() {
                    return Err(IdError::Missing { field: $field });
                }
                parse_id(text)
                    .map($name)
                    .ok_or(IdError::Malformed { field: $field })
            }

            /// The 16 raw bytes (what the issuer seals into codes).
            pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }
        }

        impl $name {
            /// The text form without allocating (for lookups on hot paths).
            pub fn text(&self) -> IdText {
                let mut text = [0u8; ID_LEN * 2];
                // 16 bytes always fit 32 hex digits.
                let _ = hex::encode_to_slice(self.0, &mut text);
                IdText(text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.text().as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(…)"))
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                $name::parse(text)
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
id_type!(
    /// A code's id (`cti`): fresh randomness per code, what replay marks and token
    /// revocations name.
    Cti,
    "cti"
);
id_type!(
    /// A device certificate's serial (carried as the certificate's `cti`): what
    /// offline gates revoke and count offline codes under.
    CertSerial,
    "serial"
);

/// An id's 32 lowercase hex digits, on the stack.
#[derive(Clone, Copy)]
pub struct IdText([u8; ID_LEN * 2]);

impl IdText {
    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The 16 bytes of an id, or `None` unless `text` is exactly 32 lowercase hex digits.
pub fn parse_id(text: &str) -> Option<[u8; ID_LEN]> {
    parse_lower_hex(text)
}

/// `N` bytes from exactly `2 * N` lowercase hex digits, or `None`. The one strict hex
/// reader of the tree: `hex` alone also reads upper case, which would give one id a
/// second spelling (and a second, independent entry wherever ids are keys).
pub fn parse_lower_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != 2 * N || !text.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_per_id() {
        let id = [0xab; ID_LEN];
        assert_eq!(parse_id(&hex::encode(id)), Some(id));
        for bad in [
            "",
            "ABABABABABABABABABABABABABABABAB",
            "abababababababababababababababa",
            "abababababababababababababababab0",
            "ababababababababababababababababg",
            "zzababababababababababababababab",
        ] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }

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
        assert_eq!(text, hex::encode(id.as_bytes()));
        assert_ne!(SubjectId::generate().unwrap(), id);
    }

    #[test]
    fn malformed_ids_name_their_field() {
        assert_eq!(
            SubjectId::parse(""),
            Err(IdError::Missing {
                field: "subject_id"
            })
        );
        for bad in [
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
        assert!(DeviceId::from_slice(&[0; 15]).is_err());
    }

    #[test]
    fn debug_output_hides_the_id() {
        let id = SubjectId::from_bytes([0x5a; ID_LEN]);
        let debug = format!("{id:?} {:?}", DeviceId::from_bytes([0x5a; ID_LEN]));
        assert!(!debug.contains("5a5a"), "{debug}");
        assert_eq!(debug, "SubjectId(…) DeviceId(…)");
    }
}
