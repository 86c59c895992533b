//! IssuerService over real gRPC on loopback (the runtime's server on 127.0.0.1:0, a
//! tonic client), with an in-process fake of the identity service. End-to-end tests
//! with the real identity service live in the workspace's tests/.
//!
//! What a gate would check is checked here: an issued code verifies against the key
//! set parsed from GetKeySet (whose signature verifies), and an offline code made with
//! a certificate verifies offline. Bad inputs get precise statuses.
//!
//! One test binary; each module tests one RPC or concern, all on the harness in
//! `support.rs`.

mod certificates;
mod issue_token;
mod key_set;
mod refusals;
mod revocation;
mod support;
