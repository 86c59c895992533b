//! Metro gates and bus readers: the rider pays the fare through payments. A metro
//! entry opens a trip (TapIn), a metro exit closes and prices it (TapOut), a bus
//! boarding is a flat-fare trip priced and charged at once (TapIn).
//!
//! The rider must be an active subject (identity's cached profile, which also gives
//! the transit account, payments' key, and the fare class). Payments' refusals of the
//! rider (no payment link, arrears, a trip already open) are the scene's refusals,
//! settled like any policy's; an outage, or payments rejecting the request itself
//! (see `crate::transit`), is [`Verdict::Unavailable`] and the scene's fail mode
//! decides. Under `fail: open` the rider passes unmarked at payments: no trip, no
//! fare (docs/architecture.md, "The verifier").
//!
//! The station is the gate registry's (`station` at a metro gate, `stop`, the route,
//! on a bus), not the request's. Every tap is keyed by gate and scan id, so a policy
//! run again for an unsettled mark, or a concurrent retry, charges once; a settled
//! retry is answered from the stored facts with the account derived again.

use citypass_gate::Presented;
use citypass_runtime::Deadline;

use super::{Context, Verdict, VoidFailure};
use crate::model::{Direction, PolicyRefusal, SceneFacts, SceneResult, TransitTrip};
use crate::subjects::Subjects;
use crate::transit::{Tap, TapKind, TapRefused, Tapped, TransitError, TransitTaps, Trip, Void};
use citypass_proto::v1::SubjectStatus;
use citypass_token::Scene;

/// The transit policy.
pub(super) async fn decide(
    subjects: &dyn Subjects,
    taps: &dyn TransitTaps,
    ctx: &Context<'_>,
) -> Verdict {
    let subject = match ctx.holder() {
        Ok(subject) => subject,
        Err(verdict) => return verdict,
    };
    let profile = match subjects.profile(subject, Some(ctx.deadline)).await {
        Ok(profile) => profile,
        Err(err) => return err.into(),
    };
    if profile.status != SubjectStatus::Active {
        return Verdict::Refuse(PolicyRefusal::SubjectInactive);
    }
    let (kind, station) = match (ctx.gate.scene, ctx.direction) {
        (Scene::Bus, _) => (TapKind::Bus, ctx.gate.stop.as_deref()),
        (_, Some(Direction::Exit)) => (TapKind::MetroExit, ctx.gate.station.as_deref()),
        _ => (TapKind::MetroEntry, ctx.gate.station.as_deref()),
    };
    let tap = Tap {
        transit_account: profile.transit_account.clone(),
        kind,
        gate_id: ctx.gate_id.to_owned(),
        station_id: station.unwrap_or_default().to_owned(),
        scan_id: ctx.scan_id.to_owned(),
        tapped_at: ctx.now,
        fare_class: profile.fare_class,
    };
    match taps.tap(tap, ctx.deadline).await {
        Ok(Tapped::Trip(trip)) => Verdict::Allow(Some(SceneResult::Transit(TransitTrip {
            trip_id: trip.trip_id,
            fare_minor_units: trip.fare_minor_units,
            currency_code: trip.currency_code,
            charge_status: trip.charge_status,
            transit_account: profile.transit_account.clone(),
            fare_class: trip.fare_class,
        }))),
        Ok(Tapped::Refused(refused)) => Verdict::Refuse(match refused {
            TapRefused::NoPaymentLink => PolicyRefusal::NoPaymentLink,
            TapRefused::Arrears => PolicyRefusal::Arrears,
            TapRefused::TripAlreadyOpen => PolicyRefusal::TripAlreadyOpen,
        }),
        Err(TransitError::Unavailable) => Verdict::Unavailable,
        Err(TransitError::Rejected { reason }) => {
            // Logged by the client with the RPC; the gate sees the fail mode's answer.
            tracing::error!(
                reason,
                gate_id = ctx.gate_id,
                "payments rejected a transit tap; the scene's fail mode decides"
            );
            Verdict::Unavailable
        }
    }
}

/// A retry's result: the stored trip, with the account derived again from the code
/// (the store keeps no account).
pub(super) async fn complete(
    subjects: &dyn Subjects,
    ctx: &Context<'_>,
    facts: &SceneFacts,
) -> Option<SceneResult> {
    let SceneFacts::Transit {
        trip_id,
        fare_minor_units,
        currency_code,
        charge_status,
        fare_class,
    } = facts
    else {
        return None;
    };
    let subject = ctx.subject?;
    let profile = subjects.profile(subject, Some(ctx.deadline)).await.ok()?;
    Some(SceneResult::Transit(TransitTrip {
        trip_id: trip_id.clone(),
        fare_minor_units: *fare_minor_units,
        currency_code: currency_code.clone(),
        charge_status: *charge_status,
        transit_account: profile.transit_account.clone(),
        fare_class: *fare_class,
    }))
}

/// A gate's void of its tap for `presented`'s holder: payments' VoidTap, keyed by the
/// gate and scan id, for the holder's transit account.
pub(super) async fn void(
    subjects: &dyn Subjects,
    taps: &dyn TransitTaps,
    presented: &Presented,
    gate_id: &str,
    scan_id: &str,
    now: u64,
    deadline: Deadline,
) -> Result<Trip, VoidFailure> {
    let subject = subjects.unseal(presented).map_err(VoidFailure::Holder)?;
    let profile = subjects
        .profile(subject, Some(deadline))
        .await
        .map_err(VoidFailure::Holder)?;
    let void = Void {
        transit_account: profile.transit_account.clone(),
        gate_id: gate_id.to_owned(),
        scan_id: scan_id.to_owned(),
        voided_at: now,
    };
    taps.void(void, deadline)
        .await
        .map_err(VoidFailure::Transit)
}
