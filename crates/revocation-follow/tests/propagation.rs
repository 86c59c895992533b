//! Every revocation reaches the follower's set under load (the `propagation` example
//! measures how fast; this test asserts no timing, only that all are seen).

mod support;

use support::propagation::{Options, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_revocation_is_seen_under_load() {
    let report = run(Options {
        count: 200,
        concurrency: 4,
        list_callers: 1,
        snapshot_callers: 1,
        hot_threads: 0,
        database_url: None,
        redis_url: citypass_testkit::redis_url(),
    })
    .await;
    assert_eq!(report.seen, report.count, "{report:?}");
    assert_eq!(report.ack_to_enforced.len(), 200);
    assert!(
        report.list_calls > 0 && report.snapshot_calls > 0,
        "the load ran"
    );
    assert_eq!(report.follower.epoch, 200);
}
