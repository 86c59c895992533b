//! The revocation log, the system of record: one trait, two backends.
//!
//! [`PostgresLog`] is what deployments run; [`MemoryLog`] is the embedded default of
//! `citypass dev`. Both pass one contract suite (`tests/log_contract.rs`), so the
//! service cannot tell them apart.
//!
//! Every write is one atomic step that takes the log's single write lock, reads the
//! target's history, applies the rules of [`crate::model`], appends with epochs
//! `head + 1 ..` and moves the head, all or nothing. A write returns only once it is
//! durable (committed); an error means nothing of it is acknowledged. Times are passed
//! in (`now`, Unix seconds), never read inside a backend, so both backends agree and
//! tests control the clock.
//!
//! Epochs are strictly increasing and gapless, and readers only ever see a prefix of
//! the log: a reader that has seen epoch N has seen every epoch below it, and no epoch
//! below N can appear later. ListRevocations, WatchRevocations and every follower rely on this to detect a
//! missing entry as a gap.

pub mod memory;
pub mod postgres;

use citypass_revocation::{ReinstateReason, Target};
use futures::future::BoxFuture;

use crate::error::Error;
use crate::model::{Audit, Cascade, Page, Record, RevokeCommand, Revoked};

pub use memory::MemoryLog;
pub use postgres::PostgresLog;

/// The revocation log. See the module documentation.
pub trait Log: Send + Sync + 'static {
    /// Revokes `command.target`, cascading (devices and subjects) to the certificates
    /// of `cascade` that are live at `now`, in one atomic step. When a live entry already covers the request (see [`crate::model`]) it is
    /// returned with `created: false` and only still-uncovered certificates are written.
    fn revoke<'a>(
        &'a self,
        command: &'a RevokeCommand,
        cascade: Cascade<'a>,
        now: u64,
    ) -> BoxFuture<'a, Result<Revoked, Error>>;

    /// Cascades an existing device or subject revocation (`parent`, as stored) to the
    /// certificates of `cascade` not covered yet, unless `parent` is no longer its
    /// target's latest entry; returns the records written.
    fn cascade<'a>(
        &'a self,
        parent: &'a Record,
        cascade: Cascade<'a>,
        now: u64,
    ) -> BoxFuture<'a, Result<Vec<Record>, Error>>;

    /// Appends a REINSTATE entry for a revoked device or subject.
    /// [`Error::NotRevoked`] if its latest entry is not a revocation.
    fn reinstate<'a>(
        &'a self,
        target: &'a Target,
        reason: ReinstateReason,
        audit: &'a Audit,
        now: u64,
    ) -> BoxFuture<'a, Result<Record, Error>>;

    /// Up to `limit` records with an epoch above `since`, in epoch order, and the head.
    /// [`Error::EpochBeyondHead`] if `since` is above the head.
    fn list(&self, since: u64, limit: usize) -> BoxFuture<'_, Result<Page, Error>>;

    /// The latest epoch (0 for an empty log).
    fn head(&self) -> BoxFuture<'_, Result<u64, Error>>;
}
