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
    let subscriber = telemetry::subscriber("warn", &provider).expect("subscriber");
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

    // Only the RPC's identity is recorded: no metadata, no message contents.
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
