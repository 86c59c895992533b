//! The identity service over real gRPC on loopback, against real PostgreSQL.
//!
//! Each test starts the service on `127.0.0.1:0` with the shared runtime `Server` (the
//! same stack, health and reflection as in production), on a fresh database, and talks
//! to it with the generated client. Refusals are checked for their exact code *and* for
//! changing nothing: a digest of every table is taken before and after.
//!
//! One test binary; each module tests one RPC or concern, all on the harness in
//! `support.rs`.

mod bind_device;
mod enrol;
mod face;
mod lifecycle;
mod privacy;
mod record_certificate;
mod subject_profile;
mod support;
mod unknown_ids;
