//! RevocationService over real gRPC on loopback (the runtime's server on 127.0.0.1:0,
//! a tonic client) with the real PostgreSQL and Redis from ./scripts/test (these tests
//! fail, never skip, without them) and an in-process fake of the identity service's
//! certificate list.
//!
//! What a verifier or gate would rely on is checked from the outside: entries reach the
//! Redis stream in the documented format (read back with XRANGE), List pages and Watch
//! streams agree with each other, a snapshot verifies with the issuer's public key set
//! and rebuilds to the very set built from List, bad input gets precise statuses, and
//! with PostgreSQL gone nothing is acknowledged.

use futures::future::BoxFuture;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use citypass_proto::prost_types::Timestamp;
use citypass_proto::v1::revocation_service_client::RevocationServiceClient;
use citypass_proto::v1::{
    self as pb, ListRequest, ReinstateRequest, RevokeRequest, SnapshotRequest, WatchRequest,
};
use citypass_revocation::stream::{FIELD_ENTRY, FIELD_EPOCH, decode_message};
use citypass_revocation::{Entry, Kinds, RevocationSet, SignedSnapshot, TargetKind};
use citypass_revocation_service::{
    Certificate, CertificateDirectory, DirectoryError, KeyringSigner, LocalPublisher, Log,
    MemoryLog, Owner, PostgresLog, PublishError, Publisher, Record, RedisPublisher, Registry,
    RevocationApi, Settings,
};
use citypass_runtime::{Deadline, Role, Server, ServerConfig};
use citypass_testkit::tls::{As, TestPki};
use citypass_token::{Keyring, Kid, SystemRandom};
use redis::AsyncCommands as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

// --- fakes and fixtures -----------------------------------------------------------------

/// The identity service's certificate list, in process.
#[derive(Default)]
struct FakeDirectory {
    certificates: Mutex<HashMap<String, Vec<Certificate>>>,
    down: AtomicBool,
}

impl FakeDirectory {
    fn put(&self, owner: &str, certificates: Vec<Certificate>) {
        self.certificates
            .lock()
            .unwrap()
            .insert(owner.to_owned(), certificates);
    }
}

impl CertificateDirectory for FakeDirectory {
    fn live_certificates<'a>(
        &'a self,
        owner: Owner<'a>,
        _deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Vec<Certificate>, DirectoryError>> {
        let result = if self.down.load(Ordering::SeqCst) {
            Err(DirectoryError::Unavailable(tonic::Status::unavailable(
                "identity down",
            )))
        } else {
            let id = match owner {
                Owner::Device(id) | Owner::Subject(id) => id,
            };
            Ok(self
                .certificates
                .lock()
                .unwrap()
                .get(id)
                .cloned()
                .unwrap_or_default())
        };
        Box::pin(std::future::ready(result))
    }
}

/// A fan-out that always fails.
struct BrokenPublisher;

impl Publisher for BrokenPublisher {
    fn publish<'a>(&'a self, _records: &'a [Record]) -> BoxFuture<'a, Result<(), PublishError>> {
        Box::pin(std::future::ready(Err(PublishError::Timeout(
            Duration::from_millis(1),
        ))))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn at(seconds: u64) -> Timestamp {
    Timestamp {
        seconds: i64::try_from(seconds).unwrap(),
        nanos: 0,
    }
}

fn random_id() -> String {
    citypass_testkit::unique("")[..16].repeat(2)
}

fn test_settings() -> Settings {
    Settings {
        poll_interval: Duration::from_millis(50),
        stale_after: Duration::from_secs(1),
        cascade_sweep_delay: Duration::ZERO,
        ..Settings::default()
    }
}

fn revoke(kind: TargetKind, id: &str) -> RevokeRequest {
    RevokeRequest {
        target_kind: i32::from(kind.code()),
        target_id: id.to_owned(),
        reason: pb::RevocationReason::Administrative as i32,
        ..Default::default()
    }
}

/// A running service over TLS with its real authorisation table, and an operator's
/// client for it (`test-operator`: revoker, key-admin, auditor).
struct Running {
    client: RevocationServiceClient<Channel>,
    revocations: Arc<Registry>,
    stop: Option<oneshot::Sender<()>>,
    _keyring_file: tempfile::NamedTempFile,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(
    log: Arc<dyn Log>,
    publisher: Arc<dyn Publisher>,
    directory: Arc<FakeDirectory>,
    ring: &Keyring,
    settings: Settings,
) -> Running {
    // The signer reads the key ring from a file, as in a deployment.
    let keyring_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keyring_file.path(), ring.to_json()).unwrap();
    let signer = KeyringSigner::from_file(keyring_file.path(), Duration::from_secs(60), false)
        .expect("the key ring loads");
    let revocations =
        Arc::new(Registry::new(settings, log, publisher, directory, Arc::new(signer)).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let pki = TestPki::new("revocation");
    let server = Server::new(ServerConfig::new("revocation-test"))
        .tls(pki.server.clone())
        .add_service(
            RevocationApi::new(revocations.clone()).into_server(),
            &citypass_revocation_service::AUTHORIZATION,
        );
    tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    let client = RevocationServiceClient::new(pki.channel(
        addr,
        &As::Operator(&[Role::Revoker, Role::KeyAdmin, Role::Auditor]),
    ));
    Running {
        client,
        revocations,
        stop: Some(stop),
        _keyring_file: keyring_file,
    }
}

fn dev_ring() -> Keyring {
    Keyring::generate("citypass-test", true, &SystemRandom::new()).unwrap()
}

async fn redis_publisher(key: &str) -> Arc<dyn Publisher> {
    Arc::new(
        RedisPublisher::connect(
            &citypass_testkit::redis_url(),
            key,
            1_000,
            Duration::from_secs(2),
        )
        .await
        .expect("the test Redis answers"),
    )
}

async fn xrange(key: &str) -> Vec<Entry> {
    let client = redis::Client::open(citypass_testkit::redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let reply: redis::streams::StreamRangeReply = connection.xrange_all(key).await.unwrap();
    reply
        .ids
        .iter()
        .map(|id| {
            let epoch: Option<Vec<u8>> = id.get(FIELD_EPOCH);
            let entry: Option<Vec<u8>> = id.get(FIELD_ENTRY);
            decode_message(epoch.as_deref(), entry.as_deref()).expect("a documented message")
        })
        .collect()
}

async fn list_all(
    client: &mut RevocationServiceClient<Channel>,
) -> (Vec<pb::RevocationEntry>, u64) {
    let mut entries = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list(ListRequest {
                since_epoch: 0,
                page_size: 3,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return (entries, page.head_epoch);
        }
        token = page.next_page_token;
    }
}

/// Reads a Watch stream until it has delivered `epoch`; returns the entries.
async fn watch_until(
    stream: &mut Streaming<pb::WatchResponse>,
    epoch: u64,
) -> Vec<pb::RevocationEntry> {
    let mut out: Vec<pb::RevocationEntry> = Vec::new();
    while out.last().map_or(0, |e| e.epoch) < epoch {
        let message = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("Watch delivers in time")
            .expect("Watch is healthy")
            .expect("Watch is open");
        assert!(message.head_epoch >= message.entries.last().map_or(0, |e| e.epoch));
        assert!(message.sent_at.is_some());
        out.extend(message.entries);
    }
    out
}

fn assert_contiguous(entries: &[pb::RevocationEntry], from: u64) {
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(
            e.epoch,
            from + 1 + i as u64,
            "Watch and List never skip an epoch"
        );
    }
}

fn set_from(entries: &[pb::RevocationEntry]) -> RevocationSet {
    let mut set = RevocationSet::new();
    for message in entries {
        set.apply(citypass_revocation::proto::from_proto(message).expect("a valid entry"))
            .expect("in order");
    }
    set
}

fn certificate(serial: u8, not_before: u64, not_after: u64) -> Certificate {
    Certificate {
        serial: [serial; 16],
        not_before,
        not_after,
    }
}

// --- tests ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_list_watch_and_snapshot_agree() {
    let (pool, _) = citypass_testkit::fresh_database().await;
    let log = Arc::new(PostgresLog::new(pool).await.unwrap());
    let stream_key = citypass_testkit::unique("citypass:test:revocation:");
    let directory = Arc::new(FakeDirectory::default());
    let ring = dev_ring();
    let mut running = serve(
        log,
        redis_publisher(&stream_key).await,
        directory.clone(),
        &ring,
        test_settings(),
    )
    .await;
    let client = &mut running.client;

    // A watcher from the start hears the head at once.
    let mut watch = client
        .watch(WatchRequest { since_epoch: 0 })
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
        vec![(2, hex::encode([1; 16])), (3, hex::encode([2; 16]))],
        "live certificates issued before the bound, in the same write"
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
    assert_eq!(token.epoch, 4);
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
        5
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
    assert_eq!(certificate_entry.epoch, 6);
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
    assert_eq!(head, 6);
    assert_contiguous(&listed, 0);
    assert_eq!(listed.len(), 6);
    assert_eq!(listed[3], token);

    // The stream holds every entry, in the documented format, equal to the log's.
    let streamed = xrange(&stream_key).await;
    let logged: Vec<Entry> = listed
        .iter()
        .map(|e| citypass_revocation::proto::from_proto(e).unwrap())
        .collect();
    assert_eq!(streamed, logged);

    // The watcher got the same entries.
    let watched = watch_until(&mut watch, 6).await;
    assert_eq!(watched, listed);

    // A snapshot verifies with the issuer's public key set and rebuilds to the set
    // built from List.
    let answer = client
        .snapshot(SnapshotRequest { kinds: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.epoch, 6);
    assert_eq!(answer.kid, ring.signing_kid().0.to_vec());
    let signed = SignedSnapshot {
        bytes: answer.snapshot.clone(),
        signature: answer.signature.clone(),
        kid: Kid::from_slice(&answer.kid).unwrap(),
    };
    let keys = ring.public_keyset().unwrap();
    let snapshot = signed.verify(&keys, now()).expect("the snapshot verifies");
    assert_eq!(snapshot.epoch, 6);
    assert_eq!(snapshot.kinds, Kinds::ALL);
    let mut from_list = set_from(&listed);
    from_list.prune(snapshot.created_at);
    assert_eq!(RevocationSet::from_snapshot(&snapshot), from_list);
    assert!(from_list.issuance_blocked_subject(&subject));
    assert!(from_list.certificate_revoked(&[1; 16]));
    assert!(!from_list.certificate_revoked(&[3; 16]));

    // Offline gates ask for certificates and keys only.
    let gate_kinds = vec![TargetKind::Certificate as i32, TargetKind::Key as i32];
    let answer = client
        .snapshot(SnapshotRequest { kinds: gate_kinds })
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
    assert_eq!(snapshot.entries.len(), 4);
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
    assert_eq!(reinstated.epoch, 7);
    assert_eq!(reinstated.action, pb::EntryAction::Reinstate as i32);
    assert!(reinstated.revoked_before.is_none());
    assert_eq!(watch_until(&mut watch, 7).await, vec![reinstated]);
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
        assert_eq!(beat.head_epoch, 7);
        let sent = beat.sent_at.unwrap().seconds as u64;
        assert!(sent.abs_diff(now()) <= 2);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1_500),
        "heartbeats are paced about a second apart, not sent back to back: two took {elapsed:?}"
    );
    assert_eq!(running.revocations.fanout_stats().published(), 7);
    assert_eq!(running.revocations.fanout_stats().failed(), 0);
}

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
        &dev_ring(),
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
        .list(ListRequest {
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
        .watch(WatchRequest { since_epoch: 100 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    let status = client
        .list(ListRequest {
            page_token: "garbage".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = client
        .snapshot(SnapshotRequest { kinds: vec![0] })
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
        &dev_ring(),
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
        .watch(WatchRequest { since_epoch: 0 })
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
    let status = client.list(ListRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let status = client
        .snapshot(SnapshotRequest::default())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_watches_what_another_replica_writes() {
    let (pool, _) = citypass_testkit::fresh_database().await;
    let log_a = Arc::new(PostgresLog::new(pool.clone()).await.unwrap());
    let log_b = Arc::new(PostgresLog::new(pool).await.unwrap());
    let stream_key = citypass_testkit::unique("citypass:test:revocation:");
    let ring = dev_ring();
    let directory = Arc::new(FakeDirectory::default());
    let mut a = serve(
        log_a,
        redis_publisher(&stream_key).await,
        directory.clone(),
        &ring,
        test_settings(),
    )
    .await;
    let mut b = serve(
        log_b,
        redis_publisher(&stream_key).await,
        directory,
        &ring,
        test_settings(),
    )
    .await;

    let mut watch = b
        .client
        .watch(WatchRequest { since_epoch: 0 })
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
    let streamed: Vec<u64> = xrange(&stream_key).await.iter().map(|e| e.epoch).collect();
    assert_eq!(streamed, vec![1, 2, 3, 4, 5]);

    // Both replicas' snapshots are identical at the same epoch and time.
    let from_a = a
        .client
        .snapshot(SnapshotRequest::default())
        .await
        .unwrap()
        .into_inner();
    let from_b = b
        .client
        .snapshot(SnapshotRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(from_a.epoch, 5);
    assert_eq!(from_b.epoch, 5);
    let a_snapshot = citypass_revocation::Snapshot::decode(&from_a.snapshot).unwrap();
    let b_snapshot = citypass_revocation::Snapshot::decode(&from_b.snapshot).unwrap();
    assert_eq!(a_snapshot.entries, b_snapshot.entries);
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
        &dev_ring(),
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
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (entries, head) = list_all(&mut running.client).await;
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
        &dev_ring(),
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

#[test]
fn the_snapshot_signer_follows_the_key_ring_file() {
    let rng = SystemRandom::new();
    let mut ring = dev_ring();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), ring.to_json()).unwrap();
    assert!(
        KeyringSigner::from_file(file.path(), Duration::ZERO, true).is_err(),
        "production refuses a dev ring"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        use citypass_revocation_service::SnapshotSigner as _;
        let signer = KeyringSigner::from_file(file.path(), Duration::ZERO, false).unwrap();
        let first = ring.signing_kid();
        assert_eq!(signer.sign(vec![1]).unwrap().kid, first);
        let next = ring.rotate(now(), 3_600, &rng).unwrap();
        std::fs::write(file.path(), ring.to_json()).unwrap();
        let signed = signer.sign(vec![1]).unwrap();
        assert_eq!(signed.kid, next, "a rotation needs no restart");
        std::fs::write(file.path(), "{ half-written").unwrap();
        assert_eq!(
            signer.sign(vec![1]).unwrap().kid,
            next,
            "a broken file is refused"
        );
    });
}
