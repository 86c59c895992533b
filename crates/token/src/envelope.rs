//! COSE_Sign1 envelopes: strict parsing of the header rules, and signing.
//!
//! Everything security-relevant comes from the protected header: `alg`, `kid` and
//! `typ`. The unprotected header must be empty (an `alg` there gets its own error, as
//! it is the classic downgrade attempt), unknown critical parameters are refused, and
//! `typ` must name exactly the kind the caller expects, so one kind of object can never
//! be accepted as another. These checks all run before any signature math.

use coset::{CborSerializable as _, CoseSign1, Label, TaggedCborSerializable as _, iana};
use coset::{HeaderBuilder, RegisteredLabelWithPrivate};

use crate::TokenError;
use crate::bounds;
use crate::keys::{Algorithm, Kid, PublicKey};
use crate::signature_check::SignatureCheck;

/// The COSE header label of `typ` (RFC 9596).
const TYP: i64 = 16;

/// The kinds of signed object, named by their `typ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    /// Online token (`CP1`), signed by the issuer.
    Online,
    /// Device certificate, signed by the issuer.
    Certificate,
    /// Offline code (`CP2`), signed by the phone's certified offline key.
    Offline,
}

impl ObjectType {
    /// The `typ` value. Short on purpose: every byte counts against the QR budget.
    pub fn typ(self) -> &'static str {
        match self {
            ObjectType::Online => "cp1",
            ObjectType::Certificate => "cpdc",
            ObjectType::Offline => "cp2",
        }
    }
}

/// A parsed COSE_Sign1 whose headers passed every rule; its signature is not yet checked.
#[derive(Debug)]
pub(crate) struct Envelope {
    pub alg: Algorithm,
    /// Present for issuer-signed objects; absent for offline codes, whose key comes
    /// from the embedded certificate.
    pub kid: Option<Kid>,
    pub payload: Vec<u8>,
    sign1: CoseSign1,
}

impl Envelope {
    /// Parses `bytes` as a tagged COSE_Sign1 of type `expected`.
    pub fn parse(bytes: &[u8], expected: ObjectType) -> Result<Self, TokenError> {
        bounds::check(bytes, bounds::LIMITS)?;
        if bytes.first() != Some(&0xd2) {
            return Err(TokenError::NotCoseSign1);
        }
        let mut sign1 = CoseSign1::from_tagged_slice(bytes).map_err(|_| TokenError::Malformed)?;

        if sign1.unprotected.alg.is_some() {
            return Err(TokenError::AlgInUnprotected);
        }
        if !sign1.unprotected.is_empty() {
            return Err(TokenError::UnprotectedHeaderNotEmpty);
        }

        let header = &sign1.protected.header;
        let alg = match &header.alg {
            None => return Err(TokenError::MissingAlg),
            Some(RegisteredLabelWithPrivate::Assigned(a)) => {
                Algorithm::from_cose_id(*a as i64).ok_or(TokenError::UnsupportedAlg)?
            }
            Some(_) => return Err(TokenError::UnsupportedAlg),
        };
        // `typ` (16) is not in coset's registry, so only `alg` and `kid` can be named
        // critical here; anything else we would not process, so the object is refused.
        let understood = |l: &RegisteredLabelWithPrivate<iana::HeaderParameter>| {
            matches!(
                l,
                RegisteredLabelWithPrivate::Assigned(
                    iana::HeaderParameter::Alg | iana::HeaderParameter::Kid
                )
            )
        };
        if !header.crit.iter().all(understood) {
            return Err(TokenError::UnknownCriticalHeader);
        }
        match header.rest.iter().find(|(l, _)| *l == Label::Int(TYP)) {
            None => return Err(TokenError::MissingTyp),
            Some((_, v)) if v.as_text() == Some(expected.typ()) => {}
            Some(_) => return Err(TokenError::WrongTyp),
        }
        let kid = match (expected, header.key_id.is_empty()) {
            (ObjectType::Offline, true) => None,
            (ObjectType::Offline, false) | (_, true) => return Err(TokenError::BadKid),
            (_, false) => Some(Kid::from_slice(&header.key_id)?),
        };
        let payload = sign1.payload.take().ok_or(TokenError::Malformed)?;
        Ok(Envelope {
            alg,
            kid,
            payload,
            sign1,
        })
    }

    /// Checks the signature with `key`, refusing first if `alg` is not the key's.
    pub fn verify(&self, key: &PublicKey) -> Result<(), TokenError> {
        self.signature_check(key)?.outcome()
    }

    /// The signature check with `key`, not yet run (alone or in a batch), refusing
    /// first if `alg` is not the key's.
    pub fn signature_check(&self, key: &PublicKey) -> Result<SignatureCheck, TokenError> {
        if key.alg() != self.alg {
            return Err(TokenError::AlgMismatch);
        }
        let tbs = coset::sig_structure_data(
            coset::SignatureContext::CoseSign1,
            self.sign1.protected.clone(),
            None,
            &[],
            &self.payload,
        );
        Ok(SignatureCheck::new(
            key.clone(),
            tbs,
            self.sign1.signature.clone(),
        ))
    }
}

/// Builds and signs a tagged COSE_Sign1 of type `typ` over `payload`.
pub(crate) fn sign(
    typ: ObjectType,
    alg: Algorithm,
    kid: Option<Kid>,
    payload: Vec<u8>,
    signer: impl FnOnce(&[u8]) -> Result<Vec<u8>, TokenError>,
) -> Result<Vec<u8>, TokenError> {
    let cose_alg = match alg {
        Algorithm::EdDsa => iana::Algorithm::EdDSA,
        Algorithm::Es256 => iana::Algorithm::ES256,
    };
    let mut header = HeaderBuilder::new().algorithm(cose_alg);
    if let Some(kid) = kid {
        header = header.key_id(kid.0.to_vec());
    }
    let header = header.value(TYP, ciborium::Value::Text(typ.typ().to_owned()));
    coset::CoseSign1Builder::new()
        .protected(header.build())
        .payload(payload)
        .try_create_signature(&[], signer)?
        .build()
        .to_tagged_vec()
        .map_err(|_| TokenError::Malformed)
}

/// Decodes an untagged/tagged envelope only far enough to report its headers, for
/// inspection tools; no rule beyond the structural bounds is applied.
pub(crate) fn peek(bytes: &[u8]) -> Result<CoseSign1, TokenError> {
    bounds::check(bytes, bounds::LIMITS)?;
    CoseSign1::from_tagged_slice(bytes)
        .or_else(|_| CoseSign1::from_slice(bytes))
        .map_err(|_| TokenError::Malformed)
}
