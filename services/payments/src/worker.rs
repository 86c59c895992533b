//! The outbox worker: sends pending charges to their provider and applies the answers.
//!
//! One pass ([`OutboxWorker::run_once`]) takes a batch of rows to send
//! ([`PaymentsStore::outbox_jobs`]) and for each: marks it DISPATCHED (from then on a
//! void cannot cancel it), calls the provider with the charge's idempotency key, and
//! applies the answer ([`PaymentsStore::settle`]): approved → SUCCEEDED and captured,
//! declined → DECLINED (arrears, which gates deny), no answer → RETRYING, sent again
//! at the next pass with the same key. A worker killed anywhere in between leaves
//! either a PENDING row or a DISPATCHED one whose charge is not settled; both are sent
//! again, and the provider's idempotency makes that one charge. Several workers may
//! run (every replica): they may send a key twice, never charge it twice.

use std::sync::Arc;
use std::time::Duration;

use citypass_runtime::Draining;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::outbox::Settlement;
use crate::provider::{ChargeRequest, Outcome, PaymentProvider};
use crate::store::PaymentsStore;

/// Rows per pass.
pub const BATCH: usize = 100;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Charges approved.
    pub approved: usize,
    /// Charges declined.
    pub declined: usize,
    /// Charges whose answer is not known (retried).
    pub retrying: usize,
}

/// The worker over a store and a provider adapter.
#[derive(Clone)]
pub struct OutboxWorker {
    store: Arc<dyn PaymentsStore>,
    provider: Arc<dyn PaymentProvider>,
}

impl OutboxWorker {
    /// A worker sending `store`'s outbox to `provider`.
    pub fn new(store: Arc<dyn PaymentsStore>, provider: Arc<dyn PaymentProvider>) -> Self {
        OutboxWorker { store, provider }
    }

    /// One pass over up to [`BATCH`] rows, at `now` (Unix seconds).
    pub async fn run_once(&self, now: u64) -> Result<Pass, Error> {
        let mut pass = Pass::default();
        for job in self.store.outbox_jobs(BATCH).await? {
            let key = job.charge.key;
            if !self.store.dispatch(key).await? {
                continue; // cancelled by a void meanwhile, or settled by another worker
            }
            let Some((_, provider)) = job.charge.link else {
                return Err(Error::Corrupt("outbox charge without a link"));
            };
            let request = ChargeRequest {
                key: job.charge.provider_key,
                provider,
                token: job.token,
                amount: job.charge.amount,
            };
            let settlement = match self.provider.charge(request).await {
                Ok(Outcome::Approved) => {
                    pass.approved += 1;
                    Settlement::Approved
                }
                Ok(Outcome::Declined { code }) => {
                    pass.declined += 1;
                    Settlement::Declined { code }
                }
                Err(err) => {
                    tracing::warn!(charge = %key, error = %err, "charge not confirmed; retried with the same key");
                    pass.retrying += 1;
                    Settlement::Retry
                }
            };
            self.store.settle(key, settlement, now).await?;
        }
        Ok(pass)
    }

    /// Runs a pass every `every` until the server starts draining.
    pub fn spawn(self, every: Duration, mut draining: Draining) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = draining.started() => return,
                    _ = tick.tick() => {}
                }
                if let Err(err) = self.run_once(citypass_token::unix_now()).await {
                    tracing::warn!(error = %err, "outbox pass failed; retried at the next interval");
                }
            }
        })
    }
}
