//! The identity service's logic, on validated domain values (the gRPC layer in
//! `service.rs` parses requests into them and formats the answers).
//!
//! Enrolment in particular (security finding 8). Its caller is anonymous and has proven
//! nothing, so its answers must tell nothing about anyone:
//!
//! 1. the request is well-formed (INVALID_ARGUMENT otherwise: facts about the number
//!    alone, such as its check digit);
//! 2. the attempt fits the per-address and per-document limits ([`crate::attempts`];
//!    RESOURCE_EXHAUSTED otherwise);
//! 3. the real-name check runs, always, before anything else is looked at (an outage is
//!    UNAVAILABLE, stored nowhere);
//! 4. the store is asked whether the document is enrolled (under every configured
//!    document key), always, whatever the check said;
//! 5. only a MATCHED name on a document not enrolled creates a subject (ACTIVE, with
//!    its enrolment secret and its transit account). Everything else, a mismatched
//!    name, a document the real-name system does not know, a document enrolled already
//!    with any name, is one answer, [`Error::EnrolmentNotAccepted`], given no sooner
//!    than `enrol_refusal_floor` after the request began, and stores nothing.
//!
//! So the refusals do the same work (one lookup, one store query) and answer alike, at
//! the same time unless the real-name system itself takes longer than the floor.
//! Enrolment no longer creates PENDING or REJECTED subjects (the service keeps no
//! document number to re-check them with, so they could never become anything);
//! subjects stored so before keep their status, and a new verified enrolment of the
//! same document still closes PENDING ones.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use citypass_proto::v1::{DocumentType, FareClass, SubjectStatus};
use citypass_token::{PublicKey, binding_authorization_message, binding_message};

use citypass_face::Embedding;
use citypass_proto::v1::FacePurpose;

use crate::attempts::EnrolAttempts;
use crate::challenge;
use crate::config::IdentityConfig;
use crate::device_call::{DeviceCall, DeviceCalls};
use crate::document::{Date, Document, DocumentHasher};
use crate::enrolment::{self, Authority, EnrolmentSecret};
use crate::error::Error;
use crate::face::{
    Actor, Consent, ConsentRequest, Enrolment, FaceStats, Faces, FeedEntry, Withdrawal,
};
use crate::ids::{DeviceId, SubjectId};
use crate::model::{
    Attributes, AttributesUpdate, Certificate, CertificateCursor, CertificateOwner,
    CertificatePage, Challenge, Device, DeviceCursor, DevicePage, DeviceView, NewCertificate,
    NewDevice, NewSubject, Subject, SubjectProfile, Timestamp,
};
use crate::name::Name;
use crate::realname::{Outcome, RealNameCheck};
use crate::retries::{EnrolRetries, RequestId};
use crate::store::Store;
use citypass_pseudonym::{GovernmentPseudonyms, Pseudonym, Pseudonyms, Scope};

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

pub use crate::enrolment::Enrolled;

/// Who makes a face call: the citizen's app (its device-signed call, not yet checked)
/// or an identity-admin operator at a counter (the authorisation layer checked the
/// role).
#[derive(Debug, Clone)]
pub enum FaceCaller {
    /// The app, signed by a bound device.
    Device(DeviceCall),
    /// A face counter (role `face-counter`), by the name in its certificate.
    Counter {
        /// The counter's name (from the certificate).
        counter: String,
    },
    /// An identity-admin operator at a service desk (consents only), by name.
    Operator {
        /// The operator's name (from the certificate).
        operator: String,
    },
}

/// The identity service: a store, a real-name check, keys and limits.
pub struct Identity {
    store: Arc<dyn Store>,
    real_name: Arc<dyn RealNameCheck>,
    documents: DocumentHasher,
    pseudonyms: Pseudonyms,
    government: GovernmentPseudonyms,
    attempts: EnrolAttempts,
    retries: EnrolRetries,
    refusal_floor: Duration,
    max_devices: u32,
    challenge_ttl: Duration,
    enrolment_secret_ttl: Duration,
    certificates: CertificateLimits,
    faces: Faces,
    device_calls: DeviceCalls,
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
            faces: Faces::new(config.face_template_keys()?, config.face_filing_threshold),
            device_calls: DeviceCalls::new(
                config.face_proof_freshness,
                store.clone(),
                config.face_calls_per_device,
                config.face_call_window,
            )?,
            store,
            real_name,
            documents: DocumentHasher::new(config.document_keys()?),
            pseudonyms: Pseudonyms::new(config.pseudonym_keys()?),
            government: GovernmentPseudonyms::new(config.government_keys()?),
            attempts: EnrolAttempts::new(
                config.enrol_attempts_per_address,
                config.enrol_attempts_per_document,
                config.enrol_attempt_window,
            )?,
            retries: EnrolRetries::default(),
            refusal_floor: config.enrol_refusal_floor,
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

    /// The subject's transit account, as enrolment stored it (never re-derived under
    /// the current key, so a key rotation leaves it as it is); for a subject stored
    /// before values were, derived under its stored key id.
    pub async fn transit_account(&self, subject: SubjectId) -> Result<String, Error> {
        let stored = self.store.get_transit_account(subject).await?;
        match stored.value {
            Some(value) => Ok(value),
            None => self
                .pseudonyms
                .derive_under(stored.key_id, Scope::Transit, &subject)
                .ok_or(Error::PseudonymKeyMissing(stored.key_id.stored())),
        }
    }

    /// What the verifier needs about a subject (GetSubjectProfile): the subject, its
    /// transit account and its government-service pseudonym.
    pub async fn subject_profile(&self, id: SubjectId) -> Result<SubjectProfile, Error> {
        let subject = self.store.get_subject(id).await?;
        let transit_account = self.transit_account(id).await?;
        let government_pseudonym = self
            .store
            .get_government_pseudonym(id)
            .await?
            .map(|p: Pseudonym| p.value);
        Ok(SubjectProfile {
            subject,
            transit_account,
            government_pseudonym,
        })
    }

    /// The latest acceptable birth date: today, in the easternmost time zone (UTC+14),
    /// so that nobody born today (Beijing time included) is refused.
    pub fn today() -> Date {
        Date::from_unix(Timestamp::now().unix_seconds() + 14 * 3600)
    }

    /// Enrols a citizen calling from `address` (see the module documentation: every
    /// refusal is [`Error::EnrolmentNotAccepted`], whatever its cause). With a
    /// `request_id`, a retry of a successful enrolment gets its answer again
    /// ([`crate::retries`]).
    pub async fn enrol(
        &self,
        document: Document,
        name: Name,
        address: Option<IpAddr>,
        request_id: Option<RequestId>,
    ) -> Result<Enrolled, Error> {
        let started = tokio::time::Instant::now();
        let hashes = self.documents.all_hashes(&document);
        let current = self.documents.hash(&document);
        if let Some(id) = &request_id
            && let Some(first) =
                self.retries
                    .first_answer(id, current.hash, &name, Timestamp::now())?
        {
            return Ok(first);
        }
        self.attempts.admit(address, current.hash)?;
        let outcome = self.real_name.check(&document, &name).await;
        if outcome == Outcome::Unavailable {
            tracing::warn!("enrolment: the real-name system did not answer");
            return Err(Error::RealNameUnavailable);
        }
        let lookup: Vec<_> = hashes.iter().map(|h| h.hash).collect();
        let enrolled = self.store.find_enrolled_subject(&lookup).await?;
        let result = if outcome == Outcome::Matched && enrolled.is_none() {
            self.insert_enrolled(&document, &name, current, &lookup[1..])
                .await
        } else {
            Err(Error::EnrolmentNotAccepted)
        };
        match result {
            Err(Error::EnrolmentNotAccepted | Error::AlreadyEnrolled) => {
                // No ids, no outcome at INFO: which refusal it was is what must not leak.
                tracing::info!("enrolment not accepted");
                tokio::time::sleep_until(started + self.refusal_floor).await;
                Err(Error::EnrolmentNotAccepted)
            }
            Ok(enrolled) => {
                if let Some(id) = request_id {
                    self.retries
                        .remember(id, current.hash, &name, &enrolled, Timestamp::now())?;
                }
                Ok(enrolled)
            }
            other => other,
        }
    }

    /// Stores a verified subject (the store refuses a concurrent enrolment of the same
    /// document with [`Error::AlreadyEnrolled`]).
    async fn insert_enrolled(
        &self,
        document: &Document,
        name: &Name,
        hash: crate::document::KeyedDocumentHash,
        other_hashes: &[crate::document::DocumentHash],
    ) -> Result<Enrolled, Error> {
        let now = Timestamp::now();
        let (secret, grant) = enrolment::grant(now, self.enrolment_secret_ttl)?;
        let id = SubjectId::generate()?;
        let new = NewSubject {
            id,
            document_hash: hash,
            other_document_hashes: other_hashes.to_vec(),
            transit_account: self.pseudonyms.transit_account(&id),
            government_pseudonym: (document.kind() == DocumentType::ResidentIdCard)
                .then(|| self.government.derive(document.number())),
            document_type: document.kind(),
            masked_name: name.masked(),
            status: Outcome::Matched.status(),
            real_name_check: Outcome::Matched.to_proto(),
            attributes: Attributes {
                fare_class: FareClass::Adult,
                medical_insurance_linked: false,
                assurance_level: Outcome::Matched.assurance(document.assurance()),
            },
            enrolment: grant,
            born_on: document.birth_date(),
        };
        let subject = self.store.insert_subject(new, now).await?;
        // No ids at INFO: subject ids are personal data (security finding 1).
        tracing::info!("subject enrolled");
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

    /// One page of a subject's devices, and the cursor of the next page if there is
    /// one.
    pub async fn list_devices(
        &self,
        subject_id: SubjectId,
        include_unbound: bool,
        page: DevicePage,
    ) -> Result<(Vec<Device>, Option<DeviceCursor>), Error> {
        // One more than asked tells whether another page follows.
        let probe = DevicePage {
            limit: page.limit.saturating_add(1),
            ..page
        };
        let mut devices = self
            .store
            .list_devices(subject_id, include_unbound, probe)
            .await?;
        let next = if devices.len() > page.limit {
            devices.truncate(page.limit);
            devices.last().map(DeviceCursor::after)
        } else {
            None
        };
        Ok((devices, next))
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

    /// Face enrolment (the template keys, the filing threshold).
    pub fn faces(&self) -> &Faces {
        &self.faces
    }

    /// The actor of a face call about `subject`: a counter operator, or the app whose
    /// device proof holds and whose device is the subject's.
    async fn face_actor(&self, caller: FaceCaller, subject: SubjectId) -> Result<Actor, Error> {
        match caller {
            FaceCaller::Counter { counter } => Ok(Actor::Counter(counter)),
            FaceCaller::Operator { operator } => Ok(Actor::Operator(operator)),
            FaceCaller::Device(call) => {
                let device = call.device;
                let owner = self.device_calls.subject_of(&*self.store, call).await?;
                if owner != subject {
                    return Err(Error::NotYourSubject);
                }
                Ok(Actor::Device(device))
            }
        }
    }

    /// Records a separate consent to one face purpose (`crate::face`).
    pub async fn record_face_consent(
        &self,
        caller: FaceCaller,
        request: ConsentRequest,
    ) -> Result<Consent, Error> {
        let actor = self.face_actor(caller, request.subject_id).await?;
        self.faces
            .record_consent(&*self.store, request, &actor, Self::today_here())
            .await
    }

    /// Withdraws one face purpose (every one with `None`); the template goes with the
    /// last.
    pub async fn withdraw_face_consent(
        &self,
        caller: FaceCaller,
        subject: SubjectId,
        purpose: Option<FacePurpose>,
    ) -> Result<Withdrawal, Error> {
        let actor = self.face_actor(caller, subject).await?;
        self.faces
            .withdraw(&*self.store, subject, purpose, &actor)
            .await
    }

    /// Enrols (or replaces) the subject's face template.
    pub async fn enrol_face(
        &self,
        caller: FaceCaller,
        subject: SubjectId,
        embedding: &Embedding,
    ) -> Result<Enrolment, Error> {
        let actor = self.face_actor(caller, subject).await?;
        self.faces
            .enrol(&*self.store, subject, embedding, &actor)
            .await
    }

    /// Face enrolment counts.
    pub async fn face_stats(&self) -> Result<FaceStats, Error> {
        self.faces.stats(&*self.store).await
    }

    /// One page of the verifier's feed, and whether more follows.
    pub async fn face_changes(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<FeedEntry>, bool), Error> {
        self.faces.changes(&*self.store, after, limit).await
    }

    /// The highest sequence number the feed has given out (see the store's).
    pub async fn face_last_sequence(&self) -> Result<i64, Error> {
        self.store.face_last_sequence().await
    }

    /// Today's date in China (UTC+8), for ages.
    fn today_here() -> Date {
        Date::from_unix(Timestamp::now().unix_seconds() + 8 * 3600)
    }
}
