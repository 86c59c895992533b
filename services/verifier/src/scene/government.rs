//! The government service hall counter (政务服务): the counter learns who stands in
//! front of it without an ID card handed over: an active subject with real-name
//! assurance, shown by masked name, assurance level and the government-service
//! pseudonym (with which the hall's systems find the citizen's files; identity computes
//! it at enrolment from the resident ID number). Only codes whose scopes include the
//! scene reach this policy (the scope step): the app asks for it explicitly.

use super::holder_check::real_name_holder;
use super::{Context, Verdict};
use crate::model::{PolicyRefusal, SceneResult};
use crate::subjects::Subjects;

/// The government policy.
pub(super) async fn decide(subjects: &dyn Subjects, ctx: &Context<'_>) -> Verdict {
    let (_, profile) = match real_name_holder(subjects, ctx).await {
        Ok(holder) => holder,
        Err(verdict) => return verdict,
    };
    let Some(government_pseudonym) = profile.government_pseudonym.clone() else {
        return Verdict::Refuse(PolicyRefusal::NoGovernmentPseudonym);
    };
    Verdict::Allow(Some(SceneResult::Government {
        masked_name: profile.masked_name.clone(),
        assurance_level: profile.assurance,
        government_pseudonym,
    }))
}

/// A retry's result: derived again from the profile (identity's cache), since the
/// store keeps no name or pseudonym.
pub(super) async fn complete(subjects: &dyn Subjects, ctx: &Context<'_>) -> Option<SceneResult> {
    let subject = ctx.subject?;
    let profile = subjects.profile(subject, Some(ctx.deadline)).await.ok()?;
    Some(SceneResult::Government {
        masked_name: profile.masked_name.clone(),
        assurance_level: profile.assurance,
        government_pseudonym: profile.government_pseudonym.clone()?,
    })
}
