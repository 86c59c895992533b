//! The follower against real parts: the revocation service on loopback with its
//! PostgreSQL log and Redis publisher, the Redis from ./scripts/test (a private
//! redis-server where a test kills it), and PostgreSQL switched off and on. These tests
//! fail, never skip, without the servers.

mod support;

use std::sync::Arc;
use std::time::Duration;

use citypass_proto::v1::ListRevocationsRequest;
use citypass_revocation::proto::{from_proto, head_from_proto};
use citypass_revocation::{Action, Chained, Entry, RevocationSet, Target, TargetKind};
use citypass_revocation_follow::{Follower, FollowerConfig, Source, SourceState};
use citypass_revocation_service::{LocalPublisher, MemoryLog, Publisher as _};
use citypass_token::{Cti, DeviceId, SubjectId};
use support::{
    Client, Controlled, Mode, PrivateRedis, attacker, eventually, follower_config, head,
    last_message, postgres_log, random_id, redis_publisher, redis_source, reinstate, revoke,
    revoke_token, revoke_token_expiring, serve, service_settings, set_database_available,
    stream_key, xadd, xadd_deleted,
};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(10);

/// The whole log read with List, applied to a fresh set on the chain; it ends on the
/// head List reports.
async fn set_from_list(client: &mut Client) -> RevocationSet {
    let mut set = RevocationSet::new();
    loop {
        let page = client
            .list_revocations(ListRevocationsRequest {
                since_epoch: set.epoch(),
                page_size: 100,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        for entry in &page.entries {
            set.apply_chained(from_proto(entry).unwrap()).unwrap();
        }
        if set.epoch() >= page.head_epoch {
            let head = head_from_proto(page.head.as_ref().unwrap()).unwrap().head;
            assert_eq!(set.head(), head, "the log's entries chain to its head");
            return set;
        }
    }
}

/// Waits until the follower's set is the log's (same epoch, chain hash and entries).
async fn ends_equal_to_the_log(follower: &Follower, client: &mut Client) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = set_from_list(client).await;
        if follower.to_set() == log && follower.epoch() == log.epoch() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the follower did not end equal to the log: follower at {:?}, log at {:?}; {:?}",
            follower.to_set().head(),
            log.head(),
            follower.metrics()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A forged reinstatement of `subject` at `epoch`, with the chain hash a forger
/// computes from the stream's last message (the hash is not keyed: anyone can).
async fn forge_reinstatement(
    connection: &mut redis::aio::MultiplexedConnection,
    key: &str,
    epoch: u64,
    subject: &str,
) -> Chained {
    let last = last_message(connection, key).await;
    assert_eq!(
        last.entry.epoch + 1,
        epoch,
        "the forger appends the next epoch"
    );
    let forged = Chained::link(
        &last.chain,
        Entry {
            epoch,
            target: Target::parse(TargetKind::Subject, subject).unwrap(),
            action: Action::Reinstate,
            expires_at: None,
            created_at: support::now(),
        },
    );
    xadd(connection, key, &forged).await;
    forged
}

async fn wait_epoch(follower: &Follower, epoch: u64) {
    tokio::time::timeout(WAIT, follower.wait_for_epoch(epoch))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the follower did not reach epoch {epoch}: {:?}",
                follower.metrics()
            )
        });
}

fn start(config: FollowerConfig, service: &support::Service) -> Follower {
    service.follow(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_follower_applies_in_epoch_order_what_arrives_out_of_order() {
    let (log, _) = postgres_log().await;
    let key = stream_key();
    let redis_url = citypass_testkit::redis_url();
    let publisher = Controlled::new(redis_publisher(&redis_url, &key).await);
    let service = serve(log, publisher.clone(), service_settings()).await;
    let client = &mut service.client.clone();

    // Written before the follower starts: it gets them from List at start-up.
    let (early, _) = revoke_token(client).await;
    let subject = random_id();
    revoke(client, TargetKind::Subject, &subject).await;
    let start_head = head(client).await;

    let mut config = follower_config(redis_source(&redis_url, &key));
    // Long enough that only the stream can fill the swapped entries' gap in this test.
    config.gap_window = Duration::from_secs(5);
    config.check_interval = Duration::from_secs(60);
    let follower = start(config, &service);
    wait_epoch(&follower, start_head).await;
    assert!(follower.token_revoked(&Cti::from_bytes(early)));
    assert!(follower.issuance_blocked_subject(&SubjectId::parse(&subject).unwrap()));
    tokio::time::timeout(WAIT, follower.wait_synced())
        .await
        .unwrap();
    assert_eq!(follower.metrics().resyncs, 1, "the start-up resync");

    // A live revocation arrives through the stream.
    let (live, epoch) = revoke_token(client).await;
    wait_epoch(&follower, epoch).await;
    assert!(follower.token_revoked(&Cti::from_bytes(live)));

    // Three entries appended to the stream in reverse epoch order.
    publisher.set(Mode::Hold);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(revoke_token(client).await);
    }
    publisher.set(Mode::Pass);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(follower.epoch(), epoch, "nothing reached the stream yet");
    assert_eq!(publisher.release_reversed().await, 3);
    let last = held.last().unwrap().1;
    tokio::time::timeout(Duration::from_secs(3), follower.wait_for_epoch(last))
        .await
        .expect("the stream alone fills the gap, well within the gap window");
    for (cti, _) in &held {
        assert!(follower.token_revoked(&Cti::from_bytes(*cti)));
    }
    let metrics = follower.metrics();
    assert_eq!(metrics.resyncs, 1, "no resync was needed: {metrics:?}");
    assert!(metrics.out_of_order >= 2, "{metrics:?}");
    assert!(metrics.gaps >= 1, "{metrics:?}");
    assert_eq!(metrics.pending, 0);
    assert_eq!(metrics.source_state, SourceState::Streaming);

    // Reinstating unblocks issuance; what the revocation killed stays dead.
    let epoch = reinstate(client, TargetKind::Subject, &subject).await;
    wait_epoch(&follower, epoch).await;
    assert!(!follower.issuance_blocked_subject(&SubjectId::parse(&subject).unwrap()));
    assert!(follower.subject_revoked(&SubjectId::parse(&subject).unwrap(), support::now() - 3600));
    let device = random_id();
    let epoch = revoke(client, TargetKind::Device, &device).await;
    wait_epoch(&follower, epoch).await;
    assert!(follower.issuance_blocked_device(&DeviceId::parse(&device).unwrap()));

    assert_eq!(follower.to_set(), set_from_list(client).await);
    assert!(follower.age().unwrap() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_never_appended_is_healed_from_list() {
    let (log, _) = postgres_log().await;
    let key = stream_key();
    let redis_url = citypass_testkit::redis_url();
    let publisher = Controlled::new(redis_publisher(&redis_url, &key).await);
    let service = serve(log, publisher.clone(), service_settings()).await;
    let client = &mut service.client.clone();

    let mut config = follower_config(redis_source(&redis_url, &key));
    config.check_interval = Duration::from_secs(60);
    let follower = start(config.clone(), &service);
    // The same, with a periodic check every half second.
    config.check_interval = Duration::from_millis(500);
    let checking = start(config, &service);
    tokio::time::timeout(WAIT, follower.wait_synced())
        .await
        .unwrap();
    tokio::time::timeout(WAIT, checking.wait_synced())
        .await
        .unwrap();

    let (first, epoch) = revoke_token(client).await;
    wait_epoch(&follower, epoch).await;
    assert!(follower.token_revoked(&Cti::from_bytes(first)));
    let before = follower.metrics();

    // Committed, acknowledged, never appended: the next append reveals the gap.
    publisher.set(Mode::Drop);
    let (lost, lost_epoch) = revoke_token(client).await;
    publisher.set(Mode::Pass);
    let (next, next_epoch) = revoke_token(client).await;
    assert_eq!(next_epoch, lost_epoch + 1);
    wait_epoch(&follower, next_epoch).await;
    assert!(
        follower.token_revoked(&Cti::from_bytes(lost)),
        "healed from List"
    );
    assert!(follower.token_revoked(&Cti::from_bytes(next)));
    // The resync counts itself once its last page is applied.
    eventually(WAIT, "the resync is counted", || {
        follower.metrics().resyncs > before.resyncs
    })
    .await;
    let after = follower.metrics();
    assert_eq!(after.resyncs, before.resyncs + 1, "{after:?}");
    assert_eq!(after.gaps, before.gaps + 1, "{after:?}");

    // A lost append that no later entry reveals: only the periodic check finds it.
    publisher.set(Mode::Drop);
    let (silent, silent_epoch) = revoke_token(client).await;
    publisher.set(Mode::Pass);
    wait_epoch(&checking, silent_epoch).await;
    assert!(checking.token_revoked(&Cti::from_bytes(silent)));
    assert_eq!(
        follower.epoch(),
        next_epoch,
        "without the check, nothing reveals it"
    );
    assert!(!follower.token_revoked(&Cti::from_bytes(silent)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_follower_converges_on_the_embedded_backend() {
    // What `citypass dev` runs: the memory log, the in-process fan-out, Watch over gRPC.
    let service = serve(
        Arc::new(MemoryLog::new()),
        Arc::new(LocalPublisher::default()),
        service_settings(),
    )
    .await;
    let client = &mut service.client.clone();
    let mut backlog = Vec::new();
    for _ in 0..5 {
        backlog.push(revoke_token(client).await);
    }
    let follower = start(follower_config(Source::Watch), &service);
    wait_epoch(&follower, 5).await;
    for (cti, _) in &backlog {
        assert!(follower.token_revoked(&Cti::from_bytes(*cti)));
    }

    let subject = random_id();
    let epoch = revoke(client, TargetKind::Subject, &subject).await;
    wait_epoch(&follower, epoch).await;
    assert!(follower.issuance_blocked_subject(&SubjectId::parse(&subject).unwrap()));
    let epoch = reinstate(client, TargetKind::Subject, &subject).await;
    wait_epoch(&follower, epoch).await;
    assert!(!follower.issuance_blocked_subject(&SubjectId::parse(&subject).unwrap()));
    assert_eq!(follower.to_set(), set_from_list(client).await);

    // Heartbeats keep it fresh while nothing happens.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let metrics = follower.metrics();
    assert!(
        metrics.age.unwrap() < Duration::from_millis(800),
        "{metrics:?}"
    );
    assert!(metrics.watch_messages >= 5, "{metrics:?}");
    assert_eq!(metrics.source_state, SourceState::Watching);
    assert_eq!(metrics.resyncs, 0, "Watch needs no List");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_followers_keep_their_set_and_report_its_age() {
    let (log, database_url) = postgres_log().await;
    let key = stream_key();
    let redis_url = citypass_testkit::redis_url();
    let publisher = redis_publisher(&redis_url, &key).await;
    let service = serve(log, publisher, service_settings()).await;
    let client = &mut service.client.clone();
    let watching = start(follower_config(Source::Watch), &service);
    let streaming = start(follower_config(redis_source(&redis_url, &key)), &service);
    let (cti, epoch) = revoke_token(client).await;
    wait_epoch(&watching, epoch).await;
    wait_epoch(&streaming, epoch).await;
    eventually(WAIT, "both fresh", || {
        watching
            .age()
            .is_some_and(|a| a < Duration::from_millis(500))
            && streaming
                .age()
                .is_some_and(|a| a < Duration::from_millis(500))
    })
    .await;

    set_database_available(&database_url, false).await;
    let status = client
        .revoke(support::revoke_request(TargetKind::Token, &random_id()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // Watch mode: the service stops vouching for its data, the stream ends, and the
    // follower's age grows while it keeps answering from its set.
    eventually(WAIT, "the Watch follower's age grows past 3s", || {
        watching.age().is_some_and(|a| a > Duration::from_secs(3))
    })
    .await;
    let age = watching.age().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(watching.age().unwrap() >= age + Duration::from_millis(500));
    assert!(watching.token_revoked(&Cti::from_bytes(cti)));
    assert_eq!(watching.epoch(), epoch);
    assert_ne!(watching.source_state(), SourceState::Watching);
    assert!(watching.metrics().watch_errors >= 1);

    // Redis mode: the stream is alive, but it vouches for nothing on its own: the
    // failing List checks are counted, and once the last confirmed check is older than
    // `check_interval + request_timeout` the data ages too (security finding 6; see
    // `finding_6_failing_list_checks_make_the_stream_data_age`).
    let streamed = streaming.metrics();
    assert!(streamed.resync_failures >= 1, "{streamed:?}");
    assert!(streaming.token_revoked(&Cti::from_bytes(cti)));
    assert_eq!(streaming.epoch(), epoch);

    // PostgreSQL back: the Watch follower's age resets; new entries reach both.
    set_database_available(&database_url, true).await;
    eventually(
        Duration::from_secs(15),
        "the Watch follower is fresh again",
        || {
            watching
                .age()
                .is_some_and(|a| a < Duration::from_millis(500))
        },
    )
    .await;
    let (after, epoch) = revoke_token(client).await;
    wait_epoch(&watching, epoch).await;
    wait_epoch(&streaming, epoch).await;
    assert!(
        watching.token_revoked(&Cti::from_bytes(after))
            && streaming.token_revoked(&Cti::from_bytes(after))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_drops_expired_token_entries_only() {
    let (log, _) = postgres_log().await;
    let key = stream_key();
    let redis_url = citypass_testkit::redis_url();
    let publisher = redis_publisher(&redis_url, &key).await;
    let service = serve(log, publisher, service_settings()).await;
    let client = &mut service.client.clone();
    let mut config = follower_config(redis_source(&redis_url, &key));
    config.prune_interval = Duration::from_millis(200);
    let follower = start(config, &service);

    let (short, _) = revoke_token_expiring(client, support::now() + 1).await;
    let (long, _) = revoke_token(client).await;
    let subject = random_id();
    let epoch = revoke(client, TargetKind::Subject, &subject).await;
    wait_epoch(&follower, epoch).await;
    assert!(follower.token_revoked(&Cti::from_bytes(short)));
    assert_eq!(follower.len(), 3);

    eventually(WAIT, "the expired token entry is pruned", || {
        !follower.token_revoked(&Cti::from_bytes(short))
    })
    .await;
    assert!(follower.token_revoked(&Cti::from_bytes(long)));
    assert!(follower.issuance_blocked_subject(&SubjectId::parse(&subject).unwrap()));
    assert_eq!(follower.len(), 2);
    assert_eq!(follower.epoch(), epoch, "pruning never moves the epoch");
    assert_eq!(follower.metrics().pruned, 1);
    let _ = hex::encode(short);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_loses_no_acknowledged_revocation() {
    let mut redis = PrivateRedis::start().await;
    let (log, _) = postgres_log().await;
    let key = stream_key();
    let publisher = redis_publisher(&redis.url(), &key).await;
    let service = serve(log, publisher, service_settings()).await;
    let follower = start(follower_config(redis_source(&redis.url(), &key)), &service);
    tokio::time::timeout(WAIT, follower.wait_synced())
        .await
        .unwrap();
    let client = &mut service.client.clone();

    let mut tokens = Vec::new();
    let mut subjects = Vec::new();
    let mut during_outage = Vec::new();
    let mut max_age_during_outage = Duration::ZERO;
    let mut stream_messages_at_restart = 0;
    for i in 0..90 {
        match i {
            30 => {
                redis.kill();
            }
            60 => {
                redis.restart().await;
                stream_messages_at_restart = follower.metrics().stream_messages;
            }
            _ => {}
        }
        if i % 10 == 9 {
            let subject = random_id();
            revoke(client, TargetKind::Subject, &subject).await;
            subjects.push(subject);
        } else {
            let (cti, epoch) = revoke_token(client).await;
            if (30..60).contains(&i) {
                during_outage.push((cti, epoch));
            }
            tokens.push(cti);
        }
        if (30..60).contains(&i) {
            max_age_during_outage = max_age_during_outage.max(follower.age().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        if i == 50 {
            // Still without Redis: enforcement continues through List.
            let (cti, epoch) = during_outage.last().copied().unwrap();
            tokio::time::timeout(Duration::from_secs(3), follower.wait_for_epoch(epoch))
                .await
                .expect("revocations made while Redis is down arrive through List");
            assert!(follower.token_revoked(&Cti::from_bytes(cti)));
            assert_eq!(follower.source_state(), SourceState::Polling);
        }
    }

    let head = head(client).await;
    wait_epoch(&follower, head).await;
    assert_eq!(follower.epoch(), head, "converged to the log's head");
    for cti in &tokens {
        assert!(
            follower.token_revoked(&Cti::from_bytes(*cti)),
            "a token revocation is missing"
        );
    }
    for subject in &subjects {
        assert!(
            follower.issuance_blocked_subject(&SubjectId::parse(subject).unwrap()),
            "a subject revocation is missing"
        );
    }
    assert_eq!(follower.to_set(), set_from_list(client).await);

    let metrics = follower.metrics();
    assert!(metrics.redis_errors >= 1, "{metrics:?}");
    assert!(
        metrics.resyncs >= 2,
        "start-up, then after Redis came back: {metrics:?}"
    );
    assert!(
        max_age_during_outage < Duration::from_secs(3),
        "List polling kept the data fresh without Redis: {max_age_during_outage:?}"
    );
    // Back on the stream: entries written after the restart were read from it.
    eventually(WAIT, "streaming again", || {
        follower.source_state() == SourceState::Streaming
    })
    .await;
    let (cti, epoch) = revoke_token(client).await;
    wait_epoch(&follower, epoch).await;
    assert!(follower.token_revoked(&Cti::from_bytes(cti)));
    assert!(
        follower.metrics().stream_messages > stream_messages_at_restart,
        "{:?}",
        follower.metrics()
    );
}

/// Security finding 6: the follower kept the first entry it saw for an epoch and
/// resynced only after its epoch, so a stream message forged at the head's next epoch
/// (here: a reinstatement of a revoked subject, with a chain hash the forger computed)
/// replaced the real entry (a token revocation) for good. Now the real entry's chain
/// hash conflicts with the forged one; the follower asks the service, finds its set off
/// the service's chain, rebuilds it, and ends equal to the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_6_a_forged_stream_entry_is_detected_and_the_follower_ends_equal_to_the_log() {
    let (log, _) = postgres_log().await;
    let key = stream_key();
    let redis_url = citypass_testkit::redis_url();
    let publisher = Controlled::new(redis_publisher(&redis_url, &key).await);
    let service = serve(log, publisher.clone(), service_settings()).await;
    let client = &mut service.client.clone();
    let mut config = follower_config(redis_source(&redis_url, &key));
    // No periodic check within the test: the stream alone must reveal the forgery.
    config.check_interval = Duration::from_secs(60);
    let follower = start(config, &service);
    tokio::time::timeout(WAIT, follower.wait_synced())
        .await
        .unwrap();
    let subject = random_id();
    let (_, _) = revoke_token(client).await;
    let revoked = revoke(client, TargetKind::Subject, &subject).await;
    wait_epoch(&follower, revoked).await;
    assert!(follower.issuance_blocked_subject(&SubjectId::parse(&subject).unwrap()));

    // The real next entry is committed; its append is slow (held).
    publisher.set(Mode::Hold);
    let (hidden, real) = revoke_token(client).await;
    assert_eq!(real, revoked + 1);
    // Someone with write access to Redis appends a forgery at that epoch first.
    let mut redis = attacker(&redis_url).await;
    let forged = forge_reinstatement(&mut redis, &key, real, &subject).await;
    // It chains onto the follower's head, so it is applied at first...
    wait_epoch(&follower, real).await;
    assert!(
        !follower.issuance_blocked_subject(&SubjectId::parse(&subject).unwrap()),
        "the forgery was applied"
    );
    assert_eq!(follower.to_set().chain(), forged.chain);
    // ...until the real entry arrives.
    publisher.set(Mode::Pass);
    assert_eq!(publisher.release_reversed().await, 1);
    ends_equal_to_the_log(&follower, client).await;
    assert!(
        follower.issuance_blocked_subject(&SubjectId::parse(&subject).unwrap()),
        "the forgery is gone"
    );
    assert!(
        follower.token_revoked(&Cti::from_bytes(hidden)),
        "the real entry is in force"
    );
    let metrics = follower.metrics();
    assert!(metrics.conflicts >= 1, "{metrics:?}");
    assert!(metrics.rebuilds >= 1, "{metrics:?}");

    // Life goes on: later entries arrive through the stream again.
    let (next, epoch) = revoke_token(client).await;
    wait_epoch(&follower, epoch).await;
    assert!(follower.token_revoked(&Cti::from_bytes(next)));
    ends_equal_to_the_log(&follower, client).await;
}

/// Security finding 6, the other way to hide an entry: delete it from the stream. A
/// deleted message followed by another shows as a gap (List fills it); a deleted
/// message replaced by a forgery at its epoch, with nothing after it, is found by the
/// periodic check, which compares the set's chain hash with the service's head. Both
/// times the follower ends equal to the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_6_a_deleted_stream_entry_is_detected_and_the_follower_ends_equal_to_the_log() {
    let (log, _) = postgres_log().await;
    let key = stream_key();
    let redis_url = citypass_testkit::redis_url();
    let real_publisher = redis_publisher(&redis_url, &key).await;
    let publisher = Controlled::new(real_publisher.clone());
    let service = serve(log, publisher.clone(), service_settings()).await;
    let client = &mut service.client.clone();
    // The test timings: a periodic check every second.
    let follower = start(follower_config(redis_source(&redis_url, &key)), &service);
    tokio::time::timeout(WAIT, follower.wait_synced())
        .await
        .unwrap();
    let subject = random_id();
    let revoked = revoke(client, TargetKind::Subject, &subject).await;
    wait_epoch(&follower, revoked).await;
    let mut redis = attacker(&redis_url).await;

    // Two entries; the first is appended and deleted before anyone reads it.
    publisher.set(Mode::Hold);
    let (deleted, first) = revoke_token(client).await;
    let (after, second) = revoke_token(client).await;
    publisher.set(Mode::Pass);
    let held = publisher.take_held();
    assert_eq!(held.len(), 2);
    let gaps = follower.metrics().gaps;
    xadd_deleted(&mut redis, &key, &held[0].chained()).await;
    real_publisher
        .publish(std::slice::from_ref(&held[1]))
        .await
        .unwrap();
    wait_epoch(&follower, second).await;
    assert!(
        follower.token_revoked(&Cti::from_bytes(deleted)),
        "healed from List"
    );
    assert!(follower.token_revoked(&Cti::from_bytes(after)));
    assert!(follower.metrics().gaps > gaps, "{:?}", follower.metrics());
    assert_eq!(first + 1, second);
    ends_equal_to_the_log(&follower, client).await;

    // The next entry never reaches the stream (deleted, or its append suppressed);
    // a forgery takes its epoch, and nothing follows.
    let rebuilds = follower.metrics().rebuilds;
    publisher.set(Mode::Drop);
    let (hidden, real) = revoke_token(client).await;
    publisher.set(Mode::Pass);
    forge_reinstatement(&mut redis, &key, real, &subject).await;
    ends_equal_to_the_log(&follower, client).await;
    assert!(
        follower.token_revoked(&Cti::from_bytes(hidden)),
        "the real entry is in force"
    );
    assert!(
        follower.issuance_blocked_subject(&SubjectId::parse(&subject).unwrap()),
        "the forgery is gone"
    );
    let metrics = follower.metrics();
    assert!(metrics.rebuilds > rebuilds, "{metrics:?}");
}

/// Security finding 6, second half: a stream read counted as hearing from the log
/// whatever List said, so a follower stayed fresh on Redis alone while its checks
/// against the service failed (and Redis can hide entries). Now stream reads keep the
/// data fresh only while the last confirmed check is at most `check_interval +
/// request_timeout` old: with List failing (PostgreSQL down) and Redis answering, the
/// age grows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_6_failing_list_checks_make_the_stream_data_age() {
    let (log, database_url) = postgres_log().await;
    let key = stream_key();
    let redis_url = citypass_testkit::redis_url();
    let service = serve(
        log,
        redis_publisher(&redis_url, &key).await,
        service_settings(),
    )
    .await;
    let client = &mut service.client.clone();
    let config = follower_config(redis_source(&redis_url, &key));
    let window = config.check_interval + config.request_timeout;
    let follower = start(config, &service);
    let (cti, epoch) = revoke_token(client).await;
    wait_epoch(&follower, epoch).await;
    eventually(WAIT, "fresh", || {
        follower
            .age()
            .is_some_and(|a| a < Duration::from_millis(500))
    })
    .await;

    set_database_available(&database_url, false).await;
    let bound = window + Duration::from_secs(1);
    eventually(
        window + Duration::from_secs(20),
        "the age grows past the window while List fails",
        || follower.age().is_some_and(|a| a > bound),
    )
    .await;
    let metrics = follower.metrics();
    assert_eq!(
        metrics.source_state,
        SourceState::Streaming,
        "Redis still answers: {metrics:?}"
    );
    assert!(metrics.resync_failures >= 1, "{metrics:?}");
    assert!(
        follower.token_revoked(&Cti::from_bytes(cti)),
        "the set keeps answering"
    );

    // List answers again: the data is fresh again.
    set_database_available(&database_url, true).await;
    eventually(Duration::from_secs(20), "fresh again", || {
        follower
            .age()
            .is_some_and(|a| a < Duration::from_millis(500))
    })
    .await;
}
