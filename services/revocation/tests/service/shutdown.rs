//! Shutdown with a watcher attached (security review, smaller findings): WatchRevocations streams
//! had no shutdown signal, so every shutdown with a watcher ended in the drain timeout,
//! the pod killed mid-drain. Now a stream ends UNAVAILABLE (`SHUTTING_DOWN`) when the
//! drain begins, its watcher reconnects elsewhere, and the server drains cleanly.

use std::time::Duration;

use citypass_proto::v1::WatchRevocationsRequest;
use citypass_proto::v1::revocation_service_client::RevocationServiceClient;
use citypass_revocation_service::{Config, build};
use citypass_runtime::Role;
use citypass_testkit::tls::{As, TestPki};
use citypass_token::{SnapshotKey, SystemRandom};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smaller_findings_watch_streams_end_when_the_server_drains() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new("revocation");
    let snapshot_key_path = dir.path().join("snapshot-key.json");
    let snapshot_key = SnapshotKey::generate(true, &SystemRandom::new()).unwrap();
    std::fs::write(&snapshot_key_path, snapshot_key.to_json()).unwrap();
    let mut config = Config::dev();
    config.server.tls = Some(pki.server_files(&dir.path().join("tls")));
    config.snapshot_key.path = snapshot_key_path;
    // Long enough for any busy machine to end a stream; shorter than the time a stream
    // would stay open on its own (forever).
    config.server.shutdown_drain_timeout = Duration::from_secs(20);
    let server = build(config).await.expect("the service builds").server;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));

    let mut watcher =
        RevocationServiceClient::new(pki.channel(addr, &As::Operator(&[Role::Auditor])));
    let mut stream = watcher
        .watch_revocations(WatchRevocationsRequest { since_epoch: 0 })
        .await
        .expect("an auditor watches")
        .into_inner();
    let first = stream.message().await.expect("a first message");
    assert!(first.is_some(), "the stream is open");

    let _ = stop.send(());
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match stream.message().await {
                Ok(Some(_heartbeat)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the stream ends when the drain begins");
    let status = ended.expect_err("the stream ends with a status");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(
        citypass_runtime::reason_of(&status).as_deref(),
        Some("SHUTTING_DOWN")
    );
    let served = tokio::time::timeout(Duration::from_secs(60), serving)
        .await
        .expect("serve returns")
        .expect("the serve task ran");
    assert!(served.is_ok(), "drained, not timed out: {served:?}");
}
