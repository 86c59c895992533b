//! What a hospital desk and a government counter both ask of the code's holder before
//! their own decision: identity's profile of the subject the holder step opened, an
//! active subject, real-name assurance. One copy, so the two scenes cannot drift
//! apart on who counts as a known, verified person.

use std::sync::Arc;

use citypass_proto::v1::{AssuranceLevel, SubjectStatus};
use citypass_token::SubjectId;

use super::{Context, Verdict};
use crate::model::PolicyRefusal;
use crate::subjects::{SubjectProfile, Subjects};

/// The least assurance a hospital desk and a government counter rely on.
const REAL_NAME: AssuranceLevel = AssuranceLevel::RealNameVerified;

/// The holder and their profile when they are active and real-name verified; else the
/// verdict (refused, or unavailable when identity does not answer within the
/// deadline or no holder was opened).
pub(super) async fn real_name_holder(
    subjects: &dyn Subjects,
    ctx: &Context<'_>,
) -> Result<(SubjectId, Arc<SubjectProfile>), Verdict> {
    let subject = ctx.holder()?;
    let profile = subjects.profile(subject, Some(ctx.deadline)).await?;
    if profile.status != SubjectStatus::Active {
        return Err(Verdict::Refuse(PolicyRefusal::SubjectInactive));
    }
    // Levels are ordered by number (common.proto).
    if (profile.assurance as i32) < REAL_NAME as i32 {
        return Err(Verdict::Refuse(PolicyRefusal::RealNameRequired));
    }
    Ok((subject, profile))
}
