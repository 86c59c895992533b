//! Revocation propagation under load: how long after the revocation service
//! acknowledges a revocation the verifier enforces it, measured while the Verify run
//! loads the verifier (issue 12's target: p99 ≤ 1 s).
//!
//! Before the run the tool enrols `--revocations N` extra riders (the victims, linked
//! like the others) and signs one online code for each. During the verifier's Verify
//! run it revokes them one at a time, spread over the run, as an operator with the
//! `revoker` role (Revoke, target SUBJECT), and from the moment Revoke answers it
//! scans the victim's code at one of the run's gates every [`POLL`] until the answer
//! is DENY `SUBJECT_REVOKED`: the verifier's follower has the entry and its pipeline
//! applies it. The first scan before that is allowed (the code was good) and the next
//! ones are REPLAYED: revocation is checked before replay, so the first
//! `SUBJECT_REVOKED` marks enforcement. A victim not enforced within [`DEADLINE`] is
//! counted, not waited for.
//!
//! The figure is an upper bound by up to one poll and one Verify round trip under the
//! load (the scan that sees it is itself queued behind the run's requests). The subject
//! ids stay ids: never printed or logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use citypass_proto::v1::revocation_service_client::RevocationServiceClient;
use citypass_proto::v1::{DenyReason, RevocationReason, RevokeRequest, TargetKind, VerifyRequest};
use citypass_runtime::{Tls, UpstreamConfig};
use citypass_token::{Issuer, Scopes, SubjectId, unix_now};
use serde::Serialize;

use crate::codes::CODE_LIFETIME;
use crate::error::LoadError;
use crate::open_loop::GateClient;

/// Between two scans of a victim's code.
pub const POLL: Duration = Duration::from_millis(5);
/// How long a revocation may take before it counts as not enforced.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// Most victims in one run.
pub const MAX_REVOCATIONS: usize = 1000;

/// Where and as whom the tool revokes: the revocation service and an operator
/// certificate with the `revoker` role.
#[derive(Clone)]
pub struct RevocationAccess {
    /// The revocation service's URL.
    pub url: String,
    /// The operator's TLS (certificate with the role, and the stack's CA).
    pub operator: Arc<Tls>,
}

/// A victim: a linked rider and a good code sealed for them.
#[derive(Clone)]
pub struct Victim {
    subject: SubjectId,
    code: String,
}

impl std::fmt::Debug for Victim {
    /// Without the subject or the code.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Victim(..)")
    }
}

/// One code per victim, signed with `issuer` now (valid [`CODE_LIFETIME`]).
pub fn victims(issuer: &Issuer, subjects: &[SubjectId]) -> Result<Vec<Victim>, LoadError> {
    let now = unix_now();
    subjects
        .iter()
        .map(|subject| {
            let code = issuer
                .issue_token(subject.as_bytes(), Scopes::all(), now, CODE_LIFETIME)?
                .text;
            Ok(Victim {
                subject: *subject,
                code,
            })
        })
        .collect()
}

/// What the measurement found.
#[derive(Debug, Clone, Serialize)]
pub struct Propagation {
    /// Revocations made.
    pub revoked: usize,
    /// Enforced within [`DEADLINE`].
    pub enforced: usize,
    /// From Revoke's answer to the first `SUBJECT_REVOKED`, milliseconds, over the
    /// enforced ones (absent when none was).
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// The answers other than ALLOW, REPLAYED and SUBJECT_REVOKED seen while waiting
    /// (a victim's code refused for another reason means the figure is wrong).
    pub unexpected: Vec<String>,
}

/// The `q` quantile of sorted `values` (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

impl Propagation {
    fn of(mut times: Vec<f64>, revoked: usize, unexpected: Vec<String>) -> Propagation {
        times.sort_by(f64::total_cmp);
        Propagation {
            revoked,
            enforced: times.len(),
            p50_ms: quantile(&times, 0.5),
            p90_ms: quantile(&times, 0.9),
            p99_ms: quantile(&times, 0.99),
            max_ms: times.last().copied(),
            unexpected,
        }
    }
}

/// Revokes each victim in turn, `spacing` apart, and waits for the verifier behind
/// `gate` to enforce it (see the module documentation).
pub async fn measure(
    access: &RevocationAccess,
    gate: &GateClient,
    victims: Vec<Victim>,
    spacing: Duration,
) -> Result<Propagation, LoadError> {
    let channel = UpstreamConfig::new(access.url.clone()).channel(Some(&access.operator))?;
    let mut revocation = RevocationServiceClient::new(channel);
    let revoked = victims.len();
    let mut times = Vec::with_capacity(revoked);
    let mut unexpected = Vec::new();
    for (n, victim) in victims.into_iter().enumerate() {
        tokio::time::sleep(spacing).await;
        revocation
            .revoke(RevokeRequest {
                target_kind: TargetKind::Subject as i32,
                target_id: victim.subject.to_string(),
                reason: RevocationReason::Administrative as i32,
                note: "citypass-loadtest propagation".to_owned(),
                ..RevokeRequest::default()
            })
            .await
            .map_err(|s| {
                LoadError::Revocation(format!("Revoke: {:?} {}", s.code(), s.message()))
            })?;
        let acknowledged = Instant::now();
        let mut client = gate.client.clone();
        let mut scan = 0u32;
        while acknowledged.elapsed() < DEADLINE {
            scan += 1;
            let answer = client
                .verify(VerifyRequest {
                    gate_id: gate.id.clone(),
                    scene: gate.scene,
                    scan_id: format!("propagation-{n}-{scan}"),
                    qr_text: victim.code.clone(),
                    ..VerifyRequest::default()
                })
                .await
                .map(tonic::Response::into_inner);
            match answer {
                Ok(a) if a.deny_reason == DenyReason::SubjectRevoked as i32 => {
                    times.push(acknowledged.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
                Ok(a)
                    if a.deny_reason == DenyReason::Unspecified as i32
                        || a.deny_reason == DenyReason::Replayed as i32 => {}
                Ok(a) => unexpected.push(DenyReason::try_from(a.deny_reason).map_or_else(
                    |_| a.deny_reason.to_string(),
                    |r| r.as_str_name().to_owned(),
                )),
                Err(status) => unexpected.push(format!("{:?}", status.code())),
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(Propagation::of(times, revoked, unexpected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank_and_absent_without_values() {
        let p = Propagation::of(vec![30.0, 10.0, 20.0, 40.0], 5, Vec::new());
        assert_eq!((p.revoked, p.enforced), (5, 4));
        assert_eq!(p.p50_ms, Some(20.0));
        assert_eq!(p.p90_ms, Some(40.0));
        assert_eq!(p.max_ms, Some(40.0));
        let none = Propagation::of(Vec::new(), 2, Vec::new());
        assert_eq!((none.enforced, none.p99_ms), (0, None));
    }
}
