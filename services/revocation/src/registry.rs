//! The service logic: validate, ask identity, write the log, fan out; read the log for
//! ListRevocations, WatchRevocations and GetRevocationSnapshot.
//!
//! It takes and returns [`crate::model`] types, never generated messages or transport
//! types: [`crate::convert`] has already checked a request's shape (target kind and
//! id, reasons, timestamps, page token, kinds) when a call reaches here, and
//! [`crate::service`] turns answers, Watch events and errors into messages and
//! statuses. The rules that need the settings or the clock are here.
//!
//! Order of a Revoke, and why:
//! 1. validate the request (nothing else happens for a malformed one): its shape in
//!    [`crate::convert`], then the note and the times against the clock and settings
//!    ([`Registry::command`]);
//! 2. for a device or subject, list its live certificates at identity; if identity
//!    cannot answer, fail UNAVAILABLE having written nothing;
//! 3. write the entry and its cascaded certificate entries in one atomic log step
//!    (PostgreSQL transaction): only a committed write is acknowledged;
//! 4. publish what was written to the fan-out (Redis Stream), in a task of its own so
//!    a caller hanging up cannot cancel it; a failed publish is logged and counted and
//!    never fails the call (followers resync from List);
//! 5. for a device or subject, list its certificates again a few seconds later and
//!    cascade to any recorded meanwhile (the issuer may have certified one between
//!    step 2 and the moment it heard of the revocation).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use citypass_revocation::{Head, Kinds, SignedHead, TargetKind};
use citypass_runtime::{Deadline, Draining};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

use crate::config::Settings;
use crate::directory::CertificateDirectory;
use crate::error::Error;
use crate::fanout::{FanOutStats, Publisher};
use crate::log::Log;
use crate::model::{
    Audit, Cascade, EpochSnapshot, ListPage, ListQuery, Record, ReinstateRequest, RevokeCommand,
    RevokeRequest, Revoked, WatchEvent,
};
use crate::signer::SnapshotSigner;
use crate::tail::Tail;

mod cascade;
mod watch;
use citypass_token::unix_now;

/// Longest note accepted, in characters.
pub const MAX_NOTE_LEN: usize = 1024;
/// Longest actor accepted, in bytes.
pub const MAX_ACTOR_LEN: usize = 128;
/// The actor recorded when the caller names none.
pub const ANONYMOUS: &str = "anonymous";
/// A Watch stream's messages; an error ends it.
pub type WatchEvents = Pin<Box<dyn Stream<Item = Result<WatchEvent, Error>> + Send>>;

/// Publishes committed records and counts the outcome.
#[derive(Clone)]
struct FanOut {
    publisher: Arc<dyn Publisher>,
    stats: Arc<FanOutStats>,
    tail: Arc<Tail>,
}

impl FanOut {
    async fn publish(&self, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        self.tail.nudge();
        let publisher = self.publisher.clone();
        let stats = self.stats.clone();
        // Spawned: a caller that hangs up (or times out) must not cancel the publish.
        let task = tokio::spawn(async move {
            let count = records.len();
            match publisher.publish(&records).await {
                Ok(()) => stats.record(count, true),
                Err(err) => {
                    stats.record(count, false);
                    tracing::warn!(
                        error = %err,
                        first_epoch = records[0].entry.epoch,
                        count,
                        "fan-out publish failed; followers fill the gap from List"
                    );
                }
            }
        });
        let _ = task.await;
    }
}

/// Signs the log's head for ListRevocations pages and WatchRevocations heartbeats, once per head and second:
/// thousands of watchers' heartbeats share one signature.
struct Heads {
    signer: Arc<dyn SnapshotSigner>,
    last: std::sync::Mutex<Option<SignedHead>>,
}

impl Heads {
    fn signed(&self, head: Head, now: u64) -> Result<SignedHead, Error> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(signed) = last.as_ref()
            && signed.head == head
            && signed.created_at == now
        {
            return Ok(signed.clone());
        }
        let signed = self.signer.sign_head(head, now)?;
        *last = Some(signed.clone());
        Ok(signed)
    }
}

/// The revocation service's logic. See the module documentation.
pub struct Registry {
    settings: Settings,
    log: Arc<dyn Log>,
    directory: Arc<dyn CertificateDirectory>,
    signer: Arc<dyn SnapshotSigner>,
    heads: Arc<Heads>,
    tail: Arc<Tail>,
    fanout: FanOut,
    /// The server's shutdown signal, which ends WatchRevocations streams (none: they end only with
    /// their watcher).
    draining: Option<Draining>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("settings", &self.settings)
            .field("epoch", &self.tail.epoch())
            .finish_non_exhaustive()
    }
}

/// An operator's note (see `citypass_runtime::text`).
fn check_text(field: &'static str, text: &str, max_chars: usize) -> Result<(), Error> {
    citypass_runtime::text::bounded_text(text, max_chars)
        .map(|_| ())
        .map_err(|err| Error::invalid(field, err.to_string()))
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

impl Registry {
    /// The logic over its parts; spawns the tail's poller (call inside a tokio runtime).
    pub fn new(
        settings: Settings,
        log: Arc<dyn Log>,
        publisher: Arc<dyn Publisher>,
        directory: Arc<dyn CertificateDirectory>,
        signer: Arc<dyn SnapshotSigner>,
    ) -> Result<Self, Error> {
        settings.validate()?;
        let tail = Tail::spawn(log.clone(), settings.recent_entries, settings.poll_interval);
        Ok(Registry {
            fanout: FanOut {
                publisher,
                stats: Arc::new(FanOutStats::default()),
                tail: tail.clone(),
            },
            settings,
            log,
            directory,
            heads: Arc::new(Heads {
                signer: signer.clone(),
                last: std::sync::Mutex::new(None),
            }),
            signer,
            tail,
            draining: None,
        })
    }

    /// Fan-out counters (published, failed).
    pub fn fanout_stats(&self) -> Arc<FanOutStats> {
        self.fanout.stats.clone()
    }

    /// This replica's follower of the log.
    pub fn tail(&self) -> &Arc<Tail> {
        &self.tail
    }

    /// Applies the Revoke rules to a request (note, times against `now` and the
    /// settings) and resolves its times at `now`.
    pub fn command(
        &self,
        request: RevokeRequest,
        actor: String,
        now: u64,
    ) -> Result<RevokeCommand, Error> {
        let s = &self.settings;
        let kind = request.target.kind();
        check_text("note", &request.note, MAX_NOTE_LEN)?;
        let skew = secs(s.clock_skew);
        let (revoked_before, revoked_before_given) = match request.revoked_before {
            Some(rb) => {
                if rb > now.saturating_add(secs(s.revoked_before_skew)) {
                    return Err(Error::invalid(
                        "revoked_before",
                        format!(
                            "in the future (more than {}s ahead of the server's clock); leave it unset for now",
                            secs(s.revoked_before_skew)
                        ),
                    ));
                }
                (rb, true)
            }
            // Whole seconds, rounded up: a code stamped with the current second dies too.
            None => (now.saturating_add(1), false),
        };
        let max_life = match kind {
            TargetKind::Token => Some(secs(s.token_max_lifetime)),
            TargetKind::Certificate => Some(secs(s.certificate_max_lifetime)),
            _ => None,
        };
        let (expires_at, expires_at_given) = match (max_life, request.expires_at) {
            (Some(life), Some(t)) => {
                if t.saturating_add(skew) < now {
                    return Err(Error::invalid(
                        "expires_at",
                        format!("in the past: a {kind} past its end is refused anyway"),
                    ));
                }
                if t > now.saturating_add(life).saturating_add(skew) {
                    return Err(Error::invalid(
                        "expires_at",
                        format!("more than {life}s ahead: no {kind} lives that long"),
                    ));
                }
                // Verifiers accept a code up to `skew` after its end.
                (Some(t.saturating_add(skew)), true)
            }
            // Issued before now, so it ends within its maximum life (plus the skew a
            // phone's or issuer's clock may have), and is accepted `skew` longer.
            (Some(life), None) => (
                Some(
                    now.saturating_add(life)
                        .saturating_add(skew.saturating_mul(2)),
                ),
                false,
            ),
            (None, Some(_)) => {
                return Err(Error::invalid(
                    "expires_at",
                    format!("{kind} revocations never expire; leave it unset"),
                ));
            }
            (None, None) => (None, false),
        };
        Ok(RevokeCommand {
            target: request.target,
            reason: request.reason,
            revoked_before,
            revoked_before_given,
            expires_at,
            expires_at_given,
            audit: Audit {
                actor,
                note: request.note,
            },
        })
    }

    /// Revoke (see the module documentation).
    pub async fn revoke(
        &self,
        request: RevokeRequest,
        actor: String,
        deadline: Option<Deadline>,
    ) -> Result<Revoked, Error> {
        let now = unix_now();
        let command = self.command(request, actor, now)?;
        let certificates = match cascade::owner(&command.target) {
            Some(owner) => self.directory.live_certificates(owner, deadline).await?,
            None => Vec::new(),
        };
        let cascade = Cascade {
            certificates: &certificates,
            expiry_margin: secs(self.settings.clock_skew),
        };
        let revoked = self.log.revoke(&command, cascade, now).await?;
        self.fanout.publish(revoked.written()).await;
        if cascade::owner(&command.target).is_some() {
            self.schedule_sweep(revoked.entry.clone());
        }
        Ok(revoked)
    }

    fn schedule_sweep(&self, parent: Record) {
        cascade::spawn_sweeps(
            self.log.clone(),
            self.directory.clone(),
            self.fanout.clone(),
            parent,
            &self.settings,
        );
    }

    /// Reinstate: devices and subjects only.
    pub async fn reinstate(
        &self,
        request: ReinstateRequest,
        actor: String,
    ) -> Result<Record, Error> {
        let kind = request.target.kind();
        if !kind.reinstatable() {
            return Err(Error::invalid(
                "target_kind",
                format!("a {kind} cannot be reinstated: only devices and subjects can"),
            ));
        }
        check_text("note", &request.note, MAX_NOTE_LEN)?;
        let audit = Audit {
            actor,
            note: request.note,
        };
        let record = self
            .log
            .reinstate(&request.target, request.reason, &audit, unix_now())
            .await?;
        self.fanout.publish(vec![record.clone()]).await;
        Ok(record)
    }

    /// List: a page of at most the settings' maximum (their default when the query
    /// names no size), with the head as read with it, signed.
    pub async fn list(&self, query: ListQuery) -> Result<ListPage, Error> {
        let size = match query.page_size {
            None => self.settings.list_page_size,
            Some(n) => n.get().min(self.settings.list_max_page_size),
        };
        let page = self
            .log
            .list(query.since, usize::try_from(size).unwrap_or(usize::MAX))
            .await?;
        let last = page.records.last().map_or(query.since, |r| r.entry.epoch);
        let signed_head = self.heads.signed(
            Head {
                epoch: page.head,
                chain: page.head_chain,
            },
            unix_now(),
        )?;
        Ok(ListPage {
            records: page.records,
            next_since: (last < page.head).then_some(last),
            head: page.head,
            signed_head,
        })
    }

    /// Checks that this replica's data is fresh enough to vouch for, reading the log
    /// now if it is not.
    async fn ensure_fresh(&self) -> Result<(), Error> {
        match self.tail.age() {
            Some(age) if age <= self.settings.stale_after => Ok(()),
            _ => self.tail.sync(unix_now()).await.map(|_| ()),
        }
    }

    /// Ends every Watch stream with [`Error::ShuttingDown`] once `draining` fires (the
    /// server's graceful shutdown), instead of holding the drain until it times out.
    pub fn ends_watches_on(mut self, draining: Draining) -> Self {
        self.draining = Some(draining);
        self
    }

    /// Watch: OUT_OF_RANGE now for an epoch beyond the head; otherwise a stream of the
    /// backlog, then new entries, with heartbeats (see [`watch::watch_loop`]).
    pub async fn watch(&self, since: u64) -> Result<WatchEvents, Error> {
        self.ensure_fresh().await?;
        if since > self.tail.epoch() {
            let head = self.log.head().await?;
            if since > head {
                return Err(Error::EpochBeyondHead { epoch: since, head });
            }
        }
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(watch::watch_loop(
            watch::WatchParts {
                tail: self.tail.clone(),
                heads: self.heads.clone(),
                log: self.log.clone(),
                settings: self.settings.clone(),
                draining: self.draining.clone(),
            },
            since,
            tx,
        ));
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    /// Snapshot: the live entries of the requested kinds, complete up to the log's head
    /// as read now, with the chain hash at that head, signed with the snapshot key.
    pub async fn snapshot(&self, kinds: Kinds) -> Result<EpochSnapshot, Error> {
        let now = unix_now();
        self.tail.sync(now).await?;
        let snapshot = self.tail.snapshot(kinds, now);
        let signed = self.signer.sign(snapshot.encode())?;
        Ok(EpochSnapshot {
            signed,
            epoch: snapshot.epoch,
        })
    }
}
