//! What one Verify's spans cost the serving process, under each log layer.
//!
//! BENCHMARKS.md run 6 found `Span::record` 5 % of the verifier's CPU and the request
//! span 4 % (8 % of the issuer's): the JSON log layer of tracing-subscriber parses and
//! re-serialises a span's fields on every `record`, and a Verify made eight. This bench
//! plays exactly a Verify's spans — the request span from the gate's `traceparent`, the
//! scan's `verify` span inside it, the decision's fields, the status code — three ways in
//! one run:
//!
//! - `as_before`: tracing-subscriber's JSON layer, the trace and span ids recorded on the
//!   request span, each field recorded alone (the code before run 7);
//! - `in_use`: [`telemetry::subscriber_writing`] as every service installs it with
//!   `log_format: json`, [`trace_context::server_span`], fields recorded together
//!   ([`span_fields::record`]);
//! - `traces_only`: the same calls with the OpenTelemetry layer alone (no log layer), the
//!   least a traced call can cost.
//!
//! No log line is written (a Verify logs none at `info`), so this is the spans' own cost.
//! Run: `cargo bench -p citypass-runtime --bench spans`.

use std::hint::black_box;

use citypass_runtime::config::LogFormat;
use citypass_runtime::{span_fields, telemetry, trace_context};
use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::{Layer as _, fmt};

fn request() -> http::Request<()> {
    http::Request::builder()
        .uri("/citypass.v1.VerifierService/Verify")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(())
        .expect("request")
}

/// The scan's span, as the verifier opens it.
fn scan_span() -> tracing::Span {
    tracing::info_span!(
        "verify",
        gate.id = "bus-1",
        scene = Empty,
        decision = Empty,
        reason = Empty,
        idempotent_replay = Empty,
    )
}

/// A Verify's spans as the code before run 7 made them.
fn call_as_before(request: &http::Request<()>) {
    let path = request.uri().path().trim_start_matches('/');
    let (service, method) = path.split_once('/').unwrap_or((path, ""));
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = %path,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = Empty,
        otel.status_code = Empty,
        trace_id = Empty,
        span_id = Empty,
    );
    let _ = span.set_parent(trace_context::extract(request.headers()));
    let ids = span.context().span().span_context().clone();
    if ids.is_valid() {
        span.record("trace_id", ids.trace_id().to_string());
        span.record("span_id", ids.span_id().to_string());
    }
    let _call = span.enter();
    let scan = scan_span();
    {
        let _scan = scan.enter();
        scan.record("scene", "transit");
        scan.record("decision", "allow");
        scan.record("idempotent_replay", false);
    }
    drop(scan);
    span.record("rpc.grpc.status_code", 0);
}

/// A Verify's spans as the code makes them now.
fn call_in_use(request: &http::Request<()>) {
    let span = trace_context::server_span(request);
    let _call = span.enter();
    let scan = scan_span();
    {
        let _scan = scan.enter();
        scan.record("scene", "transit");
        span_fields::record(
            &scan,
            [
                ("decision", Some(&"allow")),
                ("reason", None),
                ("idempotent_replay", Some(&false)),
            ],
        );
    }
    drop(scan);
    span_fields::record(
        &span,
        [
            ("rpc.grpc.status_code", Some(&0)),
            ("otel.status_code", None),
        ],
    );
}

fn spans(c: &mut Criterion) {
    let provider = SdkTracerProvider::builder().build();
    let request = request();
    let mut group = c.benchmark_group("verify_spans");

    let before = tracing_subscriber::registry()
        .with(
            fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(std::io::sink)
                .with_filter(EnvFilter::new("info")),
        )
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("bench"))
                .with_filter(LevelFilter::INFO),
        );
    tracing::subscriber::with_default(before, || {
        group.bench_function("as_before", |b| {
            b.iter(|| call_as_before(black_box(&request)))
        });
    });

    let in_use = telemetry::subscriber_writing("info", LogFormat::Json, &provider, std::io::sink)
        .expect("subscriber");
    tracing::subscriber::with_default(in_use, || {
        group.bench_function("in_use", |b| b.iter(|| call_in_use(black_box(&request))));
    });

    let traces_only = tracing_subscriber::registry().with(
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("bench"))
            .with_filter(LevelFilter::INFO),
    );
    tracing::subscriber::with_default(traces_only, || {
        group.bench_function("traces_only", |b| {
            b.iter(|| call_in_use(black_box(&request)))
        });
    });
    group.finish();
}

criterion_group!(benches, spans);
criterion_main!(benches);
