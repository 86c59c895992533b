//! Online tokens (`CP1`): signed by the issuer, valid for about a minute.

use crate::TokenError;
use crate::claims::OnlineClaims;
use crate::envelope::{self, Envelope, ObjectType};
use crate::keys::{Algorithm, IssuerKey, Kid};
use crate::keyset::{KeySet, KeyUsage};
use crate::signature_check::SignatureCheck;
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
/// key lookup and pinned algorithm ([`read_online`]), then the signature, and only
/// then are the claims believed and their times checked ([`UncheckedOnline::finish`]).
pub fn verify_online(
    text: &str,
    keys: &KeySet,
    v: &Validation,
) -> Result<VerifiedToken, TokenError> {
    read_online(text, keys, v)?.finish(v)
}

/// A `CP1:` code read up to its signature: text, structure, headers, key and pinned
/// algorithm passed; the signature is not yet checked and nothing in the claims is
/// believed.
#[derive(Debug)]
pub struct UncheckedOnline {
    kid: Kid,
    payload: Vec<u8>,
    signature: SignatureCheck,
}

/// The first half of [`verify_online`]: everything before the signature.
pub fn read_online(
    text: &str,
    keys: &KeySet,
    v: &Validation,
) -> Result<UncheckedOnline, TokenError> {
    let bytes = text::decode(text, CodeKind::Online)?;
    let mut env = Envelope::parse(&bytes, ObjectType::Online)?;
    let kid = env.kid.ok_or(TokenError::BadKid)?;
    let key = keys.usable(&kid, KeyUsage::Code, v.now)?;
    let signature = env.signature_check(&key.key)?;
    Ok(UncheckedOnline {
        kid,
        payload: std::mem::take(&mut env.payload),
        signature,
    })
}

impl UncheckedOnline {
    /// The issuer's Ed25519 signature, to be decided in a batch before [`Self::finish`].
    pub fn signature_mut(&mut self) -> &mut SignatureCheck {
        &mut self.signature
    }

    /// The second half of [`verify_online`]: the signature (checked alone unless a batch
    /// decided it), then the claims and their times under `v`.
    pub fn finish(mut self, v: &Validation) -> Result<VerifiedToken, TokenError> {
        self.signature.outcome()?;
        let claims = OnlineClaims::from_cbor(&self.payload)?;
        v.check_times(claims.iat, claims.exp, v.max_token_lifetime)?;
        Ok(VerifiedToken {
            kid: self.kid,
            claims,
        })
    }
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
