//! The issuing decisions: who gets a code or a certificate, with which scenes, for how
//! long. The gRPC layer ([`crate::service`]) only moves messages in and out.
//!
//! Every app-facing call goes through one gate, `Issuance::authorize`, in this order:
//! request shape (`INVALID_ARGUMENT`), proof shape and freshness (`UNAUTHENTICATED`),
//! the device at identity (`NOT_FOUND`), the device signature and single-use nonce
//! (`UNAUTHENTICATED`), then the device's binding to the subject, both statuses,
//! revocation and the scene policy (`PERMISSION_DENIED`). Nothing is signed before all
//! of them pass, and a certificate is recorded at identity before it is returned.

use citypass_proto::time::timestamp;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use citypass_proto::prost_types::{self};
use citypass_proto::v1::{
    DeviceProof, DeviceStatus, GetKeySetResponse, IssueDeviceCertificateRequest,
    IssueDeviceCertificateResponse, IssueTokenRequest, IssueTokenResponse, SubjectStatus,
};
use citypass_runtime::Deadline;
use citypass_token::{ID_LEN, PublicKey, Qr, Scopes, sha256};
use prost::Message;

use crate::config::{InvalidConfig, IssuanceConfig};
use crate::error::IssuerError;
use crate::identity_client::{
    CachedIdentity, CertificateRecord, DeviceRecord, IdentityError, IdentityLookup,
};
use crate::keys::Keys;
use crate::policy::{Policy, scopes_to_api};
use crate::revocation_check::{RevocationCheck, RevocationStatus};
use citypass_device_proof::NonceStore;
use citypass_device_proof::{ISSUE_DEVICE_CERTIFICATE, ISSUE_TOKEN, ProofVerifier};

/// The issuer's logic and everything it talks to.
pub struct Issuance {
    config: IssuanceConfig,
    policy: Policy,
    keys: Arc<Keys>,
    proofs: ProofVerifier,
    nonces: Arc<dyn NonceStore>,
    identity: Arc<dyn IdentityLookup>,
    revocation: Arc<dyn RevocationCheck>,
}

impl std::fmt::Debug for Issuance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuance")
            .field("config", &self.config)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// What [`Issuance::authorize`] established.
struct Authorized {
    subject: [u8; ID_LEN],
    device: Arc<DeviceRecord>,
    scopes: Scopes,
}

impl Issuance {
    /// The issuer with its keys and stores. `nonces` holds request nonces and the
    /// single-use marks of certified offline keys; `identity` is wrapped in the GetDevice
    /// cache that `config` describes.
    pub fn new(
        config: IssuanceConfig,
        keys: Arc<Keys>,
        nonces: Arc<dyn NonceStore>,
        identity: Arc<dyn IdentityLookup>,
        revocation: Arc<dyn RevocationCheck>,
    ) -> Result<Self, InvalidConfig> {
        config.validate()?;
        let identity: Arc<dyn IdentityLookup> = Arc::new(CachedIdentity::new(
            identity,
            config.identity_cache_ttl,
            config.identity_cache_capacity,
        ));
        Ok(Issuance {
            policy: Policy::new(config.hospital_min_assurance),
            proofs: ProofVerifier::new(config.proof_freshness, nonces.clone()),
            config,
            keys,
            nonces,
            identity,
            revocation,
        })
    }

    /// The keys this issuer signs with (to reload or observe them).
    pub fn keys(&self) -> &Arc<Keys> {
        &self.keys
    }

    /// IssueToken (see issuer.proto).
    pub async fn issue_token(
        &self,
        mut request: IssueTokenRequest,
        deadline: Option<Deadline>,
    ) -> Result<IssueTokenResponse, IssuerError> {
        let now = SystemTime::now();
        let proof = request.proof.take();
        let body = sha256(&request.encode_to_vec());
        let authorized = self
            .authorize(
                ISSUE_TOKEN,
                proof,
                &body,
                &request.subject_id,
                &request.device_id,
                &request.requested_scopes,
                now,
                deadline,
            )
            .await?;
        let keys = self.keys.current();
        let issued = keys
            .issuer()
            .issue_token(
                &authorized.subject,
                authorized.scopes,
                unix_seconds(now),
                self.config.token_lifetime.as_secs(),
            )
            .map_err(IssuerError::Token)?;
        let svg = if request.want_svg {
            Some(self.render_svg(issued.text.clone()).await?)
        } else {
            None
        };
        Ok(IssueTokenResponse {
            qr_text: issued.text,
            issued_at: Some(timestamp(issued.iat)),
            expires_at: Some(timestamp(issued.exp)),
            scopes: scopes_to_api(authorized.scopes),
            svg,
        })
    }

    /// IssueDeviceCertificate (see issuer.proto).
    pub async fn issue_device_certificate(
        &self,
        mut request: IssueDeviceCertificateRequest,
        deadline: Option<Deadline>,
    ) -> Result<IssueDeviceCertificateResponse, IssuerError> {
        let now = SystemTime::now();
        let proof = request.proof.take();
        let body = sha256(&request.encode_to_vec());
        let offline_key = PublicKey::p256(&request.offline_public_key)
            .map_err(|_| IssuerError::MalformedOfflineKey)?;
        let lifetime = self.certificate_lifetime(request.requested_lifetime.as_ref())?;
        let authorized = self
            .authorize(
                ISSUE_DEVICE_CERTIFICATE,
                proof,
                &body,
                &request.subject_id,
                &request.device_id,
                &request.requested_scopes,
                now,
                deadline,
            )
            .await?;

        if offline_key == authorized.device.public_key {
            return Err(IssuerError::OfflineKeyIsDeviceKey);
        }
        // One certificate per offline key, so CP2 codes stay linkable only within one
        // certificate's life (and the mark lasts as long as the longest certificate).
        // Marked before signing: a failed attempt burns the key.
        let mark = format!(
            "offline-key:{}",
            hex::encode(sha256(offline_key.as_bytes()))
        );
        match within(
            deadline,
            self.nonces
                .first_use(&mark, self.config.certificate_max_lifetime),
        )
        .await?
        {
            Ok(true) => {}
            Ok(false) => return Err(IssuerError::OfflineKeyReused),
            Err(err) => return Err(IssuerError::OfflineKeyStore(err)),
        }

        let keys = self.keys.current();
        let certificate = keys
            .issuer()
            .certify(
                &authorized.subject,
                &offline_key,
                authorized.scopes,
                unix_seconds(now),
                lifetime,
            )
            .map_err(IssuerError::Token)?;
        let record = CertificateRecord {
            serial: certificate.serial,
            device_id: authorized.device.device_id.clone(),
            subject_id: authorized.device.subject_id.clone(),
            not_before: certificate.iat,
            not_after: certificate.exp,
        };
        within(
            deadline,
            self.identity.record_certificate(&record, deadline),
        )
        .await
        .map_err(|_| IssuerError::Record(IdentityError::DeadlineExceeded))?
        .map_err(IssuerError::record)?;
        Ok(IssueDeviceCertificateResponse {
            certificate: certificate.bytes,
            serial: certificate.serial.to_vec(),
            not_before: Some(timestamp(certificate.iat)),
            not_after: Some(timestamp(certificate.exp)),
            server_time: Some(timestamp(certificate.iat)),
            scopes: scopes_to_api(authorized.scopes),
            kid: keys.signing_kid().0.to_vec(),
        })
    }

    /// GetKeySet (see issuer.proto).
    pub fn key_set(&self) -> GetKeySetResponse {
        self.keys.current().to_response()
    }

    /// The checks every app-facing call passes (see the module documentation).
    #[allow(clippy::too_many_arguments)]
    async fn authorize(
        &self,
        method: &str,
        proof: Option<DeviceProof>,
        body_sha256: &[u8; 32],
        subject_id: &str,
        device_id: &str,
        requested_scopes: &[i32],
        now: SystemTime,
        deadline: Option<Deadline>,
    ) -> Result<Authorized, IssuerError> {
        let subject = parse_subject_id(subject_id)?;
        if citypass_token::parse_id(device_id).is_none() {
            return Err(IssuerError::MalformedDeviceId);
        }
        let presented = self
            .proofs
            .presented(proof, now)
            .map_err(IssuerError::Proof)?;
        let device = within(deadline, self.identity.get_device(device_id, deadline))
            .await?
            .map_err(IssuerError::Identity)?
            .ok_or(IssuerError::DeviceNotFound)?;
        within(
            deadline,
            self.proofs.authenticate(
                &presented,
                method,
                body_sha256,
                device_id,
                &device.public_key,
            ),
        )
        .await?
        .map_err(IssuerError::Proof)?;

        if device.subject_id != subject_id {
            return Err(IssuerError::NotSubjectsDevice);
        }
        if device.device_status != DeviceStatus::Active {
            return Err(IssuerError::DeviceNotActive);
        }
        if device.subject_status != SubjectStatus::Active {
            return Err(IssuerError::SubjectNotActive);
        }
        match within(deadline, self.revocation.check(subject_id, device_id)).await?? {
            RevocationStatus::NotRevoked => {}
            RevocationStatus::SubjectRevoked => return Err(IssuerError::SubjectRevoked),
            RevocationStatus::DeviceRevoked => return Err(IssuerError::DeviceRevoked),
        }
        let scopes = self
            .policy
            .grant(device.subject_status, &device.attributes, requested_scopes);
        if scopes == Scopes::NONE {
            return Err(IssuerError::NoSceneAllowed);
        }
        Ok(Authorized {
            subject,
            device,
            scopes,
        })
    }

    /// Seconds of certificate life: the request's (positive) wish, capped by the
    /// configured maximum; the configured default when the request names none.
    fn certificate_lifetime(
        &self,
        requested: Option<&prost_types::Duration>,
    ) -> Result<u64, IssuerError> {
        let max = self.config.certificate_max_lifetime.as_secs();
        let Some(requested) = requested else {
            return Ok(self.config.certificate_lifetime.as_secs().min(max));
        };
        if requested.seconds < 0 || !(0..1_000_000_000).contains(&requested.nanos) {
            return Err(IssuerError::BadLifetime);
        }
        let seconds = u64::try_from(requested.seconds).map_err(|_| IssuerError::BadLifetime)?;
        if seconds == 0 && requested.nanos == 0 {
            return Err(IssuerError::BadLifetime);
        }
        // Whole seconds, rounding a sub-second wish up to one.
        Ok(seconds.max(1).min(max))
    }

    /// The QR as SVG, off the async workers (a few milliseconds of CPU).
    async fn render_svg(&self, text: String) -> Result<String, IssuerError> {
        let px = self.config.svg_min_px;
        tokio::task::spawn_blocking(move || Qr::encode(&text).map(|qr| qr.to_svg(px)))
            .await
            .map_err(IssuerError::Task)?
            .map_err(IssuerError::Token)
    }
}

/// The 16 bytes of a subject id (the format `citypass_token::parse_id` defines).
pub fn parse_subject_id(subject_id: &str) -> Result<[u8; ID_LEN], IssuerError> {
    citypass_token::parse_id(subject_id).ok_or(IssuerError::MalformedSubjectId)
}

/// Runs `work` within the call's deadline, if any.
async fn within<F: std::future::Future>(
    deadline: Option<Deadline>,
    work: F,
) -> Result<F::Output, IssuerError> {
    match deadline {
        Some(deadline) => deadline
            .run(work)
            .await
            .map_err(|_| IssuerError::DeadlineExceeded),
        None => Ok(work.await),
    }
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_ids_are_32_lowercase_hex() {
        assert_eq!(
            parse_subject_id("00112233445566778899aabbccddeeff").unwrap(),
            [
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ]
        );
        for bad in [
            "",
            "00112233445566778899AABBCCDDEEFF",
            "00112233445566778899aabbccddeef",
            "00112233445566778899aabbccddeeff0",
            "0011223344556677889９aabbccddeef",
            "g0112233445566778899aabbccddeeff",
        ] {
            assert!(
                matches!(parse_subject_id(bad), Err(IssuerError::MalformedSubjectId)),
                "{bad:?}"
            );
        }
    }
}
