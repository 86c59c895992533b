//! The outbox worker: sends pending charges to their provider and applies the answers.
//!
//! One pass ([`OutboxWorker::run_once`]) takes a batch of rows to send
//! ([`PaymentsStore::outbox_jobs`]) and for each: marks it DISPATCHED (from then on a
//! void cannot cancel it), calls the provider with the charge's idempotency key, and
//! applies the answer ([`PaymentsStore::settle`]): approved → SUCCEEDED and captured,
//! declined → DECLINED (arrears, which gates deny), no answer → RETRYING, sent again
//! at the next pass with the same key. A worker killed anywhere in between leaves
//! either a PENDING row or a DISPATCHED one whose charge is not settled; both are sent
//! again, and the provider's idempotency makes that one charge. A provider that does
//! not answer within the call timeout is no answer (RETRYING); a row whose own step
//! fails is skipped and counted ([`Pass::failed`]), so one bad row never stops the
//! rest. Several workers may
//! run (every replica): each claims the rows it takes for a lease, so a key is sent
//! by one at a time; a key sent twice is never charged twice.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use citypass_runtime::Draining;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::outbox::{OutboxJob, Settlement};
use crate::periodic::spawn_every;
use crate::provider::{ChargeRequest, Outcome, PaymentProvider};
use crate::store::PaymentsStore;

/// Rows per pass.
pub const BATCH: usize = 100;
/// How long the worker waits for a provider's answer by default; no answer by then is
/// no answer (the charge is RETRYING, sent again with the same key).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Charges approved.
    pub approved: usize,
    /// Charges declined.
    pub declined: usize,
    /// Charges whose answer is not known (retried), a provider's timeout included.
    pub retrying: usize,
    /// Rows skipped because of an error of their own (the store failing to dispatch
    /// or settle it, a charge without its link): logged by charge key, left as they
    /// were, tried again at the next pass; the rest of the batch goes on.
    pub failed: usize,
}

/// The worker over a store and a provider adapter.
#[derive(Clone)]
pub struct OutboxWorker {
    store: Arc<dyn PaymentsStore>,
    provider: Arc<dyn PaymentProvider>,
    call_timeout: Duration,
}

impl OutboxWorker {
    /// A worker sending `store`'s outbox to `provider`, waiting [`CALL_TIMEOUT`] for
    /// each answer.
    pub fn new(store: Arc<dyn PaymentsStore>, provider: Arc<dyn PaymentProvider>) -> Self {
        OutboxWorker {
            store,
            provider,
            call_timeout: CALL_TIMEOUT,
        }
    }

    /// The same worker waiting `timeout` for each provider answer.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// One pass over up to [`BATCH`] rows, at `now` (Unix seconds). Only failing to
    /// read the batch is an error; a row's own error is counted in [`Pass::failed`]
    /// and the pass goes on.
    pub async fn run_once(&self, now: u64) -> Result<Pass, Error> {
        let mut pass = Pass::default();
        for job in self.store.outbox_jobs(BATCH, now).await? {
            let key = job.charge.key;
            if let Err(err) = self.send(job, now, &mut pass).await {
                // The charge key is a hash of the trip: no rider, token or card in it.
                tracing::warn!(charge = %key, error = %err, "outbox row skipped; tried again at the next pass");
                pass.failed += 1;
            }
        }
        Ok(pass)
    }

    /// Dispatches, sends and settles one row.
    async fn send(&self, job: OutboxJob, now: u64, pass: &mut Pass) -> Result<(), Error> {
        let key = job.charge.key;
        // Checked before the row is dispatched: a row that cannot be sent stays
        // PENDING (a void may still cancel it).
        let token = job.token.ok_or(Error::Corrupt(
            "the link's stored provider token does not parse",
        ))?;
        if !self.store.dispatch(key).await? {
            return Ok(()); // cancelled by a void meanwhile, or settled by another worker
        }
        let Some((_, provider)) = job.charge.link else {
            return Err(Error::Corrupt("outbox charge without a link"));
        };
        let request = ChargeRequest {
            key: job.charge.provider_key,
            provider,
            token,
            amount: job.charge.amount,
        };
        let answer = tokio::time::timeout(self.call_timeout, self.provider.charge(request)).await;
        let settlement = match answer {
            Ok(Ok(Outcome::Approved)) => {
                pass.approved += 1;
                Settlement::Approved
            }
            Ok(Ok(Outcome::Declined { code })) => {
                pass.declined += 1;
                Settlement::Declined { code }
            }
            Ok(Err(err)) => {
                tracing::warn!(charge = %key, error = %err, "charge not confirmed; retried with the same key");
                pass.retrying += 1;
                Settlement::Retry
            }
            Err(_) => {
                tracing::warn!(charge = %key, timeout_ms = self.call_timeout.as_millis(), "provider did not answer in time; retried with the same key");
                pass.retrying += 1;
                Settlement::Retry
            }
        };
        self.store.settle(key, settlement, now).await?;
        Ok(())
    }

    /// Runs a pass every `every` until the server starts draining.
    pub fn spawn(self, every: Duration, draining: Draining) -> JoinHandle<()> {
        let worker = Arc::new(self);
        spawn_every(every, draining, move || {
            let worker = worker.clone();
            async move {
                if let Err(err) = worker.run_once(citypass_token::unix_now()).await {
                    tracing::warn!(error = %err, "outbox pass failed; retried at the next interval");
                }
                ControlFlow::Continue(())
            }
        })
    }
}
