//! The hospital desk: the patient must be an active subject with real-name assurance;
//! the desk learns the hospital pseudonym and whether medical insurance is linked,
//! nothing else.

use citypass_proto::v1::{AssuranceLevel, SubjectStatus};

use super::{Context, Verdict};
use crate::model::{PolicyRefusal, SceneResult};
use crate::subjects::{PseudonymScope, Subjects};

/// The least assurance a hospital (and a government counter) relies on.
pub(super) const REAL_NAME: AssuranceLevel = AssuranceLevel::RealNameVerified;

/// The hospital policy.
pub(super) async fn decide(subjects: &dyn Subjects, ctx: &Context<'_>) -> Verdict {
    let subject = match subjects.unseal(ctx.presented) {
        Ok(subject) => subject,
        Err(err) => return err.into(),
    };
    let profile = match subjects.profile(subject, Some(ctx.deadline)).await {
        Ok(profile) => profile,
        Err(err) => return err.into(),
    };
    if profile.status != SubjectStatus::Active {
        return Verdict::Refuse(PolicyRefusal::SubjectInactive);
    }
    // Levels are ordered by number (common.proto).
    if (profile.assurance as i32) < REAL_NAME as i32 {
        return Verdict::Refuse(PolicyRefusal::RealNameRequired);
    }
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
    let subject = subjects.unseal(ctx.presented).ok()?;
    Some(SceneResult::Hospital {
        patient_pseudonym: subjects.pseudonym(&subject, PseudonymScope::Hospital),
        medical_insurance_linked,
    })
}
