//! Device proofs: only the device that holds the bound key gets codes.
//!
//! An app request carries a `DeviceProof`: an ES256 signature by the bound device key
//! over the full gRPC method path, a timestamp, a nonce and the SHA-256 of the request
//! encoded with its proof unset (the byte layout is `citypass_token::RequestProof`, so
//! app and issuer share it). The issuer re-encodes the request it decoded to hash it, so
//! a request with fields the issuer does not know (dropped when decoding) fails closed.
//!
//! Checks, in the order that keeps them cheap for honest callers and useless to others:
//! 1. shape and freshness ([`ProofVerifier::presented`]), before any lookup: a proof,
//!    a well-formed timestamp within `proof_freshness` of the issuer's clock (either
//!    side), a nonce of 16 to 64 bytes;
//! 2. the signature with the device's key ([`ProofVerifier::authenticate`]), once the
//!    device has been looked up;
//! 3. only then the nonce, first use wins ([`crate::NonceStore`]): unauthenticated
//!    junk never fills the store. Nonces are scoped to the device and stored as a hash.
//!
//! Every failure is `UNAUTHENTICATED` to the caller, with a text saying which check
//! failed and nothing else.
//!
//! The app side lives here too ([`sign_request`]), so that the app simulator, the
//! end-to-end tests and the issuer can never disagree on what is signed.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use citypass_proto::prost_types::Timestamp;
use citypass_proto::v1::{DeviceProof, IssueDeviceCertificateRequest, IssueTokenRequest};
use citypass_token::{DeviceKey, PublicKey, RequestProof, SecureRandom, SystemRandom, sha256};
use prost::Message;

use crate::nonce::{NonceStore, NonceStoreError};

/// gRPC path of IssueToken, as signed.
pub const ISSUE_TOKEN: &str = "/citypass.v1.IssuerService/IssueToken";
/// gRPC path of IssueDeviceCertificate, as signed.
pub const ISSUE_DEVICE_CERTIFICATE: &str = "/citypass.v1.IssuerService/IssueDeviceCertificate";
/// Shortest nonce accepted.
pub const MIN_NONCE_LEN: usize = 16;
/// Longest nonce accepted (a bound on what is hashed and stored).
pub const MAX_NONCE_LEN: usize = 64;
/// Length of the nonces [`sign_request`] makes.
pub const NONCE_LEN: usize = 16;

/// A request message that carries a `DeviceProof`.
pub trait SignedRequest: Message + Clone {
    /// The full gRPC method path of the RPC that takes this request.
    const METHOD: &'static str;
    /// The proof field.
    fn proof(&self) -> Option<&DeviceProof>;
    /// The proof field, to set or take.
    fn proof_mut(&mut self) -> &mut Option<DeviceProof>;
}

impl SignedRequest for IssueTokenRequest {
    const METHOD: &'static str = ISSUE_TOKEN;
    fn proof(&self) -> Option<&DeviceProof> {
        self.proof.as_ref()
    }
    fn proof_mut(&mut self) -> &mut Option<DeviceProof> {
        &mut self.proof
    }
}

impl SignedRequest for IssueDeviceCertificateRequest {
    const METHOD: &'static str = ISSUE_DEVICE_CERTIFICATE;
    fn proof(&self) -> Option<&DeviceProof> {
        self.proof.as_ref()
    }
    fn proof_mut(&mut self) -> &mut Option<DeviceProof> {
        &mut self.proof
    }
}

/// SHA-256 of `request` encoded with its proof unset (prost's canonical encoding).
pub fn body_sha256<R: SignedRequest>(request: &R) -> [u8; 32] {
    if request.proof().is_none() {
        return sha256(&request.encode_to_vec());
    }
    let mut bare = request.clone();
    *bare.proof_mut() = None;
    sha256(&bare.encode_to_vec())
}

/// Why a proof was refused (or could not be made).
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The request has no proof.
    #[error("request is not signed by a device (no proof)")]
    Missing,
    /// The timestamp is missing or out of range.
    #[error("request timestamp is missing or malformed")]
    BadTimestamp,
    /// The timestamp is too far from the issuer's clock.
    #[error("request timestamp is outside the freshness window")]
    Stale,
    /// The nonce is too short or too long.
    #[error("request nonce must be 16 to 64 bytes")]
    BadNonce,
    /// The signature does not verify with the device's bound key (or the request was
    /// changed after signing).
    #[error("bad device signature")]
    BadSignature,
    /// The nonce was used before: a replayed request.
    #[error("request nonce already used")]
    Reused,
    /// The nonce store could not be asked; the request is not known to be fresh.
    #[error("nonce store unavailable")]
    Store(#[source] NonceStoreError),
    /// Client side: the device key could not sign or no randomness was available.
    #[error("cannot sign the request")]
    Signing,
}

/// Signs `request` for `method` with the bound device key, now, with a fresh random
/// nonce. The app sets the result as the request's `proof`:
///
/// ```text
/// let mut request = IssueTokenRequest { subject_id, device_id, ..Default::default() };
/// request.proof = Some(sign_request(ISSUE_TOKEN, &request, &device_key)?);
/// ```
pub fn sign_request<R: SignedRequest>(
    method: &str,
    request: &R,
    device_key: &DeviceKey,
) -> Result<DeviceProof, ProofError> {
    let rng = SystemRandom::new();
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce).map_err(|_| ProofError::Signing)?;
    sign_request_with(method, request, device_key, SystemTime::now(), &nonce)
}

/// [`sign_request`] with a chosen time and nonce (tests, and apps that correct their
/// clock by the server time learnt from a certificate).
pub fn sign_request_with<R: SignedRequest>(
    method: &str,
    request: &R,
    device_key: &DeviceKey,
    at: SystemTime,
    nonce: &[u8],
) -> Result<DeviceProof, ProofError> {
    let timestamp = to_timestamp(at);
    let body = body_sha256(request);
    let signature = RequestProof {
        method,
        seconds: timestamp.seconds,
        nanos: timestamp.nanos,
        nonce,
        body_sha256: &body,
    }
    .sign(device_key, &SystemRandom::new())
    .map_err(|_| ProofError::Signing)?;
    Ok(DeviceProof {
        timestamp: Some(timestamp),
        nonce: nonce.to_vec(),
        signature,
    })
}

/// A `Timestamp` for a system time (before 1970: seconds go negative, as in the API).
pub fn to_timestamp(at: SystemTime) -> Timestamp {
    match at.duration_since(UNIX_EPOCH) {
        Ok(since) => Timestamp {
            seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
        },
        Err(before) => {
            let before = before.duration();
            Timestamp {
                seconds: -i64::try_from(before.as_secs()).unwrap_or(i64::MAX),
                nanos: 0,
            }
        }
    }
}

/// Nanoseconds since 1970 (signed, wide enough for every valid `Timestamp`).
fn unix_nanos(seconds: i64, nanos: i32) -> i128 {
    i128::from(seconds) * 1_000_000_000 + i128::from(nanos)
}

/// How long a nonce must be remembered for a freshness window: a request stamped up to
/// `freshness` ahead of the clock stays acceptable until `2 × freshness` after it first
/// arrives; one more second covers rounding.
pub fn nonce_ttl(freshness: Duration) -> Duration {
    freshness * 2 + Duration::from_secs(1)
}

/// A proof whose shape and freshness passed; the signature is still unchecked.
#[derive(Clone)]
pub struct PresentedProof {
    seconds: i64,
    nanos: i32,
    nonce: Vec<u8>,
    signature: Vec<u8>,
}

impl std::fmt::Debug for PresentedProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedProof")
            .field("seconds", &self.seconds)
            .finish_non_exhaustive()
    }
}

/// Checks device proofs (see the module documentation).
#[derive(Clone)]
pub struct ProofVerifier {
    freshness: Duration,
    nonce_ttl: Duration,
    nonces: Arc<dyn NonceStore>,
}

impl std::fmt::Debug for ProofVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofVerifier")
            .field("freshness", &self.freshness)
            .field("nonce_ttl", &self.nonce_ttl)
            .finish_non_exhaustive()
    }
}

impl ProofVerifier {
    /// Timestamps within `freshness` of the clock either side; nonces remembered in
    /// `nonces` for `2 × freshness + 1 s`, longer than any accepted request stays fresh.
    pub fn new(freshness: Duration, nonces: Arc<dyn NonceStore>) -> Self {
        ProofVerifier {
            freshness,
            nonce_ttl: nonce_ttl(freshness),
            nonces,
        }
    }

    /// Step 1: a proof is present, well-formed and fresh at `now`.
    pub fn presented(
        &self,
        proof: Option<DeviceProof>,
        now: SystemTime,
    ) -> Result<PresentedProof, ProofError> {
        let proof = proof.ok_or(ProofError::Missing)?;
        let timestamp = proof.timestamp.ok_or(ProofError::BadTimestamp)?;
        if !(0..1_000_000_000).contains(&timestamp.nanos) {
            return Err(ProofError::BadTimestamp);
        }
        let now = to_timestamp(now);
        let skew =
            unix_nanos(timestamp.seconds, timestamp.nanos) - unix_nanos(now.seconds, now.nanos);
        if skew.unsigned_abs() > self.freshness.as_nanos() {
            return Err(ProofError::Stale);
        }
        if !(MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&proof.nonce.len()) {
            return Err(ProofError::BadNonce);
        }
        Ok(PresentedProof {
            seconds: timestamp.seconds,
            nanos: timestamp.nanos,
            nonce: proof.nonce,
            signature: proof.signature,
        })
    }

    /// Steps 2 and 3: the signature over (`method`, timestamp, nonce, `body_sha256`)
    /// verifies with `device_key`, then the nonce is used for the first time by
    /// `device_id`.
    pub async fn authenticate(
        &self,
        proof: &PresentedProof,
        method: &str,
        body_sha256: &[u8; 32],
        device_id: &str,
        device_key: &PublicKey,
    ) -> Result<(), ProofError> {
        RequestProof {
            method,
            seconds: proof.seconds,
            nanos: proof.nanos,
            nonce: &proof.nonce,
            body_sha256,
        }
        .verify(device_key, &proof.signature)
        .map_err(|_| ProofError::BadSignature)?;
        let key = nonce_key(device_id, &proof.nonce);
        match self.nonces.first_use(&key, self.nonce_ttl).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ProofError::Reused),
            Err(err) => Err(ProofError::Store(err)),
        }
    }
}

/// The store key of a device's nonce: a hash, so neither ids nor nonces reach the store.
fn nonce_key(device_id: &str, nonce: &[u8]) -> String {
    let mut input = Vec::with_capacity(8 + device_id.len() + nonce.len());
    input.extend_from_slice(
        &u32::try_from(device_id.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    input.extend_from_slice(device_id.as_bytes());
    input.extend_from_slice(nonce);
    format!("nonce:{}", hex(&sha256(&input)))
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_hash_ignores_the_proof_only() {
        let request = IssueTokenRequest {
            subject_id: "00112233445566778899aabbccddeeff".into(),
            device_id: "d1".into(),
            ..Default::default()
        };
        let mut with_proof = request.clone();
        with_proof.proof = Some(DeviceProof {
            nonce: vec![1; 16],
            ..Default::default()
        });
        assert_eq!(body_sha256(&request), body_sha256(&with_proof));
        let other = IssueTokenRequest {
            want_svg: true,
            ..request.clone()
        };
        assert_ne!(body_sha256(&request), body_sha256(&other));
    }

    #[test]
    fn timestamps_convert() {
        let at = UNIX_EPOCH + Duration::new(1_800_000_000, 5);
        assert_eq!(
            to_timestamp(at),
            Timestamp {
                seconds: 1_800_000_000,
                nanos: 5
            }
        );
        assert_eq!(hex(&[0x0f, 0xa0]), "0fa0");
    }
}
