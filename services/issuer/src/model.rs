//! What an app asks the issuer for and what it gets, in the issuer's own types.
//!
//! [`crate::issuance::Issuance`] takes and returns these, never generated messages:
//! the gRPC layer ([`crate::convert`]) parses ids, hashes the signed body and reads
//! the wire's durations and scene numbers into them, and turns the answers back into
//! messages. So the decisions can be read, and tested, without the transport.

use std::time::Duration;

use citypass_device_proof::Proof;
use citypass_token::{DeviceId, Kid, PublicKey, Scopes, SubjectId};

/// A call made with a citizen's device authority: who it claims to be, the device's
/// proof, and what the proof signed.
#[derive(Debug, Clone)]
pub struct DeviceCall {
    /// The gRPC method path the proof must be over.
    pub method: &'static str,
    /// The subject the code or certificate is for.
    pub subject: SubjectId,
    /// The device whose key signed the request.
    pub device: DeviceId,
    /// The proof, if the request carried one.
    pub proof: Option<Proof>,
    /// SHA-256 of the request as encoded with its proof unset.
    pub body_sha256: [u8; 32],
    /// The scenes asked for; `None` for every scene the policy allows.
    pub requested: Option<Scopes>,
}

/// IssueToken.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// Who asks.
    pub call: DeviceCall,
    /// Whether to render the QR as SVG too.
    pub want_svg: bool,
}

/// An online code.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCode {
    /// The QR text (`CP1:…`).
    pub text: String,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// The scenes it is good for.
    pub scopes: Scopes,
    /// The QR as SVG, when asked for.
    pub svg: Option<String>,
}

impl std::fmt::Debug for IssuedCode {
    // The code text is a bearer credential: never in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCode")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// IssueDeviceCertificate.
#[derive(Debug, Clone)]
pub struct CertificateRequest {
    /// Who asks.
    pub call: DeviceCall,
    /// The fresh P-256 key the phone will sign offline codes with.
    pub offline_key: PublicKey,
    /// The life asked for (whole seconds, at least one); `None` for the default.
    pub lifetime: Option<Duration>,
}

/// A device certificate, recorded at identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// The encoded certificate.
    pub bytes: Vec<u8>,
    /// Its random serial.
    pub serial: citypass_token::CertSerial,
    /// Unix seconds (also the server time the app corrects its clock by).
    pub not_before: u64,
    /// Unix seconds.
    pub not_after: u64,
    /// The scenes it is good for.
    pub scopes: Scopes,
    /// The key that signed it.
    pub kid: Kid,
}
