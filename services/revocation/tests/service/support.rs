//! The fakes and fixtures every test here shares: an in-process identity certificate
//! list, the service served over TLS with its real authorisation table, Redis stream
//! and PostgreSQL helpers, and readers for ListRevocations pages and WatchRevocations streams.

use futures::future::BoxFuture;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use citypass_proto::prost_types::Timestamp;
use citypass_proto::v1::revocation_service_client::RevocationServiceClient;
use citypass_proto::v1::{self as pb, ListRevocationsRequest, RevokeRequest};
use citypass_revocation::stream::{FIELD_ENTRY, FIELD_EPOCH, decode_message};
use citypass_revocation::{Chained, TargetKind};
use citypass_revocation_service::{
    Certificate, CertificateDirectory, DirectoryError, Log, Owner, Publisher, RedisPublisher,
    Registry, RevocationApi, Settings, SnapshotKeySigner,
};
use citypass_runtime::Environment;
use citypass_runtime::{Deadline, Role, Server, ServerConfig};
use citypass_testkit::tls::{As, TestPki};
use citypass_token::{KeySet, Keyring, SnapshotKey, SystemRandom};
use redis::AsyncCommands as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::Streaming;
use tonic::transport::Channel;

/// The identity service's certificate list, in process.
#[derive(Default)]
pub(crate) struct FakeDirectory {
    certificates: Mutex<HashMap<String, Vec<Certificate>>>,
    pub(crate) down: AtomicBool,
}

impl FakeDirectory {
    pub(crate) fn put(&self, owner: &str, certificates: Vec<Certificate>) {
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
                Owner::Device(id) => id.to_string(),
                Owner::Subject(id) => id.to_string(),
            };
            Ok(self
                .certificates
                .lock()
                .unwrap()
                .get(&id)
                .cloned()
                .unwrap_or_default())
        };
        Box::pin(std::future::ready(result))
    }
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(crate) fn at(seconds: u64) -> Timestamp {
    Timestamp {
        seconds: i64::try_from(seconds).unwrap(),
        nanos: 0,
    }
}

pub(crate) fn random_id() -> String {
    citypass_testkit::unique("")[..16].repeat(2)
}

pub(crate) fn test_settings() -> Settings {
    Settings {
        poll_interval: Duration::from_millis(50),
        stale_after: Duration::from_secs(1),
        cascade_sweep_delay: Duration::ZERO,
        ..Settings::default()
    }
}

pub(crate) fn revoke(kind: TargetKind, id: &str) -> RevokeRequest {
    RevokeRequest {
        target_kind: i32::from(kind.code()),
        target_id: id.to_owned(),
        reason: pb::RevocationReason::Administrative as i32,
        ..Default::default()
    }
}

/// A running service over TLS with its real authorisation table, and an operator's
/// client for it (`test-operator`: revoker, key-admin, auditor).
pub(crate) struct Running {
    pub(crate) client: RevocationServiceClient<Channel>,
    pub(crate) revocations: Arc<Registry>,
    pki: TestPki,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    _snapshot_key_file: tempfile::NamedTempFile,
}

impl Running {
    /// A client presenting `who`'s certificate.
    pub(crate) fn client_as(&self, who: &As) -> RevocationServiceClient<Channel> {
        RevocationServiceClient::new(self.pki.channel(self.addr, who))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub(crate) async fn serve(
    log: Arc<dyn Log>,
    publisher: Arc<dyn Publisher>,
    directory: Arc<FakeDirectory>,
    snapshot_key: &SnapshotKey,
    settings: Settings,
) -> Running {
    // The signer reads its snapshot key from a file, as in a deployment.
    let snapshot_key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(snapshot_key_file.path(), snapshot_key.to_json()).unwrap();
    let signer = SnapshotKeySigner::from_file(
        snapshot_key_file.path(),
        Duration::from_secs(60),
        Environment::Dev,
    )
    .expect("the snapshot key loads");
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
        pki,
        addr,
        stop: Some(stop),
        _snapshot_key_file: snapshot_key_file,
    }
}

pub(crate) fn dev_ring() -> Keyring {
    Keyring::generate("citypass-test", true, &SystemRandom::new()).unwrap()
}

pub(crate) fn dev_snapshot_key() -> SnapshotKey {
    SnapshotKey::generate(true, &SystemRandom::new()).unwrap()
}

/// The key set the issuer of `ring` publishes once the ring lists `snapshot_key`.
pub(crate) fn published_keys(ring: &Keyring, snapshot_key: &SnapshotKey) -> KeySet {
    let mut ring = Keyring::from_json(&ring.to_json()).unwrap();
    ring.publish_snapshot_key(snapshot_key.public_key())
        .unwrap();
    ring.public_keyset().unwrap()
}

pub(crate) async fn redis_publisher(key: &str) -> Arc<dyn Publisher> {
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

pub(crate) async fn xrange(key: &str) -> Vec<Chained> {
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

pub(crate) async fn list_all(
    client: &mut RevocationServiceClient<Channel>,
) -> (Vec<pb::RevocationEntry>, u64) {
    let mut entries = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_revocations(ListRevocationsRequest {
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
pub(crate) async fn watch_until(
    stream: &mut Streaming<pb::WatchRevocationsResponse>,
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

pub(crate) fn assert_contiguous(entries: &[pb::RevocationEntry], from: u64) {
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(
            e.epoch,
            from + 1 + i as u64,
            "WatchRevocations and ListRevocations never skip an epoch"
        );
    }
}

pub(crate) fn certificate(serial: u8, not_before: u64, not_after: u64) -> Certificate {
    Certificate {
        serial: citypass_token::CertSerial::from_bytes([serial; 16]),
        not_before,
        not_after,
    }
}
