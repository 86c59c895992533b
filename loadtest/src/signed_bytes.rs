//! The least a server must read of a code to check its signature: the COSE_Sign1's
//! protected header, payload and signature, sliced out of the bytes as they are.
//!
//! The bare verify server (the ceiling) must do nothing a verifier could skip, so it
//! does not decode: no CBOR parser, no header or claim reading, no allocation beyond
//! the signed structure. A code is `tag 18, [protected: bstr, unprotected: {}, payload:
//! bstr, signature: bstr]`, and what Ed25519 signed is `["Signature1", protected, h'',
//! payload]` (RFC 9052 §4.4), built here from the same encoded byte strings. Anything
//! else is refused as malformed; the real verifier's strict decoding is what the
//! ceiling is compared with, not replaced by.

/// The signature and the bytes it signs.
#[derive(Debug, PartialEq, Eq)]
pub struct Signed<'a> {
    /// The `Sig_structure` the signature covers.
    pub message: Vec<u8>,
    /// The signature.
    pub signature: &'a [u8],
}

/// Splits a byte string (major type 2) off the front of `bytes`: (whole item, content,
/// rest).
fn byte_string(bytes: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (&first, after) = bytes.split_first()?;
    if first >> 5 != 2 {
        return None;
    }
    let (len, header): (usize, usize) = match first & 0x1f {
        n @ 0..=23 => (usize::from(n), 1),
        24 => (usize::from(*after.first()?), 2),
        25 => (
            usize::from(u16::from_be_bytes(after.get(..2)?.try_into().ok()?)),
            3,
        ),
        _ => return None,
    };
    let end = header.checked_add(len)?;
    let item = bytes.get(..end)?;
    Some((item, &item[header..], &bytes[end..]))
}

/// The signed bytes and signature of a tagged COSE_Sign1 with an empty unprotected
/// header, or `None`.
pub fn slice(cose: &[u8]) -> Option<Signed<'_>> {
    // Tag 18, an array of four.
    let rest = cose.strip_prefix(&[0xd2, 0x84])?;
    let (protected, _, rest) = byte_string(rest)?;
    // The unprotected header, empty.
    let rest = rest.strip_prefix(&[0xa0])?;
    let (payload, _, rest) = byte_string(rest)?;
    let (_, signature, rest) = byte_string(rest)?;
    if !rest.is_empty() {
        return None;
    }
    const CONTEXT: &[u8] = b"\x84\x6aSignature1";
    let mut message = Vec::with_capacity(CONTEXT.len() + protected.len() + 1 + payload.len());
    message.extend_from_slice(CONTEXT);
    message.extend_from_slice(protected);
    message.push(0x40);
    message.extend_from_slice(payload);
    Some(Signed { message, signature })
}

#[cfg(test)]
mod tests {
    use super::*;
    use citypass_token::{Issuer, IssuerKey, Scopes, SubjectKey};
    use ring::signature::{ED25519, UnparsedPublicKey};

    #[test]
    fn a_real_code_verifies_from_its_slices_and_a_changed_one_does_not() {
        let issuer = Issuer::new(
            "cp",
            IssuerKey::from_seed(&[3; 32]).unwrap(),
            SubjectKey::from_bytes(&[4; 32]).unwrap(),
        );
        let text = issuer
            .issue_token(&[1; 16], Scopes::all(), citypass_token::unix_now(), 60)
            .unwrap()
            .text;
        let bytes = base45::decode(text.trim_start_matches("CP1:")).unwrap();
        let key = issuer.key().public_key().as_bytes().to_vec();
        let signed = slice(&bytes).expect("a code slices");
        assert_eq!(signed.signature.len(), 64);
        assert!(
            UnparsedPublicKey::new(&ED25519, &key)
                .verify(&signed.message, signed.signature)
                .is_ok()
        );
        let mut changed = bytes.clone();
        let middle = changed.len() / 2;
        changed[middle] ^= 1;
        let verifies = slice(&changed).is_some_and(|s| {
            UnparsedPublicKey::new(&ED25519, &key)
                .verify(&s.message, s.signature)
                .is_ok()
        });
        assert!(!verifies);
        // Truncated, trailing bytes, not tagged: refused, never a panic.
        assert!(slice(&bytes[..bytes.len() - 1]).is_none());
        assert!(slice(&[bytes.as_slice(), &[0]].concat()).is_none());
        assert!(slice(&bytes[1..]).is_none());
        assert!(slice(&[]).is_none());
    }
}
