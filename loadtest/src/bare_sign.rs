//! The bare sign server: the ceiling the issuer's IssueToken is measured against.
//!
//! The same tonic `IssuerService` behind the same `citypass_runtime::Server` (TLS,
//! the issuer's authorisation table, limits, tower stack) with the issuer's server
//! certificate. Per request it does only what issuance cannot avoid: check the
//! device's ES256 proof over the request (with the device's public key, held in
//! memory) and sign one Ed25519 code with the issuer's key (ring). No freshness or
//! nonce check, no identity lookup, no revocation, no policy: the issuer's figures over
//! these are what the rest of issuance costs.
//!
//! With [`FloorScripts`] it is the sign floor: the same, plus the one step in the
//! shared store issuance cannot avoid, the nonce's first use (one `SET NX` on the
//! run's Redis per proof that verifies, as the issuer's nonce store makes it; a proof
//! must be single use across every issuer pod). The device lookup and the revocation
//! check are not in it: the issuer caches the one and streams the other, so neither
//! is a call per request.

use std::collections::HashMap;
use std::sync::Arc;

use citypass_proto::v1::issuer_service_server::IssuerService;
use citypass_proto::v1::{
    GetKeySetRequest, GetKeySetResponse, IssueDeviceCertificateRequest,
    IssueDeviceCertificateResponse, IssueTokenRequest, IssueTokenResponse,
};
use citypass_token::{Issuer, PublicKey, RequestProof, Scopes, unix_now};
use tonic::{Request, Response, Status};

use crate::floor::FloorScripts;

/// Lifetime of the codes it signs (as the issuer's default).
const CODE_LIFETIME: u64 = 60;
/// The synthetic subject every code is sealed for.
const SUBJECT: [u8; 16] = [0x5b; 16];

/// Checks one device proof and signs one code per request (and, as the sign floor,
/// marks the proof's nonce used first).
#[derive(Clone)]
pub struct BareSigner {
    issuer: Arc<Issuer>,
    devices: Arc<HashMap<String, PublicKey>>,
    nonces: Option<FloorScripts>,
}

impl BareSigner {
    /// Signs with `issuer`; knows the devices' public keys by device id.
    pub fn new(issuer: Arc<Issuer>, devices: HashMap<String, PublicKey>) -> Self {
        BareSigner {
            issuer,
            devices: Arc::new(devices),
            nonces: None,
        }
    }

    /// The sign floor: also each verified proof's nonce marked used in `nonces`'
    /// Redis.
    pub fn with_nonces(mut self, nonces: FloorScripts) -> Self {
        self.nonces = Some(nonces);
        self
    }

    /// The code for `request`, or the status its proof earns (the sign floor's
    /// nonce step included).
    pub async fn answer(&self, request: IssueTokenRequest) -> Result<IssueTokenResponse, Status> {
        let device = request.device_id.clone();
        let nonce = self.check(request)?;
        if let Some(nonces) = &self.nonces {
            nonces.first_use(&device, &nonce).await?;
        }
        self.sign()
    }

    /// The code for `request`, or the status its proof earns, without the nonce step.
    pub fn issue(&self, request: IssueTokenRequest) -> Result<IssueTokenResponse, Status> {
        self.check(request)?;
        self.sign()
    }

    /// The proof's nonce once its signature verifies, or the status it earns.
    fn check(&self, mut request: IssueTokenRequest) -> Result<Vec<u8>, Status> {
        let proof = request
            .proof
            .take()
            .ok_or_else(|| Status::unauthenticated("no proof"))?;
        let key = self
            .devices
            .get(&request.device_id)
            .ok_or_else(|| Status::not_found("unknown device"))?;
        let timestamp = proof.timestamp.unwrap_or_default();
        let body = citypass_device_proof::body_sha256(&request);
        RequestProof {
            method: citypass_device_proof::ISSUE_TOKEN,
            seconds: timestamp.seconds,
            nanos: timestamp.nanos,
            nonce: &proof.nonce,
            body_sha256: &body,
        }
        .verify(key, &proof.signature)
        .map_err(|_| Status::unauthenticated("bad proof"))?;
        Ok(proof.nonce)
    }

    /// One code for the synthetic subject.
    fn sign(&self) -> Result<IssueTokenResponse, Status> {
        let issued = self
            .issuer
            .issue_token(&SUBJECT, Scopes::all(), unix_now(), CODE_LIFETIME)
            .map_err(|_| Status::internal("signing failed"))?;
        let at = |s: u64| citypass_proto::prost_types::Timestamp {
            seconds: i64::try_from(s).unwrap_or(i64::MAX),
            nanos: 0,
        };
        Ok(IssueTokenResponse {
            qr_text: issued.text,
            issued_at: Some(at(issued.iat)),
            expires_at: Some(at(issued.exp)),
            ..IssueTokenResponse::default()
        })
    }
}

#[tonic::async_trait]
impl IssuerService for BareSigner {
    async fn issue_token(
        &self,
        request: Request<IssueTokenRequest>,
    ) -> Result<Response<IssueTokenResponse>, Status> {
        self.answer(request.into_inner()).await.map(Response::new)
    }

    async fn issue_device_certificate(
        &self,
        _: Request<IssueDeviceCertificateRequest>,
    ) -> Result<Response<IssueDeviceCertificateResponse>, Status> {
        Err(Status::unimplemented(
            "the bare server answers IssueToken only",
        ))
    }

    async fn get_key_set(
        &self,
        _: Request<GetKeySetRequest>,
    ) -> Result<Response<GetKeySetResponse>, Status> {
        Err(Status::unimplemented(
            "the bare server answers IssueToken only",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citypass_token::{DeviceKey, IssuerKey, SubjectKey, SystemRandom};

    #[test]
    fn a_signed_request_gets_a_code_and_a_changed_one_does_not() {
        let rng = SystemRandom::new();
        let issuer = Issuer::new(
            "cp",
            IssuerKey::from_seed(&[5; 32]).unwrap(),
            SubjectKey::from_bytes(&[6; 32]).unwrap(),
        );
        let device = DeviceKey::generate(&rng).unwrap();
        let bare = BareSigner::new(
            Arc::new(issuer),
            HashMap::from([("d1".to_owned(), device.public_key().clone())]),
        );
        let mut request = IssueTokenRequest {
            subject_id: "s1".to_owned(),
            device_id: "d1".to_owned(),
            ..IssueTokenRequest::default()
        };
        request.proof = Some(
            citypass_device_proof::sign_request(
                citypass_device_proof::ISSUE_TOKEN,
                &request,
                &device,
            )
            .unwrap(),
        );
        let answer = bare.issue(request.clone()).unwrap();
        assert!(answer.qr_text.starts_with("CP1:"), "{}", answer.qr_text);

        let mut changed = request.clone();
        changed.subject_id = "s2".to_owned();
        assert_eq!(
            bare.issue(changed).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let mut unknown = request;
        unknown.device_id = "d2".to_owned();
        assert_eq!(
            bare.issue(unknown).unwrap_err().code(),
            tonic::Code::NotFound
        );
    }
}
