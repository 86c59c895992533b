//! Shared helpers for citypass's end-to-end tests (the tests themselves are in `tests/`).
//!
//! Every test starts the real services in process with [`citypass_stack::Stack`]: identity
//! and issuer each on their own loopback socket, talking real gRPC to each other (the
//! issuer reads devices and records certificates at identity through its client), with
//! identity on a fresh PostgreSQL database and the issuer's nonces in the real Redis,
//! under a key prefix of its own. The servers are the ones `./scripts/test` starts; a
//! test run without them fails (never skips), because [`citypass_testkit`] panics when
//! their URLs are missing.
//!
//! What is here:
//! - [`TestStack`]: a running stack with its database pool and Redis prefix, so a test
//!   can prove that a refused call changed nothing ([`TestStack::state`]), and clients
//!   for the calls the app does not make ([`TestStack::identity`],
//!   [`TestStack::issuer`]);
//! - citizens: [`TestStack::citizen`] (an [`App`] enrolled and bound), [`resident_id`]
//!   (valid GB 11643 numbers, unique within a process), [`wrong_check_digit`];
//! - requests the app would sign, built by hand: [`device_key`],
//!   [`signed_issue_token`];
//! - [`within`]: every await on a service is bounded, so a hang fails fast instead of
//!   stalling the suite; [`code_of`] and [`expect_code`] for precise statuses;
//! - [`manifests`]: the Kubernetes overlays as kubectl renders them.

pub mod manifests;
pub mod scans;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use citypass_app::{App, AppError, AppState, Endpoints};
use citypass_device_proof::{ISSUE_TOKEN, sign_request};
use citypass_issuer::{IssuanceConfig, KeySource};
use citypass_proto::v1::identity_service_client::IdentityServiceClient;
use citypass_proto::v1::issuer_service_client::IssuerServiceClient;
use citypass_proto::v1::revocation_service_client::RevocationServiceClient;
use citypass_proto::v1::{DocumentType, IssueTokenRequest};
use citypass_runtime::{Role, Tls, UpstreamConfig};
use citypass_stack::{IdentityStore, KeyFile, NonceBackend, RevocationBackend, Stack, StackConfig};
use citypass_token::{DeviceKey, Keyring, Kid, SnapshotKey, SystemRandom};
use sqlx::PgPool;
use tonic::transport::Channel;
use tonic::{Code, Status};

pub use scans::{decide, deny_reason, link_sandbox, online_code, scan};

/// The longest any single step (one RPC, a start-up, a shutdown) may take before the
/// test fails: generous for a loaded CI machine, short enough to fail fast on a hang.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the whole stack may take to start (generous: a condition, not a speed).
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The tables of the identity database, all of which a refused call must leave alone.
pub const TABLES: [&str; 4] = [
    "subjects",
    "devices",
    "binding_challenges",
    "device_certificates",
];

/// Awaits `work` for at most [`STEP_TIMEOUT`], panicking with `what` if it takes longer.
pub async fn within<F: Future>(what: &str, work: F) -> F::Output {
    match tokio::time::timeout(STEP_TIMEOUT, work).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: no answer within {STEP_TIMEOUT:?}"),
    }
}

/// Waits (generously: payments' charges and identity's feeds are asynchronous, and a
/// newcomer's machine is busy building) until `check` holds for the rider's trips;
/// panics with `what` and the trips after 60 s.
pub async fn trips_until(
    app: &mut App,
    what: &str,
    check: impl Fn(&[citypass_proto::v1::Trip]) -> bool,
) -> Vec<citypass_proto::v1::Trip> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let trips = within("GetTrips", app.trips(0, ""))
            .await
            .expect("trips")
            .trips;
        if check(&trips) {
            return trips;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {trips:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A fresh dev key ring (what `citypass keys generate` makes).
pub fn dev_ring() -> Keyring {
    Keyring::generate("citypass-e2e", true, &SystemRandom::new()).expect("generate a key ring")
}

/// `keys` with `snapshot_key`'s public half published in the ring (rewriting a ring
/// file in place).
fn publish_snapshot_key(keys: KeySource, snapshot_key: &SnapshotKey) -> KeySource {
    match keys {
        KeySource::Memory(mut ring) => {
            ring.publish_snapshot_key(snapshot_key.public_key())
                .expect("publish the snapshot key");
            KeySource::Memory(ring)
        }
        KeySource::File {
            path,
            reload_interval,
        } => {
            let json = std::fs::read_to_string(&path).expect("read the ring");
            let mut ring = Keyring::from_json(&json).expect("the ring parses");
            ring.publish_snapshot_key(snapshot_key.public_key())
                .expect("publish the snapshot key");
            std::fs::write(&path, ring.to_json()).expect("write the ring");
            KeySource::File {
                path,
                reload_interval,
            }
        }
    }
}

/// A copy of `ring` (rings hold secrets and are deliberately not `Clone`).
pub fn copy_ring(ring: &Keyring) -> Keyring {
    Keyring::from_json(&ring.to_json()).expect("a ring's own file parses")
}

/// GB 11643 check character of the first 17 digits of a resident ID number
/// (ISO 7064 MOD 11-2), computed here independently of the identity service.
pub fn gb11643_check(first17: &str) -> char {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    assert_eq!(first17.len(), 17, "17 digits");
    let sum: u32 = first17
        .chars()
        .zip(WEIGHTS)
        .map(|(c, w)| c.to_digit(10).expect("a digit") * w)
        .sum();
    char::from(CHECK[(sum % 11) as usize])
}

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A valid resident ID number (Beijing Chaoyang, a real birth date, the right check
/// character), different from every other one this process made.
pub fn resident_id() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let year = 1950 + (n / 1000) % 60;
    let first17 = format!("110105{year}0307{:03}", n % 1000);
    let check = gb11643_check(&first17);
    format!("{first17}{check}")
}

/// `number` with a check character that is well-formed but wrong.
pub fn wrong_check_digit(number: &str) -> String {
    let (first17, right) = number.split_at(17);
    let wrong = if right == "0" { '1' } else { '0' };
    format!("{first17}{wrong}")
}

/// The status inside an app error (panics on any other kind of error).
#[track_caller]
pub fn status_of(err: AppError) -> Status {
    match err {
        AppError::Rpc { status, .. } => *status,
        other => panic!("expected a refusal by a service, got {other}"),
    }
}

/// The code of a refusal; panics if the call succeeded.
#[track_caller]
pub fn code_of<T: std::fmt::Debug>(result: Result<T, Status>) -> Code {
    result.expect_err("the call must be refused").code()
}

/// Asserts that `result` is a refusal with `code`, and returns the status.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    let status = result.expect_err("the call must be refused");
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    status
}

/// The bound device key an app holds.
pub fn device_key(app: &App) -> DeviceKey {
    let pkcs8 = app
        .state
        .device_key_pkcs8
        .as_deref()
        .map(|h| hex::decode(h).expect("hex device key"))
        .expect("the app has bound a device");
    DeviceKey::from_pkcs8(&pkcs8, &SystemRandom::new()).expect("device key")
}

/// An app's subject and device ids.
pub fn ids(app: &App) -> (String, String) {
    (
        app.state.subject_id.clone().expect("enrolled"),
        app.state.device_id.clone().expect("bound"),
    )
}

/// An IssueToken request for `subject_id` and `device_id`, signed by `key` now with a
/// fresh nonce, exactly as the app signs it.
pub fn signed_issue_token(subject_id: &str, device_id: &str, key: &DeviceKey) -> IssueTokenRequest {
    let mut request = IssueTokenRequest {
        subject_id: subject_id.to_owned(),
        device_id: device_id.to_owned(),
        ..IssueTokenRequest::default()
    };
    request.proof = Some(sign_request(ISSUE_TOKEN, &request, key).expect("sign"));
    request
}

/// What a refused call must leave unchanged: a digest of every identity table and the
/// issuer's Redis keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// `(table, "rows:md5 of the rows")` for each of [`TABLES`].
    pub tables: Vec<(&'static str, String)>,
    /// The issuer's Redis keys (request nonces, offline-key marks), sorted.
    pub redis_keys: Vec<String>,
}

/// A running stack on real PostgreSQL and Redis (see the crate documentation).
pub struct TestStack {
    /// The services.
    pub stack: Stack,
    /// The identity database, to count and digest rows.
    pub pool: PgPool,
    /// The test Redis server.
    pub redis_url: String,
    /// The revocation service's snapshot key (published in the issuer's ring).
    pub snapshot_kid: Kid,
    /// The issuer's key prefix there, unique to this stack.
    pub redis_prefix: String,
    /// The stack's files (its dev PKI), removed with the stack.
    _dir: tempfile::TempDir,
}

impl TestStack {
    /// Starts identity (fresh PostgreSQL database), the revocation service (another
    /// fresh database, a stream of its own, a fresh snapshot key in a file of its own)
    /// and the issuer (nonces in Redis under a fresh prefix, following the revocation
    /// stream) with these keys and issuance settings. The snapshot key's public half
    /// is published in the ring: in memory, or written into the ring's file.
    pub async fn start(keys: KeySource, issuance: IssuanceConfig) -> TestStack {
        Self::start_with(keys, issuance, |_| {}).await
    }

    /// [`TestStack::start`], with `configure` changing the stack's configuration last
    /// (e.g. scenic venues of a test's own, `StackConfig::scenic_venues`).
    pub async fn start_with(
        keys: KeySource,
        issuance: IssuanceConfig,
        configure: impl FnOnce(&mut StackConfig),
    ) -> TestStack {
        let (pool, database_url) =
            within("create a database", citypass_testkit::fresh_database()).await;
        let redis_url = citypass_testkit::redis_url();
        let redis_prefix = citypass_testkit::unique("citypass-e2e:");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let snapshot_key = SnapshotKey::generate(true, &SystemRandom::new()).expect("snapshot key");
        let keys = publish_snapshot_key(keys, &snapshot_key);
        let snapshot_key_path = dir.path().join("snapshot-key.json");
        std::fs::write(&snapshot_key_path, snapshot_key.to_json()).expect("write the snapshot key");
        let mut config = StackConfig::ephemeral(
            keys,
            KeyFile::new(snapshot_key_path, Duration::from_secs(3600)),
            dir.path(),
        );
        config.identity_store = IdentityStore::Postgres(database_url);
        config.nonces = NonceBackend::Redis {
            url: redis_url.clone(),
            prefix: redis_prefix.clone(),
        };
        // The revocation log on a database of its own, fanned out through a stream
        // of its own.
        let (_, revocation_database) =
            within("create a database", citypass_testkit::fresh_database()).await;
        config.revocation = RevocationBackend::Postgres {
            database_url: revocation_database,
            redis_url: redis_url.clone(),
            stream_key: citypass_testkit::unique("citypass-e2e-revocation:"),
        };
        config.issuance = issuance;
        configure(&mut config);
        // Start-up builds five services and waits for three revocation followers' first
        // sync: on a busy machine (a cold build beside the tests) that takes longer
        // than one step.
        let stack = tokio::time::timeout(START_TIMEOUT, Stack::start(config))
            .await
            .unwrap_or_else(|_| panic!("start the stack: no answer within {START_TIMEOUT:?}"))
            .expect("the stack starts");
        TestStack {
            stack,
            pool,
            redis_url,
            snapshot_kid: snapshot_key.kid(),
            redis_prefix,
            _dir: dir,
        }
    }

    /// Starts with `ring` held in memory, the issuer's default settings except the
    /// identity cache, which is off so that a suspension or an unbind is seen by the
    /// next call.
    pub async fn with_ring(ring: &Keyring) -> TestStack {
        Self::with_ring_and(ring, |_| {}).await
    }

    /// [`TestStack::with_ring`], with `configure` changing the stack's configuration.
    pub async fn with_ring_and(
        ring: &Keyring,
        configure: impl FnOnce(&mut StackConfig),
    ) -> TestStack {
        let issuance = IssuanceConfig {
            identity_cache_ttl: Duration::ZERO,
            ..IssuanceConfig::default()
        };
        Self::start_with(KeySource::Memory(copy_ring(ring)), issuance, configure).await
    }

    /// The services' URLs.
    pub fn endpoints(&self) -> Endpoints {
        self.stack.endpoints()
    }

    /// A new, empty app against this stack.
    pub fn app(&self) -> App {
        App::new(&self.endpoints(), AppState::default()).expect("app")
    }

    /// An app whose citizen is enrolled (with a fresh resident ID number) and whose
    /// device is bound.
    pub async fn citizen(&self, name: &str) -> App {
        let mut app = self.app();
        within(
            "enrol",
            app.enrol(DocumentType::ResidentIdCard, &resident_id(), name),
        )
        .await
        .expect("enrol");
        within("bind", app.bind("e2e phone")).await.expect("bind");
        app
    }

    /// A client of the identity service as an `identity-admin` operator, for calls the
    /// app does not make.
    pub async fn identity(&self) -> IdentityServiceClient<Channel> {
        let tls = self
            .stack
            .operator_tls("e2e-admin", &[Role::IdentityAdmin])
            .expect("operator TLS");
        IdentityServiceClient::new(channel(&self.endpoints().identity, &tls).await)
    }

    /// A client of the identity service as the face counter `counter` (role
    /// `face-counter`): consents and enrolments in person.
    pub async fn face_counter(&self, counter: &str) -> IdentityServiceClient<Channel> {
        let tls = self
            .stack
            .operator_tls(counter, &[Role::FaceCounter])
            .expect("operator TLS");
        IdentityServiceClient::new(channel(&self.endpoints().identity, &tls).await)
    }

    /// A client of the revocation service, as an operator (revoker, key-admin,
    /// auditor) uses it.
    pub async fn revocation(&self) -> RevocationServiceClient<Channel> {
        let tls = self
            .stack
            .operator_tls(
                "e2e-revoker",
                &[Role::Revoker, Role::KeyAdmin, Role::Auditor],
            )
            .expect("operator TLS");
        RevocationServiceClient::new(channel(&self.stack.revocation_url(), &tls).await)
    }

    /// A channel to identity with `caller`'s certificate (a service's, to call as it).
    pub async fn identity_as(&self, caller: &citypass_pki::Subject) -> Channel {
        let tls = self.stack.client_tls(Some(caller)).expect("TLS");
        channel(&self.endpoints().identity, &tls).await
    }

    /// A client of the issuer without a certificate, as an app, for requests the app
    /// would not send.
    pub async fn issuer(&self) -> IssuerServiceClient<Channel> {
        let tls = self.stack.client_tls(None).expect("TLS");
        IssuerServiceClient::new(channel(&self.endpoints().issuer, &tls).await)
    }

    /// A client of the verifier as gate `id` (its certificate from the stack's CA).
    pub async fn verifier(
        &self,
        id: &str,
    ) -> citypass_proto::v1::verifier_service_client::VerifierServiceClient<Channel> {
        let tls = self.stack.gate_tls(id).expect("gate TLS");
        citypass_proto::v1::verifier_service_client::VerifierServiceClient::new(
            channel(&self.stack.verifier_url(), &tls).await,
        )
    }

    /// A client of the stack's payments service, calling as `caller` (the verifier's
    /// service certificate for TapIn/TapOut).
    pub async fn payments(
        &self,
        caller: &citypass_pki::Subject,
    ) -> citypass_proto::v1::payments_service_client::PaymentsServiceClient<Channel> {
        let tls = self.stack.client_tls(Some(caller)).expect("client TLS");
        citypass_proto::v1::payments_service_client::PaymentsServiceClient::new(
            channel(&format!("https://{}", self.stack.payments), &tls).await,
        )
    }

    /// A client of the stack's payments service without a certificate, as an app, for
    /// requests the app would not send (unsigned, replayed).
    pub async fn payments_app(
        &self,
    ) -> citypass_proto::v1::payments_service_client::PaymentsServiceClient<Channel> {
        let tls = self.stack.client_tls(None).expect("TLS");
        citypass_proto::v1::payments_service_client::PaymentsServiceClient::new(
            channel(&self.endpoints().payments, &tls).await,
        )
    }

    /// Rows in `table` of the identity database.
    pub async fn rows(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        within("count rows", sqlx::query_scalar(&sql).fetch_one(&self.pool))
            .await
            .expect("count rows")
    }

    /// The issuer's Redis keys, sorted.
    pub async fn redis_keys(&self) -> Vec<String> {
        let client = redis::Client::open(self.redis_url.as_str()).expect("Redis URL");
        let mut connection = within(
            "connect to Redis",
            client.get_multiplexed_async_connection(),
        )
        .await
        .expect("connect to Redis");
        let mut keys: Vec<String> = within(
            "list Redis keys",
            redis::cmd("KEYS")
                .arg(format!("{}*", self.redis_prefix))
                .query_async(&mut connection),
        )
        .await
        .expect("KEYS");
        keys.sort();
        keys
    }

    /// Everything a refused call must leave unchanged (see [`State`]).
    pub async fn state(&self) -> State {
        let mut tables = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            let sql = format!(
                "SELECT count(*)::text || ':' || \
                 coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t"
            );
            let digest: String = within(
                "digest a table",
                sqlx::query_scalar(&sql).fetch_one(&self.pool),
            )
            .await
            .expect("digest a table");
            tables.push((table, digest));
        }
        State {
            tables,
            redis_keys: self.redis_keys().await,
        }
    }

    /// Stops both services (drain, exit) and waits for them.
    pub async fn shutdown(self) {
        within("shut the stack down", self.stack.shutdown()).await;
    }
}

async fn channel(url: &str, tls: &Arc<Tls>) -> Channel {
    let mut upstream = UpstreamConfig::new(url);
    upstream.connect_timeout = STEP_TIMEOUT;
    upstream.request_timeout = STEP_TIMEOUT;
    upstream.channel(Some(tls)).expect("a channel")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_ids_carry_the_gb11643_check_character() {
        // The worked example of GB 11643-1999.
        assert_eq!(gb11643_check("11010519491231002"), 'X');
        let a = resident_id();
        let b = resident_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 18);
        assert_eq!(a.chars().last(), Some(gb11643_check(&a[..17])));
        assert_ne!(wrong_check_digit(&a), a);
    }
}
