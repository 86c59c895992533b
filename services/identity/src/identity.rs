//! The identity service's logic, on validated domain values (the gRPC layer in
//! `service.rs` parses requests into them and formats the answers).
//!
//! Enrolment in particular: the service keeps no raw document number or name, so a
//! PENDING enrolment (the real-name system did not answer) cannot be re-checked in the
//! background. The citizen's app retries `Enrol` instead, and each attempt is a subject
//! of its own: only ACTIVE and SUSPENDED subjects count as enrolled (ALREADY_EXISTS),
//! while PENDING and REJECTED ones are attempts that can do nothing (no binding, no
//! codes). A retry that the real-name system confirms creates a *new* ACTIVE subject
//! and closes the pending attempts as REJECTED: their ids went to whoever made them,
//! who was never verified, so they must never turn into verified identities.

use std::sync::Arc;
use std::time::Duration;

use citypass_proto::v1::{FareClass, SubjectStatus};
use citypass_token::{PublicKey, binding_authorization_message, binding_message};

use crate::challenge;
use crate::config::IdentityConfig;
use crate::document::{Date, Document, DocumentHasher};
use crate::enrolment::{self, Authority, EnrolmentSecret};
use crate::error::Error;
use crate::ids::{DeviceId, SubjectId};
use crate::model::{
    Attributes, AttributesUpdate, Certificate, CertificateCursor, CertificateOwner,
    CertificatePage, Challenge, Device, DeviceView, NewCertificate, NewDevice, NewSubject, Subject,
    Timestamp,
};
use crate::name::Name;
use crate::pseudonym::Pseudonyms;
use crate::realname::RealNameCheck;
use crate::store::Store;

/// A binding request whose fields are well-formed (the signatures are checked here).
#[derive(Debug, Clone)]
pub struct BindRequest {
    pub subject_id: SubjectId,
    pub public_key: PublicKey,
    pub challenge: [u8; 32],
    /// Raw r || s, 64 bytes.
    pub signature: Vec<u8>,
    pub label: String,
    /// The subject's authority for this binding.
    pub authority: BindingAuthority,
}

/// The subject's authority for a binding, as the app gives it (see
/// [`crate::enrolment`]).
#[derive(Debug, Clone)]
pub enum BindingAuthority {
    /// The secret Enrol or IssueEnrolmentSecret returned.
    EnrolmentSecret(EnrolmentSecret),
    /// A device already bound to the subject, and its signature over the binding
    /// authorisation message (raw r || s).
    BoundDevice {
        device_id: DeviceId,
        signature: Vec<u8>,
    },
}

/// An enrolled subject and the secret that binds its first device (given only here).
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub subject: Subject,
    pub secret: EnrolmentSecret,
    pub secret_expires_at: Timestamp,
}

/// The identity service: a store, a real-name check, keys and limits.
pub struct Identity {
    store: Arc<dyn Store>,
    real_name: Arc<dyn RealNameCheck>,
    documents: DocumentHasher,
    pseudonyms: Pseudonyms,
    max_devices: u32,
    challenge_ttl: Duration,
    enrolment_secret_ttl: Duration,
    certificates: CertificateLimits,
}

/// What a recorded certificate may be.
#[derive(Debug, Clone, Copy)]
struct CertificateLimits {
    max_lifetime: Duration,
    max_live_per_device: u32,
    clock_skew: Duration,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("max_devices", &self.max_devices)
            .field("challenge_ttl", &self.challenge_ttl)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The service over `store` and `real_name`, with keys and limits from `config`
    /// (validated here: dev keys are refused in production).
    pub fn new(
        config: &IdentityConfig,
        store: Arc<dyn Store>,
        real_name: Arc<dyn RealNameCheck>,
    ) -> Result<Self, Error> {
        config.validate()?;
        Ok(Identity {
            store,
            real_name,
            documents: DocumentHasher::new(config.document_key()?.bytes()),
            pseudonyms: Pseudonyms::new(config.pseudonym_key()?.bytes()),
            max_devices: config.max_devices_per_subject,
            challenge_ttl: config.challenge_ttl,
            enrolment_secret_ttl: config.enrolment_secret_ttl,
            certificates: CertificateLimits {
                max_lifetime: config.certificate_max_lifetime,
                max_live_per_device: config.max_live_certificates_per_device,
                clock_skew: config.clock_skew,
            },
        })
    }

    /// The store (for tests and embedding).
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// Derives the subject's transit account.
    pub fn transit_account(&self, subject: &SubjectId) -> String {
        self.pseudonyms.transit_account(subject)
    }

    /// The latest acceptable birth date: today, in the easternmost time zone (UTC+14),
    /// so that nobody born today (Beijing time included) is refused.
    pub fn today() -> Date {
        Date::from_unix(Timestamp::now().unix_seconds() + 14 * 3600)
    }

    /// Enrols a citizen (see the module documentation for retries).
    pub async fn enrol(&self, document: Document, name: Name) -> Result<Enrolled, Error> {
        let hash = self.documents.hash(&document);
        if self.store.find_enrolled_subject(&hash).await?.is_some() {
            return Err(Error::AlreadyEnrolled);
        }
        let outcome = self.real_name.check(&document, &name).await;
        let now = Timestamp::now();
        let (secret, grant) = enrolment::grant(now, self.enrolment_secret_ttl)?;
        let new = NewSubject {
            id: SubjectId::generate()?,
            document_hash: hash,
            document_type: document.kind(),
            masked_name: name.masked(),
            status: outcome.status(),
            real_name_check: outcome.to_proto(),
            attributes: Attributes {
                fare_class: FareClass::Adult,
                medical_insurance_linked: false,
                assurance_level: outcome.assurance(document.assurance()),
            },
            enrolment: grant,
        };
        let subject = self.store.insert_subject(new, now).await?;
        // No ids at INFO: subject ids are personal data (security finding 1).
        tracing::info!(
            status = ?subject.status,
            real_name_check = ?outcome,
            "subject enrolled"
        );
        Ok(Enrolled {
            subject,
            secret,
            secret_expires_at: grant.expires_at,
        })
    }

    /// A fresh enrolment secret for the subject, replacing any earlier one (an
    /// operator's way back for a citizen who lost every device).
    pub async fn issue_enrolment_secret(
        &self,
        subject_id: SubjectId,
    ) -> Result<(EnrolmentSecret, Timestamp), Error> {
        let now = Timestamp::now();
        let (secret, grant) = enrolment::grant(now, self.enrolment_secret_ttl)?;
        self.store.grant_enrolment(subject_id, grant, now).await?;
        tracing::info!("enrolment secret issued");
        Ok((secret, grant.expires_at))
    }

    /// One subject.
    pub async fn get_subject(&self, id: SubjectId) -> Result<Subject, Error> {
        self.store.get_subject(id).await
    }

    /// Updates attributes (unset ones are kept).
    pub async fn set_attributes(
        &self,
        id: SubjectId,
        update: AttributesUpdate,
    ) -> Result<Subject, Error> {
        let subject = self
            .store
            .update_attributes(id, update, Timestamp::now())
            .await?;
        tracing::info!("attributes updated");
        Ok(subject)
    }

    /// Suspends or re-activates a subject (`status` is ACTIVE or SUSPENDED).
    pub async fn set_status(
        &self,
        id: SubjectId,
        status: SubjectStatus,
        reason: &str,
    ) -> Result<Subject, Error> {
        let subject = self
            .store
            .set_subject_status(id, status, reason, Timestamp::now())
            .await?;
        tracing::info!(status = ?subject.status, "subject status set");
        Ok(subject)
    }

    /// A fresh single-use binding challenge for an ACTIVE subject.
    pub async fn create_challenge(&self, subject_id: SubjectId) -> Result<Challenge, Error> {
        let now = Timestamp::now();
        let challenge = challenge::generate(subject_id, now, self.challenge_ttl)?;
        self.store.create_challenge(challenge.clone(), now).await?;
        Ok(challenge)
    }

    /// Binds a device after checking its proof of possession and the subject's
    /// authority (see [`crate::enrolment`]). A bad signature is refused before the
    /// store is touched, so it changes nothing.
    pub async fn bind_device(&self, request: BindRequest) -> Result<Device, Error> {
        let subject_text = request.subject_id.to_string();
        let message = binding_message(&subject_text, &request.challenge, &request.public_key);
        request
            .public_key
            .verify(&message, &request.signature)
            .map_err(|_| Error::BadSignature)?;
        let authority = match request.authority {
            BindingAuthority::EnrolmentSecret(secret) => Authority::EnrolmentSecret(secret.hash()),
            BindingAuthority::BoundDevice {
                device_id,
                signature,
            } => {
                // The store checks again, in the binding's transaction, that the device
                // is an ACTIVE device of this subject; here its key signs the binding.
                let authoriser = match self.store.get_device(device_id).await {
                    Ok(view) => view.device,
                    Err(Error::DeviceNotFound) => return Err(Error::BindingNotAuthorized),
                    Err(err) => return Err(err),
                };
                let key = PublicKey::p256(&authoriser.public_key)
                    .map_err(|_| Error::Corrupt("stored device key"))?;
                let message = binding_authorization_message(
                    &subject_text,
                    &request.challenge,
                    &request.public_key,
                );
                key.verify(&message, &signature)
                    .map_err(|_| Error::BindingNotAuthorized)?;
                Authority::BoundDevice(device_id)
            }
        };
        let device = self
            .store
            .bind_device(
                NewDevice {
                    id: DeviceId::generate()?,
                    subject_id: request.subject_id,
                    public_key: request.public_key.as_bytes().to_vec(),
                    label: request.label,
                    challenge: request.challenge,
                    authority,
                },
                self.max_devices,
                Timestamp::now(),
            )
            .await?;
        tracing::info!("device bound");
        Ok(device)
    }

    /// Unbinds a device of the subject.
    pub async fn unbind_device(
        &self,
        subject_id: SubjectId,
        device_id: DeviceId,
        reason: &str,
    ) -> Result<Device, Error> {
        let device = self
            .store
            .unbind_device(subject_id, device_id, reason, Timestamp::now())
            .await?;
        tracing::info!("device unbound");
        Ok(device)
    }

    /// A subject's devices.
    pub async fn list_devices(
        &self,
        subject_id: SubjectId,
        include_unbound: bool,
    ) -> Result<Vec<Device>, Error> {
        self.store.list_devices(subject_id, include_unbound).await
    }

    /// A device with its subject's status and attributes.
    pub async fn get_device(&self, id: DeviceId) -> Result<DeviceView, Error> {
        self.store.get_device(id).await
    }

    /// Records a device certificate. Its validity must be one a gate could accept:
    /// starting no later than now (plus the clock skew) and ending within the longest
    /// certificate life (plus the skew); and the device may hold only so many live
    /// certificates. Both bound what revoking the device must cascade to (security
    /// finding 3: a flood of far-future certificates made that list too large to read).
    pub async fn record_certificate(
        &self,
        certificate: NewCertificate,
    ) -> Result<Certificate, Error> {
        let now = Timestamp::now();
        let latest_start = now.saturating_add(self.certificates.clock_skew);
        if certificate.not_before > latest_start {
            return Err(Error::invalid(
                "certificate.not_before",
                "is in the future beyond the clock skew",
            ));
        }
        let latest_end = latest_start.saturating_add(self.certificates.max_lifetime);
        if certificate.not_after > latest_end {
            return Err(Error::invalid(
                "certificate.not_after",
                "is later than the longest certificate life allows",
            ));
        }
        let recorded = self
            .store
            .record_certificate(certificate, self.certificates.max_live_per_device, now)
            .await?;
        tracing::info!("certificate recorded");
        Ok(recorded)
    }

    /// One page of the certificates of a device or subject (only unexpired ones
    /// unless `include_expired`), and the cursor of the next page if there is one.
    pub async fn list_certificates(
        &self,
        owner: CertificateOwner,
        include_expired: bool,
        page: CertificatePage,
    ) -> Result<(Vec<Certificate>, Option<CertificateCursor>), Error> {
        let valid_at = (!include_expired).then(Timestamp::now);
        // One more than asked tells whether another page follows.
        let probe = CertificatePage {
            limit: page.limit.saturating_add(1),
            ..page
        };
        let mut certificates = self.store.list_certificates(owner, valid_at, probe).await?;
        let next = if certificates.len() > page.limit {
            certificates.truncate(page.limit);
            certificates.last().map(CertificateCursor::after)
        } else {
            None
        };
        Ok((certificates, next))
    }
}
