//! The verifier's [`Subjects`]: subject keys to unseal with ([`SealingKeys`]), identity's
//! profiles through the cache ([`ProfileCache`]), and the scene pseudonym keys
//! (`citypass_pseudonym`, hospital and venue scopes; the transit account and the
//! government pseudonym come stored, in the profile).

use std::sync::Arc;

use citypass_gate::Presented;
use citypass_pseudonym::{Pseudonyms, Scope};
use citypass_runtime::Deadline;
use citypass_token::{SubjectId, TokenError};
use futures::future::BoxFuture;

use crate::subjects::cache::ProfileCache;
use crate::subjects::sealing::SealingKeys;
use crate::subjects::{PseudonymScope, SubjectProfile, Subjects, SubjectsError};

/// The real holder source; see the module documentation.
pub struct Holder {
    sealing: Arc<SealingKeys>,
    profiles: ProfileCache,
    pseudonyms: Pseudonyms,
}

impl std::fmt::Debug for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holder")
            .field("sealing", &self.sealing)
            .field("profiles", &self.profiles)
            .finish_non_exhaustive()
    }
}

impl Holder {
    /// Over these sources.
    pub fn new(sealing: Arc<SealingKeys>, profiles: ProfileCache, pseudonyms: Pseudonyms) -> Self {
        Holder {
            sealing,
            profiles,
            pseudonyms,
        }
    }
}

impl Subjects for Holder {
    fn unseal(&self, presented: &Presented) -> Result<SubjectId, SubjectsError> {
        presented
            .open_subject(&*self.sealing.current())
            .map_err(|err| {
                SubjectsError::Unsealable(match err {
                    TokenError::UnknownSubjectKey { .. } => "unknown subject key id",
                    TokenError::UnsupportedSealVersion { .. } => "unsupported seal version",
                    _ => "does not open",
                })
            })
    }

    fn profile(
        &self,
        subject: SubjectId,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'_, Result<Arc<SubjectProfile>, SubjectsError>> {
        Box::pin(self.profiles.get(subject, deadline))
    }

    fn pseudonym(&self, subject: &SubjectId, scope: PseudonymScope<'_>) -> String {
        let scope = match scope {
            PseudonymScope::Hospital => Scope::Hospital,
            PseudonymScope::Venue(venue) => Scope::Venue(venue),
            PseudonymScope::FacePassMark(gate) => Scope::FacePassMark(gate),
        };
        self.pseudonyms.derive(scope, subject).value
    }
}
