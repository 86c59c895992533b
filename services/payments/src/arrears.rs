//! Arrears and their repayment.
//!
//! A charge the provider declined (or made while no link was active) is owed: the
//! rider is in arrears, and TapIn refuses `ARREARS` until it is repaid. RepayArrears
//! sends every declined charge again, through the outbox, to the rider's active link,
//! under a new provider key derived from the caller's idempotency key
//! ([`ChargeKey::repayment`]): the charges become PENDING (so the rider may ride again
//! at once), the ledger is unchanged (the fare was posted when the trip was charged; the
//! capture follows when the provider approves), and a retry of the request sends the
//! same provider keys. A charge declined again is arrears again, for a new request.

use crate::charge::ChargeKey;
use crate::decision::{Answer, Decision, RiderState, Write};
use crate::error::Error;

/// The writes of a repayment at `now` for request `request` (checked by the caller).
/// [`Error::NoPaymentLink`] without an active link; [`Error::NothingOwed`] without
/// declined charges (also for a retry once they were sent again).
pub fn repay(state: &RiderState, request: &str, now: u64) -> Result<Decision, Error> {
    let link = state
        .link
        .as_ref()
        .filter(|l| l.is_active())
        .ok_or(Error::NoPaymentLink)?;
    if state.declined.is_empty() {
        return Err(Error::NothingOwed);
    }
    let writes = state
        .declined
        .iter()
        .map(|charge| Write::Requeue {
            charge: charge.key,
            provider_key: ChargeKey::repayment(charge.key, request),
            link: (link.id, link.provider),
            at: now,
        })
        .collect();
    Ok(Decision {
        writes,
        answer: Answer::Requeued(state.declined.iter().map(|c| c.key).collect()),
    })
}
