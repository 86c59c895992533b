//! OTLP export end to end: spans and metrics reach a (fake) collector over gRPC.
//!
//! This is the path that fails silently when wired wrong: the SDK's batch processor runs
//! exports on its own thread, and a tonic exporter built outside a tokio runtime panics
//! there ("no reactor running") while the service keeps running without traces.

use std::sync::{Arc, Mutex};

use citypass_runtime::telemetry;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
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

#[derive(Clone, Default)]
struct MetricsCollector {
    received: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
}

#[tonic::async_trait]
impl MetricsService for MetricsCollector {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        if let Ok(mut received) = self.received.lock() {
            received.push(request.into_inner());
        }
        Ok(Response::new(ExportMetricsServiceResponse::default()))
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
    let subscriber =
        telemetry::subscriber("off", citypass_runtime::config::LogFormat::Text, &provider)
            .expect("subscriber");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exported_to_the_configured_endpoint() {
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};

    let collector = MetricsCollector::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(MetricsServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );

    let provider =
        telemetry::meter_provider("otlp-test", Some(&format!("http://{addr}"))).expect("provider");
    let _gauge = provider
        .meter("otlp-test")
        .u64_observable_gauge("otlp.test.gauge")
        .with_callback(|observer| observer.observe(42, &[]))
        .build();

    // Shutdown collects, exports and waits for the export this runtime completes.
    let shut = tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .expect("shutdown task");
    assert!(shut.is_ok(), "{shut:?}");

    let received = collector.received.lock().expect("lock").clone();
    let values: Vec<_> = received
        .iter()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .filter(|m| m.name == "otlp.test.gauge")
        .filter_map(|m| match &m.data {
            Some(Data::Gauge(gauge)) => Some(gauge),
            _ => None,
        })
        .flat_map(|gauge| &gauge.data_points)
        .filter_map(|point| point.value)
        .collect();
    assert_eq!(
        values,
        [number_data_point::Value::AsInt(42)],
        "collector got {received:?}"
    );
}

#[test]
fn metrics_need_a_runtime_only_to_export() {
    let outside = telemetry::meter_provider("x", Some("http://127.0.0.1:4317"));
    assert!(
        matches!(outside, Err(telemetry::TelemetryError::NoRuntime)),
        "{outside:?}"
    );
    // Without an endpoint: no reader, no runtime needed, shutdown is clean.
    let local = telemetry::meter_provider("x", None).expect("provider");
    assert!(local.shutdown().is_ok());
}
