//! citypass-loadtest: the load generator. It plays gates against the verifier (Verify
//! and VerifyStream), and citizens' apps against the issuer (IssueToken), with an
//! open loop (a constant arrival rate, each request sent at its due time whatever
//! happened to the others, latency from that due time) and reports what a city asks:
//! the rate achieved, the tail a turnstile sees, the errors and the decisions, and how
//! far the verifier is from a bare server that only checks the signature.
//!
//! It composes services (the in-process dev stack, the services' binaries as separate
//! processes, the verifier's authorisation table), so it sits beside `stack/` at the
//! top of the layers.
//!
//! Modules, one concept each:
//! - [`mix`]: the kinds of code and their shares;
//! - [`riders`]: the codes' holders, enrolled and linked to a payment account;
//! - [`codes`]: the codes of a run, signed before it starts;
//! - [`target`]: the verifier under load (in-process stack or a running one) and the
//!   gates' certificates;
//! - [`gates`]: one checked mTLS connection per gate;
//! - [`open_loop`]: the constant-rate sender; [`pacing`]: its clock, in-flight cap and
//!   answers, shared with [`stream_loop`];
//! - [`record`]: outcomes and the latency histogram;
//! - [`report`]: the figures, as a table and JSON;
//! - [`ceiling`]: the bare verify server; [`signed_bytes`]: the bytes it verifies;
//! - [`floor`]: the second verify ceiling, the bare server plus one outbound TapIn per
//!   verified code, and the trivial taps server it calls;
//! - [`stream_loop`]: the same over VerifyStream (many scans per stream);
//! - [`citizens`]: the citizens' apps of an IssueToken run (enrolled, bound, their
//!   requests signed before it); [`bare_sign`]: the bare sign server, its ceiling;
//! - [`process`]: a server process's CPU time and peak memory from `/proc`;
//! - [`child`]: servers started as child processes, and their time to ready;
//! - [`services`]: the five services as separate processes, each its own binary, on
//!   PostgreSQL and Redis (the launcher the launch test uses);
//! - [`serve`]: the tool's own `serve` commands those children run;
//! - [`verify`]: one whole report ([`verify::Session`]: the servers of a run);
//! - [`sweep`]: reports over a list of rates; [`chart`]: their SVG chart;
//! - [`error`]: why a run failed.

#![forbid(unsafe_code)]

pub mod bare_sign;
pub mod ceiling;
pub mod chart;
pub mod child;
pub mod citizens;
pub mod codes;
pub mod error;
pub mod floor;
pub mod gates;
pub mod mix;
pub mod open_loop;
pub mod pacing;
pub mod process;
pub mod propagation;
pub mod record;
pub mod report;
pub mod riders;
pub mod serve;
pub mod services;
pub mod signed_bytes;
pub mod stream_loop;
pub mod sweep;
pub mod target;
pub mod verify;

pub use ceiling::FloorShape;
pub use error::LoadError;
pub use mix::{CodeKind, Mix};
pub use report::{Ratios, Report, RunReport};
pub use services::ServicesSpec;
pub use sweep::{Sweep, sweep};
pub use target::{Spawn, TargetSpec};
pub use verify::{Settings, verify};
