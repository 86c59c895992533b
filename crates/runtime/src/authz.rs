//! Authorisation: one declarative table per service, enforced by one tower layer before
//! any handler runs.
//!
//! Each service declares a [`Policy`]: for every RPC, who may call it ([`Allow`]). The
//! layer looks the request's path up, authenticates the caller from its connection's
//! certificate ([`crate::peer`]), and answers by itself unless the table allows it:
//!
//! - a certificate that was presented but is invalid (another CA, expired, no citypass
//!   identity) → `UNAUTHENTICATED`, whatever the RPC;
//! - an RPC missing from the table → `PERMISSION_DENIED` (default deny; a test walks
//!   every RPC of the descriptor set so that none is forgotten);
//! - an RPC the caller's identity does not satisfy → `UNAUTHENTICATED` if the caller
//!   has no certificate, `PERMISSION_DENIED` if it has one;
//! - a caller over its request rate (`RATE_LIMITED`), or with too many calls open at
//!   once (`TOO_MANY_OPEN_CALLS`; a stream counts until it ends) →
//!   `RESOURCE_EXHAUSTED`, counted in `citypass.rpc.server.shed` ([`crate::shed`]).
//!
//! An allowed call carries its [`Caller`] in the request extensions, so that a handler
//! records who acted (the revocation log's actor) from the authenticated identity only.
//!
//! Health is open to anyone (probes carry no certificate); reflection, where a server
//! enables it, likewise.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use governor::{DefaultKeyedRateLimiter, Quota};
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::{Code, Status};
use tower::{BoxError, Layer, Service, ServiceExt};

mod table;

pub use table::{Allow, Policy, Rule};

use crate::caller::{Caller, Principal};
pub use crate::config::CallerLimits;
use crate::peer::{Credential, PeerInfo};
use crate::shed::{ShedCounter, ShedReason};

/// Metadata key on every refusal of this layer (value `refused`), so a caller (and a
/// test) can tell the layer's refusal from a handler's answer with the same code.
pub const REFUSED_BY: &str = "x-citypass-authorization";

/// Paths open to anyone on every server (still rate-limited per address).
const OPEN: &[Allow] = &[Allow::Anyone];
const OPEN_SERVICES: &[&str] = &[
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// The key calls are counted under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CallerKey {
    Principal(Arc<Principal>),
    Address(IpAddr),
    Unknown,
}

/// Open calls per caller.
#[derive(Debug, Default)]
struct OpenCalls {
    counts: Mutex<HashMap<CallerKey, usize>>,
}

/// Held while a call is open; dropping it (when the response body ends or is dropped)
/// frees the caller's slot.
struct OpenCall {
    calls: Arc<Shared>,
    key: CallerKey,
}

impl Drop for OpenCall {
    fn drop(&mut self) {
        let mut counts = self
            .calls
            .open
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

struct Shared {
    table: HashMap<String, &'static [Allow]>,
    authenticated: DefaultKeyedRateLimiter<CallerKey>,
    anonymous: DefaultKeyedRateLimiter<CallerKey>,
    open: OpenCalls,
    open_limit: usize,
    checks: AtomicU64,
    shed: ShedCounter,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("rpcs", &self.table.len())
            .finish_non_exhaustive()
    }
}

/// The layer; see the module documentation.
#[derive(Debug, Clone)]
pub struct AuthorizeLayer {
    shared: Arc<Shared>,
}

impl AuthorizeLayer {
    /// Enforces `policies` (one per service on the server) with `limits`.
    pub fn new(policies: &[&'static Policy], limits: &CallerLimits) -> Self {
        let mut table: HashMap<String, &'static [Allow]> = HashMap::new();
        for policy in policies {
            for rule in policy.rules {
                table.insert(format!("/{}/{}", policy.service, rule.method), rule.allow);
            }
        }
        AuthorizeLayer {
            shared: Arc::new(Shared {
                table,
                authenticated: DefaultKeyedRateLimiter::keyed(Quota::per_second(
                    limits.per_caller_per_second,
                )),
                anonymous: DefaultKeyedRateLimiter::keyed(Quota::per_second(
                    limits.anonymous_per_second,
                )),
                open: OpenCalls::default(),
                open_limit: limits.open_calls_per_caller.max(1),
                checks: AtomicU64::new(0),
                shed: ShedCounter::new(),
            }),
        }
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// See [`AuthorizeLayer`].
#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// The decision for one call: who the caller is, or the answer that refuses it.
fn decide(
    allow: Option<&[Allow]>,
    credential: &Credential,
    now: SystemTime,
) -> Result<Option<Arc<Principal>>, Status> {
    let principal = match credential {
        Credential::None => None,
        Credential::Invalid(why) => {
            return Err(refusal(
                Code::Unauthenticated,
                why.to_string(),
                "CERTIFICATE_INVALID",
            ));
        }
        Credential::Valid {
            principal,
            not_after,
        } => {
            if now > *not_after {
                return Err(refusal(
                    Code::Unauthenticated,
                    "client certificate has expired",
                    "CERTIFICATE_EXPIRED",
                ));
            }
            Some(principal.clone())
        }
    };
    let Some(allow) = allow else {
        return Err(refusal(
            Code::PermissionDenied,
            "this RPC has no authorisation entry: refused",
            "NO_AUTHORISATION_ENTRY",
        ));
    };
    if allow.iter().any(|a| a.admits(principal.as_deref())) {
        return Ok(principal);
    }
    match principal {
        None => Err(refusal(
            Code::Unauthenticated,
            "this RPC needs a client certificate",
            "CERTIFICATE_REQUIRED",
        )),
        Some(principal) => Err(refusal(
            Code::PermissionDenied,
            format!("{principal} may not call this RPC"),
            "CALLER_NOT_ALLOWED",
        )),
    }
}

impl Shared {
    /// Rate limit and open-call slot for an admitted caller (`principal`, calling
    /// `path`); a refusal is counted as shed ([`crate::shed`]).
    fn admit(
        self: &Arc<Self>,
        key: CallerKey,
        anonymous: bool,
        path: &str,
        principal: Option<&Principal>,
    ) -> Result<OpenCall, Status> {
        // The limiters keep a state per key: drop idle ones now and then.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.authenticated.retain_recent();
            self.anonymous.retain_recent();
        }
        let limiter = if anonymous {
            &self.anonymous
        } else {
            &self.authenticated
        };
        if limiter.check_key(&key).is_err() {
            self.shed.record(ShedReason::RateLimited, path, principal);
            return Err(refusal(
                Code::ResourceExhausted,
                "request rate limit reached; retry with backoff",
                "RATE_LIMITED",
            ));
        }
        let mut counts = self
            .open
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(key.clone()).or_insert(0);
        if *count >= self.open_limit {
            drop(counts);
            self.shed.record(ShedReason::OpenCalls, path, principal);
            return Err(refusal(
                Code::ResourceExhausted,
                "too many open calls; close some",
                "TOO_MANY_OPEN_CALLS",
            ));
        }
        *count += 1;
        Ok(OpenCall {
            calls: self.clone(),
            key,
        })
    }
}

impl<S, B> Service<Request<B>> for Authorize<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is the inner stack's business, decided per call (see `stack`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let path = request.uri().path();
        let open = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .is_some_and(|(service, _)| OPEN_SERVICES.contains(&service));
        let inner = self.inner.clone();
        let peer = request.extensions().get::<PeerInfo>();
        let credential = peer.map_or(Credential::None, |p| p.credential.clone());
        let address = peer.and_then(|p| p.remote_addr).map(|a| a.ip());
        let allow = if open {
            Some(OPEN)
        } else {
            self.shared.table.get(path).copied()
        };
        let decision = decide(allow, &credential, SystemTime::now()).and_then(|principal| {
            // Counted as who they are only where the table names them; anything open
            // to anyone counts against the caller's address, certificate or not.
            let named = principal.as_deref().is_some_and(|p| {
                allow
                    .unwrap_or_default()
                    .iter()
                    .any(|a| a.names_a_principal() && a.admits(Some(p)))
            });
            let key = match (&principal, address) {
                (Some(p), _) if named => CallerKey::Principal(p.clone()),
                (_, Some(ip)) => CallerKey::Address(network_of(ip)),
                (_, None) => CallerKey::Unknown,
            };
            let slot = self.shared.admit(key, !named, path, principal.as_deref())?;
            Ok((principal, slot))
        });
        match decision {
            Err(mut status) => {
                tracing::debug!(code = ?status.code(), "call refused by the authorisation layer");
                status.metadata_mut().insert(
                    REFUSED_BY,
                    tonic::metadata::MetadataValue::from_static("refused"),
                );
                Box::pin(async move { Ok(status.into_http()) })
            }
            Ok((principal, slot)) => {
                request
                    .extensions_mut()
                    .insert(Caller { principal, address });
                Box::pin(async move {
                    let response = inner.oneshot(request).await.map_err(Into::into)?;
                    Ok(response.map(|body| Body::new(Guarded { body, _slot: slot })))
                })
            }
        }
    }
}

/// A refusal of this layer: its code, message and ErrorInfo reason.
fn refusal(code: Code, message: impl Into<String>, reason: &'static str) -> Status {
    crate::status::status_with_reason(code, message, reason)
}

/// The address calls are counted under: an IPv4 address, or an IPv6 /64 (one
/// subscriber's prefix, inside which addresses are free to rotate). Public so that a
/// service's own per-caller limits (identity's enrolment attempts) count the same way.
pub fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::from(octets)
            }
        },
    }
}

/// A response body that holds its call's slot until it ends.
struct Guarded {
    body: Body,
    _slot: OpenCall,
}

impl HttpBody for Guarded {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caller::Role;
    use std::time::Duration;

    fn valid(principal: Principal) -> Credential {
        Credential::Valid {
            principal: Arc::new(principal),
            not_after: SystemTime::now() + Duration::from_secs(3600),
        }
    }

    fn operator(roles: &[Role]) -> Principal {
        Principal::Operator {
            name: "alice".into(),
            roles: roles.to_vec(),
        }
    }

    #[test]
    fn ipv6_callers_are_counted_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(network_of(a), network_of(b));
        assert_ne!(network_of(a), network_of(c));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(network_of(v4), v4);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(network_of(mapped), v4);
    }

    #[test]
    fn the_table_decides() {
        let now = SystemTime::now();
        let revoke: &[Allow] = &[Allow::Role(Role::Revoker)];
        let code = |allow: Option<&[Allow]>, c: &Credential| {
            decide(allow, c, now).map(|_| ()).map_err(|s| s.code())
        };
        assert_eq!(
            code(Some(revoke), &Credential::None),
            Err(Code::Unauthenticated)
        );
        assert_eq!(
            code(Some(revoke), &valid(Principal::Gate("g1".into()))),
            Err(Code::PermissionDenied)
        );
        assert_eq!(
            code(Some(revoke), &valid(operator(&[Role::Auditor]))),
            Err(Code::PermissionDenied)
        );
        assert_eq!(
            code(Some(revoke), &valid(operator(&[Role::Revoker]))),
            Ok(())
        );
        assert_eq!(
            code(
                Some(&[Allow::Service("issuer")]),
                &valid(Principal::Service("verifier".into()))
            ),
            Err(Code::PermissionDenied)
        );
        assert_eq!(
            code(
                Some(&[Allow::Service("issuer")]),
                &valid(Principal::Service("issuer".into()))
            ),
            Ok(())
        );
        // Default deny, even for a fully trusted caller.
        assert_eq!(
            code(None, &valid(operator(&Role::ALL))),
            Err(Code::PermissionDenied)
        );
        // An invalid certificate is refused even where anyone may call.
        assert_eq!(
            code(Some(&[Allow::Anyone]), &Credential::Invalid(Arc::from("x"))),
            Err(Code::Unauthenticated)
        );
        // Each refusal says why in an ErrorInfo reason, for apps and scripts.
        let reason = |allow: Option<&[Allow]>, c: &Credential| {
            crate::status::reason_of(&decide(allow, c, now).expect_err("refused"))
        };
        assert_eq!(
            reason(None, &Credential::None).as_deref(),
            Some("NO_AUTHORISATION_ENTRY")
        );
        assert_eq!(
            reason(Some(revoke), &Credential::None).as_deref(),
            Some("CERTIFICATE_REQUIRED")
        );
        assert_eq!(
            reason(Some(revoke), &valid(operator(&[Role::Auditor]))).as_deref(),
            Some("CALLER_NOT_ALLOWED")
        );
        let expired = Credential::Valid {
            principal: Arc::new(operator(&[Role::Revoker])),
            not_after: now - Duration::from_secs(1),
        };
        assert_eq!(code(Some(revoke), &expired), Err(Code::Unauthenticated));
    }
}
