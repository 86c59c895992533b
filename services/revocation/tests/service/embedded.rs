//! Embedded mode (the in-memory log, the in-process fan-out): late certificates are
//! swept, and a fan-out that fails never fails a revocation.

use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

use citypass_revocation::TargetKind;
use citypass_revocation_service::{
    LocalPublisher, MemoryLog, PublishError, Publisher, Record, Settings,
};

use crate::support::{
    FakeDirectory, certificate, dev_snapshot_key, list_all, now, random_id, revoke, serve,
    test_settings,
};

/// A fan-out that always fails.
struct BrokenPublisher;

impl Publisher for BrokenPublisher {
    fn publish<'a>(&'a self, _records: &'a [Record]) -> BoxFuture<'a, Result<(), PublishError>> {
        Box::pin(std::future::ready(Err(PublishError::Timeout(
            Duration::from_millis(1),
        ))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_mode_sweeps_late_certificates_and_survives_a_broken_fanout() {
    // Embedded backends: the in-memory log and the in-process fan-out.
    let local = LocalPublisher::new(64);
    let mut fanned_out = local.subscribe();
    let directory = Arc::new(FakeDirectory::default());
    let settings = Settings {
        cascade_sweep_delay: Duration::from_millis(300),
        ..test_settings()
    };
    let mut running = serve(
        Arc::new(MemoryLog::new()),
        Arc::new(local),
        directory.clone(),
        &dev_snapshot_key(),
        settings,
    )
    .await;
    let t = now();
    let device = random_id();
    directory.put(&device, vec![certificate(1, t - 10, t + 600)]);
    let response = running
        .client
        .revoke(revoke(TargetKind::Device, &device))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.cascaded.len(), 1);
    // The issuer certified one more before it heard of the revocation.
    directory.put(
        &device,
        vec![certificate(1, t - 10, t + 600), certificate(2, t, t + 600)],
    );
    // The sweep runs 300 ms after the revocation: wait for its entry, however long
    // a loaded machine takes (no fixed sleep).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (entries, head) = loop {
        let (entries, head) = list_all(&mut running.client).await;
        if head >= 3 {
            break (entries, head);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sweep did not revoke the late certificate (head {head})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(head, 3);
    assert_eq!(entries[2].target_id, hex::encode([2; 16]));
    assert!(entries[2].note.contains("epoch 1"));
    for epoch in 1..=3 {
        assert_eq!(fanned_out.recv().await.unwrap().epoch, epoch);
    }

    // A fan-out that fails never fails the revocation; it is counted.
    let mut broken = serve(
        Arc::new(MemoryLog::new()),
        Arc::new(BrokenPublisher),
        Arc::new(FakeDirectory::default()),
        &dev_snapshot_key(),
        test_settings(),
    )
    .await;
    broken
        .client
        .revoke(revoke(TargetKind::Token, &random_id()))
        .await
        .expect("the log is the truth, not the stream");
    assert_eq!(broken.revocations.fanout_stats().failed(), 1);
    assert_eq!(broken.revocations.fanout_stats().published(), 0);
}
