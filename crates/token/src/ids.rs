//! Subject and device ids: 16 random bytes, written as 32 lowercase hex characters.
//!
//! The identity service makes them, the issuer seals exactly the 16 bytes of a
//! subject id into codes (which keeps the online QR inside version 9), and revocation
//! entries name devices and subjects by them. One parser, here, so every service
//! agrees on what is well-formed: anything else (upper case, other lengths) is refused
//! rather than normalised, so one id has one spelling.

use crate::claims::ID_LEN;

/// The 16 bytes of an id, or `None` unless `text` is exactly 32 lowercase hex digits.
pub fn parse_id(text: &str) -> Option<[u8; ID_LEN]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let text = text.as_bytes();
    if text.len() != ID_LEN * 2 {
        return None;
    }
    let mut out = [0u8; ID_LEN];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// The text form of an id.
pub fn format_id(id: &[u8; ID_LEN]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_per_id() {
        let id = [0xab; ID_LEN];
        assert_eq!(parse_id(&format_id(&id)), Some(id));
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
}
