//! Online tokens (`CP1`): signed by the issuer, valid for about a minute.

use crate::TokenError;
use crate::claims::OnlineClaims;
use crate::envelope::{self, Envelope, ObjectType};
use crate::keys::{Algorithm, IssuerKey, Kid};
use crate::keyset::{KeySet, KeyUsage};
use crate::text::{self, CodeKind};
use crate::validation::Validation;

/// An online token whose signature, key, type and times all passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The issuer key that signed it.
    pub kid: Kid,
    pub claims: OnlineClaims,
}

/// Signs `claims` as a `CP1:` code.
pub fn sign_online(key: &IssuerKey, claims: &OnlineClaims) -> Result<String, TokenError> {
    let bytes = envelope::sign(
        ObjectType::Online,
        Algorithm::EdDsa,
        Some(key.kid()),
        claims.to_cbor()?,
        |tbs| Ok(key.sign(tbs)),
    )?;
    Ok(text::encode(CodeKind::Online, &bytes))
}

/// Verifies a `CP1:` code against `keys` under the time rules `v`. Only a key
/// published for codes ([`KeyUsage::Code`]) is accepted.
///
/// Order matters for cost and for safety: text and structure limits, header rules,
/// key lookup and pinned algorithm, then the signature, and only then are the claims
/// believed and their times checked.
pub fn verify_online(
    text: &str,
    keys: &KeySet,
    v: &Validation,
) -> Result<VerifiedToken, TokenError> {
    let bytes = text::decode(text, CodeKind::Online)?;
    let env = Envelope::parse(&bytes, ObjectType::Online)?;
    let kid = env.kid.ok_or(TokenError::BadKid)?;
    let key = keys.usable(&kid, KeyUsage::Code, v.now)?;
    env.verify(&key.key)?;
    let claims = OnlineClaims::from_cbor(&env.payload)?;
    v.check_times(claims.iat, claims.exp, v.max_token_lifetime)?;
    Ok(VerifiedToken { kid, claims })
}

impl VerifiedToken {
    /// Opens the sealed subject with the verifier's subject key, or with the key its
    /// id names among a ring of them ([`crate::SubjectKeys`]).
    pub fn subject<K: crate::seal::SubjectOpener + ?Sized>(
        &self,
        keys: &K,
    ) -> Result<Vec<u8>, TokenError> {
        keys.open_subject(
            &self.claims.sealed_sub,
            self.claims.cti.as_bytes(),
            ObjectType::Online.typ(),
        )
    }
}
