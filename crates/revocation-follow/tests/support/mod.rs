//! Real parts for the follower's tests and the propagation example: the revocation
//! service on loopback (PostgreSQL log, Redis publisher), a publisher that can drop or
//! reorder appends, a private redis-server to kill, PostgreSQL switched off and on.

#![allow(dead_code)]

pub mod propagation;

use futures::future::BoxFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use citypass_proto::prost_types::Timestamp;
use citypass_proto::v1::revocation_service_client::RevocationServiceClient;
use citypass_proto::v1::{self as pb, ListRevocationsRequest, ReinstateRequest, RevokeRequest};
use citypass_revocation::TargetKind;
use citypass_revocation_follow::{Follower, FollowerConfig, Source};
use citypass_revocation_service::{
    Certificate, CertificateDirectory, DirectoryError, Log, PostgresLog, PublishError, Publisher,
    Record, RedisPublisher, Registry, RevocationApi, Settings, SnapshotKeySigner,
};
use citypass_runtime::{Deadline, Role, Server, ServerConfig};
use citypass_testkit::tls::{As, TestPki};
use citypass_token::{SnapshotKey, SystemRandom};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub type Client = RevocationServiceClient<Channel>;

// --- the revocation service ---------------------------------------------------------------

/// Identity's certificate list: nobody has certificates (token and subject revocations
/// cascade to nothing).
pub struct NoCertificates;

impl CertificateDirectory for NoCertificates {
    fn live_certificates<'a>(
        &'a self,
        _owner: citypass_revocation_service::Owner<'a>,
        _deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Vec<Certificate>, DirectoryError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
}

/// Service settings for tests: fast polling and heartbeats, no cascade sweep, no clock
/// skew (so a token entry can expire within a test).
pub fn service_settings() -> Settings {
    Settings {
        poll_interval: Duration::from_millis(50),
        heartbeat_interval: Duration::from_millis(200),
        stale_after: Duration::from_secs(1),
        cascade_sweep_delay: Duration::ZERO,
        clock_skew: Duration::ZERO,
        ..Settings::default()
    }
}

/// A running revocation service over TLS with its real authorisation table, and an
/// operator's client for it (revoker, auditor).
pub struct Service {
    pub addr: SocketAddr,
    pub client: Client,
    pub revocations: Arc<Registry>,
    pki: TestPki,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Service {
    /// A client as the issuer, which follows the log.
    pub fn follower_client(&self) -> Client {
        RevocationServiceClient::new(self.pki.channel(self.addr, &As::Service("issuer")))
    }

    /// A follower of this service as `config` says.
    pub fn follow(&self, config: FollowerConfig) -> Follower {
        Follower::start(config, self.follower_client()).expect("follower")
    }
}

pub async fn serve(
    log: Arc<dyn Log>,
    publisher: Arc<dyn Publisher>,
    settings: Settings,
) -> Service {
    let signer =
        SnapshotKeySigner::from_key(SnapshotKey::generate(true, &SystemRandom::new()).unwrap());
    let revocations = Arc::new(
        Registry::new(
            settings,
            log,
            publisher,
            Arc::new(NoCertificates),
            Arc::new(signer),
        )
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
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
    let client = RevocationServiceClient::new(
        pki.channel(addr, &As::Operator(&[Role::Revoker, Role::Auditor])),
    );
    Service {
        addr,
        client,
        revocations,
        pki,
        stop: Some(stop),
    }
}

/// A fresh PostgreSQL log (its own database) and the database's URL.
pub async fn postgres_log() -> (Arc<PostgresLog>, String) {
    let (pool, url) = citypass_testkit::fresh_database().await;
    pool.close().await;
    // Its own pool with the service's acquire timeout, as a deployment has.
    (Arc::new(PostgresLog::connect(&url, 4).await.unwrap()), url)
}

pub async fn redis_publisher(url: &str, key: &str) -> Arc<RedisPublisher> {
    Arc::new(
        RedisPublisher::connect(url, key, 100_000, Duration::from_millis(500))
            .await
            .expect("Redis answers"),
    )
}

pub fn stream_key() -> String {
    citypass_testkit::unique("citypass:test:follow:")
}

// --- a publisher that misbehaves on demand ------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Publish as asked.
    Pass,
    /// Acknowledge and publish nothing (a failed XADD).
    Drop,
    /// Keep the records until [`Controlled::release_reversed`].
    Hold,
}

/// Wraps a real publisher.
pub struct Controlled {
    inner: Arc<dyn Publisher>,
    mode: Mutex<Mode>,
    held: Mutex<Vec<Record>>,
}

impl Controlled {
    pub fn new(inner: Arc<dyn Publisher>) -> Arc<Self> {
        Arc::new(Controlled {
            inner,
            mode: Mutex::new(Mode::Pass),
            held: Mutex::new(Vec::new()),
        })
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Takes the held records without publishing them.
    pub fn take_held(&self) -> Vec<Record> {
        std::mem::take(&mut *self.held.lock().unwrap())
    }

    /// Publishes the held records one by one, last first; returns how many.
    pub async fn release_reversed(&self) -> usize {
        let held: Vec<Record> = std::mem::take(&mut *self.held.lock().unwrap());
        for record in held.iter().rev() {
            self.inner
                .publish(std::slice::from_ref(record))
                .await
                .expect("publish");
        }
        held.len()
    }
}

impl Publisher for Controlled {
    fn publish<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), PublishError>> {
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Pass => self.inner.publish(records),
            Mode::Drop => Box::pin(std::future::ready(Ok(()))),
            Mode::Hold => {
                self.held.lock().unwrap().extend_from_slice(records);
                Box::pin(std::future::ready(Ok(())))
            }
        }
    }
}

// --- calls ----------------------------------------------------------------------------

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// 16 random bytes.
pub fn random_bytes() -> [u8; 16] {
    let hex = citypass_testkit::unique("");
    let mut out = [0u8; 16];
    let more = citypass_testkit::unique("");
    let text = format!("{hex}{more}");
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

pub fn random_id() -> String {
    hex::encode(random_bytes())
}

pub fn revoke_request(kind: TargetKind, id: &str) -> RevokeRequest {
    RevokeRequest {
        target_kind: i32::from(kind.code()),
        target_id: id.to_owned(),
        reason: pb::RevocationReason::Administrative as i32,
        ..Default::default()
    }
}

/// Revokes a fresh token; returns its `cti` and the entry's epoch.
pub async fn revoke_token(client: &mut Client) -> ([u8; 16], u64) {
    let cti = random_bytes();
    let epoch = client
        .revoke(revoke_request(TargetKind::Token, &hex::encode(cti)))
        .await
        .expect("Revoke")
        .into_inner()
        .entry
        .expect("entry")
        .epoch;
    (cti, epoch)
}

/// Revokes a fresh token whose entry expires at `expires_at`.
pub async fn revoke_token_expiring(client: &mut Client, expires_at: u64) -> ([u8; 16], u64) {
    let cti = random_bytes();
    let mut request = revoke_request(TargetKind::Token, &hex::encode(cti));
    request.expires_at = Some(Timestamp {
        seconds: i64::try_from(expires_at).unwrap(),
        nanos: 0,
    });
    let epoch = client
        .revoke(request)
        .await
        .expect("Revoke")
        .into_inner()
        .entry
        .expect("entry")
        .epoch;
    (cti, epoch)
}

/// Revokes a subject or device; returns the entry's epoch.
pub async fn revoke(client: &mut Client, kind: TargetKind, id: &str) -> u64 {
    client
        .revoke(revoke_request(kind, id))
        .await
        .expect("Revoke")
        .into_inner()
        .entry
        .expect("entry")
        .epoch
}

/// Reinstates a subject or device; returns the entry's epoch.
pub async fn reinstate(client: &mut Client, kind: TargetKind, id: &str) -> u64 {
    client
        .reinstate(ReinstateRequest {
            target_kind: i32::from(kind.code()),
            target_id: id.to_owned(),
            reason: pb::ReinstateReason::ArrearsRepaid as i32,
            note: String::new(),
        })
        .await
        .expect("Reinstate")
        .into_inner()
        .entry
        .expect("entry")
        .epoch
}

/// The log's head, from List.
pub async fn head(client: &mut Client) -> u64 {
    client
        .list_revocations(ListRevocationsRequest {
            since_epoch: 0,
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .expect("List")
        .into_inner()
        .head_epoch
}

// --- the follower ---------------------------------------------------------------------

/// Follower timings for tests: short enough that recoveries take a second or so.
pub fn follower_config(source: Source) -> FollowerConfig {
    let mut config = match source {
        Source::Redis { url, stream_key } => FollowerConfig::redis(url, stream_key),
        Source::Watch => FollowerConfig::watch(),
    };
    config.gap_window = Duration::from_millis(300);
    config.block = Duration::from_millis(200);
    config.check_interval = Duration::from_secs(1);
    config.poll_interval = Duration::from_millis(100);
    config.retry_interval = Duration::from_millis(100);
    config.retry_max_interval = Duration::from_millis(400);
    config.request_timeout = Duration::from_secs(2);
    config.watch_silence = Duration::from_secs(2);
    config
}

pub fn redis_source(url: &str, key: &str) -> Source {
    Source::Redis {
        url: url.to_owned(),
        stream_key: key.to_owned(),
    }
}

/// Waits up to `limit` for `condition`, polling every 10 ms.
pub async fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// --- someone with write access to Redis -------------------------------------------------

/// A connection to the Redis a test's stream lives in, as an attacker holds one.
pub async fn attacker(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The entry and chain hash of the stream's last message (what anyone who can read
/// the stream knows).
pub async fn last_message(
    connection: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> citypass_revocation::Chained {
    use citypass_revocation::stream::{FIELD_ENTRY, FIELD_EPOCH, decode_message};
    use redis::AsyncCommands as _;
    let last: redis::streams::StreamRangeReply =
        connection.xrevrange_count(key, "+", "-", 1).await.unwrap();
    let message = last.ids.first().expect("the stream has a message");
    let epoch: Option<Vec<u8>> = message.get(FIELD_EPOCH);
    let entry: Option<Vec<u8>> = message.get(FIELD_ENTRY);
    decode_message(epoch.as_deref(), entry.as_deref()).unwrap()
}

/// Appends a message for `chained` to the stream, as the service's publisher does.
pub async fn xadd(
    connection: &mut redis::aio::MultiplexedConnection,
    key: &str,
    chained: &citypass_revocation::Chained,
) -> String {
    use citypass_revocation::stream::{FIELD_ENTRY, FIELD_EPOCH, encode_entry, epoch_field};
    redis::cmd("XADD")
        .arg(key)
        .arg("*")
        .arg(FIELD_EPOCH)
        .arg(epoch_field(&chained.entry))
        .arg(FIELD_ENTRY)
        .arg(encode_entry(chained))
        .query_async(connection)
        .await
        .unwrap()
}

/// Appends a message for `chained` and deletes it in one atomic step (a script), so
/// that no reader ever sees it: a stream entry deleted before followers read it.
pub async fn xadd_deleted(
    connection: &mut redis::aio::MultiplexedConnection,
    key: &str,
    chained: &citypass_revocation::Chained,
) {
    use citypass_revocation::stream::{FIELD_ENTRY, FIELD_EPOCH, encode_entry, epoch_field};
    let deleted: i64 = redis::cmd("EVAL")
        .arg(
            "local id = redis.call('XADD', KEYS[1], '*', ARGV[1], ARGV[2], ARGV[3], ARGV[4]) \
             return redis.call('XDEL', KEYS[1], id)",
        )
        .arg(1)
        .arg(key)
        .arg(FIELD_EPOCH)
        .arg(epoch_field(&chained.entry))
        .arg(FIELD_ENTRY)
        .arg(encode_entry(chained))
        .query_async(connection)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
}

// --- a private redis-server -----------------------------------------------------------

fn redis_server_binary() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("redis-server"))
        .chain([PathBuf::from("/usr/bin/redis-server")])
        .find(|path| path.is_file())
        .expect("redis-server is installed (./scripts/test installs it)")
}

/// A redis-server of this test's own, on a free port, without persistence: killed
/// with SIGKILL and restarted empty on the same port.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let mut redis = PrivateRedis {
            port,
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        redis.spawn().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new(redis_server_binary())
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        for _ in 0..500 {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "the private redis-server did not answer on port {}",
            self.port
        );
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again, empty, on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

// --- PostgreSQL off and on ------------------------------------------------------------

/// PostgreSQL unavailable to the service (`false`) and back (`true`): see
/// `citypass_testkit::set_database_available`.
pub async fn set_database_available(url: &str, available: bool) {
    citypass_testkit::set_database_available(url, available).await;
}
