//! Stand-ins for the `Subjects` seam: the placeholder `build` wires until the real
//! source (unsealing, identity's cached profiles, the pseudonym crate) lands, and a
//! fixed holder for tests and benches. Neither unseals anything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use citypass_gate::Presented;
use citypass_runtime::Deadline;
use citypass_token::{Cti, SubjectId};
use futures::future::BoxFuture;

use crate::subjects::{PseudonymScope, SubjectProfile, Subjects, SubjectsError};

/// The PLACEHOLDER `build` wires: every holder is [`SubjectsError::Unavailable`], so
/// every scene that needs one (hospital, scenic, government) follows its fail mode.
/// Replaced by the real `Subjects` (branch `subjects`).
#[derive(Debug, Default, Clone, Copy)]
pub struct UnavailableSubjects;

impl Subjects for UnavailableSubjects {
    fn unseal(&self, _presented: &Presented) -> Result<SubjectId, SubjectsError> {
        Err(SubjectsError::Unavailable)
    }

    fn profile(
        &self,
        _subject: SubjectId,
        _deadline: Option<Deadline>,
    ) -> BoxFuture<'_, Result<Arc<SubjectProfile>, SubjectsError>> {
        Box::pin(std::future::ready(Err(SubjectsError::Unavailable)))
    }

    fn pseudonym(&self, subject: &SubjectId, scope: PseudonymScope<'_>) -> String {
        FixedSubjects::pseudonym_of(subject, scope)
    }
}

/// What [`FixedSubjects`] says about a holder: who, and their profile (`None`:
/// identity does not answer).
#[derive(Debug, Clone)]
pub struct FixedHolder {
    /// The subject the code is taken to name.
    pub subject: SubjectId,
    /// The profile, or `Err` as identity would fail.
    pub profile: Result<SubjectProfile, SubjectsError>,
}

/// Tests and benches only: every code names one holder, unless a code (by `cti`) was
/// given another; pseudonyms are SHA-256 of the scope and subject (not the city's
/// keyed HMACs).
#[derive(Debug)]
pub struct FixedSubjects {
    default: Mutex<FixedHolder>,
    by_code: Mutex<HashMap<Cti, FixedHolder>>,
    silent: std::sync::atomic::AtomicBool,
}

impl FixedSubjects {
    /// Every code names `holder`.
    pub fn new(holder: FixedHolder) -> Self {
        FixedSubjects {
            default: Mutex::new(holder),
            by_code: Mutex::new(HashMap::new()),
            silent: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// While `silent`, profiles are never answered (identity stopped: the caller's
    /// deadline decides).
    pub fn set_silent(&self, silent: bool) {
        self.silent
            .store(silent, std::sync::atomic::Ordering::SeqCst);
    }

    /// An active, in-person verified adult with insurance and a government pseudonym.
    pub fn citizen(subject: SubjectId) -> FixedHolder {
        FixedHolder {
            subject,
            profile: Ok(SubjectProfile {
                status: citypass_proto::v1::SubjectStatus::Active,
                assurance: citypass_proto::v1::AssuranceLevel::RealNameVerified,
                fare_class: citypass_proto::v1::FareClass::Adult,
                medical_insurance_linked: true,
                transit_account: format!("ta-{}", hex::encode(&subject.as_bytes()[..4])),
                government_pseudonym: Some(hex::encode(&subject.as_bytes()[..])),
                masked_name: "L* M*".to_owned(),
            }),
        }
    }

    /// From now on, codes not given a holder of their own name `holder`.
    pub fn set_default(&self, holder: FixedHolder) {
        *self.default.lock().unwrap_or_else(|e| e.into_inner()) = holder;
    }

    /// The code `cti` names `holder`.
    pub fn set_for_code(&self, cti: Cti, holder: FixedHolder) {
        self.by_code
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cti, holder);
    }

    fn holder_of_subject(&self, subject: SubjectId) -> FixedHolder {
        let by_code = self.by_code.lock().unwrap_or_else(|e| e.into_inner());
        by_code
            .values()
            .find(|h| h.subject == subject)
            .cloned()
            .unwrap_or_else(|| {
                self.default
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            })
    }

    /// The stand-in pseudonym: SHA-256 of the scope and subject, 32 hex digits.
    pub fn pseudonym_of(subject: &SubjectId, scope: PseudonymScope<'_>) -> String {
        let scope = match scope {
            PseudonymScope::Hospital => "hospital".to_owned(),
            PseudonymScope::Venue(venue) => format!("venue:{venue}"),
            PseudonymScope::FacePassMark(gate) => format!("face-pass-mark:{gate}"),
        };
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            &[scope.as_bytes(), b"\0", subject.as_bytes()].concat(),
        );
        hex::encode(&digest.as_ref()[..16])
    }
}

impl Subjects for FixedSubjects {
    fn unseal(&self, presented: &Presented) -> Result<SubjectId, SubjectsError> {
        let by_code = self.by_code.lock().unwrap_or_else(|e| e.into_inner());
        match by_code.get(&presented.cti()) {
            Some(holder) => Ok(holder.subject),
            None => Ok(self
                .default
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .subject),
        }
    }

    fn profile(
        &self,
        subject: SubjectId,
        _deadline: Option<Deadline>,
    ) -> BoxFuture<'_, Result<Arc<SubjectProfile>, SubjectsError>> {
        if self.silent.load(std::sync::atomic::Ordering::SeqCst) {
            return Box::pin(std::future::pending());
        }
        let holder = self.holder_of_subject(subject);
        Box::pin(std::future::ready(holder.profile.map(Arc::new)))
    }

    fn pseudonym(&self, subject: &SubjectId, scope: PseudonymScope<'_>) -> String {
        FixedSubjects::pseudonym_of(subject, scope)
    }
}
