//! The harness: a verifier built by its own `build(config)` and served over real mTLS
//! on loopback, a real revocation service it follows (memory log, Watch), a
//! redis-server of the test's own (so a test can stop it), and real codes signed with
//! real keys.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use citypass_pki::Subject;
use citypass_proto::v1::revocation_service_client::RevocationServiceClient;
use citypass_proto::v1::verifier_service_client::VerifierServiceClient;
use citypass_proto::v1::{self as pb, RevokeRequest, VerifyRequest, VerifyResponse};
use citypass_revocation_service::{
    Certificate, CertificateDirectory, DirectoryError, LocalPublisher, MemoryLog, Owner, Registry,
    RevocationApi, Settings, SnapshotKeySigner,
};
use citypass_runtime::config::{KeyFile, RedisConfig};
use citypass_runtime::{Deadline, Role, ServerConfig, Tls, UpstreamConfig};
use citypass_testkit::tls::{As, TestPki};
use citypass_testkit::{Served, serve};
use citypass_token::{
    DeviceKey, Issuer, IssuerKey, KeySet, KeyStatus, KeyUsage, OfflineSigner, PublishedKey, Scopes,
    SnapshotKey, SubjectKey, SubjectKeyFile, SystemRandom, unix_now,
};
use citypass_verifier::config::SubjectsSettings;
use citypass_verifier::face::{FaceGalleries, FacePolicy};
use citypass_verifier::{
    Config, FailMode, FixedSubjects, FixedTaps, FollowMode, RevocationView, VenueSettings,
};
use futures::future::BoxFuture;
use tonic::transport::Channel;

/// Every gate the tests use, by scene; `ghost-gate` has a certificate but is not in
/// the registry.
pub const GATES: &str = "gates:
  metro-entry-1: {scene: metro, direction: entry, station: L1-S03, operator: metro}
  metro-exit-1: {scene: metro, direction: exit, station: L1-S03, operator: metro}
  bus-12: {scene: bus, stop: route-12, operator: bus}
  bus-14: {scene: bus, stop: route-14, operator: bus}
  hospital-desk-1: {scene: hospital, hospital: first-hospital, operator: hospital}
  scenic-1: {scene: scenic, venue: west-lake, operator: park}
  scenic-2: {scene: scenic, venue: west-lake, operator: park}
  museum-1: {scene: scenic, venue: tiny-museum, operator: museum}
  hall-counter-1: {scene: government, hall: city-hall, operator: city}
  metro-face-in: {scene: metro, direction: entry, station: L1-S03, operator: metro, face_pass: true, attended: true}
  metro-face-out: {scene: metro, direction: exit, station: L1-S03, operator: metro, face_pass: true, attended: true}
  metro-face-far: {scene: metro, direction: both, station: L2-S01, operator: metro, face_pass: true}
  scenic-face-1: {scene: scenic, venue: west-lake, operator: park, face_pass: true}
";

/// The subject every test code names unless a test says otherwise.
pub const SUBJECT: [u8; 16] = [9; 16];

struct NoCertificates;

impl CertificateDirectory for NoCertificates {
    fn live_certificates<'a>(
        &'a self,
        _owner: Owner<'a>,
        _deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Vec<Certificate>, DirectoryError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
}

/// A redis-server of the test's own on a free loopback port, stopped when dropped.
pub struct OwnRedis {
    pub url: String,
    child: Child,
    paused: std::sync::atomic::AtomicBool,
}

impl OwnRedis {
    pub async fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (./scripts/test installs it)");
        let url = format!("redis://127.0.0.1:{port}/");
        let client = redis::Client::open(url.as_str()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .is_ok()
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        OwnRedis {
            url,
            child,
            paused: std::sync::atomic::AtomicBool::new(false),
        }
    }

    // Used by the shed test binary, not by every binary that shares this harness.
    #[allow(dead_code)]
    /// Pauses the server (SIGSTOP to the test's own process): connections stay open
    /// and commands go unanswered, as on a hung Redis.
    pub fn pause(&self) {
        self.signal("-STOP");
        self.paused.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    #[allow(dead_code)]
    /// Resumes a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
        self.paused
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    #[allow(dead_code)]
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Stops the server (the test's own process, by its handle).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if self.paused.load(std::sync::atomic::Ordering::SeqCst) {
            self.resume();
        }
        self.stop();
    }
}

/// The revocation service, in memory, over TLS with its real table.
pub struct Revocation {
    /// An operator with `revoker`.
    pub client: RevocationServiceClient<Channel>,
    served: Option<Served>,
}

impl Revocation {
    /// Revokes `id` of `kind`; returns the entry's epoch.
    pub async fn revoke(&mut self, kind: pb::TargetKind, id: &str) -> u64 {
        self.client
            .revoke(RevokeRequest {
                target_kind: kind as i32,
                target_id: id.to_owned(),
                reason: pb::RevocationReason::Fraud as i32,
                ..Default::default()
            })
            .await
            .expect("Revoke")
            .into_inner()
            .entry
            .expect("an entry")
            .epoch
    }

    /// Stops the service: the verifier's revocation data then ages.
    pub fn stop(&mut self) {
        self.served = None;
    }
}

/// The verifier under test and everything around it.
pub struct Harness {
    pub pki: TestPki,
    pub addr: SocketAddr,
    pub issuer: Issuer,
    /// A code key that is not in the key set.
    pub stranger: Issuer,
    /// A code key the key set lists as revoked.
    pub revoked_key: Issuer,
    pub revocation: Revocation,
    pub redis: OwnRedis,
    pub revocations: RevocationView,
    pub gates_file: std::path::PathBuf,
    pub rng: SystemRandom,
    /// The codes' holders (a test double of the `Subjects` seam).
    pub subjects: Arc<FixedSubjects>,
    /// Payments' taps at metro and bus gates (a test double of the `TransitTaps` seam).
    pub transit: Arc<FixedTaps>,
    /// The counters' face templates (what identity's feed fills in a running service).
    pub faces: Arc<FaceGalleries>,
    pub config: Config,
    served: Served,
    _dir: tempfile::TempDir,
}

/// The subject key of `issuer_of(1)` (the harness's issuer), id 0.
pub const ISSUER_SUBJECT_KEY: [u8; 32] = [101; 32];

fn issuer_of(seed: u8) -> Issuer {
    Issuer::new(
        "citypass-test",
        IssuerKey::from_seed(&[seed; 32]).unwrap(),
        SubjectKey::from_bytes(&[seed.wrapping_add(100); 32]).unwrap(),
    )
}

fn published(issuer: &Issuer, status: KeyStatus) -> PublishedKey {
    PublishedKey {
        key: issuer.key().public_key().clone(),
        status,
        usage: KeyUsage::Code,
    }
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(None).await
    }

    /// [`Harness::start`], refreshing the key set from the issuer at `issuer` too.
    pub async fn start_with(issuer_url: Option<String>) -> Harness {
        Harness::start_full(issuer_url, Arc::new(FaceGalleries::new())).await
    }

    /// [`Harness::start`] with these face galleries (e.g. fed ones that never sync).
    pub async fn start_with_faces(faces: Arc<FaceGalleries>) -> Harness {
        Harness::start_full(None, faces).await
    }

    async fn start_full(issuer_url: Option<String>, faces: Arc<FaceGalleries>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new("verifier");
        let rng = SystemRandom::new();

        // The revocation service, with a certificate of the same CA.
        let issued = pki
            .ca()
            .issue(&Subject::service("revocation"))
            .expect("a certificate");
        let revocation_tls = Tls::from_pem(
            pki.ca().cert_pem().as_bytes(),
            Some((issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())),
        )
        .unwrap();
        let settings = Settings {
            poll_interval: Duration::from_millis(50),
            heartbeat_interval: Duration::from_millis(200),
            stale_after: Duration::from_secs(1),
            cascade_sweep_delay: Duration::ZERO,
            ..Settings::default()
        };
        let server =
            citypass_runtime::Server::new(ServerConfig::new("revocation-test")).tls(revocation_tls);
        // Watch streams end when the server drains, so that stopping it stops the
        // follower's heartbeats (as the revocation service's own build wires it).
        let registry = Registry::new(
            settings,
            Arc::new(MemoryLog::new()),
            Arc::new(LocalPublisher::new(1024)),
            Arc::new(NoCertificates),
            Arc::new(SnapshotKeySigner::from_key(
                SnapshotKey::generate(true, &rng).unwrap(),
            )),
        )
        .unwrap()
        .ends_watches_on(server.draining());
        let revocation_served = serve(server.add_service(
            RevocationApi::new(Arc::new(registry)).into_server(),
            &citypass_revocation_service::AUTHORIZATION,
        ))
        .await;
        let revocation = Revocation {
            client: RevocationServiceClient::new(
                pki.channel(revocation_served.addr, &As::Operator(&[Role::Revoker])),
            ),
            served: None,
        };
        let revocation_url = format!("https://{}", revocation_served.addr);
        let mut revocation = revocation;
        revocation.served = Some(revocation_served);

        // Keys: the issuer's (active), a revoked one; a stranger's is not published.
        let issuer = issuer_of(1);
        let revoked_key = issuer_of(2);
        let stranger = issuer_of(3);
        let set = KeySet::new(vec![
            published(&issuer, KeyStatus::Active),
            published(&revoked_key, KeyStatus::Revoked),
        ])
        .unwrap();
        let key_set_path = dir.path().join("keyset.jwks.json");
        std::fs::write(&key_set_path, set.to_jwks()).unwrap();
        let gates_file = dir.path().join("gates.yaml");
        std::fs::write(&gates_file, GATES).unwrap();

        let redis = OwnRedis::start().await;
        let mut server = ServerConfig::new("verifier-test");
        server.tls = Some(pki.server_files(dir.path()));
        let mut config = Config::dev(server);
        config.key_set = KeyFile::new(&key_set_path, Duration::from_millis(50));
        config.gates = KeyFile::new(&gates_file, Duration::from_millis(50));
        let mut redis_config = RedisConfig::new(redis.url.clone());
        redis_config.timeout = Duration::from_millis(500);
        config.redis = Some(redis_config);
        config.redis_key_prefix = citypass_testkit::unique("citypass:test:verifier:");
        config.revocation.service = UpstreamConfig::new(revocation_url);
        config.revocation.follow = FollowMode::Watch;
        config.revocation.max_age = Duration::from_secs(2);
        config.issuer = issuer_url.map(UpstreamConfig::new);
        // The issuer's subject key (id 0), in a subject-key file of its own: the holder
        // step opens the codes' subjects with it. Identity is never asked (the policies'
        // profiles come from the fixed source), so its URL leads nowhere.
        let subject_keys_path = dir.path().join("subject-keys.json");
        std::fs::write(
            &subject_keys_path,
            SubjectKeyFile::new(true, &[(0, ISSUER_SUBJECT_KEY, None)]).to_json(),
        )
        .unwrap();
        config.subjects = Some(SubjectsSettings::dev(
            KeyFile::new(&subject_keys_path, Duration::from_millis(50)),
            UpstreamConfig::new("https://127.0.0.1:9"),
        ));
        // Scenic gates let visitors in when Redis is down; the others fail closed.
        config.scenes.scenic.fail = FailMode::Open;
        // Hospital desks require the holder confirmed; government counters offer a
        // face check.
        config.face.hospital = FacePolicy::Required;
        config.face.government = FacePolicy::Offered;
        config.scenes.scenic.venues.insert(
            "tiny-museum".to_owned(),
            VenueSettings {
                capacity: 1,
                ..VenueSettings::default()
            },
        );
        let subjects = Arc::new(FixedSubjects::new(FixedSubjects::citizen(
            citypass_token::SubjectId::from_bytes(SUBJECT),
        )));

        let transit = Arc::new(FixedTaps::default());
        let (served, revocations) = start_verifier(
            config.clone(),
            subjects.clone(),
            transit.clone(),
            faces.clone(),
        )
        .await;
        Harness {
            addr: served.addr,
            pki,
            issuer,
            stranger,
            revoked_key,
            revocation,
            redis,
            revocations,
            gates_file,
            rng,
            subjects,
            transit,
            faces,
            config,
            served,
            _dir: dir,
        }
    }

    /// Stops the verifier and builds and serves it again from the same configuration
    /// (same Redis, same key prefix): a restart. Clients made before it keep the old
    /// address; make new ones.
    pub async fn restart_verifier(&mut self) {
        let (served, revocations) = start_verifier(
            self.config.clone(),
            self.subjects.clone(),
            self.transit.clone(),
            self.faces.clone(),
        )
        .await;
        self.served = served;
        self.addr = self.served.addr;
        self.revocations = revocations;
    }

    /// A client that is gate `id`.
    pub fn gate(&self, id: &'static str) -> VerifierServiceClient<Channel> {
        VerifierServiceClient::new(self.pki.channel(self.addr, &As::Gate(id)))
    }

    /// A fresh online code for `scopes`.
    pub fn code(&self, scopes: Scopes) -> citypass_token::IssuedToken {
        self.issuer
            .issue_token(&SUBJECT, scopes, unix_now(), 60)
            .unwrap()
    }

    /// A fresh online code (every scope) whose holder is `holder`: the code seals
    /// `holder.subject` (the verifier's holder step opens it, and the policies decide
    /// on what it opened), whose profile the fixed source then answers.
    pub fn code_of(&self, holder: citypass_verifier::FixedHolder) -> citypass_token::IssuedToken {
        let code = self
            .issuer
            .issue_token(holder.subject.as_bytes(), Scopes::all(), unix_now(), 60)
            .unwrap();
        self.subjects.set_for_code(code.cti, holder);
        code
    }

    /// A device certificate and a signer of offline codes under it.
    pub fn offline_signer(&self, scopes: Scopes) -> (OfflineSigner, citypass_token::CertSerial) {
        let key = DeviceKey::generate(&self.rng).unwrap();
        let certificate = self
            .issuer
            .certify(&[9; 16], key.public_key(), scopes, unix_now(), 3600)
            .unwrap();
        let serial = certificate.serial;
        (OfflineSigner::new(key, certificate.bytes).unwrap(), serial)
    }
}

/// Builds the verifier from `config` with `subjects` and `transit`, waits for its
/// follower's first sync, serves it.
async fn start_verifier(
    config: Config,
    subjects: Arc<FixedSubjects>,
    transit: Arc<FixedTaps>,
    faces: Arc<FaceGalleries>,
) -> (Served, RevocationView) {
    let citypass_verifier::Built {
        server,
        revocations,
        ..
    } = citypass_verifier::build_replacing(
        config,
        citypass_verifier::Replacements {
            policy_subjects: Some(subjects),
            transit: Some(transit),
            face_templates: Some(faces),
        },
    )
    .await
    .expect("the verifier builds");
    tokio::time::timeout(Duration::from_secs(30), revocations.wait_synced())
        .await
        .expect("the follower syncs");
    (serve(server).await, revocations)
}

/// A citizen other than the default one (subject `[n; 16]`), with their profile
/// changed by `change`.
pub fn holder(
    n: u8,
    change: impl FnOnce(&mut citypass_verifier::SubjectProfile),
) -> citypass_verifier::FixedHolder {
    let mut holder = FixedSubjects::citizen(citypass_token::SubjectId::from_bytes([n; 16]));
    if let Ok(profile) = holder.profile.as_mut() {
        change(profile);
    }
    holder
}

/// A request from `gate` for `scene`.
pub fn request(gate: &str, scene: pb::Scene, scan_id: &str, code: &str) -> VerifyRequest {
    VerifyRequest {
        gate_id: gate.to_owned(),
        scene: scene as i32,
        scan_id: scan_id.to_owned(),
        qr_text: code.to_owned(),
        ..VerifyRequest::default()
    }
}

/// Calls Verify and expects an answer (not a status).
pub async fn verify(
    client: &mut VerifierServiceClient<Channel>,
    request: VerifyRequest,
) -> VerifyResponse {
    client
        .verify(request)
        .await
        .expect("an answer, not a status")
        .into_inner()
}

/// The reason of a DENY (panics on ALLOW).
pub fn denied(response: &VerifyResponse) -> pb::DenyReason {
    assert_eq!(
        response.decision,
        pb::Decision::Deny as i32,
        "expected a DENY: {response:?}"
    );
    pb::DenyReason::try_from(response.deny_reason).expect("a known reason")
}

/// Asserts an ALLOW.
pub fn allowed(response: &VerifyResponse) {
    assert_eq!(
        response.decision,
        pb::Decision::Allow as i32,
        "expected an ALLOW: {response:?}"
    );
    assert_eq!(response.deny_reason, pb::DenyReason::Unspecified as i32);
}
