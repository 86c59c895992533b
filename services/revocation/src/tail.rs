//! Each replica's own follower of the log: the live set (for snapshots), the recent
//! entries (for Watch) and the head (to wake watchers).
//!
//! Several replicas write one log, so a replica learns of other replicas' entries by
//! reading it: one background task per replica polls the log every `poll_interval`
//! (one cheap query when nothing changed), and a replica's own writes nudge it at once.
//! Thousands of WatchRevocations streams (one per offline gate) then cost no database reads at
//! all while they are up to date: they are served from the recent entries kept here,
//! and only a watcher further behind than those reads the log itself.
//!
//! The tail checks the log's chain as it reads it: every record must carry the chain
//! hash that follows the one before (`citypass_revocation::chain`), and a log that does
//! not chain is refused as corrupt rather than served. Its set's head (epoch and chain
//! hash, [`Tail::head`]) is what ListRevocations pages and WatchRevocations heartbeats sign.
//!
//! The tail also knows how fresh it is ([`Tail::age`]): a replica cut off from
//! PostgreSQL must not keep telling watchers "nothing new" (that is how revocation
//! lists quietly stop refreshing), so Watch ends and Snapshot fails once the data is
//! older than `stale_after`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use citypass_revocation::{Head, Kinds, RevocationSet, Snapshot};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::error::Error;
use crate::log::Log;
use crate::model::Record;

/// Records read per log query while catching up.
const SYNC_PAGE: usize = 1_000;
/// How often the set drops expired entries.
const PRUNE_EVERY: u64 = 60;

struct State {
    set: RevocationSet,
    recent: VecDeque<Arc<Record>>,
    synced_at: Option<Instant>,
    pruned_at: u64,
}

/// See the module documentation.
pub struct Tail {
    log: Arc<dyn Log>,
    state: Mutex<State>,
    head: watch::Sender<u64>,
    syncing: tokio::sync::Mutex<()>,
    nudge: Arc<Notify>,
    recent_capacity: usize,
}

/// Why [`Tail::after`] cannot serve a cursor from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooOld;

impl Tail {
    /// A tail of `log` keeping `recent_capacity` recent records, polled every
    /// `poll_interval` by a task that ends when the tail is dropped. Call inside a
    /// tokio runtime.
    pub fn spawn(log: Arc<dyn Log>, recent_capacity: usize, poll_interval: Duration) -> Arc<Tail> {
        let tail = Arc::new(Tail {
            log,
            state: Mutex::new(State {
                set: RevocationSet::new(),
                recent: VecDeque::new(),
                synced_at: None,
                pruned_at: 0,
            }),
            head: watch::channel(0).0,
            syncing: tokio::sync::Mutex::new(()),
            nudge: Arc::new(Notify::new()),
            recent_capacity,
        });
        let weak = Arc::downgrade(&tail);
        let nudge = tail.nudge.clone();
        tokio::spawn(poll(weak, nudge, poll_interval));
        tail
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the poller now (after a local write).
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    /// Reads the log up to its head now. Concurrent calls wait for one another.
    pub async fn sync(&self, now: u64) -> Result<u64, Error> {
        let _one_at_a_time = self.syncing.lock().await;
        loop {
            let since = self.lock().set.epoch();
            let page = self.log.list(since, SYNC_PAGE).await?;
            let done = page.records.is_empty()
                || page
                    .records
                    .last()
                    .is_some_and(|r| r.entry.epoch >= page.head);
            let mut state = self.lock();
            for record in page.records {
                state.set.apply_chained(record.chained()).map_err(|_| {
                    Error::Corrupt("the log does not apply in epoch order or does not chain")
                })?;
                state.recent.push_back(Arc::new(record));
                if state.recent.len() > self.recent_capacity {
                    state.recent.pop_front();
                }
            }
            if done {
                if state.set.epoch() == page.head && state.set.chain() != page.head_chain {
                    return Err(Error::Corrupt("the log's head does not chain"));
                }
                state.synced_at = Some(Instant::now());
                if now >= state.pruned_at.saturating_add(PRUNE_EVERY) {
                    state.set.prune(now);
                    state.pruned_at = now;
                }
                let epoch = state.set.epoch();
                drop(state);
                self.head.send_if_modified(|head| {
                    let changed = *head != epoch;
                    *head = epoch;
                    changed
                });
                return Ok(epoch);
            }
        }
    }

    /// The epoch this replica has read up to.
    pub fn epoch(&self) -> u64 {
        *self.head.borrow()
    }

    /// Sees every change of [`Tail::epoch`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// The epoch this replica's set has applied, with the chain hash through it.
    pub fn head(&self) -> Head {
        self.lock().set.head()
    }

    /// Time since the log was last read successfully (`None`: never).
    pub fn age(&self) -> Option<Duration> {
        self.lock().synced_at.map(|t| t.elapsed())
    }

    /// Up to `max` records after `cursor` from memory: empty when the cursor is at or
    /// past this replica's epoch; [`TooOld`] when they are no longer kept.
    pub fn after(&self, cursor: u64, max: usize) -> Result<Vec<Arc<Record>>, TooOld> {
        let state = self.lock();
        if cursor >= state.set.epoch() {
            return Ok(Vec::new());
        }
        let first = state.recent.front().map(|r| r.entry.epoch).ok_or(TooOld)?;
        if cursor + 1 < first {
            return Err(TooOld);
        }
        let skip = usize::try_from(cursor + 1 - first).map_err(|_| TooOld)?;
        Ok(state.recent.iter().skip(skip).take(max).cloned().collect())
    }

    /// A snapshot of the live entries of `kinds` at `now`, as of this replica's epoch.
    pub fn snapshot(&self, kinds: Kinds, now: u64) -> Snapshot {
        self.lock().set.snapshot(kinds, now)
    }
}

async fn poll(tail: Weak<Tail>, nudge: Arc<Notify>, interval: Duration) {
    let mut failing = false;
    loop {
        {
            let Some(tail) = tail.upgrade() else { return };
            match tail.sync(citypass_token::unix_now()).await {
                Ok(_) if failing => {
                    tracing::info!("revocation log readable again");
                    failing = false;
                }
                Ok(_) => {}
                Err(err) if !failing => {
                    tracing::warn!(error = %err, "cannot read the revocation log; retrying");
                    failing = true;
                }
                Err(_) => {}
            }
        }
        tokio::select! {
            () = nudge.notified() => {}
            () = tokio::time::sleep(interval) => {}
        }
    }
}
