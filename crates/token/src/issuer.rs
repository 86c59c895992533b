//! The issuing side in one place: sealing the subject, fresh ids, signing.
//!
//! Services and the demo call this rather than assembling claims themselves, so
//! every code gets a fresh random `cti`/serial and a sealed subject, with no path that
//! forgets either.

use ring::rand::{SecureRandom, SystemRandom};

use crate::TokenError;
use crate::certificate::sign_certificate;
use crate::claims::{CertificateClaims, OnlineClaims};
use crate::envelope::ObjectType;
use crate::ids::{CertSerial, Cti, ID_LEN};
use crate::keys::{IssuerKey, PublicKey};
use crate::online::sign_online;
use crate::scope::Scopes;
use crate::seal::SubjectKey;

/// An online token just issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The `CP1:` text to render as a QR.
    pub text: String,
    pub cti: Cti,
    pub iat: u64,
    pub exp: u64,
}

/// A device certificate just issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// Tagged COSE_Sign1 bytes.
    pub bytes: Vec<u8>,
    pub serial: CertSerial,
    pub iat: u64,
    pub exp: u64,
}

/// Signs codes and certificates for subjects.
pub struct Issuer {
    iss: String,
    key: IssuerKey,
    subject_key: SubjectKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("iss", &self.iss)
            .field("kid", &self.key.kid())
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// An issuer named `iss` signing with `key` and sealing with `subject_key`.
    pub fn new(iss: impl Into<String>, key: IssuerKey, subject_key: SubjectKey) -> Self {
        Issuer {
            iss: iss.into(),
            key,
            subject_key,
            rng: SystemRandom::new(),
        }
    }

    /// The signing key.
    pub fn key(&self) -> &IssuerKey {
        &self.key
    }

    fn fresh_id(&self) -> Result<[u8; ID_LEN], TokenError> {
        let mut id = [0u8; ID_LEN];
        self.rng.fill(&mut id).map_err(|_| TokenError::Crypto)?;
        Ok(id)
    }

    /// The subject key's id, written into every subject this issuer seals.
    pub fn subject_key_id(&self) -> u8 {
        self.subject_key.id()
    }

    /// Issues a `CP1:` code for `subject`, valid from `now` for `lifetime` seconds.
    /// `now + lifetime` beyond Unix seconds is refused ([`TokenError::TimeOverflow`]).
    pub fn issue_token(
        &self,
        subject: &[u8],
        scopes: Scopes,
        now: u64,
        lifetime: u64,
    ) -> Result<IssuedToken, TokenError> {
        self.issue_token_with_cti(
            subject,
            scopes,
            now,
            expiry(now, lifetime)?,
            Cti::from_bytes(self.fresh_id()?),
        )
    }

    /// As [`Issuer::issue_token`] with a caller-chosen `cti`: for test vectors only;
    /// a reused `cti` breaks replay protection and unlinkability.
    pub fn issue_token_with_cti(
        &self,
        subject: &[u8],
        scopes: Scopes,
        iat: u64,
        exp: u64,
        cti: Cti,
    ) -> Result<IssuedToken, TokenError> {
        let claims = OnlineClaims {
            iss: self.iss.clone(),
            sealed_sub: self
                .subject_key
                .seal(subject, cti.as_bytes(), ObjectType::Online.typ())?,
            iat,
            exp,
            cti,
            scopes,
        };
        Ok(IssuedToken {
            text: sign_online(&self.key, &claims)?,
            cti,
            iat,
            exp,
        })
    }

    /// Certifies `offline_key` for `subject`, valid from `now` for `lifetime` seconds.
    /// `now + lifetime` beyond Unix seconds is refused ([`TokenError::TimeOverflow`]).
    pub fn certify(
        &self,
        subject: &[u8],
        offline_key: &PublicKey,
        scopes: Scopes,
        now: u64,
        lifetime: u64,
    ) -> Result<IssuedCertificate, TokenError> {
        self.certify_with_serial(
            subject,
            offline_key,
            scopes,
            now,
            expiry(now, lifetime)?,
            CertSerial::from_bytes(self.fresh_id()?),
        )
    }

    /// As [`Issuer::certify`] with a caller-chosen serial: for test vectors only.
    pub fn certify_with_serial(
        &self,
        subject: &[u8],
        offline_key: &PublicKey,
        scopes: Scopes,
        iat: u64,
        exp: u64,
        serial: CertSerial,
    ) -> Result<IssuedCertificate, TokenError> {
        if offline_key.p256_xy().is_none() {
            return Err(TokenError::InvalidKey("offline key must be P-256"));
        }
        let claims = CertificateClaims {
            iss: self.iss.clone(),
            sealed_sub: self.subject_key.seal(
                subject,
                serial.as_bytes(),
                ObjectType::Certificate.typ(),
            )?,
            iat,
            exp,
            serial,
            scopes,
            offline_key: offline_key.clone(),
        };
        Ok(IssuedCertificate {
            bytes: sign_certificate(&self.key, &claims)?,
            serial,
            iat,
            exp,
        })
    }
}

/// `now + lifetime`, refused rather than saturated: a saturated `exp` would make a
/// code whose lifetime every verifier refuses, and hide the configuration at fault.
fn expiry(now: u64, lifetime: u64) -> Result<u64, TokenError> {
    now.checked_add(lifetime).ok_or(TokenError::TimeOverflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::DeviceKey;

    #[test]
    fn smaller_findings_an_overflowing_lifetime_is_an_error_not_a_saturated_exp() {
        let issuer = Issuer::new(
            "cp",
            IssuerKey::from_seed(&[0x11; 32]).unwrap(),
            SubjectKey::from_bytes(&[0x22; 32]).unwrap(),
        );
        let now = u64::MAX - 10;
        assert_eq!(
            issuer.issue_token(&[1; 16], Scopes::all(), now, 60),
            Err(TokenError::TimeOverflow)
        );
        let offline = DeviceKey::generate(&SystemRandom::new()).unwrap();
        assert_eq!(
            issuer.certify(&[1; 16], offline.public_key(), Scopes::all(), now, 60),
            Err(TokenError::TimeOverflow)
        );
        let last = issuer
            .issue_token(&[1; 16], Scopes::all(), now, 10)
            .expect("the last second fits");
        assert_eq!(last.exp, u64::MAX);
    }
}
