//! Ed25519 signatures checked as one batch (feature `batch`), for a verifier that
//! holds several codes at once.
//!
//! One batch equation over n signatures costs less CPU than n single checks (the
//! multiscalar multiplication shares its doublings). If the equation holds, every
//! signature in it is valid; if it fails, it says nothing about which one is bad, so
//! every check in the batch is then run alone (ring, exactly as without batching) and
//! a forged code is refused by itself while the others pass.
//!
//! Why ed25519-dalek 2.2 and not the newer 3.0: ring has no batch verification;
//! ed25519-dalek 2.2 with `batch` adds nine small crates and reuses the tree's sha2
//! 0.10, signature 2 and rand_core 0.6, while 3.0 adds twenty, among them a second
//! sha2, digest, signature, der and pkcs8. Both implement the same batch equation
//! (random 128-bit coefficients from a transcript of every input). A batch accepts
//! only what the single check accepts, except for signatures made on purpose by the
//! holder of the private key to pass one equation and not the other: only the
//! issuer's keys sign the batched signatures, so that holder could sign any code
//! outright.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::keys::Algorithm;
use crate::signature_check::SignatureCheck;

/// Fewer signatures than this are checked alone: a batch of one saves nothing.
pub const MIN_BATCH: usize = 2;

/// What [`check_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Fewer than [`MIN_BATCH`] undecided Ed25519 checks: left to be checked alone.
    Alone,
    /// The batch equation over this many signatures held: all are valid.
    Passed(usize),
    /// The equation over this many signatures failed: each was checked alone.
    FellBack(usize),
}

/// Decides the undecided Ed25519 checks among `checks` as one batch (falling back to
/// one by one when the batch fails). Other algorithms and decided checks are left as
/// they are; their owners check them alone when they finish.
pub fn check_batch<'a>(checks: impl IntoIterator<Item = &'a mut SignatureCheck>) -> BatchOutcome {
    let mut batch: Vec<&mut SignatureCheck> = checks
        .into_iter()
        .filter(|c| c.alg() == Algorithm::EdDsa && !c.is_decided())
        .collect();
    if batch.len() < MIN_BATCH {
        return BatchOutcome::Alone;
    }
    if equation_holds(&batch) {
        for check in &mut batch {
            check.passed_in_batch();
        }
        return BatchOutcome::Passed(batch.len());
    }
    for check in &mut batch {
        // The single check decides and remembers; its error is the owner's to read.
        let _ = check.outcome();
    }
    BatchOutcome::FellBack(batch.len())
}

/// Whether the batch equation holds over every check; a key or a signature that does
/// not even parse fails the batch (its single check then names the failure).
fn equation_holds(batch: &[&mut SignatureCheck]) -> bool {
    let mut messages = Vec::with_capacity(batch.len());
    let mut signatures = Vec::with_capacity(batch.len());
    let mut keys = Vec::with_capacity(batch.len());
    for check in batch {
        let (key, message, signature) = check.parts();
        let Ok(key_bytes) = <&[u8; 32]>::try_from(key.as_bytes()) else {
            return false;
        };
        let (Ok(key), Ok(signature)) = (
            VerifyingKey::from_bytes(key_bytes),
            Signature::from_slice(signature),
        ) else {
            return false;
        };
        messages.push(message);
        signatures.push(signature);
        keys.push(key);
    }
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
}
