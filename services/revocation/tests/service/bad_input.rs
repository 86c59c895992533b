//! Bad input gets precise statuses and writes nothing: malformed Revoke, Reinstate,
//! ListRevocations, WatchRevocations and GetRevocationSnapshot requests, and an unreachable identity service.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use citypass_proto::v1::{
    GetRevocationSnapshotRequest, ListRevocationsRequest, ReinstateRequest, RevokeRequest,
    WatchRevocationsRequest,
};
use citypass_revocation::TargetKind;
use citypass_revocation_service::PostgresLog;
use tonic::Code;

use crate::support::{
    FakeDirectory, at, dev_snapshot_key, list_all, now, random_id, redis_publisher, revoke, serve,
    test_settings, xrange,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_precise_statuses() {
    let (pool, _) = citypass_testkit::fresh_database().await;
    let log = Arc::new(PostgresLog::new(pool).await.unwrap());
    let stream_key = citypass_testkit::unique("citypass:test:revocation:");
    let directory = Arc::new(FakeDirectory::default());
    let mut running = serve(
        log,
        redis_publisher(&stream_key).await,
        directory.clone(),
        &dev_snapshot_key(),
        test_settings(),
    )
    .await;
    let client = &mut running.client;
    let t = now();
    let id = random_id();

    let cases: Vec<(RevokeRequest, Code, &str)> = vec![
        (
            RevokeRequest {
                target_kind: 0,
                ..revoke(TargetKind::Token, &id)
            },
            Code::InvalidArgument,
            "target_kind: required: TARGET_KIND_UNSPECIFIED is not a target kind",
        ),
        (
            RevokeRequest {
                target_kind: 42,
                ..revoke(TargetKind::Token, &id)
            },
            Code::InvalidArgument,
            "target_kind: unknown target kind 42",
        ),
        (
            revoke(TargetKind::Device, ""),
            Code::InvalidArgument,
            "target_id: required",
        ),
        (
            revoke(TargetKind::Key, "xyz"),
            Code::InvalidArgument,
            "target_id: a key id (kid) is 16 lowercase hex characters, got 3 characters",
        ),
        (
            revoke(TargetKind::Key, "0011223344556677889"),
            Code::InvalidArgument,
            "target_id: a key id (kid) is 16 lowercase hex characters, got 19 characters",
        ),
        (
            revoke(TargetKind::Key, "00112233445566GG"),
            Code::InvalidArgument,
            "target_id: a key id (kid) is lowercase hex (0-9, a-f) only",
        ),
        (
            revoke(TargetKind::Subject, &id.to_uppercase()),
            Code::InvalidArgument,
            "target_id: a subject id is lowercase hex (0-9, a-f) only",
        ),
        (
            RevokeRequest {
                revoked_before: Some(at(t + 3_600)),
                ..revoke(TargetKind::Subject, &id)
            },
            Code::InvalidArgument,
            "revoked_before: in the future",
        ),
        (
            RevokeRequest {
                expires_at: Some(at(t + 3_600)),
                ..revoke(TargetKind::Subject, &id)
            },
            Code::InvalidArgument,
            "expires_at: subject revocations never expire",
        ),
        (
            RevokeRequest {
                expires_at: Some(at(t + 100_000)),
                ..revoke(TargetKind::Token, &id)
            },
            Code::InvalidArgument,
            "expires_at: more than 300s ahead",
        ),
        (
            RevokeRequest {
                reason: 99,
                ..revoke(TargetKind::Token, &id)
            },
            Code::InvalidArgument,
            "reason: unknown revocation reason 99",
        ),
    ];
    for (request, code, message) in cases {
        let status = client.revoke(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().starts_with(message), "{status:?}");
    }

    // Reinstate: only devices and subjects.
    let status = client
        .reinstate(ReinstateRequest {
            target_kind: TargetKind::Token as i32,
            target_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("only devices and subjects"),
        "{status:?}"
    );

    // Epochs from the future.
    let status = client
        .list_revocations(ListRevocationsRequest {
            since_epoch: 100,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(
        status.message(),
        "epoch 100 is beyond the head of the log (0)"
    );
    let status = client
        .watch_revocations(WatchRevocationsRequest { since_epoch: 100 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    let status = client
        .list_revocations(ListRevocationsRequest {
            page_token: "garbage".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = client
        .get_revocation_snapshot(GetRevocationSnapshotRequest { kinds: vec![0] })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // Identity unreachable: a subject revocation fails UNAVAILABLE and writes nothing.
    directory.down.store(true, Ordering::SeqCst);
    let status = client
        .revoke(revoke(TargetKind::Subject, &id))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        !status.message().contains("identity down"),
        "internals stay inside"
    );
    // A token needs no identity.
    client.revoke(revoke(TargetKind::Token, &id)).await.unwrap();
    let (entries, head) = list_all(client).await;
    assert_eq!(head, 1, "only the token revocation was written");
    assert_eq!(entries[0].target_kind, TargetKind::Token as i32);
    assert_eq!(xrange(&stream_key).await.len(), 1);
}
