//! The app side: which requests carry a device proof, and how the app signs one.
//!
//! A new RPC that acts with a citizen's authority gets a [`SignedRequest`] impl here,
//! naming its full gRPC method path, and nothing else changes on either side.

use std::time::SystemTime;

use citypass_token::{DeviceKey, RequestProof, SecureRandom, SystemRandom, sha256};
use prost::Message;

use citypass_proto::v1::{DeviceProof, IssueDeviceCertificateRequest, IssueTokenRequest};

/// gRPC path of IssueToken, as signed.
pub const ISSUE_TOKEN: &str = "/citypass.v1.IssuerService/IssueToken";
/// gRPC path of IssueDeviceCertificate, as signed.
pub const ISSUE_DEVICE_CERTIFICATE: &str = "/citypass.v1.IssuerService/IssueDeviceCertificate";
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

/// The device key could not sign, or no randomness was available.
#[derive(Debug, thiserror::Error)]
#[error("cannot sign the request")]
pub struct SignError;

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
) -> Result<DeviceProof, SignError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SignError)?;
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
) -> Result<DeviceProof, SignError> {
    let timestamp = citypass_proto::time::system_timestamp(at);
    let body = body_sha256(request);
    let signature = RequestProof {
        method,
        seconds: timestamp.seconds,
        nanos: timestamp.nanos,
        nonce,
        body_sha256: &body,
    }
    .sign(device_key, &SystemRandom::new())
    .map_err(|_| SignError)?;
    Ok(DeviceProof {
        timestamp: Some(timestamp),
        nonce: nonce.to_vec(),
        signature,
    })
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
}
