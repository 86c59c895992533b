//! A strict, bounded walk over CBOR bytes before any parser builds values from them.
//!
//! General CBOR decoders recurse per nesting level and allocate what a length field
//! announces, so a 1 MB nesting bomb or a string that claims 4 GB can cost stack or
//! memory before anything is refused. This walk is iterative, allocates nothing, and
//! proves four things about untrusted bytes before `ciborium`/`coset` see them:
//! exactly one well-formed item with no trailing bytes, no indefinite lengths, nesting
//! no deeper than `max_depth`, and no container or string larger than the input could
//! hold (so announced lengths are always backed by real bytes).

use crate::TokenError;

/// Nesting depth and per-container limits for one scan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Deepest container nesting allowed (tags count as a level).
    pub max_depth: usize,
    /// Most entries in one array or map.
    pub max_entries: u64,
}

/// Citypass objects nest at most: tag, array, map (claims), map (cnf), map (COSE_Key).
pub(crate) const LIMITS: Limits = Limits {
    max_depth: 6,
    max_entries: 32,
};

/// Checks that `bytes` hold exactly one CBOR item within `limits`.
pub(crate) fn check(bytes: &[u8], limits: Limits) -> Result<(), TokenError> {
    // `pending[d]` counts the items still owed by the container open at depth d.
    let mut pending: [u64; 16] = [0; 16];
    let max_depth = limits.max_depth.min(pending.len() - 1);
    let mut depth = 0usize;
    pending[0] = 1;
    let mut pos = 0usize;

    loop {
        // Close every container whose items are all read.
        while pending[depth] == 0 {
            if depth == 0 {
                return if pos == bytes.len() {
                    Ok(())
                } else {
                    Err(TokenError::TrailingBytes)
                };
            }
            depth -= 1;
        }
        pending[depth] -= 1;

        let initial = *bytes.get(pos).ok_or(TokenError::Truncated)?;
        pos += 1;
        let major = initial >> 5;
        let info = initial & 0x1f;
        let arg: u64 = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let n = 1usize << (info - 24);
                let end = pos.checked_add(n).ok_or(TokenError::Truncated)?;
                let raw = bytes.get(pos..end).ok_or(TokenError::Truncated)?;
                pos = end;
                raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
            }
            31 => return Err(TokenError::IndefiniteLength),
            _ => return Err(TokenError::Malformed),
        };
        let remaining = (bytes.len() - pos) as u64;

        let children = match major {
            // unsigned, negative integers and simple values/floats carry no content.
            0 | 1 | 7 => 0,
            // byte and text strings: the announced length must be present.
            2 | 3 => {
                if arg > remaining {
                    return Err(TokenError::Truncated);
                }
                pos += arg as usize;
                0
            }
            // arrays: every entry needs at least one byte.
            4 => {
                if arg > limits.max_entries {
                    return Err(TokenError::ItemTooLarge);
                }
                if arg > remaining {
                    return Err(TokenError::Truncated);
                }
                arg
            }
            // maps: key and value each need a byte.
            5 => {
                if arg > limits.max_entries {
                    return Err(TokenError::ItemTooLarge);
                }
                let items = arg * 2;
                if items > remaining {
                    return Err(TokenError::Truncated);
                }
                items
            }
            // a tag wraps exactly one item.
            6 => 1,
            _ => unreachable!("major type is three bits"),
        };

        if children > 0 {
            if depth == max_depth {
                return Err(TokenError::TooDeep { max: max_depth });
            }
            depth += 1;
            pending[depth] = children;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_nested_definite_items() {
        // tag 18 [ h'', {}, h'01', h'' ]
        check(&[0xd2, 0x84, 0x40, 0xa0, 0x41, 0x01, 0x40], LIMITS).unwrap();
    }

    #[test]
    fn refuses_indefinite_lengths() {
        assert_eq!(
            check(&[0x9f, 0xff], LIMITS),
            Err(TokenError::IndefiniteLength)
        );
        assert_eq!(
            check(&[0x5f, 0x41, 0x00, 0xff], LIMITS),
            Err(TokenError::IndefiniteLength)
        );
    }

    #[test]
    fn refuses_nesting_bombs_without_recursion() {
        let bomb = vec![0x81u8; 1 << 20];
        assert_eq!(
            check(&bomb, LIMITS),
            Err(TokenError::TooDeep {
                max: LIMITS.max_depth
            })
        );
    }

    #[test]
    fn refuses_lengths_the_input_cannot_back() {
        // bstr announcing 2^32-1 bytes.
        assert_eq!(
            check(&[0x5a, 0xff, 0xff, 0xff, 0xff, 0x00], LIMITS),
            Err(TokenError::Truncated)
        );
        assert_eq!(check(&[0x98, 0x40], LIMITS), Err(TokenError::ItemTooLarge));
    }

    #[test]
    fn refuses_trailing_bytes_and_reserved_encodings() {
        assert_eq!(check(&[0x01, 0x02], LIMITS), Err(TokenError::TrailingBytes));
        assert_eq!(check(&[0x1c], LIMITS), Err(TokenError::Malformed));
        assert_eq!(check(&[], LIMITS), Err(TokenError::Truncated));
    }
}
