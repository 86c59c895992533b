//! RevocationService over real gRPC on loopback (the runtime's server on 127.0.0.1:0,
//! a tonic client) with the real PostgreSQL and Redis from ./scripts/test (these tests
//! fail, never skip, without them) and an in-process fake of the identity service's
//! certificate list.
//!
//! What a verifier or gate would rely on is checked from the outside: entries reach the
//! Redis stream in the documented format (read back with XRANGE), ListRevocations pages and Watch
//! streams agree with each other, a snapshot verifies with the issuer's public key set
//! and rebuilds to the very set built from List, bad input gets precise statuses, and
//! with PostgreSQL gone nothing is acknowledged.
//!
//! One test binary; each module tests one RPC or concern, all on the fakes and fixtures
//! in `support.rs`.

mod bad_input;
mod embedded;
mod postgres_outage;
mod privacy;
mod replicas;
mod revoke_list_watch_snapshot;
mod shutdown;
mod snapshot_signer;
mod support;
