//! The issuing decisions: who gets a code or a certificate, with which scenes, for how
//! long. It takes and returns [`crate::model`] types; the gRPC layer
//! ([`crate::service`], [`crate::convert`]) only moves messages in and out, and has
//! already checked the request's shape (`INVALID_ARGUMENT`).
//!
//! Every app-facing call goes through one gate, `Issuance::authorize`, in this order:
//! proof shape and freshness (`UNAUTHENTICATED`),
//! the device at identity (`NOT_FOUND`), the device signature and single-use nonce
//! (`UNAUTHENTICATED`), then the device's binding to the subject, both statuses,
//! revocation and the scene policy (`PERMISSION_DENIED`). Nothing is signed before all
//! of them pass, and a certificate is recorded at identity before it is returned.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use citypass_device_proof::{NonceStore, ProofVerifier};
use citypass_proto::v1::{DeviceStatus, SubjectStatus};
use citypass_runtime::Deadline;
use citypass_token::{Qr, Scopes, SubjectId, sha256};

use crate::config::{InvalidConfig, IssuanceConfig};
use crate::error::IssuerError;
use crate::identity_client::{
    CachedIdentity, CertificateRecord, DeviceRecord, IdentityError, IdentityLookup,
};
use crate::keys::Keys;
use crate::model::{CertificateRequest, DeviceCall, IssuedCertificate, IssuedCode, TokenRequest};
use crate::policy::Policy;
use citypass_revocation_follow::{RevocationCheck, RevocationStatus};

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
    subject: SubjectId,
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
        request: TokenRequest,
        deadline: Option<Deadline>,
    ) -> Result<IssuedCode, IssuerError> {
        let now = SystemTime::now();
        let authorized = self.authorize(request.call, now, deadline).await?;
        let keys = self.keys.current();
        let issued = keys
            .issuer()
            .issue_token(
                authorized.subject.as_bytes(),
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
        Ok(IssuedCode {
            text: issued.text,
            issued_at: issued.iat,
            expires_at: issued.exp,
            scopes: authorized.scopes,
            svg,
        })
    }

    /// IssueDeviceCertificate (see issuer.proto).
    pub async fn issue_device_certificate(
        &self,
        request: CertificateRequest,
        deadline: Option<Deadline>,
    ) -> Result<IssuedCertificate, IssuerError> {
        let now = SystemTime::now();
        let offline_key = request.offline_key;
        let lifetime = self.certificate_lifetime(request.lifetime);
        let authorized = self.authorize(request.call, now, deadline).await?;

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
                authorized.subject.as_bytes(),
                &offline_key,
                authorized.scopes,
                unix_seconds(now),
                lifetime,
            )
            .map_err(IssuerError::Token)?;
        let record = CertificateRecord {
            serial: certificate.serial,
            device: authorized.device.device,
            subject: authorized.device.subject,
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
        Ok(IssuedCertificate {
            bytes: certificate.bytes,
            serial: certificate.serial,
            not_before: certificate.iat,
            not_after: certificate.exp,
            scopes: authorized.scopes,
            kid: keys.signing_kid(),
        })
    }

    /// The checks every app-facing call passes (see the module documentation).
    async fn authorize(
        &self,
        call: DeviceCall,
        now: SystemTime,
        deadline: Option<Deadline>,
    ) -> Result<Authorized, IssuerError> {
        let presented = self
            .proofs
            .presented(call.proof, now)
            .map_err(IssuerError::Proof)?;
        let device = within(deadline, self.identity.get_device(&call.device, deadline))
            .await?
            .map_err(IssuerError::Identity)?
            .ok_or(IssuerError::DeviceNotFound)?;
        within(
            deadline,
            self.proofs.authenticate(
                &presented,
                call.method,
                &call.body_sha256,
                &call.device,
                &device.public_key,
            ),
        )
        .await?
        .map_err(IssuerError::Proof)?;

        if device.subject != call.subject {
            return Err(IssuerError::NotSubjectsDevice);
        }
        if device.device_status != DeviceStatus::Active {
            return Err(IssuerError::DeviceNotActive);
        }
        if device.subject_status != SubjectStatus::Active {
            return Err(IssuerError::SubjectNotActive);
        }
        match within(deadline, self.revocation.check(&call.subject, &call.device)).await?? {
            RevocationStatus::NotRevoked => {}
            RevocationStatus::SubjectRevoked => return Err(IssuerError::SubjectRevoked),
            RevocationStatus::DeviceRevoked => return Err(IssuerError::DeviceRevoked),
        }
        let scopes = self
            .policy
            .grant(device.subject_status, &device.attributes, call.requested);
        if scopes == Scopes::NONE {
            return Err(IssuerError::NoSceneAllowed);
        }
        Ok(Authorized {
            subject: call.subject,
            device,
            scopes,
        })
    }

    /// Seconds of certificate life: the request's wish, capped by the configured
    /// maximum; the configured default when the request names none.
    fn certificate_lifetime(&self, requested: Option<Duration>) -> u64 {
        let max = self.config.certificate_max_lifetime.as_secs();
        requested
            .unwrap_or(self.config.certificate_lifetime)
            .as_secs()
            .max(1)
            .min(max)
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
