//! Trace context crosses a real tonic call: the server's request span is the child of the
//! caller's span, through the `traceparent` header and nothing else.
//!
//! Client and server share one process here, so the test also makes a call *without* the
//! injecting layer and checks that its server span is a root: the link must come from the
//! header, not from the two spans happening to live in the same process.

mod common;

use citypass_runtime::{InjectTraceContextLayer, Server, ServerConfig, telemetry};
use common::start;
use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::Layer;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const CHECK_SPAN: &str = "grpc.health.v1.Health/Check";

// One thread, so the subscriber installed with `set_default` sees the server's tasks too.
#[tokio::test(flavor = "current_thread")]
async fn the_server_span_is_a_child_of_the_callers_span() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    // A log filter of `warn` must not switch off the (INFO) request spans.
    let subscriber =
        telemetry::subscriber("warn", citypass_runtime::config::LogFormat::Text, &provider)
            .expect("subscriber");
    let _installed = tracing::subscriber::set_default(subscriber);

    let server = start(Server::new(ServerConfig::new("trace-test"))).await;
    let channel = server.channel().await;

    // Linked: the caller injects its span's context.
    let caller = tracing::info_span!("gate.scan");
    let mut client = HealthClient::new(InjectTraceContextLayer.layer(channel.clone()));
    client
        .check(HealthCheckRequest::default())
        .instrument(caller.clone())
        .await
        .expect("check");
    let caller_context = caller.context().span().span_context().clone();
    assert!(caller_context.is_valid(), "the caller span is traced");
    drop(caller);

    // Unlinked: same process, same kind of span around the call, but no injection.
    let bystander = tracing::info_span!("no.propagation");
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .instrument(bystander.clone())
        .await
        .expect("check");
    drop(bystander);

    server.stop().await.expect("clean stop");
    provider.force_flush().expect("flush");
    let spans = exporter.get_finished_spans().expect("spans");

    let server_spans: Vec<&SpanData> = spans.iter().filter(|s| s.name == CHECK_SPAN).collect();
    assert_eq!(
        server_spans.len(),
        2,
        "one server span per call: {spans:#?}"
    );
    let linked = server_spans
        .iter()
        .find(|s| s.span_context.trace_id() == caller_context.trace_id())
        .expect("a server span in the caller's trace");
    assert_eq!(linked.parent_span_id, caller_context.span_id());
    assert!(
        linked.parent_span_is_remote,
        "the parent came over the wire"
    );
    assert_eq!(linked.span_kind, SpanKind::Server);

    let unlinked = server_spans
        .iter()
        .find(|s| s.span_context.trace_id() != caller_context.trace_id())
        .expect("the second call's span");
    assert_eq!(unlinked.parent_span_id, SpanId::INVALID, "a root span");

    // Only the RPC's identity is recorded: no metadata, no message contents, and not
    // the span's own ids either (the JSON log layer reads those when it writes a line).
    for attribute in &linked.attributes {
        let key = attribute.key.as_str();
        assert!(
            key.starts_with("rpc.")
                || key.starts_with("code.")
                || key.starts_with("thread.")
                || key == "target"
                || key == "level"
                || key == "busy_ns"
                || key == "idle_ns",
            "unexpected span attribute {key}"
        );
    }
}

/// A log writer that keeps what it is given.
#[derive(Clone, Default)]
struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut kept) = self.0.lock() {
            kept.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;

    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

#[test]
fn json_log_lines_carry_the_calls_trace_id() {
    let provider = SdkTracerProvider::builder().build();
    let buffer = Buffer::default();
    let subscriber = telemetry::subscriber_writing(
        "info",
        citypass_runtime::config::LogFormat::Json,
        &provider,
        buffer.clone(),
    )
    .expect("subscriber");
    let (trace_id, span_id) = tracing::subscriber::with_default(subscriber, || {
        let request = http::Request::builder()
            .uri("/citypass.v1.IssuerService/IssueToken")
            .body(())
            .expect("request");
        let span = citypass_runtime::trace_context::server_span(&request);
        let ids = span.context().span().span_context().clone();
        let _entered = span.enter();
        tracing::info!(decision = "refused", "a line inside the call");
        (ids.trace_id().to_string(), ids.span_id().to_string())
    });
    let text = String::from_utf8(buffer.0.lock().expect("buffer").clone()).expect("UTF-8");
    let line: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("one line")).expect("JSON");
    assert_eq!(line["message"], "a line inside the call", "{line}");
    assert_eq!(line["decision"], "refused", "{line}");
    assert_eq!(
        line["openTelemetry"]["traceId"],
        trace_id.as_str(),
        "{line}"
    );
    assert_eq!(line["openTelemetry"]["spanId"], span_id.as_str(), "{line}");
    assert_eq!(line["span"]["rpc.method"], "IssueToken", "{line}");
    assert_eq!(trace_id.len(), 32);
    // Read when the line is written, not recorded on the span: a call that logs
    // nothing pays nothing for them.
    assert!(line["span"].get("trace_id").is_none(), "{line}");
}
