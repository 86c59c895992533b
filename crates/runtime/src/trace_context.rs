//! W3C trace context (`traceparent`/`tracestate`) across gRPC calls.
//!
//! One scan is one trace from the gate to the fare, across services. That needs two halves:
//! callers put their current span's context into the request metadata
//! ([`InjectTraceContextLayer`] on the client channel), and servers make that context the
//! parent of the span they open for the request ([`server_span`], passed to tonic's
//! `Server::builder().trace_fn`).
//!
//! The extraction happens in `trace_fn` on purpose: that is where tonic creates the request
//! span, and a span's parent can only be set before the span is first entered. An
//! interceptor runs later, inside the entered span, where `set_parent` fails.
//!
//! The wire format is fixed to W3C here (not taken from the global propagator), so two
//! citypass services always agree whatever else a binary installs. Span fields carry the
//! RPC's path only, never metadata or message contents: no personal data or token bytes.

use std::task::{Context, Poll};

use http::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tower::{Layer, Service};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Longest RPC path recorded on a span; longer (hostile) paths are cut.
const MAX_PATH_IN_SPAN: usize = 128;

/// Writes the context of `span` into `headers` as `traceparent` (and `tracestate`).
/// Does nothing when `span` is not being traced.
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return;
    }
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

/// Reads the caller's trace context from `headers`; an empty context when there is none or
/// it is malformed.
pub fn extract(headers: &HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Opens the span for one incoming gRPC request, child of the caller's span when the
/// request carries a trace context. Give it to `tonic::transport::Server::trace_fn`.
pub fn server_span(request: &http::Request<()>) -> tracing::Span {
    let path = bounded(request.uri().path().trim_start_matches('/'));
    let (service, method) = path.split_once('/').unwrap_or((path, ""));
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = %path,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let parent = extract(request.headers());
    if parent.span().span_context().is_valid()
        && let Err(err) = span.set_parent(parent)
    {
        // No OpenTelemetry layer installed, or the span is filtered out: nothing to link.
        tracing::trace!(%err, "trace context not attached");
    }
    // The trace and span ids are not recorded here: the JSON log layer reads them from
    // the OpenTelemetry layer when it writes a line (`telemetry::subscriber`), so a call
    // that logs nothing pays nothing for them.
    span
}

fn bounded(path: &str) -> &str {
    if path.len() <= MAX_PATH_IN_SPAN {
        return path;
    }
    let mut end = MAX_PATH_IN_SPAN;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Client-side layer: every outgoing request carries the current span's trace context.
///
/// ```text
/// let channel = tower::ServiceBuilder::new()
///     .layer(InjectTraceContextLayer)
///     .service(endpoint.connect().await?);
/// let client = VerifierServiceClient::new(channel);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct InjectTraceContextLayer;

impl<S> Layer<S> for InjectTraceContextLayer {
    type Service = InjectTraceContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InjectTraceContext { inner }
    }
}

/// See [`InjectTraceContextLayer`]. The span read is the one current when the call is
/// made, i.e. the caller's.
#[derive(Debug, Clone)]
pub struct InjectTraceContext<S> {
    inner: S,
}

impl<S> InjectTraceContext<S> {
    /// Wraps a client service (typically a `tonic::transport::Channel`).
    pub fn new(inner: S) -> Self {
        InjectTraceContext { inner }
    }
}

impl<S, B> Service<http::Request<B>> for InjectTraceContext<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        inject(&tracing::Span::current(), request.headers_mut());
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_a_valid_traceparent() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let context = extract(&headers);
        let span = context.span();
        let span_context = span.span_context();
        assert!(span_context.is_valid());
        assert!(span_context.is_remote());
        assert_eq!(
            span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn ignores_garbage() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", http::HeaderValue::from_static("not-a-trace"));
        assert!(!extract(&headers).span().span_context().is_valid());
    }

    #[test]
    fn long_paths_are_cut_on_a_char_boundary() {
        let path = "é".repeat(100);
        let cut = bounded(&path);
        assert!(cut.len() <= MAX_PATH_IN_SPAN);
        assert!(path.starts_with(cut));
    }
}
