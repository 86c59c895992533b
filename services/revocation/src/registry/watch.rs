//! One WatchRevocations stream: the backlog from the watcher's epoch, then new entries
//! as this replica's tail learns of them, with signed heartbeats.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use citypass_runtime::Draining;
use citypass_token::unix_now;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Heads;
use crate::config::Settings;
use crate::error::Error;
use crate::log::Log;
use crate::model::{Record, WatchEvent};
use crate::tail::{Tail, TooOld};

/// Entries per Watch message.
const WATCH_BATCH: usize = 500;

/// What one Watch stream reads.
pub(super) struct WatchParts {
    pub(super) tail: Arc<Tail>,
    pub(super) heads: Arc<Heads>,
    pub(super) log: Arc<dyn Log>,
    pub(super) settings: Settings,
    pub(super) draining: Option<Draining>,
}

/// One Watch stream: catch up from `since` (from this replica's recent entries, or the
/// log when the watcher is further behind), then send new entries as the tail learns
/// of them, and a heartbeat whenever `heartbeat_interval` passes without a message.
/// Every message carries entries contiguous with the previous one; a heartbeat carries
/// this replica's head (epoch and chain hash), signed. The stream ends
/// UNAVAILABLE when the log cannot be read, when this replica's data is older than
/// `stale_after`, or when the server begins to shut down (the watcher reconnects,
/// possibly to another replica), and ends quietly when the watcher goes away.
pub(super) async fn watch_loop(
    parts: WatchParts,
    since: u64,
    tx: mpsc::Sender<Result<WatchEvent, Error>>,
) {
    let WatchParts {
        tail,
        heads,
        log,
        settings,
        draining,
    } = parts;
    let mut draining = draining;
    let shutdown = async move {
        match draining.as_mut() {
            Some(draining) => draining.started().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(shutdown);
    let mut head = tail.subscribe();
    let mut cursor = since;
    let mut first = true;
    loop {
        head.borrow_and_update();
        // Catch up.
        loop {
            let entries: Vec<Arc<Record>> = match tail.after(cursor, WATCH_BATCH) {
                Ok(records) => records,
                Err(TooOld) => match log.list(cursor, WATCH_BATCH).await {
                    Ok(page) => page.records.into_iter().map(Arc::new).collect(),
                    Err(err) => {
                        let _ = tx.send(Err(err)).await;
                        return;
                    }
                },
            };
            let Some(last) = entries.last().map(|r| r.entry.epoch) else {
                break;
            };
            cursor = last;
            let message = WatchEvent {
                entries,
                head_epoch: tail.epoch().max(cursor),
                sent_at: SystemTime::now(),
                head: None,
            };
            if tx.send(Ok(message)).await.is_err() {
                return;
            }
            first = false;
        }
        let mut wait = settings.heartbeat_interval;
        if first {
            // The first message goes out at once, so the watcher learns the head.
            wait = Duration::ZERO;
            first = false;
        }
        let beat = Instant::now() + wait;
        tokio::select! {
            biased;
            () = tx.closed() => return,
            () = &mut shutdown => {
                let _ = tx.send(Err(Error::ShuttingDown)).await;
                return;
            }
            changed = head.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            () = tokio::time::sleep_until(beat) => {}
        }
        match tail.age() {
            Some(age) if age <= settings.stale_after => {}
            age => {
                let _ = tx
                    .send(Err(Error::Stale(age.unwrap_or(Duration::MAX))))
                    .await;
                return;
            }
        }
        let head = match heads.signed(tail.head(), unix_now()) {
            Ok(head) => head,
            Err(err) => {
                let _ = tx.send(Err(err)).await;
                return;
            }
        };
        let heartbeat = WatchEvent {
            entries: Vec::new(),
            head_epoch: tail.epoch().max(cursor).max(head.head.epoch),
            sent_at: SystemTime::now(),
            head: Some(head),
        };
        if tx.send(Ok(heartbeat)).await.is_err() {
            return;
        }
    }
}
