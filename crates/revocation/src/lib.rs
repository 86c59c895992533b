//! The revocation model every part of citypass shares: log entries, the in-memory
//! revocation set, and the snapshot and stream formats. No I/O, no async runtime.
//!
//! The revocation service writes the log (PostgreSQL) and fans entries out (a Redis
//! Stream); verifiers and the issuer keep a [`RevocationSet`] fed from that stream and
//! resynced from the service; offline gates (`crates/gate`) load a signed [`Snapshot`]
//! and follow it with WatchRevocations. All of them read the same types from here, so a format or
//! a rule is defined exactly once:
//!
//! - [`target`]: what can be revoked and the one text form of each id;
//! - [`entry`]: a log entry ([`Entry`]): revoke with `revoked_before`, or reinstate;
//! - [`reason`]: why, for audit only (entries carry just "revoked as compromised");
//! - [`set`]: [`RevocationSet`], applied strictly in epoch order, with the queries a
//!   verifier, the issuer and a gate ask;
//! - [`snapshot`]: the compact, deterministic, signed snapshot for offline gates;
//! - [`stream`]: the Redis Stream message format the follower decodes;
//! - [`chain`]: the hash chain over the log, and the signed head, with which a follower
//!   finds out whether what it applied is the service's log;
//! - `codec`: the binary form of one entry, shared by the two formats;
//! - `proto` (feature `proto`): entries to and from the API's `RevocationEntry`.
//!
//! ```
//! use citypass_revocation::{Action, Entry, Kinds, RevocationSet, Target};
//!
//! let subject = citypass_token::SubjectId::parse("0123456789abcdef0123456789abcdef")?;
//! let mut set = RevocationSet::new();
//! set.apply(Entry {
//!     epoch: 1,
//!     target: Target::Subject(subject),
//!     action: Action::Revoke { compromised: false, revoked_before: 1_800_000_000 },
//!     expires_at: None,
//!     created_at: 1_800_000_000,
//! })?;
//! assert!(set.subject_revoked(&subject, 1_799_999_999));
//! assert!(!set.subject_revoked(&subject, 1_800_000_000));
//! assert!(set.issuance_blocked_subject(&subject));
//!
//! let bytes = set.snapshot(Kinds::ALL, 1_800_000_000).encode();
//! let rebuilt = RevocationSet::from_snapshot(&citypass_revocation::Snapshot::decode(&bytes)?);
//! assert_eq!(rebuilt, set);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod chain;
mod codec;
pub mod entry;
#[cfg(feature = "proto")]
pub mod proto;
pub mod reason;
pub mod set;
pub mod snapshot;
pub mod stream;
pub mod target;

pub use chain::{ChainHash, Chained, Head, HeadError, SignedHead};
pub use codec::DecodeError;
pub use entry::{Action, Entry, EntryError};
pub use reason::{Reason, ReinstateReason, RevocationReason};
pub use set::{Applied, ApplyError, RevocationSet};
pub use snapshot::{MAX_SNAPSHOT_LEN, SignedSnapshot, Snapshot, SnapshotError};
pub use stream::StreamError;
pub use target::{ID_LEN, Kinds, Target, TargetError, TargetKind};
