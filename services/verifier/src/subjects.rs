//! The code's holder as scene policies see them: who a code's sealed `sub` names,
//! what identity says about them, and their scene pseudonyms.
//!
//! This is the seam between the decision and identity. Gates never open `sub`; the
//! verifier does, with the subject keys it holds, so that a subject's revocation and
//! attributes reach online codes too. Attributes come from identity through a cache of
//! bounded age (never a call per scan on the hot path); pseudonyms are keyed HMACs
//! computed here, so the hot path needs no call for them either.
//!
//! - [`sealing`]: the subject keys, followed from their own file;
//! - [`cache`]: identity's profiles, cached for a bounded age and size, misses coalesced;
//! - [`identity`]: identity's GetSubjectProfile as the cache's source;
//! - [`holder`]: the real [`Subjects`], composing the three with the pseudonym keys.

pub mod cache;
pub mod holder;
pub mod identity;
pub mod sealing;

use std::sync::Arc;

use citypass_gate::Presented;
use citypass_proto::v1::{AssuranceLevel, FareClass, SubjectStatus};
use citypass_runtime::Deadline;
use citypass_token::SubjectId;
use futures::future::BoxFuture;

/// What identity says about a subject, as of `fetched_at`: only what scene policies
/// need.
#[derive(Clone, PartialEq, Eq)]
pub struct SubjectProfile {
    /// Active, suspended, …: only an active subject passes a gate.
    pub status: SubjectStatus,
    /// Hospital and government-service scenes need real-name verified or higher.
    pub assurance: AssuranceLevel,
    /// For the fare table and the gate's concession light.
    pub fare_class: FareClass,
    /// The only insurance fact a hospital desk learns.
    pub medical_insurance_linked: bool,
    /// The transit pseudonym (the payments ledger's key), fixed at enrolment.
    pub transit_account: String,
    /// The government-service pseudonym, computed by identity at enrolment from the
    /// resident ID number; `None` for subjects without one (e.g. not a resident ID).
    pub government_pseudonym: Option<String>,
    /// The name as a counter may show it (`L* L**`).
    pub masked_name: String,
}

impl std::fmt::Debug for SubjectProfile {
    /// Without pseudonyms or the name (personal data).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectProfile")
            .field("status", &self.status)
            .field("assurance", &self.assurance)
            .field("fare_class", &self.fare_class)
            .field("medical_insurance_linked", &self.medical_insurance_linked)
            .finish_non_exhaustive()
    }
}

/// Which scene-scoped pseudonym to derive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PseudonymScope<'a> {
    /// The hospital patient key (one for every hospital of the city).
    Hospital,
    /// One per scenic venue (the gate registry's `venue`).
    Venue(&'a str),
    /// The face-pass mark at one place (`station:<id>` or `venue:<id>`): kept in the
    /// replay store only.
    FacePassMark(&'a str),
}

/// Why the holder could not be established.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectsError {
    /// The sealed subject does not open: an unknown subject-key id, another layout
    /// version, or a forged ciphertext (the code's signature held, so this is an
    /// issuer-side fault or a retired key).
    #[error("the code's subject does not open ({0})")]
    Unsealable(&'static str),
    /// Identity does not know the subject.
    #[error("unknown subject")]
    UnknownSubject,
    /// Identity did not answer in time and the cache holds nothing young enough.
    #[error("identity unavailable")]
    Unavailable,
}

/// The holder's sources: subject keys (unsealing), identity (profiles, cached) and
/// pseudonym keys.
pub trait Subjects: Send + Sync + 'static {
    /// The subject a checked code names (CP1: its `sub`; CP2: its certificate's).
    fn unseal(&self, presented: &Presented) -> Result<SubjectId, SubjectsError>;

    /// The subject's profile, from the cache when young enough, else from identity
    /// within `deadline`.
    fn profile(
        &self,
        subject: SubjectId,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'_, Result<Arc<SubjectProfile>, SubjectsError>>;

    /// The subject's pseudonym in `scope` (32 lower-case hex characters).
    fn pseudonym(&self, subject: &SubjectId, scope: PseudonymScope<'_>) -> String;
}
