//! The background pass that closes trips left open past the fare table's `max_trip`
//! at the maximum fare (a rider who never tapped out), every `expiry_interval`.
//!
//! A rider's next tap also closes such a trip first; this pass makes the charge happen
//! without one. Each trip is closed in its own rider transaction by the same rules
//! ([`Payments::expire_open_trips`]), so the pass and a concurrent tap cannot both
//! close it, and running it on every replica is safe. The task holds the store weakly
//! and ends when the service is dropped or its server starts draining.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use citypass_runtime::Draining;
use tokio::task::JoinHandle;

use crate::payments::Payments;
use crate::periodic::spawn_every;

/// Starts the pass over `payments`' store and rules, every `every`.
pub fn spawn(payments: &Payments, every: Duration, draining: Draining) -> JoinHandle<()> {
    let store = Arc::downgrade(payments.store());
    let rules = payments.shared_rules();
    spawn_every(every, draining, move || {
        let (store, rules) = (store.upgrade(), rules.clone());
        async move {
            let Some(store) = store else {
                return ControlFlow::Break(());
            };
            let payments = Payments::with_rules(store, rules);
            match payments.expire_open_trips(citypass_token::unix_now()).await {
                Ok(expired) => {
                    if !expired.closed.is_empty() {
                        tracing::info!(
                            closed = expired.closed.len(),
                            "closed trips left open past the maximum trip duration"
                        );
                    }
                    if expired.failed > 0 {
                        tracing::warn!(
                            failed = expired.failed,
                            "overdue trips not closed; tried again at the next interval"
                        );
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "trip expiry pass failed; retried at the next interval")
                }
            }
            ControlFlow::Continue(())
        }
    })
}
