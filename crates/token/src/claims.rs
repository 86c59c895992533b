//! CWT claim sets (RFC 8392) of the three objects, with strict decoding.
//!
//! Claims are integer-labelled and written in deterministic order (registered labels
//! ascending, then private labels), so that fixed inputs give fixed bytes. Decoding
//! refuses duplicate labels, wrong types and wrong sizes, and ignores unknown labels:
//! they are covered by the signature, so a newer issuer may add claims safely.
//!
//! One deliberate deviation: `sub` (2) carries the *sealed* subject as a byte string.
//! RFC 8392 types `sub` as text; base64 text would cost 11 bytes more and push the
//! online QR past version 9. A generic CWT library still verifies the COSE signature;
//! only its typed view of `sub` differs.

use ciborium::Value;

use crate::TokenError;
use crate::bounds;
use crate::ids::{CertSerial, Cti};
use crate::keys::PublicKey;
use crate::scope::Scopes;

const ISS: i64 = 1;
const SUB: i64 = 2;
const EXP: i64 = 4;
const IAT: i64 = 6;
const CTI: i64 = 7;
const CNF: i64 = 8;
/// Private-use claim labels (RFC 8392 §9.1: below -65536).
const SCOPES: i64 = -65537;
const COUNTER: i64 = -65538;
const CERTIFICATE: i64 = -65539;

/// `cnf` (RFC 8747) confirmation method: a COSE_Key.
const CNF_COSE_KEY: i64 = 1;

use crate::ids::ID_LEN;

/// Claims of an online token (`CP1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineClaims {
    /// Issuer name (the only field shared by two codes of one subject).
    pub iss: String,
    /// The subject id sealed under the verifier's subject key, nonce from `cti`.
    pub sealed_sub: Vec<u8>,
    pub iat: u64,
    pub exp: u64,
    /// 16 random bytes: the code's identity for replay and revocation.
    pub cti: Cti,
    pub scopes: Scopes,
}

/// Claims of a device certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateClaims {
    pub iss: String,
    /// The subject id sealed under the verifier's subject key, nonce from `serial`.
    pub sealed_sub: Vec<u8>,
    /// Server time when certified: the phone's anchor for its own clock.
    pub iat: u64,
    pub exp: u64,
    /// Random serial (carried as `cti`), what offline gates revoke.
    pub serial: CertSerial,
    pub scopes: Scopes,
    /// The certified offline key (`cnf`), P-256.
    pub offline_key: PublicKey,
}

/// Claims of an offline code (`CP2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineClaims {
    pub iat: u64,
    pub exp: u64,
    pub cti: Cti,
    /// Monotonic per certificate: a gate refuses a counter it has seen exceeded.
    pub counter: u64,
    /// The embedded device certificate (tagged COSE_Sign1 bytes).
    pub certificate: Vec<u8>,
}

fn int(i: i64) -> Value {
    Value::Integer(i.into())
}

fn uint(u: u64) -> Value {
    Value::Integer(u.into())
}

fn encode(entries: Vec<(i64, Value)>) -> Result<Vec<u8>, TokenError> {
    let map = Value::Map(entries.into_iter().map(|(k, v)| (int(k), v)).collect());
    let mut out = Vec::with_capacity(128);
    ciborium::into_writer(&map, &mut out).map_err(|_| TokenError::Malformed)?;
    Ok(out)
}

impl OnlineClaims {
    pub(crate) fn to_cbor(&self) -> Result<Vec<u8>, TokenError> {
        encode(vec![
            (ISS, Value::Text(self.iss.clone())),
            (SUB, Value::Bytes(self.sealed_sub.clone())),
            (EXP, uint(self.exp)),
            (IAT, uint(self.iat)),
            (CTI, Value::Bytes(self.cti.as_bytes().to_vec())),
            (SCOPES, uint(self.scopes.bits())),
        ])
    }

    pub(crate) fn from_cbor(bytes: &[u8]) -> Result<Self, TokenError> {
        let mut m = ClaimMap::parse(bytes)?;
        Ok(OnlineClaims {
            iss: m.text(ISS, "iss")?,
            sealed_sub: m.bytes(SUB, "sub")?,
            iat: m.uint(IAT, "iat")?,
            exp: m.uint(EXP, "exp")?,
            cti: Cti::from_bytes(m.id(CTI, "cti")?),
            scopes: Scopes::from_bits(m.uint(SCOPES, "scopes")?),
        })
    }
}

impl CertificateClaims {
    pub(crate) fn to_cbor(&self) -> Result<Vec<u8>, TokenError> {
        let (x, y) = self
            .offline_key
            .p256_xy()
            .ok_or(TokenError::InvalidKey("offline key must be P-256"))?;
        let cose_key = Value::Map(vec![
            (int(1), int(2)),  // kty: EC2
            (int(-1), int(1)), // crv: P-256
            (int(-2), Value::Bytes(x.to_vec())),
            (int(-3), Value::Bytes(y.to_vec())),
        ]);
        encode(vec![
            (ISS, Value::Text(self.iss.clone())),
            (SUB, Value::Bytes(self.sealed_sub.clone())),
            (EXP, uint(self.exp)),
            (IAT, uint(self.iat)),
            (CTI, Value::Bytes(self.serial.as_bytes().to_vec())),
            (CNF, Value::Map(vec![(int(CNF_COSE_KEY), cose_key)])),
            (SCOPES, uint(self.scopes.bits())),
        ])
    }

    pub(crate) fn from_cbor(bytes: &[u8]) -> Result<Self, TokenError> {
        let mut m = ClaimMap::parse(bytes)?;
        let cnf = m.take(CNF, "cnf")?;
        Ok(CertificateClaims {
            iss: m.text(ISS, "iss")?,
            sealed_sub: m.bytes(SUB, "sub")?,
            iat: m.uint(IAT, "iat")?,
            exp: m.uint(EXP, "exp")?,
            serial: CertSerial::from_bytes(m.id(CTI, "cti")?),
            scopes: Scopes::from_bits(m.uint(SCOPES, "scopes")?),
            offline_key: cnf_key(cnf)?,
        })
    }
}

/// The P-256 key inside `cnf`: `{1: {1: 2, -1: 1, -2: x, -3: y}}`.
fn cnf_key(cnf: Value) -> Result<PublicKey, TokenError> {
    const WHAT: &str = "cnf";
    let mut cnf = ClaimMap::from_value(cnf, WHAT)?;
    let key = cnf.take(CNF_COSE_KEY, WHAT)?;
    let mut key = ClaimMap::from_value(key, WHAT)?;
    let (kty, crv) = (key.uint(1, WHAT)?, key.int(-1, WHAT)?);
    if kty != 2 || crv != 1 {
        return Err(TokenError::InvalidClaim(WHAT));
    }
    let x = key.bytes(-2, WHAT)?;
    let y = key.bytes(-3, WHAT)?;
    PublicKey::p256_from_xy_unchecked(&x, &y).map_err(|_| TokenError::InvalidClaim(WHAT))
}

impl OfflineClaims {
    pub(crate) fn to_cbor(&self) -> Result<Vec<u8>, TokenError> {
        encode(vec![
            (EXP, uint(self.exp)),
            (IAT, uint(self.iat)),
            (CTI, Value::Bytes(self.cti.as_bytes().to_vec())),
            (COUNTER, uint(self.counter)),
            (CERTIFICATE, Value::Bytes(self.certificate.clone())),
        ])
    }

    pub(crate) fn from_cbor(bytes: &[u8]) -> Result<Self, TokenError> {
        let mut m = ClaimMap::parse(bytes)?;
        Ok(OfflineClaims {
            iat: m.uint(IAT, "iat")?,
            exp: m.uint(EXP, "exp")?,
            cti: Cti::from_bytes(m.id(CTI, "cti")?),
            counter: m.uint(COUNTER, "counter")?,
            certificate: m.bytes(CERTIFICATE, "certificate")?,
        })
    }
}

/// An integer-labelled CBOR map whose labels are known to be unique.
struct ClaimMap(Vec<(i64, Value)>);

impl ClaimMap {
    fn parse(bytes: &[u8]) -> Result<Self, TokenError> {
        bounds::check(bytes, bounds::LIMITS)?;
        let value: Value = ciborium::from_reader(bytes).map_err(|_| TokenError::Malformed)?;
        Self::from_value(value, "claims")
    }

    fn from_value(value: Value, what: &'static str) -> Result<Self, TokenError> {
        let Value::Map(entries) = value else {
            return Err(TokenError::InvalidClaim(what));
        };
        let mut out: Vec<(i64, Value)> = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            // Text labels are legal CWT but unused by citypass: skip them.
            let Value::Integer(k) = k else { continue };
            let Ok(k) = i64::try_from(i128::from(k)) else {
                continue;
            };
            if out.iter().any(|(seen, _)| *seen == k) {
                return Err(TokenError::DuplicateClaim);
            }
            out.push((k, v));
        }
        Ok(ClaimMap(out))
    }

    fn take(&mut self, label: i64, name: &'static str) -> Result<Value, TokenError> {
        let i = self
            .0
            .iter()
            .position(|(k, _)| *k == label)
            .ok_or(TokenError::MissingClaim(name))?;
        Ok(self.0.swap_remove(i).1)
    }

    fn int(&mut self, label: i64, name: &'static str) -> Result<i64, TokenError> {
        match self.take(label, name)? {
            Value::Integer(i) => {
                i64::try_from(i128::from(i)).map_err(|_| TokenError::InvalidClaim(name))
            }
            _ => Err(TokenError::InvalidClaim(name)),
        }
    }

    fn uint(&mut self, label: i64, name: &'static str) -> Result<u64, TokenError> {
        match self.take(label, name)? {
            Value::Integer(i) => u64::try_from(i).map_err(|_| TokenError::InvalidClaim(name)),
            _ => Err(TokenError::InvalidClaim(name)),
        }
    }

    fn bytes(&mut self, label: i64, name: &'static str) -> Result<Vec<u8>, TokenError> {
        match self.take(label, name)? {
            Value::Bytes(b) => Ok(b),
            _ => Err(TokenError::InvalidClaim(name)),
        }
    }

    fn text(&mut self, label: i64, name: &'static str) -> Result<String, TokenError> {
        match self.take(label, name)? {
            Value::Text(t) => Ok(t),
            _ => Err(TokenError::InvalidClaim(name)),
        }
    }

    fn id(&mut self, label: i64, name: &'static str) -> Result<[u8; ID_LEN], TokenError> {
        self.bytes(label, name)?
            .try_into()
            .map_err(|_| TokenError::InvalidClaim(name))
    }
}
