//! Device certificates: the issuer certifies a fresh P-256 offline key for one phone.
//!
//! A certificate is never shown at a gate by itself (its `typ` differs from every
//! code's); it travels embedded in offline codes, and an offline gate needs only the
//! issuer's public keys to check it.

use crate::TokenError;
use crate::claims::CertificateClaims;
use crate::envelope::{self, Envelope, ObjectType};
use crate::keys::{Algorithm, IssuerKey, Kid};
use crate::keyset::{KeySet, KeyUsage};
use crate::signature_check::SignatureCheck;
use crate::validation::Validation;

/// A certificate whose issuer signature, key, type and times passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCertificate {
    /// The issuer key that signed it.
    pub kid: Kid,
    pub claims: CertificateClaims,
}

/// Signs `claims` as a device certificate (tagged COSE_Sign1 bytes).
pub fn sign_certificate(
    key: &IssuerKey,
    claims: &CertificateClaims,
) -> Result<Vec<u8>, TokenError> {
    envelope::sign(
        ObjectType::Certificate,
        Algorithm::EdDsa,
        Some(key.kid()),
        claims.to_cbor()?,
        |tbs| Ok(key.sign(tbs)),
    )
}

/// Verifies certificate bytes against `keys` under `v`. Only a key published for
/// codes ([`KeyUsage::Code`]) is accepted.
pub fn verify_certificate(
    bytes: &[u8],
    keys: &KeySet,
    v: &Validation,
) -> Result<VerifiedCertificate, TokenError> {
    read_certificate(bytes, keys, v)?.finish(v)
}

/// A certificate read up to its issuer signature (structure, headers, key, pinned
/// algorithm); the signature is not yet checked.
#[derive(Debug)]
pub(crate) struct UncheckedCertificate {
    kid: Kid,
    payload: Vec<u8>,
    pub(crate) signature: SignatureCheck,
}

/// The first half of [`verify_certificate`].
pub(crate) fn read_certificate(
    bytes: &[u8],
    keys: &KeySet,
    v: &Validation,
) -> Result<UncheckedCertificate, TokenError> {
    let mut env = Envelope::parse(bytes, ObjectType::Certificate)?;
    let kid = env.kid.ok_or(TokenError::BadKid)?;
    let key = keys.usable(&kid, KeyUsage::Code, v.now)?;
    let signature = env.signature_check(&key.key)?;
    Ok(UncheckedCertificate {
        kid,
        payload: std::mem::take(&mut env.payload),
        signature,
    })
}

impl UncheckedCertificate {
    /// The second half: the signature (alone unless a batch decided it), the claims,
    /// their times.
    pub(crate) fn finish(mut self, v: &Validation) -> Result<VerifiedCertificate, TokenError> {
        self.signature.outcome()?;
        let claims = CertificateClaims::from_cbor(&self.payload)?;
        v.check_times(claims.iat, claims.exp, v.max_certificate_lifetime)?;
        Ok(VerifiedCertificate {
            kid: self.kid,
            claims,
        })
    }
}
