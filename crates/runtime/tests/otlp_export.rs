//! OTLP export end to end: spans reach a (fake) collector over gRPC.
//!
//! This is the path that fails silently when wired wrong: the SDK's batch processor runs
//! exports on its own thread, and a tonic exporter built outside a tokio runtime panics
//! there ("no reactor running") while the service keeps running without traces.

use std::sync::{Arc, Mutex};

use citypass_runtime::telemetry;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

#[derive(Clone, Default)]
struct Collector {
    received: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        if let Ok(mut received) = self.received.lock() {
            received.push(request.into_inner());
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_to_the_configured_endpoint() {
    let collector = Collector::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );

    let provider =
        telemetry::tracer_provider("otlp-test", Some(&format!("http://{addr}"))).expect("provider");
    let subscriber = telemetry::subscriber("off", &provider).expect("subscriber");
    tracing::subscriber::with_default(subscriber, || {
        let _span = tracing::info_span!("exported.span").entered();
    });

    // Flushing blocks on the export, which this runtime's workers complete.
    let flushed = tokio::task::spawn_blocking(move || {
        let flushed = provider.force_flush();
        let _ = provider.shutdown();
        flushed
    })
    .await
    .expect("flush task");
    assert!(flushed.is_ok(), "{flushed:?}");

    let received = collector.received.lock().expect("lock").clone();
    let spans: Vec<_> = received
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect();
    assert!(
        spans.iter().any(|s| s.name == "exported.span"),
        "collector got {spans:?}"
    );
    let service_names: Vec<_> = received
        .iter()
        .flat_map(|r| &r.resource_spans)
        .filter_map(|rs| rs.resource.as_ref())
        .flat_map(|resource| &resource.attributes)
        .filter(|kv| kv.key == "service.name")
        .filter_map(|kv| kv.value.as_ref().and_then(|v| v.value.clone()))
        .collect();
    assert_eq!(service_names, [Value::StringValue("otlp-test".to_owned())]);
}

#[test]
fn export_needs_a_runtime_and_a_valid_endpoint() {
    let outside = telemetry::tracer_provider("x", Some("http://127.0.0.1:4317"));
    assert!(
        matches!(outside, Err(telemetry::TelemetryError::NoRuntime)),
        "{outside:?}"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bad = runtime.block_on(async { telemetry::tracer_provider("x", Some("not a uri")) });
    assert!(
        matches!(bad, Err(telemetry::TelemetryError::Exporter { .. })),
        "{bad:?}"
    );

    // Without an endpoint nothing is exported and no runtime is needed.
    assert!(telemetry::tracer_provider("x", None).is_ok());
}
