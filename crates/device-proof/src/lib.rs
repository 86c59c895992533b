//! Requests signed by a citizen's bound device key.
//!
//! Some calls act with a citizen's authority (IssueToken, IssueDeviceCertificate, the
//! citizen's payment calls, and the face consent and enrolment calls), so the caller must prove it holds the device
//! key bound to that citizen. Such a request carries a `DeviceProof`: an ES256
//! signature over the full gRPC method path, a timestamp, a nonce and the SHA-256 of
//! the request encoded with its proof unset (the byte layout is
//! `citypass_token::RequestProof`).
//!
//! Both sides live here, so that the app, the end-to-end tests and every service that
//! checks proofs can never disagree on what is signed:
//! - [`signing`]: the app side ([`sign_request`]) and which messages carry a proof
//!   ([`SignedRequest`]);
//! - [`verifier`] (feature `verifier`): the service side, freshness, signature, then a
//!   single-use nonce in a [`nonce`] store shared by the service's replicas.

pub mod signing;

#[cfg(feature = "verifier")]
pub mod nonce;
#[cfg(feature = "verifier")]
pub mod verifier;

pub use signing::{
    ENROL_FACE, GET_ARREARS, GET_LINK, GET_TRIPS, ISSUE_DEVICE_CERTIFICATE, ISSUE_TOKEN,
    LINK_ACCOUNT, NONCE_LEN, RECORD_FACE_CONSENT, REPAY_ARREARS, SignError, SignedRequest,
    UNLINK_ACCOUNT, WITHDRAW_FACE_CONSENT, body_sha256, sign_request, sign_request_with,
};

#[cfg(feature = "verifier")]
pub use nonce::{
    MemoryNonceStore, NonceStore, NonceStoreError, OpenNonceStoreError, RedisNonceStore,
    open_nonce_store,
};
#[cfg(feature = "verifier")]
pub use verifier::{
    MAX_NONCE_LEN, MIN_NONCE_LEN, PresentedProof, Proof, ProofError, ProofVerifier, nonce_ttl,
};
