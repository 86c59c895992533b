//! Inspection: what a code says about itself, without trusting or unsealing it.
//!
//! Operators and gate integrators debug codes with this (`citypass token inspect`).
//! Nothing is verified here and the subject is never unsealed; the result reports
//! headers, times, scopes, sizes and the QR version.

use coset::RegisteredLabelWithPrivate;

use crate::TokenError;
use crate::claims::{CertificateClaims, OfflineClaims, OnlineClaims};
use crate::envelope;
use crate::ids::CertSerial;
use crate::keys::Kid;
use crate::qr::Qr;
use crate::scope::Scopes;
use crate::text::{self, CodeKind};

/// What a code claims, unverified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub kind: CodeKind,
    /// The protected `alg` as a COSE id, if present.
    pub alg: Option<i64>,
    pub kid: Option<Kid>,
    pub typ: Option<String>,
    pub iat: u64,
    pub exp: u64,
    pub scopes: Scopes,
    /// Characters of text (what the QR carries).
    pub text_len: usize,
    /// Bytes of COSE.
    pub cose_len: usize,
    /// QR version at error-correction level M.
    pub qr_version: u8,
    /// For offline codes: the embedded certificate.
    pub certificate: Option<CertificateSummary>,
    /// For offline codes: the counter.
    pub counter: Option<u64>,
}

/// The embedded certificate of an offline code, unverified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSummary {
    pub kid: Option<Kid>,
    pub serial: CertSerial,
    pub iat: u64,
    pub exp: u64,
    pub scopes: Scopes,
}

struct Headers {
    alg: Option<i64>,
    kid: Option<Kid>,
    typ: Option<String>,
    payload: Vec<u8>,
}

fn headers(bytes: &[u8]) -> Result<Headers, TokenError> {
    let sign1 = envelope::peek(bytes)?;
    let h = sign1.protected.header;
    let alg = match h.alg {
        Some(RegisteredLabelWithPrivate::Assigned(a)) => Some(a as i64),
        Some(RegisteredLabelWithPrivate::PrivateUse(i)) => Some(i),
        _ => None,
    };
    let kid = Kid::from_slice(&h.key_id).ok();
    let typ = h
        .rest
        .iter()
        .find(|(l, _)| *l == coset::Label::Int(16))
        .and_then(|(_, v)| v.as_text().map(str::to_owned));
    Ok(Headers {
        alg,
        kid,
        typ,
        payload: sign1.payload.ok_or(TokenError::Malformed)?,
    })
}

/// Inspects a `CP1:` or `CP2:` code.
pub fn inspect(code: &str) -> Result<Inspection, TokenError> {
    let kind = text::kind_of(code)?;
    let bytes = text::decode(code, kind)?;
    let outer = headers(&bytes)?;
    let qr_version = Qr::encode(code)?.version();
    let mut out = Inspection {
        kind,
        alg: outer.alg,
        kid: outer.kid,
        typ: outer.typ,
        iat: 0,
        exp: 0,
        scopes: Scopes::NONE,
        text_len: code.len(),
        cose_len: bytes.len(),
        qr_version,
        certificate: None,
        counter: None,
    };
    match kind {
        CodeKind::Online => {
            let c = OnlineClaims::from_cbor(&outer.payload)?;
            (out.iat, out.exp, out.scopes) = (c.iat, c.exp, c.scopes);
        }
        CodeKind::Offline => {
            let c = OfflineClaims::from_cbor(&outer.payload)?;
            let cert_headers = headers(&c.certificate)?;
            let cert = CertificateClaims::from_cbor(&cert_headers.payload)?;
            (out.iat, out.exp, out.scopes) = (c.iat, c.exp, cert.scopes);
            out.counter = Some(c.counter);
            out.certificate = Some(CertificateSummary {
                kid: cert_headers.kid,
                serial: cert.serial,
                iat: cert.iat,
                exp: cert.exp,
                scopes: cert.scopes,
            });
        }
    }
    Ok(out)
}
