//! An HMAC key as a configuration gives it: 32 or more bytes in hexadecimal, or
//! `dev:<text>` for development (its bytes are the text; production configurations
//! refuse it). Identity's and the verifier's configurations read keys through this
//! one parser.

use std::fmt;

use crate::hmac_keys::KeyError;

/// The shortest secret key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// A parsed key. Its `Debug` form shows only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    bytes: Vec<u8>,
    dev: bool,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Key({} bytes{})",
            self.bytes.len(),
            if self.dev { ", dev" } else { "" }
        )
    }
}

impl Key {
    /// Parses `dev:<text>` (a development key) or 64+ hex characters; `name` is the
    /// configuration key, for the error.
    pub fn parse(text: &str, name: &str) -> Result<Key, KeyError> {
        let text = text.trim();
        if let Some(dev) = text.strip_prefix("dev:") {
            if dev.is_empty() {
                return Err(KeyError(format!(
                    "{name}: a dev key needs text after `dev:`"
                )));
            }
            return Ok(Key {
                bytes: dev.as_bytes().to_vec(),
                dev: true,
            });
        }
        let bytes = hex::decode(text).map_err(|_| {
            KeyError(format!(
                "{name}: must be hexadecimal (or `dev:…` for development)"
            ))
        })?;
        if bytes.len() < MIN_KEY_BYTES {
            return Err(KeyError(format!(
                "{name}: must be at least {MIN_KEY_BYTES} bytes ({} hex characters)",
                2 * MIN_KEY_BYTES
            )));
        }
        Ok(Key { bytes, dev: false })
    }

    /// The key bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether this is a development key.
    pub fn is_dev(&self) -> bool {
        self.dev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_dev_keys_parse_and_short_or_bad_ones_do_not() {
        let hex_key = "00".repeat(32);
        let key = Key::parse(&format!(" {hex_key}\n"), "k").unwrap();
        assert_eq!(key.bytes(), &[0; 32]);
        assert!(!key.is_dev());
        let dev = Key::parse("dev:abc", "k").unwrap();
        assert!(dev.is_dev());
        assert_eq!(dev.bytes(), b"abc");
        assert!(Key::parse("dev:", "k").is_err());
        assert!(Key::parse(&"00".repeat(31), "k").is_err());
        let err = Key::parse("zz", "the_key").unwrap_err().to_string();
        assert!(err.contains("the_key"), "{err}");
        assert!(!format!("{key:?}").contains("00, 00"));
    }
}
