//! The happy path end to end: Revoke (with its certificate cascade), ListRevocations, WatchRevocations, the
//! Redis stream and Snapshot all agree; retries are safe; Reinstate appends; heartbeats
//! keep coming.

use std::sync::Arc;
use std::time::Duration;

use citypass_proto::v1::{
    self as pb, GetRevocationSnapshotRequest, ReinstateRequest, RevokeRequest,
    WatchRevocationsRequest,
};
use citypass_revocation::proto::head_from_proto;
use citypass_revocation::{
    ChainHash, Chained, Head, Kinds, RevocationSet, SignedSnapshot, TargetKind,
};
use citypass_revocation_service::PostgresLog;
use citypass_token::{CertSerial, Kid, SubjectId};
use tonic::Code;

use crate::support::{
    FakeDirectory, assert_contiguous, at, certificate, dev_ring, dev_snapshot_key, list_all, now,
    published_keys, random_id, redis_publisher, revoke, serve, test_settings, watch_until, xrange,
};

/// The set of `entries`, each checked against the chain.
fn set_from(entries: &[pb::RevocationEntry]) -> RevocationSet {
    let mut set = RevocationSet::new();
    for message in entries {
        set.apply_chained(citypass_revocation::proto::from_proto(message).expect("a valid entry"))
            .expect("in order and on the chain");
    }
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_list_watch_and_snapshot_agree() {
    let (pool, _) = citypass_testkit::fresh_database().await;
    let log = Arc::new(PostgresLog::new(pool).await.unwrap());
    let stream_key = citypass_testkit::unique("citypass:test:revocation:");
    let directory = Arc::new(FakeDirectory::default());
    let ring = dev_ring();
    let snapshot_key = dev_snapshot_key();
    let mut running = serve(
        log,
        redis_publisher(&stream_key).await,
        directory.clone(),
        &snapshot_key,
        test_settings(),
    )
    .await;
    let client = &mut running.client;

    // A watcher from the start hears the head at once.
    let mut watch = client
        .watch_revocations(WatchRevocationsRequest { since_epoch: 0 })
        .await
        .unwrap()
        .into_inner();
    let hello = tokio::time::timeout(Duration::from_secs(2), watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(hello.entries.is_empty());
    assert_eq!(hello.head_epoch, 0);
    let keys = published_keys(&ring, &snapshot_key);
    let hello_head = head_from_proto(hello.head.as_ref().expect("a heartbeat has the head"))
        .unwrap()
        .verify(&keys, now())
        .expect("the head is signed by the snapshot key");
    assert_eq!(hello_head, Head::GENESIS);

    // A subject with two live certificates, one issued after the revocation's bound,
    // and one long expired.
    let t = now();
    let subject = random_id();
    directory.put(
        &subject,
        vec![
            certificate(1, t - 100, t + 3_600),
            certificate(2, t - 50, t + 600),
            certificate(3, t + 3_000, t + 6_000),
            certificate(4, t - 90_000, t - 3_600),
        ],
    );
    let mut request = tonic::Request::new(RevokeRequest {
        reason: pb::RevocationReason::Arrears as i32,
        note: "arrears beyond grace".to_owned(),
        ..revoke(TargetKind::Subject, &subject)
    });
    // A header naming someone else changes nothing: the actor is the certificate's.
    request
        .metadata_mut()
        .insert("x-citypass-actor", "ops-alice".parse().unwrap());
    let response = client.revoke(request).await.unwrap().into_inner();
    let entry = response.entry.unwrap();
    assert_eq!(entry.epoch, 1);
    assert_eq!(entry.target_id, subject);
    assert_eq!(entry.actor, "operator:test-operator");
    assert_eq!(entry.action, pb::EntryAction::Revoke as i32);
    let revoked_before = entry.revoked_before.unwrap().seconds as u64;
    assert!(
        (t + 1..=t + 3).contains(&revoked_before),
        "server clock, rounded up"
    );
    assert!(entry.expires_at.is_none());
    let serials: Vec<_> = response
        .cascaded
        .iter()
        .map(|e| (e.epoch, e.target_id.clone()))
        .collect();
    assert_eq!(
        serials,
        vec![
            (2, hex::encode([1; 16])),
            (3, hex::encode([2; 16])),
            (4, hex::encode([3; 16]))
        ],
        "every live certificate, even one issued after the bound (finding 5), in the same write"
    );
    assert_eq!(
        response.cascaded[0].expires_at.unwrap().seconds as u64,
        t + 3_600 + 30
    );

    // Token, key and certificate revocations.
    let cti = hex::encode([0xc7; 16]);
    let token = client
        .revoke(revoke(TargetKind::Token, &cti))
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert_eq!(token.epoch, 5);
    let token_expiry = token.expires_at.unwrap().seconds as u64;
    assert!(
        (t + 360..=t + 363).contains(&token_expiry),
        "max lifetime plus skews"
    );
    let kid = ring.signing_kid().to_hex();
    assert_eq!(
        client
            .revoke(revoke(TargetKind::Key, &kid))
            .await
            .unwrap()
            .into_inner()
            .entry
            .unwrap()
            .epoch,
        6
    );
    let serial = hex::encode([0x5e; 16]);
    let certificate_entry = client
        .revoke(RevokeRequest {
            expires_at: Some(at(t + 600)),
            ..revoke(TargetKind::Certificate, &serial)
        })
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert_eq!(certificate_entry.epoch, 7);
    assert_eq!(
        certificate_entry.expires_at.unwrap().seconds as u64,
        t + 630
    );

    // Retrying is safe: the covering entry comes back and nothing is written.
    let again = client
        .revoke(revoke(TargetKind::Token, &cti))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.entry.unwrap(), token);
    let again = client
        .revoke(revoke(TargetKind::Subject, &subject))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.entry.unwrap().epoch, 1);
    assert!(again.cascaded.is_empty());

    // List, paged.
    let (listed, head) = list_all(client).await;
    assert_eq!(head, 7);
    assert_contiguous(&listed, 0);
    assert_eq!(listed.len(), 7);
    assert_eq!(listed[4], token);

    // Every entry carries its chain hash; List carries the signed head, which the set
    // built from the entries reaches (finding 6).
    let page = client
        .list_revocations(pb::ListRevocationsRequest {
            since_epoch: 7,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(page.entries.is_empty());
    let list_head = head_from_proto(page.head.as_ref().expect("List has the head"))
        .unwrap()
        .verify(&keys, now())
        .expect("the head is signed by the snapshot key");
    assert_eq!(list_head, set_from(&listed).head());
    assert_eq!(list_head.epoch, 7);
    assert_ne!(list_head.chain, ChainHash::GENESIS);

    // The stream holds every entry, in the documented format (with its chain hash),
    // equal to the log's.
    let streamed = xrange(&stream_key).await;
    let logged: Vec<Chained> = listed
        .iter()
        .map(|e| citypass_revocation::proto::from_proto(e).unwrap())
        .collect();
    assert_eq!(streamed, logged);

    // The watcher got the same entries.
    let watched = watch_until(&mut watch, 7).await;
    assert_eq!(watched, listed);

    // A snapshot verifies with the issuer's public key set and rebuilds to the set
    // built from List.
    let answer = client
        .get_revocation_snapshot(GetRevocationSnapshotRequest { kinds: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.epoch, 7);
    assert_eq!(answer.kid, snapshot_key.kid().0.to_vec());
    let signed = SignedSnapshot {
        bytes: answer.snapshot.clone(),
        signature: answer.signature.clone(),
        kid: Kid::from_slice(&answer.kid).unwrap(),
    };
    let snapshot = signed.verify(&keys, now()).expect("the snapshot verifies");
    assert_eq!(snapshot.epoch, 7);
    assert_eq!(
        snapshot.head(),
        list_head,
        "the snapshot carries the signed head"
    );
    assert_eq!(snapshot.kinds, Kinds::ALL);
    let mut from_list = set_from(&listed);
    from_list.prune(snapshot.created_at);
    assert_eq!(RevocationSet::from_snapshot(&snapshot), from_list);
    assert!(from_list.issuance_blocked_subject(&SubjectId::parse(&subject).unwrap()));
    assert!(from_list.certificate_revoked(&CertSerial::from_bytes([1; 16])));
    assert!(from_list.certificate_revoked(&CertSerial::from_bytes([3; 16])));
    assert!(
        !from_list.certificate_revoked(&CertSerial::from_bytes([4; 16])),
        "long expired"
    );

    // Offline gates ask for certificates and keys only.
    let gate_kinds = vec![TargetKind::Certificate as i32, TargetKind::Key as i32];
    let answer = client
        .get_revocation_snapshot(GetRevocationSnapshotRequest { kinds: gate_kinds })
        .await
        .unwrap()
        .into_inner();
    let signed = SignedSnapshot {
        bytes: answer.snapshot,
        signature: answer.signature,
        kid: Kid::from_slice(&answer.kid).unwrap(),
    };
    let snapshot = signed.verify(&keys, now()).unwrap();
    let kinds = Kinds::of([TargetKind::Certificate, TargetKind::Key]);
    assert_eq!(snapshot.kinds, kinds);
    assert_eq!(snapshot.entries.len(), 5);
    let mut from_list = set_from(&listed);
    from_list.prune(snapshot.created_at);
    assert_eq!(
        RevocationSet::from_snapshot(&snapshot),
        from_list.restricted(kinds)
    );
    // A tampered snapshot does not verify.
    let mut tampered = signed.clone();
    tampered.bytes[10] ^= 1;
    assert!(tampered.verify(&keys, now()).is_err());

    // Reinstating appends; the watcher sees it; a second one has nothing to reinstate.
    let reinstated = client
        .reinstate(ReinstateRequest {
            target_kind: TargetKind::Subject as i32,
            target_id: subject.clone(),
            reason: pb::ReinstateReason::ArrearsRepaid as i32,
            note: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert_eq!(reinstated.epoch, 8);
    assert_eq!(reinstated.action, pb::EntryAction::Reinstate as i32);
    assert!(reinstated.revoked_before.is_none());
    assert_eq!(watch_until(&mut watch, 8).await, vec![reinstated.clone()]);
    let mut everything = listed.clone();
    everything.push(reinstated);
    let head = set_from(&everything).head();
    let status = client
        .reinstate(ReinstateRequest {
            target_kind: TargetKind::Subject as i32,
            target_id: subject.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");

    // With nothing new, heartbeats keep coming about every second.
    let started = tokio::time::Instant::now();
    for _ in 0..2 {
        let beat = tokio::time::timeout(Duration::from_secs(3), watch.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(beat.entries.is_empty());
        assert_eq!(beat.head_epoch, 8);
        let signed =
            head_from_proto(beat.head.as_ref().expect("a heartbeat has the head")).unwrap();
        assert_eq!(
            signed.verify(&keys, now()),
            Ok(head),
            "heartbeats carry the signed head"
        );
        let sent = beat.sent_at.unwrap().seconds as u64;
        assert!(sent.abs_diff(now()) <= 2);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1_500),
        "heartbeats are paced about a second apart, not sent back to back: two took {elapsed:?}"
    );
    assert_eq!(running.revocations.fanout_stats().published(), 8);
    assert_eq!(running.revocations.fanout_stats().failed(), 0);
}
