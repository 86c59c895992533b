//! What each call ended with, recorded where operators look, as OpenTelemetry's RPC
//! conventions name it:
//!
//! - on the call's span (made by [`crate::trace_context::server_span`]):
//!   `rpc.grpc.status_code`, and `otel.status_code = "ERROR"` when the failure is the
//!   server's (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
//!   DATA_LOSS): a refused or malformed request is the caller's doing, not an error of
//!   the server;
//! - in the histogram `rpc.server.call.duration` (seconds, to the response headers),
//!   with `rpc.system`, `rpc.service`, `rpc.method` and `rpc.grpc.status_code`.
//!
//! The layer sits outermost, so refusals of the authorisation layer and the stack are
//! counted too. Paths that no service of the server has (anyone can send any path) are
//! counted under `rpc.method = "unknown"`, so a scanner cannot grow the metric's
//! cardinality.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderMap, Request, Response};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use tower::{BoxError, Layer, Service, ServiceExt};

/// The histogram's name.
pub const CALL_DURATION: &str = "rpc.server.call.duration";

/// A method's `rpc.service` and `rpc.method` values.
type Names = (Arc<str>, Arc<str>);

/// See the module documentation.
#[derive(Clone)]
pub struct OutcomeLayer {
    duration: Histogram<f64>,
    /// Path → (service, method), made once, so a call allocates nothing for them.
    known: Arc<HashMap<String, Names>>,
    unknown: Arc<str>,
}

impl std::fmt::Debug for OutcomeLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutcomeLayer")
            .field("known", &self.known.len())
            .finish_non_exhaustive()
    }
}

impl OutcomeLayer {
    /// Records calls; `known` holds the server's full method paths
    /// (`/citypass.v1.IssuerService/IssueToken`), health's and reflection's included.
    pub fn new(known: HashSet<String>) -> Self {
        let duration = opentelemetry::global::meter("citypass-runtime")
            .f64_histogram(CALL_DURATION)
            .with_unit("s")
            .with_description("Duration of inbound RPCs, to the response headers")
            .build();
        let known = known
            .into_iter()
            .map(|path| {
                let (service, method) = path
                    .trim_start_matches('/')
                    .split_once('/')
                    .unwrap_or_default();
                let names = (Arc::from(service), Arc::from(method));
                (path, names)
            })
            .collect();
        OutcomeLayer {
            duration,
            known: Arc::new(known),
            unknown: Arc::from("unknown"),
        }
    }
}

impl<S> Layer<S> for OutcomeLayer {
    type Service = Outcome<S>;

    fn layer(&self, inner: S) -> Outcome<S> {
        Outcome {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`OutcomeLayer`].
#[derive(Clone)]
pub struct Outcome<S> {
    inner: S,
    layer: OutcomeLayer,
}

impl<S> std::fmt::Debug for Outcome<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome").finish_non_exhaustive()
    }
}

/// The gRPC status of a response from its headers: a failure answered at once carries
/// `grpc-status` there; a response without it started normally (OK).
fn grpc_status(headers: &HeaderMap) -> i64 {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Whether a status is the server's failure rather than the caller's (OpenTelemetry's
/// gRPC conventions for server spans).
fn server_error(code: i64) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

impl<S, B> Service<Request<B>> for Outcome<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is decided per call by the layers inside (see `stack`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let started = Instant::now();
        let (service, method) = match self.layer.known.get(request.uri().path()) {
            Some((service, method)) => (service.clone(), method.clone()),
            None => (self.layer.unknown.clone(), self.layer.unknown.clone()),
        };
        let inner = self.inner.clone();
        let duration = self.layer.duration.clone();
        Box::pin(async move {
            let result = inner.oneshot(request).await.map_err(Into::into);
            let code = match &result {
                Ok(response) => grpc_status(response.headers()),
                Err(_) => 2,
            };
            // Polled inside the call's span (tonic enters it around the future).
            crate::span_fields::record(
                &tracing::Span::current(),
                [
                    ("rpc.grpc.status_code", Some(&code)),
                    ("otel.status_code", server_error(code).then_some(&"ERROR")),
                ],
            );
            duration.record(
                started.elapsed().as_secs_f64(),
                &[
                    KeyValue::new("rpc.system", "grpc"),
                    KeyValue::new("rpc.service", service),
                    KeyValue::new("rpc.method", method),
                    KeyValue::new("rpc.grpc.status_code", code),
                ],
            );
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_read_from_headers_and_judged_as_the_conventions_say() {
        let mut headers = HeaderMap::new();
        assert_eq!(grpc_status(&headers), 0);
        headers.insert("grpc-status", http::HeaderValue::from_static("16"));
        assert_eq!(grpc_status(&headers), 16);
        assert!(!server_error(16), "UNAUTHENTICATED is the caller's");
        assert!(!server_error(3), "INVALID_ARGUMENT is the caller's");
        assert!(server_error(13) && server_error(14) && server_error(4));
    }
}
