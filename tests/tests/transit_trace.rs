//! One scan, one trace across services: a gate's scan at a metro entry (its trace
//! context sent as W3C `traceparent`) is decided in the verifier's `verify` span, and
//! payments' TapIn for it is served inside the same trace, below the verifier's call.
//! It installs the process-wide subscriber, so it is a test binary of its own.

use citypass_e2e::{TestStack, dev_ring, link_sandbox, online_code, scan, within};
use citypass_proto::v1 as pb;
use citypass_runtime::config::LogFormat;
use opentelemetry::trace::TraceId;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transit_scan_is_one_trace_through_the_verifier_and_payments() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = citypass_runtime::telemetry::subscriber_writing(
        "info",
        LogFormat::Json,
        &provider,
        std::io::sink,
    )
    .expect("subscriber");
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let t = TestStack::with_ring(&dev_ring()).await;
    let mut app = t.citizen("Wang Fang").await;
    link_sandbox(&mut app, "agr_sandbox_trace").await;
    let code = online_code(&mut app).await;
    let mut call = tonic::Request::new(scan("metro-entry-1", pb::Scene::Metro, "trace-1", &code));
    call.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-b7ad6b7169203331-01")
            .parse()
            .expect("metadata"),
    );
    let mut gate = t.verifier("metro-entry-1").await;
    let answer = within("verify", gate.verify(call))
        .await
        .expect("an answer")
        .into_inner();
    assert_eq!(answer.decision(), pb::Decision::Allow, "{answer:?}");

    provider.force_flush().expect("flush");
    let spans = exporter.get_finished_spans().expect("spans");
    let trace_id = TraceId::from_hex(TRACE_ID).expect("trace id");
    let in_trace: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_context.trace_id() == trace_id)
        .collect();
    let named = |name: &str| {
        in_trace
            .iter()
            .find(|s| s.name == name)
            .copied()
            .unwrap_or_else(|| panic!("no {name} span in the gate's trace: {in_trace:#?}"))
    };
    let verify = named("verify");
    let tap_in = named("citypass.v1.PaymentsService/TapIn");
    // The TapIn server span descends from the verifier's decision.
    let mut parent = tap_in.parent_span_id;
    let mut steps = 0;
    while parent != verify.span_context.span_id() {
        let Some(up) = in_trace.iter().find(|s| s.span_context.span_id() == parent) else {
            panic!("TapIn's ancestry leaves the trace before the verify span: {in_trace:#?}");
        };
        parent = up.parent_span_id;
        steps += 1;
        assert!(steps < 16, "no way up to the verify span");
    }
}
