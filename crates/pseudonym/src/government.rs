//! The government-service pseudonym: how the city's government systems find a
//! citizen's files from a code scanned at a service-hall counter, without the resident
//! ID number crossing the network.
//!
//! ```text
//! government_pseudonym = hex( HMAC-SHA256(government_key,
//!                               "citypass/v1/government-pseudonym"
//!                               || u32be(len(number)) || number) )
//! ```
//!
//! over the normalised resident ID number (surrounding spaces removed, ASCII upper
//! case: the check character `x` is `X`): 64 lower-case hex characters. The key is not
//! the pseudonym key: the government-service systems hold it (they compute the same
//! value from the numbers in their files), so it must open nothing else. Identity
//! computes the value once, at enrolment of a resident-ID document (the only time it
//! sees the number), and stores it with the key's id; the verifier returns the stored
//! value at a government counter.

use std::fmt;

use crate::hmac_keys::HmacKeys;
use crate::scene::Pseudonym;

/// Domain separation of the government-service pseudonym.
pub const GOVERNMENT_CONTEXT: &[u8] = b"citypass/v1/government-pseudonym";

/// Derives government-service pseudonyms under the government keys.
pub struct GovernmentPseudonyms(HmacKeys);

impl fmt::Debug for GovernmentPseudonyms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("GovernmentPseudonyms")
            .field(&self.0)
            .finish()
    }
}

impl GovernmentPseudonyms {
    /// Pseudonyms under `keys` (each at least 32 bytes; checked by the configuration).
    pub fn new(keys: HmacKeys) -> Self {
        GovernmentPseudonyms(keys)
    }

    /// The pseudonym of a resident ID `number` under the current key, with its id.
    /// The number is normalised here too, so either form gives the same value.
    pub fn derive(&self, number: &str) -> Pseudonym {
        let (key_id, key) = self.0.current();
        let number = number.trim().to_ascii_uppercase();
        let mut ctx = ring::hmac::Context::with_key(key);
        ctx.update(GOVERNMENT_CONTEXT);
        ctx.update(
            &u32::try_from(number.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        ctx.update(number.as_bytes());
        Pseudonym {
            key_id,
            value: hex::encode(ctx.sign().as_ref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hmac_keys::KeyId;

    /// A fixed vector (Python's `hmac` over the documented input), with GB 11643's own
    /// example number.
    #[test]
    fn fixed_vector_and_normalisation() {
        let g = GovernmentPseudonyms::new(HmacKeys::single(&[9; 32]));
        let p = g.derive("11010519491231002X");
        assert_eq!(p.key_id, KeyId::FIRST);
        assert_eq!(
            p.value,
            "a4c44c00c886be48688a714a412bb8d56b15dd1dc70c8701b505786797197345"
        );
        assert_eq!(g.derive(" 11010519491231002x ").value, p.value);
        assert_ne!(g.derive("110105194912310029").value, p.value);
    }

    #[test]
    fn the_current_key_and_its_id_make_it() {
        let two = KeyId::new(2).unwrap();
        let rotated = GovernmentPseudonyms::new(
            HmacKeys::new((two, &[8; 32]), &[(KeyId::FIRST, &[9; 32])]).unwrap(),
        );
        let p = rotated.derive("11010519491231002X");
        assert_eq!(p.key_id, two);
        let old = GovernmentPseudonyms::new(HmacKeys::single(&[9; 32]));
        assert_ne!(p.value, old.derive("11010519491231002X").value);
    }
}
