//! The app side: which requests carry a device proof, and how the app signs one.
//!
//! A new RPC that acts with a citizen's authority gets a [`SignedRequest`] impl here,
//! naming its full gRPC method path, and nothing else changes on either side.

use std::time::SystemTime;

use citypass_token::{DeviceKey, RequestProof, SecureRandom, SystemRandom, sha256};
use prost::Message;

use citypass_proto::v1::{
    DeviceProof, EnrolFaceRequest, GetArrearsRequest, GetLinkRequest, GetTripsRequest,
    IssueDeviceCertificateRequest, IssueTokenRequest, LinkAccountRequest, RecordFaceConsentRequest,
    RepayArrearsRequest, UnlinkAccountRequest, WithdrawFaceConsentRequest,
};

/// gRPC path of IssueToken, as signed.
pub const ISSUE_TOKEN: &str = "/citypass.v1.IssuerService/IssueToken";
/// gRPC path of IssueDeviceCertificate, as signed.
pub const ISSUE_DEVICE_CERTIFICATE: &str = "/citypass.v1.IssuerService/IssueDeviceCertificate";
/// gRPC path of PaymentsService.LinkAccount, as signed.
pub const LINK_ACCOUNT: &str = "/citypass.v1.PaymentsService/LinkAccount";
/// gRPC path of PaymentsService.UnlinkAccount, as signed.
pub const UNLINK_ACCOUNT: &str = "/citypass.v1.PaymentsService/UnlinkAccount";
/// gRPC path of PaymentsService.GetLink, as signed.
pub const GET_LINK: &str = "/citypass.v1.PaymentsService/GetLink";
/// gRPC path of PaymentsService.GetTrips, as signed.
pub const GET_TRIPS: &str = "/citypass.v1.PaymentsService/GetTrips";
/// gRPC path of PaymentsService.GetArrears, as signed.
pub const GET_ARREARS: &str = "/citypass.v1.PaymentsService/GetArrears";
/// gRPC path of PaymentsService.RepayArrears, as signed.
pub const REPAY_ARREARS: &str = "/citypass.v1.PaymentsService/RepayArrears";
/// gRPC path of IdentityService.RecordFaceConsent, as signed.
pub const RECORD_FACE_CONSENT: &str = "/citypass.v1.IdentityService/RecordFaceConsent";
/// gRPC path of IdentityService.WithdrawFaceConsent, as signed.
pub const WITHDRAW_FACE_CONSENT: &str = "/citypass.v1.IdentityService/WithdrawFaceConsent";
/// gRPC path of IdentityService.EnrolFace, as signed.
pub const ENROL_FACE: &str = "/citypass.v1.IdentityService/EnrolFace";
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

/// One [`SignedRequest`] impl per message: its method path is what separates its
/// signatures from every other message's (the path is signed), and every message keeps
/// its proof in a field named `proof`.
macro_rules! signed_request {
    ($($message:ty => $method:expr),+ $(,)?) => {$(
        impl SignedRequest for $message {
            const METHOD: &'static str = $method;
            fn proof(&self) -> Option<&DeviceProof> {
                self.proof.as_ref()
            }
            fn proof_mut(&mut self) -> &mut Option<DeviceProof> {
                &mut self.proof
            }
        }
    )+};
}

signed_request! {
    IssueTokenRequest => ISSUE_TOKEN,
    IssueDeviceCertificateRequest => ISSUE_DEVICE_CERTIFICATE,
    LinkAccountRequest => LINK_ACCOUNT,
    UnlinkAccountRequest => UNLINK_ACCOUNT,
    GetLinkRequest => GET_LINK,
    GetTripsRequest => GET_TRIPS,
    GetArrearsRequest => GET_ARREARS,
    RepayArrearsRequest => REPAY_ARREARS,
    RecordFaceConsentRequest => RECORD_FACE_CONSENT,
    WithdrawFaceConsentRequest => WITHDRAW_FACE_CONSENT,
    EnrolFaceRequest => ENROL_FACE,
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

    /// A signature made for one message's method never verifies for another's: the
    /// signed method path separates them, even for two requests with equal bodies.
    #[test]
    fn each_message_signs_under_its_own_method() {
        let methods = [
            <IssueTokenRequest as SignedRequest>::METHOD,
            <IssueDeviceCertificateRequest as SignedRequest>::METHOD,
            <LinkAccountRequest as SignedRequest>::METHOD,
            <UnlinkAccountRequest as SignedRequest>::METHOD,
            <GetLinkRequest as SignedRequest>::METHOD,
            <GetTripsRequest as SignedRequest>::METHOD,
            <GetArrearsRequest as SignedRequest>::METHOD,
            <RepayArrearsRequest as SignedRequest>::METHOD,
            <RecordFaceConsentRequest as SignedRequest>::METHOD,
            <WithdrawFaceConsentRequest as SignedRequest>::METHOD,
            <EnrolFaceRequest as SignedRequest>::METHOD,
        ];
        let distinct: std::collections::BTreeSet<_> = methods.iter().collect();
        assert_eq!(distinct.len(), methods.len());
        let key = DeviceKey::generate(&SystemRandom::new()).unwrap();
        let request = GetLinkRequest::default();
        let proof = sign_request(GET_LINK, &request, &key).unwrap();
        let timestamp = proof.timestamp.unwrap();
        let body = body_sha256(&request);
        let verify = |method: &str| {
            RequestProof {
                method,
                seconds: timestamp.seconds,
                nanos: timestamp.nanos,
                nonce: &proof.nonce,
                body_sha256: &body,
            }
            .verify(key.public_key(), &proof.signature)
        };
        assert!(verify(GET_LINK).is_ok());
        // GetArrearsRequest with an empty body encodes exactly like GetLinkRequest.
        assert_eq!(body, body_sha256(&GetArrearsRequest::default()));
        assert!(verify(GET_ARREARS).is_err());
    }

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
