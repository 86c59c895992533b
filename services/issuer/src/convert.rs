//! Generated messages in, [`crate::model`] types out, and back.
//!
//! Request shape is checked here, first and without I/O (`INVALID_ARGUMENT`): ids,
//! the offline key, the requested life. The body hash that the device proof signs is
//! taken here too, over the request re-encoded with its proof unset: the decoded
//! request, so a field the issuer does not know (dropped when decoding) changes the
//! hash and fails the signature, closed.

use std::time::Duration;

use citypass_device_proof::{ISSUE_DEVICE_CERTIFICATE, ISSUE_TOKEN, Proof};
use citypass_proto::prost_types;
use citypass_proto::scene::{requested_scopes, scopes_to_api};
use citypass_proto::time::timestamp;
use citypass_proto::v1::{
    IssueDeviceCertificateRequest, IssueDeviceCertificateResponse, IssueTokenRequest,
    IssueTokenResponse,
};
use citypass_token::{DeviceId, PublicKey, SubjectId, sha256};
use prost::Message;

use crate::error::IssuerError;
use crate::model::{CertificateRequest, DeviceCall, IssuedCertificate, IssuedCode, TokenRequest};

/// IssueToken's request.
pub fn token_request(mut request: IssueTokenRequest) -> Result<TokenRequest, IssuerError> {
    let proof = request.proof.take();
    let body_sha256 = sha256(&request.encode_to_vec());
    Ok(TokenRequest {
        call: device_call(
            ISSUE_TOKEN,
            &request.subject_id,
            &request.device_id,
            proof.map(Proof::from),
            body_sha256,
            &request.requested_scopes,
        )?,
        want_svg: request.want_svg,
    })
}

/// IssueDeviceCertificate's request.
pub fn certificate_request(
    mut request: IssueDeviceCertificateRequest,
) -> Result<CertificateRequest, IssuerError> {
    let proof = request.proof.take();
    let body_sha256 = sha256(&request.encode_to_vec());
    let call = device_call(
        ISSUE_DEVICE_CERTIFICATE,
        &request.subject_id,
        &request.device_id,
        proof.map(Proof::from),
        body_sha256,
        &request.requested_scopes,
    )?;
    let offline_key = PublicKey::p256(&request.offline_public_key)
        .map_err(|_| IssuerError::MalformedOfflineKey)?;
    let lifetime = request
        .requested_lifetime
        .as_ref()
        .map(lifetime)
        .transpose()?;
    Ok(CertificateRequest {
        call,
        offline_key,
        lifetime,
    })
}

/// IssueToken's answer.
pub fn token_response(code: IssuedCode) -> IssueTokenResponse {
    IssueTokenResponse {
        qr_text: code.text,
        issued_at: Some(timestamp(code.issued_at)),
        expires_at: Some(timestamp(code.expires_at)),
        scopes: scopes_to_api(code.scopes),
        svg: code.svg,
    }
}

/// IssueDeviceCertificate's answer.
pub fn certificate_response(certificate: IssuedCertificate) -> IssueDeviceCertificateResponse {
    IssueDeviceCertificateResponse {
        certificate: certificate.bytes,
        serial: certificate.serial.as_bytes().to_vec(),
        not_before: Some(timestamp(certificate.not_before)),
        not_after: Some(timestamp(certificate.not_after)),
        server_time: Some(timestamp(certificate.not_before)),
        scopes: scopes_to_api(certificate.scopes),
        kid: certificate.kid.0.to_vec(),
    }
}

fn device_call(
    method: &'static str,
    subject_id: &str,
    device_id: &str,
    proof: Option<Proof>,
    body_sha256: [u8; 32],
    scenes: &[i32],
) -> Result<DeviceCall, IssuerError> {
    let subject = SubjectId::parse(subject_id).map_err(|_| IssuerError::MalformedSubjectId)?;
    let device = DeviceId::parse(device_id).map_err(|_| IssuerError::MalformedDeviceId)?;
    Ok(DeviceCall {
        method,
        subject,
        device,
        proof,
        body_sha256,
        requested: requested_scopes(scenes),
    })
}

/// A positive life in whole seconds, a sub-second wish rounded up to one.
fn lifetime(requested: &prost_types::Duration) -> Result<Duration, IssuerError> {
    if requested.seconds < 0 || !(0..1_000_000_000).contains(&requested.nanos) {
        return Err(IssuerError::BadLifetime);
    }
    let seconds = u64::try_from(requested.seconds).map_err(|_| IssuerError::BadLifetime)?;
    if seconds == 0 && requested.nanos == 0 {
        return Err(IssuerError::BadLifetime);
    }
    Ok(Duration::from_secs(seconds.max(1)))
}
