//! The verifier's metrics, exported for real: a global meter provider with an
//! in-memory exporter (what `citypass_runtime::telemetry::init` installs, with OTLP in
//! place of memory), scans through the running service, collection forced with
//! `force_flush`. It installs the process-wide meter provider, so it is a test binary
//! (a process) of its own.

// The service tests' harness; this test uses only part of it.
#[path = "service/support.rs"]
#[allow(dead_code)]
mod support;

use citypass_proto::v1 as pb;
use citypass_token::Scopes;
use citypass_verifier::metrics::{BATCHED_SIGNATURES, DECISION_DURATION, DECISIONS, FAIL_OPEN};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

use support::{Harness, allowed, denied, request, verify};

/// A counter's value for the data point with exactly these attributes.
fn counted(metrics: &ResourceMetrics, name: &str, want: &[(&str, &str)]) -> Option<u64> {
    metrics
        .scope_metrics()
        .flat_map(|scope| scope.metrics())
        .filter(|metric| metric.name() == name)
        .find_map(|metric| match metric.data() {
            AggregatedMetrics::U64(MetricData::Sum(sum)) => sum.data_points().find_map(|p| {
                let mut attributes: Vec<(String, String)> = p
                    .attributes()
                    .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                    .collect();
                attributes.sort();
                let mut want: Vec<(String, String)> = want
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                want.sort();
                (attributes == want).then(|| p.value())
            }),
            _ => None,
        })
}

/// How many durations the histogram recorded, over all its points.
fn recorded(metrics: &ResourceMetrics, name: &str) -> u64 {
    metrics
        .scope_metrics()
        .flat_map(|scope| scope.metrics())
        .filter(|metric| metric.name() == name)
        .map(|metric| match metric.data() {
            AggregatedMetrics::F64(MetricData::Histogram(histogram)) => {
                histogram.data_points().map(|p| p.count()).sum::<u64>()
            }
            other => panic!("{name} is not an f64 histogram: {other:?}"),
        })
        .sum::<u64>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_are_counted_by_scene_decision_and_reason() {
    let exporter = InMemoryMetricExporter::default();
    let reader = PeriodicReader::builder(exporter.clone()).build();
    let provider = SdkMeterProvider::builder().with_reader(reader).build();
    opentelemetry::global::set_meter_provider(provider.clone());

    let mut h = Harness::start().await;
    let mut metro = h.gate("metro-entry-1");
    let m = pb::Scene::Metro;
    let code = h.code(Scopes::all());
    allowed(&verify(&mut metro, request("metro-entry-1", m, "s-1", &code.text)).await);
    let again = verify(&mut metro, request("metro-entry-1", m, "s-2", &code.text)).await;
    assert_eq!(denied(&again), pb::DenyReason::Replayed);
    let retry = verify(&mut metro, request("metro-entry-1", m, "s-1", &code.text)).await;
    assert!(retry.idempotent_replay);
    // A stream of scans sent at once (one HTTP/2 frame holds many): the scans waiting
    // together have their signatures decided as batches, counted by outcome.
    let batched: Vec<_> = (0..20)
        .map(|n| pb::VerifyStreamRequest {
            request: Some(request(
                "metro-entry-1",
                m,
                &format!("b-{n}"),
                &h.code(Scopes::all()).text,
            )),
        })
        .collect();
    let mut responses = metro
        .verify_stream(futures::stream::iter(batched))
        .await
        .expect("the stream opens")
        .into_inner();
    let mut answered = 0;
    while let Some(message) = responses.message().await.expect("a message") {
        assert!(message.response.is_some(), "{message:?}");
        answered += 1;
    }
    assert_eq!(answered, 20);
    // Redis stopped: the scenic gate (fail open in the harness) allows, counted.
    h.redis.stop();
    let mut scenic = h.gate("scenic-1");
    let visitor = h.code(Scopes::all());
    let opened = verify(
        &mut scenic,
        request("scenic-1", pb::Scene::Scenic, "p-1", &visitor.text),
    )
    .await;
    allowed(&opened);
    assert!(opened.fail_open);

    let exported = tokio::task::spawn_blocking(move || {
        provider.force_flush().expect("force_flush");
        exporter.get_finished_metrics().expect("finished metrics")
    })
    .await
    .expect("flush task");
    let last = exported.last().expect("one collection exported");
    let point = |decision, reason, replay| {
        counted(
            last,
            DECISIONS,
            &[
                ("scene", "metro"),
                ("decision", decision),
                ("reason", reason),
                ("idempotent_replay", replay),
            ],
        )
    };
    assert_eq!(point("allow", "none", "false"), Some(1 + 20));
    assert_eq!(point("deny", "replayed", "false"), Some(1));
    assert_eq!(point("allow", "none", "true"), Some(1));
    assert_eq!(recorded(last, DECISION_DURATION), 4 + 20);
    let passed = counted(last, BATCHED_SIGNATURES, &[("outcome", "passed")]).unwrap_or(0);
    assert!(passed >= 2, "some of the 20 were batched: {passed}");
    assert!(passed <= 20);
    assert_eq!(
        counted(last, BATCHED_SIGNATURES, &[("outcome", "fell_back")]),
        None
    );
    assert_eq!(counted(last, FAIL_OPEN, &[("scene", "scenic")]), Some(1));
    assert_eq!(counted(last, FAIL_OPEN, &[("scene", "metro")]), None);
}
