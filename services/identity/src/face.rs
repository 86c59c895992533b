//! Face enrolment with consent (issue 14): the records, and the rules the service
//! applies before a store call.
//!
//! Face checks are opt-in and never the only way through, so nothing here is reached
//! by any QR path: a subject without consent or template is served exactly as before.
//! The rules, from PIPL art. 26, 28, 29 and 55 and 《人脸识别技术应用安全管理办法》
//! (2025), as docs/architecture.md ("Face") records them:
//!
//! - a separate consent per purpose ([`FacePurpose`]), with the notice text's version
//!   and time; a FACE_PASS consent names the stations and venues it covers;
//! - a child under 14 (by the birth date of a resident ID number) needs a guardian's
//!   consent, given in person at a counter where the operator checks guardianship;
//!   the app cannot give it ([`Error::GuardianConsentRequired`]);
//! - no template without a live consent ([`Error::FaceConsentRequired`], checked by the
//!   store in the same transaction that stores the template);
//! - only an embedding arrives (the image stays on the device), and it is stored sealed
//!   ([`citypass_face::TemplateKeys`]); no answer ever carries it, except the
//!   verifier's feed, sealed;
//! - withdrawing the last consent deletes the template row at once; every change is
//!   an audit row (who, when, what, which purpose; no biometric data);
//! - the service counts enrolled people against the provincial filing threshold and
//!   says so (a log line and a gauge when it is crossed).

use citypass_face::TemplateChannel;
use citypass_face::{Embedding, SealedTemplate, TemplateKeys};
use citypass_proto::v1::{FaceChannel, FacePurpose, SubjectStatus};

use crate::document::Date;
use crate::error::Error;
use crate::ids::{DeviceId, SubjectId};
use crate::model::Timestamp;
use crate::store::Store;

pub use crate::model::face::{
    AUDIT_CONSENT, AUDIT_DELETE, AUDIT_ENROL, AUDIT_WITHDRAW, AuditEntry, Consent, ConsentRequest,
    Enrolment, FaceStats, FeedEntry, FeedTemplate, NewTemplate, Withdrawal, audit_action,
};

/// People enrolled at which a provincial filing is due (《人脸识别技术应用安全管理办法》).
pub const FILING_THRESHOLD: u64 = 100_000;

/// Age below which a guardian consents.
pub const GUARDIAN_AGE: i32 = 14;
/// Age from which a subject may consent as a guardian.
pub const ADULT_AGE: i32 = 18;

/// Most places a FACE_PASS consent may name.
pub const MAX_PLACES: usize = 32;

/// Gauge of people with a face template (OpenTelemetry, on the meter provider the
/// runtime installed; recorded after every enrolment, deletion and stats call).
pub const ENROLLED_GAUGE: &str = "citypass.identity.face.enrolled_people";

/// Who made a face call, for the audit row and the rules that differ by channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The subject's own bound device (already authenticated).
    Device(DeviceId),
    /// A face counter (role `face-counter`), by its certificate's name: consents and
    /// enrolments in person.
    Counter(String),
    /// An identity-admin operator at a service desk, by name: consents (a guardian's),
    /// never an enrolment (finding F8).
    Operator(String),
}

impl Actor {
    /// The channel.
    pub fn channel(&self) -> FaceChannel {
        match self {
            Actor::Device(_) => FaceChannel::App,
            Actor::Counter(_) | Actor::Operator(_) => FaceChannel::Counter,
        }
    }

    /// The channel as the template's sealing binds it (finding F4).
    pub fn template_channel(&self) -> TemplateChannel {
        match self {
            Actor::Device(_) => TemplateChannel::App,
            Actor::Counter(_) | Actor::Operator(_) => TemplateChannel::Counter,
        }
    }

    /// Whether the call is made in person (the document seen).
    fn in_person(&self) -> bool {
        !matches!(self, Actor::Device(_))
    }

    /// The audit form: `device:<id>`, `counter:<name>` or `operator:<name>`.
    pub fn audit(&self) -> String {
        match self {
            Actor::Device(id) => format!("device:{id}"),
            Actor::Counter(name) => format!("counter:{name}"),
            Actor::Operator(name) => format!("operator:{name}"),
        }
    }
}

/// Face enrolment: the template keys, the threshold, the store.
pub struct Faces {
    keys: TemplateKeys,
    filing_threshold: u64,
    enrolled: opentelemetry::metrics::Gauge<u64>,
}

impl std::fmt::Debug for Faces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faces")
            .field("keys", &self.keys)
            .field("filing_threshold", &self.filing_threshold)
            .finish()
    }
}

impl Faces {
    /// Sealing under `keys`; the filing threshold `filing_threshold` (the rule's 100 000
    /// in deployments).
    pub fn new(keys: TemplateKeys, filing_threshold: u64) -> Self {
        Faces {
            keys,
            filing_threshold,
            enrolled: opentelemetry::global::meter("citypass-identity")
                .u64_gauge(ENROLLED_GAUGE)
                .with_description("people with a face template enrolled")
                .build(),
        }
    }

    /// The filing threshold.
    pub fn filing_threshold(&self) -> u64 {
        self.filing_threshold
    }

    /// Records a consent by `actor` (see the module documentation for the rules).
    pub async fn record_consent(
        &self,
        store: &dyn Store,
        request: ConsentRequest,
        actor: &Actor,
        today: Date,
    ) -> Result<Consent, Error> {
        // Whether the subject is under 14: `None` when the service holds no birth date
        // (a document without one, or enrolled before it was kept).
        let child = store
            .get_birth_date(request.subject_id)
            .await?
            .map(|born| today < born.years_later(GUARDIAN_AGE));
        match (&request.guardian, actor.in_person()) {
            (Some(_), false) => {
                return Err(Error::invalid(
                    "guardian_subject_id",
                    "a guardian consents in person at a counter, not from an app",
                ));
            }
            // An app cannot show the service the holder is 14 or more.
            (None, false) if child.is_none() => return Err(Error::AgeUnknown),
            (None, _) if child == Some(true) => return Err(Error::GuardianConsentRequired),
            (Some(_), true) if child == Some(false) => {
                return Err(Error::invalid(
                    "guardian_subject_id",
                    "only a subject under 14 consents through a guardian",
                ));
            }
            // A known child, or one whose age the counter checked on the document.
            (Some(guardian), true) => {
                self.check_guardian(store, request.subject_id, *guardian, today)
                    .await?;
            }
            (None, _) => {}
        }
        let consent = Consent {
            subject_id: request.subject_id,
            purpose: request.purpose,
            text_version: request.text_version,
            places: request.places,
            guardian: request.guardian,
            channel: actor.channel(),
            granted_at: Timestamp::now(),
        };
        let recorded = store
            .record_face_consent(consent, &actor.audit(), Timestamp::now())
            .await?;
        tracing::info!(purpose = ?recorded.purpose, channel = ?recorded.channel, "face consent recorded");
        Ok(recorded)
    }

    /// A guardian is an ACTIVE adult who is not the child.
    async fn check_guardian(
        &self,
        store: &dyn Store,
        child: SubjectId,
        guardian: SubjectId,
        today: Date,
    ) -> Result<(), Error> {
        if guardian == child {
            return Err(Error::GuardianNotEligible);
        }
        let subject = match store.get_subject(guardian).await {
            Ok(subject) => subject,
            Err(Error::SubjectNotFound) => return Err(Error::GuardianNotEligible),
            Err(err) => return Err(err),
        };
        if subject.status != SubjectStatus::Active {
            return Err(Error::GuardianNotEligible);
        }
        if let Some(born) = store.get_birth_date(guardian).await?
            && today < born.years_later(ADULT_AGE)
        {
            return Err(Error::GuardianNotEligible);
        }
        Ok(())
    }

    /// Withdraws one purpose (or all, `None`); the template goes with the last one.
    pub async fn withdraw(
        &self,
        store: &dyn Store,
        subject: SubjectId,
        purpose: Option<FacePurpose>,
        actor: &Actor,
    ) -> Result<Withdrawal, Error> {
        let withdrawal = store
            .withdraw_face_consent(
                subject,
                purpose,
                actor.channel(),
                &actor.audit(),
                Timestamp::now(),
            )
            .await?;
        tracing::info!(
            withdrawn = withdrawal.withdrawn.len(),
            template_deleted = withdrawal.template_deleted,
            "face consent withdrawn"
        );
        if withdrawal.template_deleted {
            self.report_count(store).await;
        }
        Ok(withdrawal)
    }

    /// Seals and stores the subject's template (the store refuses it without a live
    /// consent, and from the app over a counter's template: finding F8). Only the app
    /// and a face counter enrol.
    pub async fn enrol(
        &self,
        store: &dyn Store,
        subject: SubjectId,
        embedding: &Embedding,
        actor: &Actor,
    ) -> Result<Enrolment, Error> {
        if let Actor::Operator(_) = actor {
            return Err(Error::FaceCounterRequired);
        }
        let sealed = self
            .keys
            .seal(&subject.to_string(), actor.template_channel(), embedding)
            .map_err(Error::Template)?;
        let enrolment = store
            .enrol_face(
                NewTemplate {
                    subject_id: subject,
                    sealed,
                    channel: actor.channel(),
                    device: match actor {
                        Actor::Device(id) => Some(*id),
                        Actor::Counter(_) | Actor::Operator(_) => None,
                    },
                },
                &actor.audit(),
                Timestamp::now(),
            )
            .await?;
        tracing::info!(channel = ?enrolment.channel, "face template enrolled");
        self.enrolled.record(enrolment.enrolled_after, &[]);
        if enrolment.enrolled_before < self.filing_threshold
            && enrolment.enrolled_after >= self.filing_threshold
        {
            tracing::warn!(
                enrolled_people = enrolment.enrolled_after,
                filing_threshold = self.filing_threshold,
                "face enrolments reached the provincial filing threshold: file with the provincial cyberspace administration"
            );
        }
        Ok(enrolment)
    }

    /// Counts for operators.
    pub async fn stats(&self, store: &dyn Store) -> Result<FaceStats, Error> {
        let stats = store.face_stats().await?;
        self.enrolled.record(stats.enrolled_people, &[]);
        Ok(stats)
    }

    /// One page of the verifier's feed.
    pub async fn changes(
        &self,
        store: &dyn Store,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<FeedEntry>, bool), Error> {
        let mut entries = store.face_changes(after, limit.saturating_add(1)).await?;
        let more = entries.len() > limit;
        entries.truncate(limit);
        Ok((entries, more))
    }

    async fn report_count(&self, store: &dyn Store) {
        if let Ok(stats) = store.face_stats().await {
            self.enrolled.record(stats.enrolled_people, &[]);
        }
    }

    /// Opens a stored template enrolled through `channel` (for tests and for a future
    /// identity-side compare).
    pub fn open(
        &self,
        subject: SubjectId,
        channel: TemplateChannel,
        sealed: &SealedTemplate,
    ) -> Result<Embedding, Error> {
        self.keys
            .open(&subject.to_string(), channel, sealed)
            .map_err(Error::Template)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use citypass_proto::v1::{FaceChannel, FacePurpose, SubjectStatus};

    use super::*;
    use crate::store::{FaceStore, MemoryStore, Store};

    /// Log output, kept.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn embedding(seed: f32) -> Embedding {
        let raw: Vec<f32> = (0..citypass_face::DIMENSION)
            .map(|i| (i as f32 * seed).sin() + 1.5)
            .collect();
        Embedding::normalise(&raw).unwrap()
    }

    async fn subject(store: &MemoryStore, n: u8) -> SubjectId {
        use crate::document::{DocumentHash, KeyedDocumentHash};
        use crate::model::{Attributes, EnrolmentGrant, NewSubject, SecretHash};
        use citypass_proto::v1::{AssuranceLevel, DocumentType, FareClass, RealNameCheckOutcome};
        use citypass_pseudonym::{KeyId, Pseudonym};
        let id = SubjectId::generate().unwrap();
        let new = NewSubject {
            id,
            document_hash: KeyedDocumentHash {
                key_id: KeyId::FIRST,
                hash: DocumentHash([n; 32]),
            },
            other_document_hashes: Vec::new(),
            transit_account: Pseudonym {
                key_id: KeyId::FIRST,
                value: "00".repeat(16),
            },
            government_pseudonym: None,
            document_type: DocumentType::Passport,
            masked_name: "J***".to_owned(),
            status: SubjectStatus::Active,
            real_name_check: RealNameCheckOutcome::Matched,
            attributes: Attributes {
                fare_class: FareClass::Adult,
                medical_insurance_linked: false,
                assurance_level: AssuranceLevel::RealNameVerified,
            },
            enrolment: EnrolmentGrant {
                secret_hash: SecretHash([0; 32]),
                expires_at: Timestamp::now(),
            },
            born_on: None,
        };
        store.insert_subject(new, Timestamp::now()).await.unwrap();
        store
            .record_face_consent(
                Consent {
                    subject_id: id,
                    purpose: FacePurpose::CounterCheck,
                    text_version: "v1".to_owned(),
                    places: Vec::new(),
                    guardian: None,
                    channel: FaceChannel::Counter,
                    granted_at: Timestamp::now(),
                },
                "operator:test",
                Timestamp::now(),
            )
            .await
            .unwrap();
        id
    }

    #[tokio::test]
    async fn crossing_the_filing_threshold_is_said_once_without_ids() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let store = MemoryStore::new();
        let keys = TemplateKeys::new((1, &[7; 32]), &[]).unwrap();
        let faces = Faces::new(keys, 2);
        let counter = Actor::Counter("test".to_owned());
        let mut subjects = Vec::new();
        for n in 1..=3 {
            let id = subject(&store, n).await;
            faces
                .enrol(&store, id, &embedding(f32::from(n)), &counter)
                .await
                .unwrap();
            subjects.push(id);
        }
        // Re-enrolling a person replaces their template and counts them once.
        faces
            .enrol(&store, subjects[0], &embedding(9.0), &counter)
            .await
            .unwrap();
        assert_eq!(faces.stats(&store).await.unwrap().enrolled_people, 3);
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let crossings = log
            .matches("reached the provincial filing threshold")
            .count();
        assert_eq!(
            crossings, 1,
            "said when the second enrolment crosses it: {log}"
        );
        assert!(log.contains("enrolled_people=2"), "{log}");
        for id in subjects {
            assert!(
                !log.contains(&id.to_string()),
                "no subject ids in logs: {log}"
            );
        }
    }
}
