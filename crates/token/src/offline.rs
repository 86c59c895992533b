//! Offline codes (`CP2`): made on the phone with the certified offline key.
//!
//! The phone signs a tiny claim set (`iat`, `exp`, `cti`, a counter) and embeds its
//! device certificate, so a gate with no network and only the issuer's public keys
//! can check the whole chain. The code's times must lie within the certificate's
//! validity, and its lifetime is capped, because the phone chooses them.

use ring::rand::SecureRandom;

use crate::TokenError;
use crate::certificate::{UncheckedCertificate, VerifiedCertificate, read_certificate};
use crate::claims::{CertificateClaims, OfflineClaims};
use crate::envelope::{self, Envelope, ObjectType};
use crate::ids::{Cti, ID_LEN};
use crate::keys::{Algorithm, DeviceKey, Kid};
use crate::keyset::KeySet;
use crate::signature_check::SignatureCheck;
use crate::text::{self, CodeKind};
use crate::validation::Validation;

/// An offline code whose certificate chain, signature and times passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedOffline {
    /// The issuer key that signed the certificate.
    pub issuer_kid: Kid,
    pub certificate: CertificateClaims,
    pub iat: u64,
    pub exp: u64,
    pub cti: Cti,
    pub counter: u64,
}

/// Signs `claims` (which embed the certificate) with the offline key, as a `CP2:` code.
pub fn sign_offline(
    key: &DeviceKey,
    claims: &OfflineClaims,
    rng: &dyn SecureRandom,
) -> Result<String, TokenError> {
    let bytes = envelope::sign(
        ObjectType::Offline,
        Algorithm::Es256,
        None,
        claims.to_cbor()?,
        |tbs| key.sign(rng, tbs),
    )?;
    Ok(text::encode(CodeKind::Offline, &bytes))
}

/// Verifies a `CP2:` code against the issuer's `keys` under `v`. The certificate must
/// be signed by a key published for codes (`KeyUsage::Code`).
pub fn verify_offline(
    text: &str,
    keys: &KeySet,
    v: &Validation,
) -> Result<VerifiedOffline, TokenError> {
    read_offline(text, keys, v)?.finish(v)
}

/// A `CP2:` code read up to its certificate's issuer signature (the Ed25519 one a
/// batch can decide); neither signature is checked yet.
#[derive(Debug)]
pub struct UncheckedOffline {
    env: Envelope,
    claims: OfflineClaims,
    certificate: UncheckedCertificate,
}

/// The first half of [`verify_offline`]: the code's structure and headers, its
/// claims, and its certificate's structure, headers, key and pinned algorithm.
pub fn read_offline(
    text: &str,
    keys: &KeySet,
    v: &Validation,
) -> Result<UncheckedOffline, TokenError> {
    let bytes = text::decode(text, CodeKind::Offline)?;
    let env = Envelope::parse(&bytes, ObjectType::Offline)?;
    // The claims are read before the outer signature is checked because they carry
    // the key; nothing in them is believed until that signature passes in `finish`.
    let claims = OfflineClaims::from_cbor(&env.payload)?;
    let certificate =
        read_certificate(&claims.certificate, keys, v).map_err(certificate_failure)?;
    Ok(UncheckedOffline {
        env,
        claims,
        certificate,
    })
}

impl UncheckedOffline {
    /// The certificate's Ed25519 issuer signature, to be decided in a batch before
    /// [`Self::finish`] (the code's own ES256 signature is always checked alone).
    pub fn signature_mut(&mut self) -> &mut SignatureCheck {
        &mut self.certificate.signature
    }

    /// The second half of [`verify_offline`]: the certificate (signature, claims,
    /// times), then the code's signature with the certified key, then its times.
    pub fn finish(self, v: &Validation) -> Result<VerifiedOffline, TokenError> {
        let UncheckedOffline {
            env,
            claims,
            certificate,
        } = self;
        let VerifiedCertificate {
            kid: issuer_kid,
            claims: certificate,
        } = certificate.finish(v).map_err(certificate_failure)?;
        env.verify(&certificate.offline_key)?;
        v.check_times(claims.iat, claims.exp, v.max_offline_lifetime)?;
        if claims.iat.saturating_add(v.skew) < certificate.iat
            || claims.exp > certificate.exp.saturating_add(v.skew)
        {
            return Err(TokenError::OutsideCertificate);
        }
        Ok(VerifiedOffline {
            issuer_kid,
            certificate,
            iat: claims.iat,
            exp: claims.exp,
            cti: claims.cti,
            counter: claims.counter,
        })
    }
}

/// How a certificate's failure reads as the code's.
fn certificate_failure(e: TokenError) -> TokenError {
    match e {
        TokenError::Expired => TokenError::CertificateExpired,
        TokenError::NotYetValid => TokenError::CertificateNotYetValid,
        other => TokenError::CertificateInvalid(Box::new(other)),
    }
}

/// What a phone holds to make offline codes: the offline key and its certificate.
pub struct OfflineSigner {
    key: DeviceKey,
    certificate: Vec<u8>,
    claims: CertificateClaims,
}

impl OfflineSigner {
    /// Pairs `key` with its certificate, refusing a certificate for another key.
    ///
    /// The certificate's signature is not checked here (the phone trusts the issuer
    /// it just talked to); gates check it on every scan.
    pub fn new(key: DeviceKey, certificate: Vec<u8>) -> Result<Self, TokenError> {
        let env = Envelope::parse(&certificate, ObjectType::Certificate)?;
        let claims = CertificateClaims::from_cbor(&env.payload)?;
        if &claims.offline_key != key.public_key() {
            return Err(TokenError::InvalidKey(
                "certificate is for another offline key",
            ));
        }
        Ok(OfflineSigner {
            key,
            certificate,
            claims,
        })
    }

    /// The certificate's claims (serial, validity, scopes).
    pub fn certificate(&self) -> &CertificateClaims {
        &self.claims
    }

    /// Makes a `CP2:` code valid from `now` for `lifetime` seconds (cut at the
    /// certificate's expiry), with the phone's next `counter` value.
    pub fn make_code(
        &self,
        now: u64,
        lifetime: u64,
        counter: u64,
        rng: &dyn SecureRandom,
    ) -> Result<String, TokenError> {
        let mut cti = [0u8; ID_LEN];
        rng.fill(&mut cti).map_err(|_| TokenError::Crypto)?;
        let claims = OfflineClaims {
            iat: now,
            exp: now.saturating_add(lifetime).min(self.claims.exp),
            cti: Cti::from_bytes(cti),
            counter,
            certificate: self.certificate.clone(),
        };
        sign_offline(&self.key, &claims, rng)
    }
}

impl VerifiedOffline {
    /// Opens the certificate's sealed subject with the verifier's subject key, or with
    /// the key its id names among a ring of them ([`crate::SubjectKeys`]).
    pub fn subject<K: crate::seal::SubjectOpener + ?Sized>(
        &self,
        keys: &K,
    ) -> Result<Vec<u8>, TokenError> {
        keys.open_subject(
            &self.certificate.sealed_sub,
            self.certificate.serial.as_bytes(),
            ObjectType::Certificate.typ(),
        )
    }
}
