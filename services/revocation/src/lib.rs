//! citypass-revocation (service): RevocationService, the system of record for
//! revocations (`proto/citypass/v1/revocation.proto`).
//!
//! Revoke writes the log in PostgreSQL first (a device or subject revocation together
//! with its live certificate serials, in one transaction), acknowledges only what is
//! committed, then publishes to a Redis Stream that every verifier tails. List and
//! Watch serve the log to followers that resync and to offline gates; Snapshot gives
//! gates the whole live set, signed by the snapshot key (a key of its own, published by
//! the issuer with usage `revocation-snapshot`; the service holds no code-signing or
//! subject-sealing key). The model (entries, the set,
//! the snapshot and stream formats) is `citypass-revocation`, shared with verifiers,
//! the issuer and gates.
//!
//! [`build`] is the one composition root: `main.rs`, `citypass dev` and the tests
//! turn a [`Config`] into a running server through it.

//! Modules, one concept each:
//! - [`config`]: settings, dev defaults, what production refuses;
//! - [`authorization`]: who may call each RPC;
//! - [`build`]: the composition root;
//! - [`error`]: the one error type and its gRPC codes;
//! - [`model`]: what the logic takes and returns (requests, ListRevocations pages, Watch events,
//!   signed snapshots), log records, and the rules both log backends apply
//!   (idempotency, cascade, reinstatement);
//! - [`log`]: the log trait, [`PostgresLog`] (epoch assignment) and [`MemoryLog`];
//! - [`directory`]: certificate serials from the identity service;
//! - [`fanout`]: the Redis Stream publisher and the in-process one;
//! - [`signer`]: snapshot signing with the snapshot key (never the issuer's key ring);
//! - [`tail`]: each replica's follower of the log (WatchRevocations, GetRevocationSnapshot, freshness);
//! - [`convert`]: proto ↔ model, where a request's shape is checked;
//! - [`registry`]: the logic, revocations written to and read from the log
//!   ([`Registry`]), in model types only; [`service`]: the tonic face (metadata,
//!   deadline, the Watch stream's messages and statuses).

#![forbid(unsafe_code)]

pub mod authorization;
pub mod build;
pub mod config;
pub mod convert;
pub mod directory;
pub mod error;
pub mod fanout;
pub mod log;
pub mod model;
pub mod plan;
pub mod registry;
pub mod service;
pub mod signer;
pub mod tail;

pub use authorization::AUTHORIZATION;
pub use build::{Built, MAX_REQUEST_BYTES, build};
pub use citypass_proto::v1::revocation_service_server::RevocationServiceServer;
pub use config::{Config, Environment, Secret, Settings};
pub use directory::{CertificateDirectory, DirectoryError, GrpcDirectory, Owner};
pub use error::Error;
pub use fanout::{FanOutStats, LocalPublisher, PublishError, Publisher, RedisPublisher};
pub use log::{Log, MemoryLog, PostgresLog};
pub use model::{
    Audit, Certificate, EpochSnapshot, ListPage, ListQuery, Page, Record, ReinstateRequest,
    RevokeRequest, Revoked, WatchEvent,
};
pub use registry::{Registry, WatchEvents};
pub use service::RevocationApi;
pub use signer::{SignerError, SnapshotKeySigner, SnapshotSigner};
