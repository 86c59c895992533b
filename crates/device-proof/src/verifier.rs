//! The service side: only the device that holds the bound key acts for its citizen.
//!
//! The service re-encodes the request it decoded to hash it, so a request with fields
//! the service does not know (dropped when decoding) fails closed.
//!
//! Checks, in the order that keeps them cheap for honest callers and useless to others:
//! 1. shape and freshness ([`ProofVerifier::presented`]), before any lookup: a proof,
//!    a well-formed timestamp within `proof_freshness` of the service's clock (either
//!    side), a nonce of 16 to 64 bytes;
//! 2. the signature with the device's key ([`ProofVerifier::authenticate`]), once the
//!    device has been looked up;
//! 3. only then the nonce, first use wins ([`NonceStore`]): unauthenticated
//!    junk never fills the store. Nonces are scoped to the device and stored as a hash.
//!
//! Every failure is `UNAUTHENTICATED` to the caller, with a text saying which check
//! failed and nothing else.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use citypass_proto::v1::DeviceProof;
use citypass_runtime::{ErrorKind, ServiceError};
use citypass_token::{DeviceId, PublicKey, RequestProof, sha256};

use crate::nonce::{NonceStore, NonceStoreError};

/// Shortest nonce accepted.
pub const MIN_NONCE_LEN: usize = 16;
/// Longest nonce accepted (a bound on what is hashed and stored).
pub const MAX_NONCE_LEN: usize = 64;

/// Why a proof was refused (or could not be made).
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The request has no proof.
    #[error("request is not signed by a device (no proof)")]
    Missing,
    /// The timestamp is missing or out of range.
    #[error("request timestamp is missing or malformed")]
    BadTimestamp,
    /// The timestamp is too far from the service's clock.
    #[error("request timestamp is outside the freshness window")]
    Stale,
    /// The nonce is too short or too long.
    #[error("request nonce must be 16 to 64 bytes")]
    BadNonce,
    /// The signature does not verify with the device's bound key (or the request was
    /// changed after signing).
    #[error("bad device signature")]
    BadSignature,
    /// The nonce was used before: a replayed request.
    #[error("request nonce already used")]
    Reused,
    /// The nonce store could not be asked; the request is not known to be fresh.
    #[error("nonce store unavailable")]
    Store(#[source] NonceStoreError),
}

/// A refused proof as every service that checks proofs answers it: UNAUTHENTICATED
/// with a reason an app acts on (`CLOCK_SKEW`: fix the clock; `NONCE_REUSED`: sign
/// again; `BAD_SIGNATURE`; …), or UNAVAILABLE when the nonce store could not be asked.
impl ServiceError for ProofError {
    fn kind(&self) -> ErrorKind {
        match self {
            ProofError::Store(_) => ErrorKind::Unavailable,
            _ => ErrorKind::Unauthenticated,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ProofError::Missing => "PROOF_MISSING",
            ProofError::BadTimestamp => "PROOF_TIMESTAMP_MALFORMED",
            ProofError::Stale => "CLOCK_SKEW",
            ProofError::BadNonce => "PROOF_NONCE_MALFORMED",
            ProofError::BadSignature => "BAD_SIGNATURE",
            ProofError::Reused => "NONCE_REUSED",
            ProofError::Store(_) => "NONCE_STORE_UNAVAILABLE",
        }
    }
}

/// Nanoseconds since 1970 (signed, wide enough for every valid `Timestamp`).
fn unix_nanos(seconds: i64, nanos: i32) -> i128 {
    i128::from(seconds) * 1_000_000_000 + i128::from(nanos)
}

/// How long a nonce must be remembered for a freshness window: a request stamped up to
/// `freshness` ahead of the clock stays acceptable until `2 × freshness` after it first
/// arrives; one more second covers rounding.
pub fn nonce_ttl(freshness: Duration) -> Duration {
    freshness * 2 + Duration::from_secs(1)
}

/// A proof as the request carried it, in this crate's own terms (the service's
/// conversion layer makes it from the wire's `DeviceProof`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Proof {
    /// Seconds and nanoseconds since 1970, if the request carried a timestamp.
    pub timestamp: Option<(i64, i32)>,
    /// The request's nonce.
    pub nonce: Vec<u8>,
    /// The ES256 signature (raw r‖s).
    pub signature: Vec<u8>,
}

impl std::fmt::Debug for Proof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proof")
            .field("timestamp", &self.timestamp)
            .finish_non_exhaustive()
    }
}

impl From<DeviceProof> for Proof {
    fn from(proof: DeviceProof) -> Self {
        Proof {
            timestamp: proof.timestamp.map(|t| (t.seconds, t.nanos)),
            nonce: proof.nonce,
            signature: proof.signature,
        }
    }
}

/// A proof whose shape and freshness passed; the signature is still unchecked.
#[derive(Clone)]
pub struct PresentedProof {
    seconds: i64,
    nanos: i32,
    nonce: Vec<u8>,
    signature: Vec<u8>,
}

impl std::fmt::Debug for PresentedProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedProof")
            .field("seconds", &self.seconds)
            .finish_non_exhaustive()
    }
}

/// Checks device proofs (see the module documentation).
#[derive(Clone)]
pub struct ProofVerifier {
    freshness: Duration,
    nonce_ttl: Duration,
    nonces: Arc<dyn NonceStore>,
}

impl std::fmt::Debug for ProofVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofVerifier")
            .field("freshness", &self.freshness)
            .field("nonce_ttl", &self.nonce_ttl)
            .finish_non_exhaustive()
    }
}

impl ProofVerifier {
    /// Timestamps within `freshness` of the clock either side; nonces remembered in
    /// `nonces` for `2 × freshness + 1 s`, longer than any accepted request stays fresh.
    pub fn new(freshness: Duration, nonces: Arc<dyn NonceStore>) -> Self {
        ProofVerifier {
            freshness,
            nonce_ttl: nonce_ttl(freshness),
            nonces,
        }
    }

    /// Step 1: a proof is present, well-formed and fresh at `now`.
    pub fn presented(
        &self,
        proof: Option<Proof>,
        now: SystemTime,
    ) -> Result<PresentedProof, ProofError> {
        let proof = proof.ok_or(ProofError::Missing)?;
        let (seconds, nanos) = proof.timestamp.ok_or(ProofError::BadTimestamp)?;
        if !(0..1_000_000_000).contains(&nanos) {
            return Err(ProofError::BadTimestamp);
        }
        let now = citypass_proto::time::system_timestamp(now);
        let skew = unix_nanos(seconds, nanos) - unix_nanos(now.seconds, now.nanos);
        if skew.unsigned_abs() > self.freshness.as_nanos() {
            return Err(ProofError::Stale);
        }
        if !(MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&proof.nonce.len()) {
            return Err(ProofError::BadNonce);
        }
        Ok(PresentedProof {
            seconds,
            nanos,
            nonce: proof.nonce,
            signature: proof.signature,
        })
    }

    /// Steps 2 and 3: the signature over (`method`, timestamp, nonce, `body_sha256`)
    /// verifies with `device_key`, then the nonce is used for the first time by
    /// `device`.
    pub async fn authenticate(
        &self,
        proof: &PresentedProof,
        method: &str,
        body_sha256: &[u8; 32],
        device: &DeviceId,
        device_key: &PublicKey,
    ) -> Result<(), ProofError> {
        RequestProof {
            method,
            seconds: proof.seconds,
            nanos: proof.nanos,
            nonce: &proof.nonce,
            body_sha256,
        }
        .verify(device_key, &proof.signature)
        .map_err(|_| ProofError::BadSignature)?;
        let key = nonce_key(device, &proof.nonce);
        match self.nonces.first_use(&key, self.nonce_ttl).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ProofError::Reused),
            Err(err) => Err(ProofError::Store(err)),
        }
    }
}

/// The store key of a device's nonce: a hash, so neither ids nor nonces reach the store.
fn nonce_key(device: &DeviceId, nonce: &[u8]) -> String {
    // A fixed-length id first, so that no (device, nonce) pair collides with another.
    let mut input = Vec::with_capacity(device.as_bytes().len() + nonce.len());
    input.extend_from_slice(device.as_bytes());
    input.extend_from_slice(nonce);
    format!("nonce:{}", hex::encode(sha256(&input)))
}
