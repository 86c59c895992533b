//! One signature to check, kept apart from the object it signs, so that whoever
//! decides a code can check it alone or hand it to a batch ([`crate::check_batch`],
//! feature `batch`) and then finish the same pipeline.
//!
//! The verifying functions (`verify_online`, `verify_offline`) are a reading step
//! (format, headers, key, pinned algorithm), this check, and a finishing step (claims,
//! times). The finishing step runs the check itself if nobody did, so a code can never
//! be believed without its signature: a batch only decides the check earlier.

use crate::TokenError;
use crate::keys::{Algorithm, PublicKey};

/// A signature over `message` by `key`, checked at most once.
#[derive(Debug)]
pub struct SignatureCheck {
    key: PublicKey,
    message: Vec<u8>,
    signature: Vec<u8>,
    outcome: Option<Result<(), TokenError>>,
}

impl SignatureCheck {
    /// A check of `signature` over `message` with `key`, not yet run.
    pub(crate) fn new(key: PublicKey, message: Vec<u8>, signature: Vec<u8>) -> Self {
        SignatureCheck {
            key,
            message,
            signature,
            outcome: None,
        }
    }

    /// The key's algorithm (only Ed25519 checks can be batched).
    pub fn alg(&self) -> Algorithm {
        self.key.alg()
    }

    /// Whether the check was already decided (alone or in a batch).
    pub fn is_decided(&self) -> bool {
        self.outcome.is_some()
    }

    /// The check's outcome, running it alone (ring) if it was not decided yet.
    pub fn outcome(&mut self) -> Result<(), TokenError> {
        self.outcome
            .get_or_insert_with(|| self.key.verify(&self.message, &self.signature))
            .clone()
    }

    /// The key, the signed bytes and the signature, for a batch.
    #[cfg(feature = "batch")]
    pub(crate) fn parts(&self) -> (&PublicKey, &[u8], &[u8]) {
        (&self.key, &self.message, &self.signature)
    }

    /// Records a batch's verdict (only `Ok`: a failed batch decides nothing).
    #[cfg(feature = "batch")]
    pub(crate) fn passed_in_batch(&mut self) {
        self.outcome = Some(Ok(()));
    }
}
