//! With PostgreSQL gone nothing is acknowledged: every RPC fails UNAVAILABLE, a
//! watcher is told its data is stale, and nothing more reaches the stream.

use std::sync::Arc;
use std::time::Duration;

use citypass_proto::v1::{
    GetRevocationSnapshotRequest, ListRevocationsRequest, ReinstateRequest, WatchRevocationsRequest,
};
use citypass_revocation::TargetKind;
use citypass_revocation_service::PostgresLog;
use tonic::Code;

use crate::support::{
    FakeDirectory, dev_snapshot_key, random_id, redis_publisher, revoke, serve, test_settings,
    watch_until, xrange,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unavailable_acknowledges_nothing() {
    let (pool, url) = citypass_testkit::fresh_database().await;
    pool.close().await;
    let log = Arc::new(PostgresLog::connect(&url, 4).await.unwrap());
    let stream_key = citypass_testkit::unique("citypass:test:revocation:");
    let mut running = serve(
        log.clone(),
        redis_publisher(&stream_key).await,
        Arc::new(FakeDirectory::default()),
        &dev_snapshot_key(),
        test_settings(),
    )
    .await;
    let client = &mut running.client;
    let first = client
        .revoke(revoke(TargetKind::Token, &random_id()))
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert_eq!(first.epoch, 1);
    let mut watch = client
        .watch_revocations(WatchRevocationsRequest { since_epoch: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(watch_until(&mut watch, 1).await.len(), 1);

    // The database goes away: its connections are terminated and it is dropped.
    let name = url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let admin_url = std::env::var(citypass_testkit::DATABASE_URL_VAR).unwrap();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
        .await
        .unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();

    for kind in [TargetKind::Token, TargetKind::Subject, TargetKind::Key] {
        let id = match kind {
            TargetKind::Key => "0123456789abcdef".to_owned(),
            _ => random_id(),
        };
        let status = client.revoke(revoke(kind, &id)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{kind}: {status:?}");
        assert!(
            status
                .message()
                .starts_with("service temporarily unavailable"),
            "{status:?}"
        );
    }
    let status = client
        .reinstate(ReinstateRequest {
            target_kind: TargetKind::Device as i32,
            target_id: random_id(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let status = client
        .list_revocations(ListRevocationsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let status = client
        .get_revocation_snapshot(GetRevocationSnapshotRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);

    // A watcher is told its data is no longer vouched for, instead of heartbeats.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match watch.message().await {
                Ok(Some(message)) => assert!(message.entries.is_empty()),
                Ok(None) => panic!("Watch ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream ends once its data is stale");
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");

    // Nothing was acknowledged, and nothing reached the stream, beyond the first entry.
    assert_eq!(xrange(&stream_key).await.len(), 1);
    assert_eq!(running.revocations.fanout_stats().published(), 1);
}
