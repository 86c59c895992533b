//! The verifier as it runs: built by `build(config)`, served over mutual TLS on
//! loopback, following a real revocation service, with a real Redis for its marks
//! (payments' taps are a test double: `FixedTaps`).

mod decisions;
mod face;
mod face_pass;
mod key_set;
mod revocation;
mod scenes;
mod subjects;
mod support;
mod transit;
mod upload;
