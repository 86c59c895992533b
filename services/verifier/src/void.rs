//! A gate's void of its own tap (VoidScan): the turnstile did not turn after an ALLOW
//! at a metro gate or bus reader, so the rider was not carried and must not pay.
//!
//! The verifier keeps no transit account with its marks, so the gate sends the code it
//! scanned again: the request's gate must be the caller's (`PERMISSION_DENIED`) and a
//! metro gate or bus reader of the registry; the code is checked again as at the gate
//! (signature, key, time with the skew, the gate's scene among its scopes:
//! `CODE_REFUSED` otherwise; revocation is not asked again, the scan has happened);
//! its holder's transit account comes from identity's cached profile; then payments'
//! VoidTap, keyed by this gate and scan id, decides: within its void window, for a tap
//! this gate took for this account, an entry or a bus ride is voided (nothing charged)
//! and an exit undone. The code's mark is left as it is: the code stays used.

use citypass_gate::check_code;
use citypass_runtime::Deadline;
use citypass_token::{Scene, unix_now};

use crate::error::VerifierError;
use crate::model::{VoidScan, Voided};
use crate::scene::VoidFailure;
use crate::subjects::SubjectsError;
use crate::transit::{TransitError, TripState};
use crate::verify::Verifier;

/// Payments' reasons for refusing a void that the gate sees as they are.
const VOID_REASONS: [&str; 3] = ["VOID_TOO_LATE", "TRIP_MOVED_ON", "TAP_REPEATED"];

/// Voids `void`'s tap for the authenticated gate `caller`.
pub async fn void(
    verifier: &Verifier,
    caller: &str,
    void: &VoidScan,
    deadline: Option<Deadline>,
) -> Result<Voided, VerifierError> {
    if void.gate_id != caller {
        return Err(VerifierError::GateMismatch);
    }
    let registry = verifier.gates().current();
    let gate = registry
        .get(&void.gate_id)
        .ok_or(VerifierError::UnknownGate)?;
    if !matches!(gate.scene, Scene::Metro | Scene::Bus) {
        return Err(VerifierError::NotATransitGate);
    }
    let now = unix_now();
    let (keys, _) = verifier.keys().current();
    let presented = check_code(&void.qr_text, &keys, gate.scene, verifier.rules().skew, now)
        .map_err(|_| VerifierError::CodeRefused)?;
    let policies = verifier.policies();
    let deadline = policies.deadline(gate.scene, deadline);
    let trip = policies
        .void_tap(&presented, &void.gate_id, &void.scan_id, now, deadline)
        .await
        .map_err(|failure| match failure {
            VoidFailure::Holder(SubjectsError::Unavailable)
            | VoidFailure::Transit(TransitError::Unavailable) => VerifierError::TransitUnavailable,
            VoidFailure::Holder(_) => VerifierError::CodeRefused,
            VoidFailure::Transit(TransitError::Rejected { reason }) => {
                if reason == "TAP_NOT_FOUND" {
                    VerifierError::TapNotFound
                } else {
                    tracing::warn!(reason, "payments refused a gate's void");
                    VerifierError::VoidRefused(
                        VOID_REASONS
                            .into_iter()
                            .find(|known| *known == reason)
                            .unwrap_or("VOID_REFUSED"),
                    )
                }
            }
        })?;
    Ok(Voided {
        trip_id: trip.trip_id,
        trip_voided: trip.status == TripState::Voided,
    })
}
