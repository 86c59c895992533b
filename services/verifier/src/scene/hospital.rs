//! The hospital desk: the patient must be an active subject with real-name assurance;
//! the desk learns the hospital pseudonym and whether medical insurance is linked,
//! nothing else.

use super::holder_check::real_name_holder;
use super::{Context, Verdict};
use crate::model::SceneResult;
use crate::subjects::{PseudonymScope, Subjects};

/// The hospital policy.
pub(super) async fn decide(subjects: &dyn Subjects, ctx: &Context<'_>) -> Verdict {
    let (subject, profile) = match real_name_holder(subjects, ctx).await {
        Ok(holder) => holder,
        Err(verdict) => return verdict,
    };
    Verdict::Allow(Some(SceneResult::Hospital {
        patient_pseudonym: subjects.pseudonym(&subject, PseudonymScope::Hospital),
        medical_insurance_linked: profile.medical_insurance_linked,
    }))
}

/// A retry's result: the stored fact and the pseudonym derived again.
pub(super) fn complete(
    subjects: &dyn Subjects,
    ctx: &Context<'_>,
    medical_insurance_linked: bool,
) -> Option<SceneResult> {
    let subject = ctx.subject?;
    Some(SceneResult::Hospital {
        patient_pseudonym: subjects.pseudonym(&subject, PseudonymScope::Hospital),
        medical_insurance_linked,
    })
}
