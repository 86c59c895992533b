//! The uploaded-taps counter, exported for real (an in-memory exporter behind the
//! process-wide meter provider, so a test binary of its own): every pass-on of an
//! uploaded transit scan is counted by its result, a rejected one too (security review
//! of late taps, finding 8: a rejection is final while the mark is spent, so operators
//! must see it).

#[path = "service/support.rs"]
#[allow(dead_code)]
mod support;

use citypass_proto::v1::{self as pb, UploadOfflineScansRequest};
use citypass_token::{Scopes, unix_now};
use citypass_verifier::metrics::UPLOADED_TAPS;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

use support::Harness;

/// The counter's value for the point with exactly `scene` and `result`.
fn taps(metrics: &ResourceMetrics, scene: &str, result: &str) -> Option<u64> {
    metrics
        .scope_metrics()
        .flat_map(|scope| scope.metrics())
        .filter(|metric| metric.name() == UPLOADED_TAPS)
        .find_map(|metric| match metric.data() {
            AggregatedMetrics::U64(MetricData::Sum(sum)) => sum.data_points().find_map(|p| {
                let mut attributes: Vec<(String, String)> = p
                    .attributes()
                    .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                    .collect();
                attributes.sort();
                let want = vec![
                    ("result".to_owned(), result.to_owned()),
                    ("scene".to_owned(), scene.to_owned()),
                ];
                (attributes == want).then(|| p.value())
            }),
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_tap_finding_8_rejected_pass_ons_are_counted_by_result() {
    let exporter = InMemoryMetricExporter::default();
    let reader = PeriodicReader::builder(exporter.clone()).build();
    let provider = SdkMeterProvider::builder().with_reader(reader).build();
    opentelemetry::global::set_meter_provider(provider.clone());

    let h = Harness::start().await;
    let now = unix_now();
    let (signer, _) = h.offline_signer(Scopes::all());
    let mut bus = h.gate("bus-12");
    let mut upload = async |scan_id: &str, counter: u64| {
        let code = signer.make_code(now - 30, 60, counter, &h.rng).unwrap();
        bus.upload_offline_scans(UploadOfflineScansRequest {
            gate_id: "bus-12".to_owned(),
            scene: pb::Scene::Bus as i32,
            scans: vec![pb::OfflineScan {
                scan_id: scan_id.to_owned(),
                qr_text: code,
                scanned_at: Some(citypass_proto::time::timestamp(now - 20)),
                ..pb::OfflineScan::default()
            }],
        })
        .await
        .expect("an upload is answered")
        .into_inner()
        .results
        .remove(0)
    };
    let recorded = upload("m-1", 3).await;
    assert_eq!(recorded.tap, pb::OfflineTapOutcome::Recorded as i32);
    h.transit.fail(citypass_verifier::TransitError::Rejected {
        reason: "UNKNOWN_ROUTE".to_owned(),
    });
    for (scan_id, counter) in [("m-2", 4), ("m-3", 5)] {
        let rejected = upload(scan_id, counter).await;
        assert_eq!(rejected.tap, pb::OfflineTapOutcome::Rejected as i32);
    }

    let exported = tokio::task::spawn_blocking(move || {
        provider.force_flush().expect("force_flush");
        exporter.get_finished_metrics().expect("finished metrics")
    })
    .await
    .expect("flush task");
    let last = exported.last().expect("one collection exported");
    assert_eq!(taps(last, "bus", "recorded"), Some(1));
    assert_eq!(taps(last, "bus", "rejected"), Some(2));
}
