//! The in-memory log: the embedded default of `citypass dev` and of unit tests.
//!
//! One mutex around the whole log makes every write atomic and serial, which gives the
//! same guarantees as the PostgreSQL log's head-row lock: gapless epochs, readers see
//! prefixes. Nothing survives a restart, and the log is never truncated (it is the
//! log): fine for a laptop, refused by production configuration.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use citypass_revocation::{ChainHash, Head, ReinstateReason, Target};
use citypass_token::CertSerial;

use futures::future::BoxFuture;

use super::Log;
use crate::error::Error;
use crate::model::{Audit, Cascade, Page, Record, RevokeCommand, Revoked};
use crate::plan::{plan_cascade, plan_reinstate, plan_revoke};

#[derive(Debug, Default)]
struct State {
    /// Record of epoch `n` at index `n - 1`.
    records: Vec<Record>,
    /// Indexes of each target's records, in epoch order.
    by_target: HashMap<Target, Vec<usize>>,
}

impl State {
    fn head(&self) -> Head {
        self.records.last().map_or(Head::GENESIS, Record::head)
    }

    fn head_chain(&self) -> ChainHash {
        self.head().chain
    }

    fn history(&self, target: &Target) -> Vec<Record> {
        self.by_target
            .get(target)
            .map(|ids| ids.iter().map(|&i| self.records[i].clone()).collect())
            .unwrap_or_default()
    }

    fn certificate_history(&self, cascade: Cascade<'_>) -> HashMap<CertSerial, Vec<Record>> {
        cascade
            .certificates
            .iter()
            .map(|c| (c.serial, self.history(&Target::Certificate(c.serial))))
            .collect()
    }

    fn append(&mut self, records: &[Record]) {
        for record in records {
            debug_assert_eq!(record.entry.epoch, self.head().epoch + 1);
            debug_assert_eq!(record.chain, self.head_chain().next(&record.entry));
            let index = self.records.len();
            self.by_target
                .entry(record.entry.target)
                .or_default()
                .push(index);
            self.records.push(record.clone());
        }
    }
}

/// The in-memory log. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct MemoryLog {
    state: Arc<Mutex<State>>,
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        MemoryLog::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every write checks and appends under the lock without panicking in between,
        // so a poisoned lock still guards a consistent log.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Log for MemoryLog {
    fn revoke<'a>(
        &'a self,
        command: &'a RevokeCommand,
        cascade: Cascade<'a>,
        now: u64,
    ) -> BoxFuture<'a, Result<Revoked, Error>> {
        let mut state = self.lock();
        let plan = plan_revoke(
            command,
            &state.history(&command.target),
            cascade,
            &state.certificate_history(cascade),
            state.head(),
            now,
        );
        state.append(&plan.writes);
        Box::pin(std::future::ready(Ok(plan.revoked)))
    }

    fn cascade<'a>(
        &'a self,
        parent: &'a Record,
        cascade: Cascade<'a>,
        now: u64,
    ) -> BoxFuture<'a, Result<Vec<Record>, Error>> {
        let mut state = self.lock();
        let writes = plan_cascade(
            parent,
            &state.history(&parent.entry.target),
            cascade,
            &state.certificate_history(cascade),
            state.head(),
            now,
        );
        state.append(&writes);
        Box::pin(std::future::ready(Ok(writes)))
    }

    fn reinstate<'a>(
        &'a self,
        target: &'a Target,
        reason: ReinstateReason,
        audit: &'a Audit,
        now: u64,
    ) -> BoxFuture<'a, Result<Record, Error>> {
        let mut state = self.lock();
        let result = plan_reinstate(
            target,
            reason,
            audit,
            &state.history(target),
            state.head(),
            now,
        );
        if let Ok(record) = &result {
            state.append(std::slice::from_ref(record));
        }
        Box::pin(std::future::ready(result))
    }

    fn list(&self, since: u64, limit: usize) -> BoxFuture<'_, Result<Page, Error>> {
        let state = self.lock();
        let Head {
            epoch: head,
            chain: head_chain,
        } = state.head();
        let result = if since > head {
            Err(Error::EpochBeyondHead { epoch: since, head })
        } else {
            // `since <= head = records.len()`, so this index is in range.
            let start = usize::try_from(since)
                .unwrap_or(usize::MAX)
                .min(state.records.len());
            Ok(Page {
                records: state.records[start..].iter().take(limit).cloned().collect(),
                head,
                head_chain,
            })
        };
        Box::pin(std::future::ready(result))
    }

    fn head(&self) -> BoxFuture<'_, Result<u64, Error>> {
        let head = self.lock().head().epoch;
        Box::pin(std::future::ready(Ok(head)))
    }
}
