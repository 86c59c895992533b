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
    let env = Envelope::parse(bytes, ObjectType::Certificate)?;
    let kid = env.kid.ok_or(TokenError::BadKid)?;
    let key = keys.usable(&kid, KeyUsage::Code, v.now)?;
    env.verify(&key.key)?;
    let claims = CertificateClaims::from_cbor(&env.payload)?;
    v.check_times(claims.iat, claims.exp, v.max_certificate_lifetime)?;
    Ok(VerifiedCertificate { kid, claims })
}
