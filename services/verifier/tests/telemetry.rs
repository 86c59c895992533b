//! One scan, one trace, no personal data: a gate's scan (its trace context injected as
//! W3C `traceparent`) is decided in a `verify` span inside the gate's trace, carrying
//! the gate, scene, decision and reason; no exported span and no log line (JSON, at
//! debug) carries the code's text, its ids or the subject. It installs the process-wide
//! subscriber, so it is a test binary (a process) of its own.

// The service tests' harness; this test uses only part of it.
#[path = "service/support.rs"]
#[allow(dead_code)]
mod support;

use citypass_proto::v1 as pb;
use citypass_runtime::config::LogFormat;
use citypass_token::Scopes;
use opentelemetry::trace::TraceId;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

use support::{Harness, allowed, denied, request};

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

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A Verify call inside the gate's trace.
fn traced(request: pb::VerifyRequest) -> tonic::Request<pb::VerifyRequest> {
    let mut call = tonic::Request::new(request);
    call.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-00f067aa0ba902b7-01")
            .parse()
            .expect("metadata"),
    );
    call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_scan_is_one_trace_and_nothing_personal_is_recorded() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let logs = Buffer::default();
    let subscriber = citypass_runtime::telemetry::subscriber_writing(
        "debug",
        LogFormat::Json,
        &provider,
        logs.clone(),
    )
    .expect("subscriber");
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let mut h = Harness::start().await;
    let mut metro = h.gate("metro-entry-1");
    let m = pb::Scene::Metro;
    let code = h.code(Scopes::all());
    let response = metro
        .verify(traced(request("metro-entry-1", m, "scan-1", &code.text)))
        .await
        .expect("an answer")
        .into_inner();
    allowed(&response);
    let again = metro
        .verify(traced(request("metro-entry-1", m, "scan-2", &code.text)))
        .await
        .expect("an answer")
        .into_inner();
    assert_eq!(denied(&again), pb::DenyReason::Replayed);
    // A refused code on a failing replay store logs a warning: it too must be clean.
    h.redis.stop();
    let other = h.code(Scopes::all());
    let unavailable = metro
        .verify(traced(request("metro-entry-1", m, "scan-3", &other.text)))
        .await
        .expect("an answer")
        .into_inner();
    assert_eq!(denied(&unavailable), pb::DenyReason::ServiceUnavailable);

    provider.force_flush().expect("flush");
    let spans = exporter.get_finished_spans().expect("spans");
    let verify_spans: Vec<_> = spans.iter().filter(|s| s.name == "verify").collect();
    assert_eq!(
        verify_spans.len(),
        3,
        "one verify span per scan: {spans:#?}"
    );
    let trace_id = TraceId::from_hex(TRACE_ID).expect("trace id");
    for span in &verify_spans {
        assert_eq!(
            span.span_context.trace_id(),
            trace_id,
            "the decision is in the gate's trace"
        );
        let attribute = |key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(attribute("gate.id").as_deref(), Some("metro-entry-1"));
        assert_eq!(attribute("scene").as_deref(), Some("metro"));
        assert!(attribute("decision").is_some(), "{span:?}");
    }
    let parent = spans
        .iter()
        .find(|s| s.span_context.span_id() == verify_spans[0].parent_span_id)
        .expect("the verify span's parent is exported");
    assert_eq!(parent.name, "citypass.v1.VerifierService/Verify");

    // Nothing personal anywhere: not the code's text (nor a stretch of it), its ids,
    // or the subject (the harness seals subject 0909…).
    let logged = String::from_utf8(logs.0.lock().expect("logs").clone()).expect("UTF-8");
    assert!(
        logged.contains("replay store"),
        "the warning was logged: {logged}"
    );
    let recorded = format!("{spans:?}\n{logged}");
    let forbidden = [
        code.text[4..40].to_owned(),
        other.text[4..40].to_owned(),
        hex::encode(code.cti),
        hex::encode(other.cti),
        hex::encode([9u8; 16]),
    ];
    for needle in &forbidden {
        assert!(!recorded.contains(needle.as_str()), "{needle} was recorded");
    }
}
