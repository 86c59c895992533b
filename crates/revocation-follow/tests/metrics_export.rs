//! The follower's OpenTelemetry metrics, exported for real: a global meter provider with
//! an in-memory exporter (what `citypass_runtime::telemetry::init` installs, with OTLP in
//! place of memory), a follower against the revocation service on loopback, collection
//! forced with `force_flush`. It installs the process-wide meter provider, so it gets a
//! test binary (a process) of its own.

mod support;

use std::time::Duration;

use citypass_revocation_follow::metric_names::{
    AGE, ENTRIES_APPLIED, EPOCH, GAPS, REDIS_ERRORS, RESYNCS, SOURCE_ATTRIBUTE, STREAM_MESSAGES,
};
use citypass_revocation_follow::{Follower, Source};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use support::{
    follower_config, head, postgres_log, redis_publisher, redis_source, revoke_token, serve,
    service_settings, stream_key,
};

const WAIT: Duration = Duration::from_secs(10);

/// One data point: its value and its attributes (key, value).
#[derive(Debug, Clone, PartialEq)]
struct Point {
    value: f64,
    attributes: Vec<(String, String)>,
}

/// The installed provider and the exporter behind it.
struct Metrics {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

impl Metrics {
    fn install() -> Self {
        let exporter = InMemoryMetricExporter::default();
        // The default interval (60 s) never fires within the test: only flushes export.
        let reader = PeriodicReader::builder(exporter.clone()).build();
        let provider = SdkMeterProvider::builder().with_reader(reader).build();
        opentelemetry::global::set_meter_provider(provider.clone());
        Metrics { provider, exporter }
    }

    /// Collects now; returns the data points of metric `name` with `source=<source>`.
    async fn collect(&self, name: &str, source: &str) -> Vec<Point> {
        self.collect_all(name)
            .await
            .into_iter()
            .filter(|point| {
                point
                    .attributes
                    .contains(&(SOURCE_ATTRIBUTE.to_owned(), source.to_owned()))
            })
            .collect()
    }

    /// Collects now; returns every data point of metric `name`.
    async fn collect_all(&self, name: &str) -> Vec<Point> {
        let (provider, exporter) = (self.provider.clone(), self.exporter.clone());
        let exported = tokio::task::spawn_blocking(move || {
            exporter.reset();
            provider.force_flush().expect("force_flush");
            exporter.get_finished_metrics().expect("finished metrics")
        })
        .await
        .expect("flush task");
        let last = exported.last().expect("one collection exported");
        points(last, name)
    }
}

fn points(metrics: &ResourceMetrics, name: &str) -> Vec<Point> {
    fn attributes<'a>(
        kvs: impl Iterator<Item = &'a opentelemetry::KeyValue>,
    ) -> Vec<(String, String)> {
        kvs.map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect()
    }
    fn of<T: AsF64>(data: &MetricData<T>) -> Vec<Point> {
        match data {
            MetricData::Gauge(gauge) => gauge
                .data_points()
                .map(|p| Point {
                    value: p.value().as_f64(),
                    attributes: attributes(p.attributes()),
                })
                .collect(),
            MetricData::Sum(sum) => {
                assert!(sum.is_monotonic(), "counters are monotonic");
                sum.data_points()
                    .map(|p| Point {
                        value: p.value().as_f64(),
                        attributes: attributes(p.attributes()),
                    })
                    .collect()
            }
            other => panic!("unexpected aggregation {other:?}"),
        }
    }
    metrics
        .scope_metrics()
        .flat_map(|scope| scope.metrics())
        .filter(|metric| metric.name() == name)
        .flat_map(|metric| match metric.data() {
            AggregatedMetrics::F64(data) => of(data),
            AggregatedMetrics::U64(data) => of(data),
            AggregatedMetrics::I64(_) => panic!("{name}: no i64 instruments expected"),
        })
        .collect()
}

/// A data point's value as `f64` (epochs and counts in a test stay far below 2^53).
trait AsF64: Copy + std::fmt::Debug {
    fn as_f64(self) -> f64;
}

impl AsF64 for u64 {
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl AsF64 for f64 {
    fn as_f64(self) -> f64 {
        self
    }
}

fn single(points: &[Point], what: &str) -> f64 {
    assert_eq!(points.len(), 1, "{what}: {points:?}");
    points[0].value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follower_exports_its_epoch_age_and_counters() {
    let metrics = Metrics::install();

    // A follower that never syncs (nothing listens there): an epoch, but no age at all.
    let never =
        Follower::connect("http://127.0.0.1:1", follower_config(Source::Watch)).expect("follower");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(never.age(), None);
    assert_eq!(
        single(&metrics.collect(EPOCH, "watch").await, "epoch before sync"),
        0.0
    );
    assert_eq!(
        metrics.collect_all(AGE).await,
        [],
        "no age before the first sync, not 0"
    );

    // The deployment path: PostgreSQL log, Redis Stream, List at start-up.
    let (log, _) = postgres_log().await;
    let key = stream_key();
    let redis_url = citypass_testkit::redis_url();
    let publisher = redis_publisher(&redis_url, &key).await;
    let service = serve(log, publisher, service_settings()).await;
    let client = &mut service.client.clone();
    for _ in 0..2 {
        revoke_token(client).await;
    }
    let follower = service.follow(follower_config(redis_source(&redis_url, &key)));
    tokio::time::timeout(WAIT, follower.wait_for_epoch(head(client).await))
        .await
        .expect("start-up resync");
    // Live entries, through the stream.
    let mut last = 0;
    for _ in 0..3 {
        last = revoke_token(client).await.1;
    }
    tokio::time::timeout(WAIT, follower.wait_for_epoch(last))
        .await
        .expect("stream");
    tokio::time::timeout(WAIT, follower.wait_synced())
        .await
        .expect("synced");

    let epoch = single(&metrics.collect(EPOCH, "redis").await, EPOCH);
    assert_eq!(epoch, follower.epoch() as f64);
    assert_eq!(epoch, last as f64);
    let age = single(&metrics.collect(AGE, "redis").await, AGE);
    // Generous: the follower hears from Redis every `block` (200 ms here).
    assert!((0.0..5.0).contains(&age), "age {age}");

    let snapshot = follower.metrics();
    assert_eq!(
        single(
            &metrics.collect(ENTRIES_APPLIED, "redis").await,
            ENTRIES_APPLIED
        ),
        snapshot.entries_applied as f64,
        "{snapshot:?}"
    );
    assert!(snapshot.entries_applied >= 5, "{snapshot:?}");
    assert!(single(&metrics.collect(RESYNCS, "redis").await, RESYNCS) >= 1.0);
    assert!(
        single(
            &metrics.collect(STREAM_MESSAGES, "redis").await,
            STREAM_MESSAGES
        ) >= 3.0
    );
    // Present, whatever their value (a gap may open if two appends race).
    single(&metrics.collect(GAPS, "redis").await, GAPS);
    single(&metrics.collect(REDIS_ERRORS, "redis").await, REDIS_ERRORS);
    assert_eq!(
        metrics.collect(REDIS_ERRORS, "watch").await,
        [],
        "Redis only"
    );

    // Every attribute on every instrument is `source`: nothing personal.
    for name in [
        EPOCH,
        AGE,
        ENTRIES_APPLIED,
        RESYNCS,
        STREAM_MESSAGES,
        GAPS,
        REDIS_ERRORS,
    ] {
        for point in metrics.collect_all(name).await {
            let keys: Vec<_> = point.attributes.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, [SOURCE_ATTRIBUTE], "{name}: {point:?}");
        }
    }

    // A follower that is gone (with its views) is observed no more.
    drop(never);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !metrics.collect(EPOCH, "watch").await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "still observed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
