//! Whether a subject or device is revoked, asked before a citizen's device acts.
//!
//! A revoked subject or device must get no new codes or certificates (its CP1 codes
//! then die within their 60 s lifetime), so the issuer asks before signing; payments
//! asks before a device-signed call (linking or unlinking an account, repaying) acts
//! for a transit account, so that a stolen, revoked phone cannot. The answer
//! comes from [`FollowerCheck`]: a `citypass_revocation_follow::Follower` keeping the
//! whole revocation set in memory, fed from the revocation service's Redis Stream (or
//! its Watch stream in `citypass dev`), so the check costs a hash lookup, not a call.
//!
//! # Failing closed on stale data
//!
//! Issuing on revocation data that quietly stopped refreshing is how revoked
//! credentials pass, so [`FollowerCheck`] refuses to vouch for data older than its
//! `max_age` (default 10 s): issuance then fails `UNAVAILABLE` until the follower hears
//! from the log again. The order matters:
//!
//! 1. a subject or device that the set (however old) shows revoked is refused
//!    `PERMISSION_DENIED`: old data can miss a reinstatement, and refusing then is the
//!    safe error;
//! 2. otherwise, data older than `max_age`, or never synced, is `UNAVAILABLE`;
//! 3. otherwise the subject and device are not revoked.
//!
//! The price is availability: while a service cannot hear from the revocation log
//! (Redis and the revocation service both unreachable, or the service unreachable in
//! Watch mode), it issues nothing. A follower in Redis mode stays fresh while Redis
//! answers, even if the revocation service or its PostgreSQL is down: no revocation can
//! be acknowledged then, so the stream-fed set is complete.
//!
//! Suspension (identity's subject status) and unbinding (identity's device status) are
//! enforced separately, from GetDevice.
//!
//! [`NothingRevoked`] says "not revoked" to everything. It exists for tests that need
//! a service without a revocation service; no running configuration uses it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use citypass_proto::v1::revocation_service_client::RevocationServiceClient;
use citypass_runtime::config::RedisConfig;
use citypass_runtime::{Tls, UpstreamConfig};
use citypass_token::{DeviceId, SubjectId};
use futures::future::BoxFuture;

use crate::{
    FollowMode, Follower, FollowerError, Kinds, RevocationSettings, RevocationView, TargetKind,
};

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

/// Why the revocation state is unknown. The caller then refuses to act
/// (`UNAVAILABLE`): acting on stale revocation data is how revoked credentials pass.
#[derive(Debug, thiserror::Error)]
#[error("revocation state unavailable: {reason}")]
pub struct RevocationError {
    /// What went wrong, without ids.
    pub reason: String,
}

/// Asks whether a subject or device is revoked.
pub trait RevocationCheck: Send + Sync + 'static {
    /// The revocation status of `subject` and `device`.
    fn check<'a>(
        &'a self,
        subject: &'a SubjectId,
        device: &'a DeviceId,
    ) -> BoxFuture<'a, Result<RevocationStatus, RevocationError>>;
}

/// The revocation check of the issuer and payments: a follower's set, refused when older than
/// `max_age` (see the module documentation).
pub struct FollowerCheck {
    view: RevocationView,
    max_age: Duration,
    /// The follower feeding `view`, kept running as long as the check lives.
    follower: Option<Follower>,
}

impl std::fmt::Debug for FollowerCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FollowerCheck")
            .field("view", &self.view)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl FollowerCheck {
    /// A check over `follower`, which it keeps running.
    pub fn new(follower: Follower, max_age: Duration) -> Self {
        FollowerCheck {
            view: follower.view(),
            max_age,
            follower: Some(follower),
        }
    }

    /// A check over a view of a follower owned elsewhere (e.g. shared with other
    /// users in one process). When that follower stops, the view ages and issuance
    /// fails closed.
    pub fn from_view(view: RevocationView, max_age: Duration) -> Self {
        FollowerCheck {
            view,
            max_age,
            follower: None,
        }
    }

    /// Starts a follower as `settings` say, reaching the revocation service through
    /// its upstream (with `tls`, the service's own identity) and Redis through `redis`
    /// (the settings' own, else the service's). Call inside a tokio runtime.
    pub fn start(
        settings: &RevocationSettings,
        redis: Option<&RedisConfig>,
        tls: Option<&Arc<Tls>>,
        default_ca: Option<&Path>,
    ) -> Result<Self, FollowerError> {
        // Only subjects and devices are asked about; token and certificate
        // entries (the bulk of the log) would cost memory for nothing.
        let mut config = settings
            .follower_config(redis, Kinds::of([TargetKind::Subject, TargetKind::Device]))?;
        let ca_file = settings
            .redis
            .as_ref()
            .or(redis)
            .and_then(|r| r.ca_file.as_deref())
            .or(default_ca);
        if let Some(path) = ca_file {
            config.redis_ca = Some(std::fs::read(path).map_err(|e| {
                FollowerError::Config(format!("Redis CA file {}: {e}", path.display()))
            })?);
        }
        let channel = settings
            .service
            .channel(tls)
            .map_err(|e| FollowerError::ServiceUrl(e.to_string()))?;
        let follower = Follower::start(config, RevocationServiceClient::new(channel))?;
        Ok(FollowerCheck::new(follower, settings.max_age))
    }

    /// A check following the revocation service at `service_url` with WatchRevocations (over
    /// TLS with `tls` for an `https://` URL).
    pub fn watch(
        service_url: &str,
        tls: Option<&Arc<Tls>>,
        max_age: Duration,
    ) -> Result<Self, FollowerError> {
        let settings = RevocationSettings {
            service: UpstreamConfig::new(service_url),
            follow: FollowMode::Watch,
            max_age,
            ..RevocationSettings::default()
        };
        FollowerCheck::start(&settings, None, tls, None)
    }

    /// The set the check reads (epoch, age, metrics).
    pub fn view(&self) -> &RevocationView {
        &self.view
    }

    /// The follower, when this check owns it.
    pub fn follower(&self) -> Option<&Follower> {
        self.follower.as_ref()
    }

    /// The oldest data the check vouches for.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// The decision (see the module documentation), without I/O.
    pub fn decide(
        &self,
        subject: &SubjectId,
        device: &DeviceId,
    ) -> Result<RevocationStatus, RevocationError> {
        let ((subject, device), freshness) = self.view.decide(|set| {
            (
                set.issuance_blocked_subject(subject),
                set.issuance_blocked_device(device),
            )
        });
        if subject {
            return Ok(RevocationStatus::SubjectRevoked);
        }
        if device {
            return Ok(RevocationStatus::DeviceRevoked);
        }
        match freshness.age {
            None => Err(RevocationError {
                reason: "revocation data not synced yet".to_owned(),
            }),
            Some(age) if age > self.max_age => Err(RevocationError {
                reason: format!(
                    "revocation data is {:.1}s old (epoch {}), more than the {:?} allowed",
                    age.as_secs_f64(),
                    freshness.epoch,
                    self.max_age
                ),
            }),
            Some(_) => Ok(RevocationStatus::NotRevoked),
        }
    }
}

impl RevocationCheck for FollowerCheck {
    fn check<'a>(
        &'a self,
        subject: &'a SubjectId,
        device: &'a DeviceId,
    ) -> BoxFuture<'a, Result<RevocationStatus, RevocationError>> {
        Box::pin(std::future::ready(self.decide(subject, device)))
    }
}

/// For tests that need a service without a revocation service: nothing is ever
/// revoked. Never part of a running configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct NothingRevoked;

impl RevocationCheck for NothingRevoked {
    fn check<'a>(
        &'a self,
        _subject: &'a SubjectId,
        _device: &'a DeviceId,
    ) -> BoxFuture<'a, Result<RevocationStatus, RevocationError>> {
        Box::pin(std::future::ready(Ok(RevocationStatus::NotRevoked)))
    }
}
