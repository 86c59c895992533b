//! Whether a subject or device is revoked, asked before every issuance.
//!
//! A revoked subject must get no new codes at once (its CP1 codes then die within their
//! 60 s lifetime), so the issuer asks before signing. The revocation log belongs to the
//! revocation service, which is not built yet: this module holds the trait that its
//! client will implement, and [`NothingRevoked`], an explicit stand-in that says "not
//! revoked" to every question. It is named for what it does so that no deployment can
//! mistake it for a real check; replace it as soon as the revocation service exists.
//!
//! Suspension (identity's subject status) and unbinding (identity's device status) are
//! already enforced without this trait, from GetDevice.

use crate::nonce::BoxFuture;

/// The answer for one issuance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationStatus {
    /// Neither the subject nor the device is revoked.
    NotRevoked,
    /// The subject is revoked.
    SubjectRevoked,
    /// The device is revoked.
    DeviceRevoked,
}

/// Why the revocation state is unknown. The issuer then refuses to issue
/// (`UNAVAILABLE`): issuing on stale revocation data is how revoked credentials pass.
#[derive(Debug, thiserror::Error)]
#[error("revocation state unavailable: {reason}")]
pub struct RevocationError {
    /// What went wrong, without ids.
    pub reason: String,
}

/// Asks whether a subject or device is revoked.
pub trait RevocationCheck: Send + Sync + 'static {
    /// The revocation status of `subject_id` and `device_id`.
    fn check<'a>(
        &'a self,
        subject_id: &'a str,
        device_id: &'a str,
    ) -> BoxFuture<'a, Result<RevocationStatus, RevocationError>>;
}

/// The stand-in until the revocation service exists: nothing is ever revoked.
#[derive(Debug, Clone, Copy, Default)]
pub struct NothingRevoked;

impl RevocationCheck for NothingRevoked {
    fn check<'a>(
        &'a self,
        _subject_id: &'a str,
        _device_id: &'a str,
    ) -> BoxFuture<'a, Result<RevocationStatus, RevocationError>> {
        Box::pin(std::future::ready(Ok(RevocationStatus::NotRevoked)))
    }
}
