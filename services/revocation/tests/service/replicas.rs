//! Two replicas on one log: one epoch sequence, a watcher on one sees what the other
//! writes, and both sign identical snapshots.

use std::sync::Arc;

use citypass_proto::v1::{GetRevocationSnapshotRequest, WatchRevocationsRequest};
use citypass_revocation::TargetKind;
use citypass_revocation_service::PostgresLog;

use crate::support::{
    FakeDirectory, assert_contiguous, dev_snapshot_key, redis_publisher, revoke, serve,
    test_settings, watch_until, xrange,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_watches_what_another_replica_writes() {
    let (pool, _) = citypass_testkit::fresh_database().await;
    let log_a = Arc::new(PostgresLog::new(pool.clone()).await.unwrap());
    let log_b = Arc::new(PostgresLog::new(pool).await.unwrap());
    let stream_key = citypass_testkit::unique("citypass:test:revocation:");
    let snapshot_key = dev_snapshot_key();
    let directory = Arc::new(FakeDirectory::default());
    let mut a = serve(
        log_a,
        redis_publisher(&stream_key).await,
        directory.clone(),
        &snapshot_key,
        test_settings(),
    )
    .await;
    let mut b = serve(
        log_b,
        redis_publisher(&stream_key).await,
        directory,
        &snapshot_key,
        test_settings(),
    )
    .await;

    let mut watch = b
        .client
        .watch_revocations(WatchRevocationsRequest { since_epoch: 0 })
        .await
        .unwrap()
        .into_inner();
    for n in 0..5u8 {
        let cti = hex::encode([n; 16]);
        let client = if n % 2 == 0 {
            &mut a.client
        } else {
            &mut b.client
        };
        let entry = client
            .revoke(revoke(TargetKind::Token, &cti))
            .await
            .unwrap()
            .into_inner()
            .entry
            .unwrap();
        assert_eq!(entry.epoch, u64::from(n) + 1, "one log, one epoch sequence");
    }
    let watched = watch_until(&mut watch, 5).await;
    assert_contiguous(&watched, 0);
    let streamed: Vec<u64> = xrange(&stream_key)
        .await
        .iter()
        .map(|e| e.entry.epoch)
        .collect();
    assert_eq!(streamed, vec![1, 2, 3, 4, 5]);

    // Both replicas' snapshots are identical at the same epoch and time.
    let from_a = a
        .client
        .get_revocation_snapshot(GetRevocationSnapshotRequest::default())
        .await
        .unwrap()
        .into_inner();
    let from_b = b
        .client
        .get_revocation_snapshot(GetRevocationSnapshotRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(from_a.epoch, 5);
    assert_eq!(from_b.epoch, 5);
    let a_snapshot = citypass_revocation::Snapshot::decode(&from_a.snapshot).unwrap();
    let b_snapshot = citypass_revocation::Snapshot::decode(&from_b.snapshot).unwrap();
    assert_eq!(a_snapshot.entries, b_snapshot.entries);
}
