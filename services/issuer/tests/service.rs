//! IssuerService over real gRPC on loopback (the runtime's server on 127.0.0.1:0, a
//! tonic client), with an in-process fake of the identity service. End-to-end tests
//! with the real identity service live in the workspace's tests/.
//!
//! What a gate would check is checked here: an issued code verifies against the key
//! set parsed from GetKeySet (whose signature verifies), and an offline code made with
//! a certificate verifies offline. Bad inputs get precise statuses.

use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use citypass_issuer::{
    CertificateRecord, DeviceRecord, Environment, IdentityError, IdentityLookup, IssuanceConfig,
    Keys, MemoryNonceStore, NothingRevoked, RevocationCheck, RevocationError, RevocationStatus,
    issuer_service, sign_request, sign_request_with,
};
use citypass_proto::prost_types;
use citypass_proto::v1::issuer_service_client::IssuerServiceClient;
use citypass_proto::v1::{
    AssuranceLevel, Attributes, DeviceStatus, GetKeySetRequest, IssueDeviceCertificateRequest,
    IssueTokenRequest, Scene, SubjectStatus,
};
use citypass_runtime::{Deadline, Server, ServerConfig};
use citypass_token::{
    DeviceKey, KeySet, Keyring, Kid, OfflineSigner, PublicKey, SubjectKey, SystemRandom,
    Validation, verify_key_set, verify_offline, verify_online,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;

const ISSUE_TOKEN: &str = citypass_issuer::ISSUE_TOKEN;
const ISSUE_CERTIFICATE: &str = citypass_issuer::ISSUE_DEVICE_CERTIFICATE;

// ---------------------------------------------------------------------------------
// The fake identity service.

#[derive(Default)]
struct FakeIdentity {
    devices: Mutex<HashMap<String, DeviceRecord>>,
    recorded: Mutex<Vec<CertificateRecord>>,
    fail_recording: AtomicBool,
}

impl FakeIdentity {
    fn put(&self, record: DeviceRecord) {
        self.devices
            .lock()
            .unwrap()
            .insert(record.device_id.clone(), record);
    }

    fn update(&self, device_id: &str, change: impl FnOnce(&mut DeviceRecord)) {
        change(
            self.devices
                .lock()
                .unwrap()
                .get_mut(device_id)
                .expect("device"),
        );
    }

    fn recorded(&self) -> Vec<CertificateRecord> {
        self.recorded.lock().unwrap().clone()
    }
}

impl IdentityLookup for FakeIdentity {
    fn get_device<'a>(
        &'a self,
        device_id: &'a str,
        _deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Option<Arc<DeviceRecord>>, IdentityError>> {
        let found = self
            .devices
            .lock()
            .unwrap()
            .get(device_id)
            .cloned()
            .map(Arc::new);
        Box::pin(std::future::ready(Ok(found)))
    }

    fn record_certificate<'a>(
        &'a self,
        certificate: &'a CertificateRecord,
        _deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<(), IdentityError>> {
        let result = if self.fail_recording.load(Ordering::SeqCst) {
            Err(IdentityError::Unavailable(tonic::Status::unavailable(
                "down",
            )))
        } else {
            self.recorded.lock().unwrap().push(certificate.clone());
            Ok(())
        };
        Box::pin(std::future::ready(result))
    }
}

/// Revokes one subject (to show the check is asked).
struct RevokedSubject(String);

impl RevocationCheck for RevokedSubject {
    fn check<'a>(
        &'a self,
        subject_id: &'a str,
        _device_id: &'a str,
    ) -> BoxFuture<'a, Result<RevocationStatus, RevocationError>> {
        let status = if subject_id == self.0 {
            RevocationStatus::SubjectRevoked
        } else {
            RevocationStatus::NotRevoked
        };
        Box::pin(std::future::ready(Ok(status)))
    }
}

// ---------------------------------------------------------------------------------
// The harness: an issuer served on loopback, and one citizen with a bound device.

struct Citizen {
    subject_id: String,
    device_id: String,
    key: DeviceKey,
}

struct Harness {
    client: IssuerServiceClient<Channel>,
    identity: Arc<FakeIdentity>,
    keys: Arc<Keys>,
    ring_json: String,
    subject_key: SubjectKey,
    rng: SystemRandom,
    _stop: oneshot::Sender<()>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

impl Harness {
    async fn start() -> Self {
        Self::start_with(Arc::new(NothingRevoked)).await
    }

    async fn start_with(revocation: Arc<dyn RevocationCheck>) -> Self {
        let rng = SystemRandom::new();
        let ring = Keyring::generate("citypass-test", true, &rng).expect("ring");
        let subject_key = ring.subject_key().expect("subject key");
        let ring_json = ring.to_json();
        let keys = Keys::from_keyring(ring, Environment::Dev).expect("keys");
        let identity = Arc::new(FakeIdentity::default());
        let config = IssuanceConfig {
            // Status changes in the fake show at once.
            identity_cache_ttl: Duration::ZERO,
            ..IssuanceConfig::default()
        };
        let service = issuer_service(
            config,
            keys.clone(),
            Arc::new(MemoryNonceStore::new(10_000)),
            identity.clone(),
            revocation,
        )
        .expect("service");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            Server::new(ServerConfig::new("issuer-test"))
                .add_service(service, &citypass_issuer::AUTHORIZATION)
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
                .expect("server");
        });
        let client = IssuerServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        Harness {
            client,
            identity,
            keys,
            ring_json,
            subject_key,
            rng,
            _stop: stop,
        }
    }

    /// A citizen at `level`, with one ACTIVE device bound.
    fn citizen(&self, level: AssuranceLevel) -> Citizen {
        let key = DeviceKey::generate(&self.rng).expect("device key");
        let mut id = [0u8; 16];
        citypass_token::SecureRandom::fill(&self.rng, &mut id).unwrap();
        let mut device = [0u8; 16];
        citypass_token::SecureRandom::fill(&self.rng, &mut device).unwrap();
        let citizen = Citizen {
            subject_id: hex::encode(id),
            device_id: hex::encode(device),
            key,
        };
        self.identity.put(DeviceRecord {
            device_id: citizen.device_id.clone(),
            subject_id: citizen.subject_id.clone(),
            public_key: citizen.key.public_key().clone(),
            device_status: DeviceStatus::Active,
            subject_status: SubjectStatus::Active,
            attributes: Attributes {
                assurance_level: level as i32,
                ..Attributes::default()
            },
        });
        citizen
    }

    /// The key set as a gate gets it: GetKeySet, signature checked, JWKS parsed.
    async fn key_set(&mut self) -> KeySet {
        let response = self
            .client
            .get_key_set(GetKeySetRequest {})
            .await
            .expect("GetKeySet")
            .into_inner();
        let set = KeySet::from_jwks(std::str::from_utf8(&response.jwks_json).unwrap())
            .expect("JWKS parses");
        let kid = Kid::from_slice(&response.signing_kid).expect("kid");
        let signer = set.get(&kid).expect("the signer is published");
        verify_key_set(&signer.key, &response.jwks_json, &response.signature)
            .expect("key set signature verifies");
        assert_eq!(response.keys.len(), set.keys().len());
        set
    }

    async fn issue(
        &mut self,
        request: IssueTokenRequest,
    ) -> Result<citypass_proto::v1::IssueTokenResponse, tonic::Status> {
        self.client
            .issue_token(request)
            .await
            .map(|r| r.into_inner())
    }

    async fn certify(
        &mut self,
        request: IssueDeviceCertificateRequest,
    ) -> Result<citypass_proto::v1::IssueDeviceCertificateResponse, tonic::Status> {
        self.client
            .issue_device_certificate(request)
            .await
            .map(|r| r.into_inner())
    }
}

fn unsigned_token_request(citizen: &Citizen, scopes: &[Scene]) -> IssueTokenRequest {
    IssueTokenRequest {
        subject_id: citizen.subject_id.clone(),
        device_id: citizen.device_id.clone(),
        requested_scopes: scopes.iter().map(|s| *s as i32).collect(),
        want_svg: false,
        proof: None,
    }
}

/// Signs `request` as `key`'s device would.
fn signed<R: citypass_issuer::SignedRequest>(mut request: R, key: &DeviceKey) -> R {
    *request.proof_mut() = Some(sign_request(R::METHOD, &request, key).expect("sign"));
    request
}

fn token_request(citizen: &Citizen, scopes: &[Scene]) -> IssueTokenRequest {
    signed(unsigned_token_request(citizen, scopes), &citizen.key)
}

fn certificate_request(
    citizen: &Citizen,
    offline_public_key: &[u8],
    lifetime: Option<i64>,
) -> IssueDeviceCertificateRequest {
    let request = IssueDeviceCertificateRequest {
        subject_id: citizen.subject_id.clone(),
        device_id: citizen.device_id.clone(),
        offline_public_key: offline_public_key.to_vec(),
        requested_scopes: vec![],
        requested_lifetime: lifetime.map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
        proof: None,
    };
    signed(request, &citizen.key)
}

fn expect_code<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    what: &str,
) -> tonic::Status {
    match result {
        Ok(answer) => panic!("{what}: expected {code:?}, got an answer {answer:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{what}: {}", status.message());
            assert_eq!(
                citypass_runtime::reason_of(&status).as_deref(),
                Some(reason_for(what)),
                "{what}: the ErrorInfo reason"
            );
            status
        }
    }
}

/// The ErrorInfo reason every refusal path of this file must carry, by its name here:
/// what an app reads to tell "fix your clock" from "bad signature" from "sign again".
fn reason_for(what: &str) -> &'static str {
    match what {
        "only a scene not allowed" => "NO_SCENE_ALLOWED",
        "zero lifetime" => "BAD_LIFETIME",
        "unknown device" => "DEVICE_NOT_FOUND",
        "another subject's device" => "DEVICE_NOT_SUBJECTS",
        "unbound device" | "certificate for an unbound device" => "DEVICE_NOT_ACTIVE",
        "signed by another key" | "changed after signing" | "signed for another RPC" => {
            "BAD_SIGNATURE"
        }
        "no proof" => "PROOF_MISSING",
        "stale timestamp" => "CLOCK_SKEW",
        "replay" | "certificate replay" => "NONCE_REUSED",
        "inactive subject" | "certificate for a suspended subject" => "SUBJECT_NOT_ACTIVE",
        "revoked subject"
        | "certificate for a revoked subject"
        | "known revoked, even on stale data" => "SUBJECT_REVOKED",
        "revoked device" => "DEVICE_REVOKED",
        "malformed subject id" => "MALFORMED_SUBJECT_ID",
        "point off the curve" | "compressed point" | "too short" | "empty" => {
            "MALFORMED_OFFLINE_KEY"
        }
        "the bound device key as offline key" => "OFFLINE_KEY_IS_DEVICE_KEY",
        "offline key certified before" => "OFFLINE_KEY_REUSED",
        "recording failed" => "IDENTITY_UNAVAILABLE",
        "never synced" => "REVOCATION_DATA_UNAVAILABLE",
        other => panic!("no reason listed for the refusal {other:?}"),
    }
}

// ---------------------------------------------------------------------------------
// The happy paths.

#[tokio::test]
async fn an_issued_code_verifies_against_get_key_set() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    let request = IssueTokenRequest {
        want_svg: true,
        ..unsigned_token_request(&citizen, &[])
    };
    let answer = h
        .issue(signed(request, &citizen.key))
        .await
        .expect("IssueToken");

    assert!(answer.qr_text.starts_with("CP1:"));
    assert_eq!(
        answer.scopes,
        [Scene::Metro, Scene::Bus, Scene::Hospital, Scene::Scenic].map(|s| s as i32)
    );
    let (iat, exp) = (
        answer.issued_at.unwrap().seconds,
        answer.expires_at.unwrap().seconds,
    );
    assert_eq!(exp - iat, 60);
    assert!(
        answer
            .svg
            .as_deref()
            .is_some_and(|svg| svg.contains("<svg"))
    );

    let set = h.key_set().await;
    let verified = verify_online(&answer.qr_text, &set, &Validation::at(now())).expect("verifies");
    assert_eq!(verified.kid, h.keys.current().signing_kid());
    assert_eq!(verified.claims.scopes, citypass_token::Scopes::all());
    let subject = verified
        .subject(&h.subject_key)
        .expect("the verifier can unseal");
    assert_eq!(hex::encode(&subject), citizen.subject_id);
}

#[tokio::test]
async fn requested_scopes_are_intersected_with_the_policy() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::DocumentChecked);
    let answer = h
        .issue(token_request(&citizen, &[Scene::Hospital, Scene::Metro]))
        .await
        .expect("IssueToken");
    assert_eq!(answer.scopes, [Scene::Metro as i32], "hospital dropped");
    assert!(answer.svg.is_none(), "no SVG unless asked");
    let status = expect_code(
        h.issue(token_request(&citizen, &[Scene::Hospital])).await,
        Code::PermissionDenied,
        "only a scene not allowed",
    );
    assert!(status.message().contains("scene"));
}

#[tokio::test]
async fn a_certificate_makes_offline_codes_that_verify_offline() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    let offline = DeviceKey::generate(&h.rng).unwrap();
    let answer = h
        .certify(certificate_request(
            &citizen,
            offline.public_key().as_bytes(),
            Some(3_600),
        ))
        .await
        .expect("IssueDeviceCertificate");
    let (nbf, naf) = (
        answer.not_before.unwrap().seconds,
        answer.not_after.unwrap().seconds,
    );
    assert_eq!(naf - nbf, 3_600);
    assert_eq!(answer.server_time.unwrap().seconds, nbf);
    assert_eq!(answer.kid, h.keys.current().signing_kid().0.to_vec());
    assert_eq!(answer.scopes.len(), 4);

    // Recorded at identity, with the serial returned.
    let recorded = h.identity.recorded();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].serial.to_vec(), answer.serial);
    assert_eq!(recorded[0].device_id, citizen.device_id);
    assert_eq!(recorded[0].subject_id, citizen.subject_id);
    assert_eq!(
        (recorded[0].not_before, recorded[0].not_after),
        (nbf as u64, naf as u64)
    );

    let signer = OfflineSigner::new(offline, answer.certificate).expect("certificate for this key");
    assert_eq!(signer.certificate().serial.to_vec(), answer.serial);
    let t = now();
    let code = signer.make_code(t, 60, 1, &h.rng).expect("offline code");
    let set = h.key_set().await;
    let verified = verify_offline(&code, &set, &Validation::at(t)).expect("verifies offline");
    assert_eq!(verified.certificate.serial.to_vec(), answer.serial);
    assert_eq!(
        hex::encode(verified.subject(&h.subject_key).unwrap()),
        citizen.subject_id
    );
}

#[tokio::test]
async fn certificate_lifetimes_are_capped_and_defaulted() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    for (wanted, granted) in [
        (None, 86_400),
        (Some(10 * 86_400), 86_400),
        (Some(600), 600),
    ] {
        let offline = DeviceKey::generate(&h.rng).unwrap();
        let answer = h
            .certify(certificate_request(
                &citizen,
                offline.public_key().as_bytes(),
                wanted,
            ))
            .await
            .expect("certificate");
        let span = answer.not_after.unwrap().seconds - answer.not_before.unwrap().seconds;
        assert_eq!(span, granted, "{wanted:?}");
    }
    let offline = DeviceKey::generate(&h.rng).unwrap();
    expect_code(
        h.certify(certificate_request(
            &citizen,
            offline.public_key().as_bytes(),
            Some(0),
        ))
        .await,
        Code::InvalidArgument,
        "zero lifetime",
    );
}

#[tokio::test]
async fn codes_from_before_and_after_a_rotation_both_verify() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    let before = h.issue(token_request(&citizen, &[])).await.unwrap();
    let kid1 = h.keys.current().signing_kid();

    // Rotate the in-memory ring (file rings: tests/keys.rs).
    let mut ring = Keyring::from_json(&h.ring_json).unwrap();
    let kid2 = ring.rotate(now(), 3_600, &h.rng).unwrap();
    assert_eq!(h.keys.replace(ring).unwrap(), kid2);

    let after = h.issue(token_request(&citizen, &[])).await.unwrap();
    let set = h.key_set().await;
    let v = Validation::at(now());
    assert_eq!(verify_online(&before.qr_text, &set, &v).unwrap().kid, kid1);
    assert_eq!(verify_online(&after.qr_text, &set, &v).unwrap().kid, kid2);
}

// ---------------------------------------------------------------------------------
// Bad input: a precise status, and nothing issued or recorded.

#[tokio::test]
async fn unknown_and_unbound_devices_are_refused() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    let stranger = Citizen {
        subject_id: citizen.subject_id.clone(),
        device_id: "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0".into(),
        key: DeviceKey::generate(&h.rng).unwrap(),
    };
    expect_code(
        h.issue(token_request(&stranger, &[])).await,
        Code::NotFound,
        "unknown device",
    );

    // A device bound to another subject, signing for this one.
    let other = h.citizen(AssuranceLevel::RealNameVerified);
    let borrowed = Citizen {
        subject_id: citizen.subject_id.clone(),
        device_id: other.device_id.clone(),
        key: other.key,
    };
    expect_code(
        h.issue(token_request(&borrowed, &[])).await,
        Code::PermissionDenied,
        "another subject's device",
    );

    h.identity.update(&citizen.device_id, |d| {
        d.device_status = DeviceStatus::Unbound
    });
    expect_code(
        h.issue(token_request(&citizen, &[])).await,
        Code::PermissionDenied,
        "unbound device",
    );
    let offline = DeviceKey::generate(&h.rng).unwrap();
    expect_code(
        h.certify(certificate_request(
            &citizen,
            offline.public_key().as_bytes(),
            None,
        ))
        .await,
        Code::PermissionDenied,
        "certificate for an unbound device",
    );
    assert!(h.identity.recorded().is_empty());
}

#[tokio::test]
async fn a_bad_device_signature_is_unauthenticated() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    let impostor = DeviceKey::generate(&h.rng).unwrap();
    let status = expect_code(
        h.issue(signed(unsigned_token_request(&citizen, &[]), &impostor))
            .await,
        Code::Unauthenticated,
        "signed by another key",
    );
    assert_eq!(status.message(), "bad device signature");

    // Changed after signing.
    let mut changed = token_request(&citizen, &[Scene::Metro]);
    changed.requested_scopes.push(Scene::Hospital as i32);
    expect_code(
        h.issue(changed).await,
        Code::Unauthenticated,
        "changed after signing",
    );

    // Signed for the other method.
    let mut cross = unsigned_token_request(&citizen, &[]);
    cross.proof = Some(sign_request(ISSUE_CERTIFICATE, &cross, &citizen.key).unwrap());
    expect_code(
        h.issue(cross).await,
        Code::Unauthenticated,
        "signed for another RPC",
    );

    expect_code(
        h.issue(unsigned_token_request(&citizen, &[])).await,
        Code::Unauthenticated,
        "no proof",
    );
    let stale = unsigned_token_request(&citizen, &[]);
    let proof = sign_request_with(
        ISSUE_TOKEN,
        &stale,
        &citizen.key,
        SystemTime::now() - Duration::from_secs(120),
        &[5u8; 16],
    )
    .unwrap();
    let status = expect_code(
        h.issue(IssueTokenRequest {
            proof: Some(proof),
            ..stale
        })
        .await,
        Code::Unauthenticated,
        "stale timestamp",
    );
    assert!(status.message().contains("freshness"));
}

#[tokio::test]
async fn a_replayed_request_is_unauthenticated() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    let request = token_request(&citizen, &[]);
    h.issue(request.clone()).await.expect("first time");
    let status = expect_code(h.issue(request).await, Code::Unauthenticated, "replay");
    assert!(status.message().contains("nonce"));

    let offline = DeviceKey::generate(&h.rng).unwrap();
    let request = certificate_request(&citizen, offline.public_key().as_bytes(), None);
    h.certify(request.clone()).await.expect("first time");
    expect_code(
        h.certify(request).await,
        Code::Unauthenticated,
        "certificate replay",
    );
    assert_eq!(h.identity.recorded().len(), 1);
}

#[tokio::test]
async fn suspended_and_revoked_subjects_get_nothing() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    for status in [
        SubjectStatus::Suspended,
        SubjectStatus::Pending,
        SubjectStatus::Rejected,
    ] {
        h.identity
            .update(&citizen.device_id, |d| d.subject_status = status);
        let answer = expect_code(
            h.issue(token_request(&citizen, &[])).await,
            Code::PermissionDenied,
            "inactive subject",
        );
        assert_eq!(answer.message(), "subject is not active");
    }
    let offline = DeviceKey::generate(&h.rng).unwrap();
    expect_code(
        h.certify(certificate_request(
            &citizen,
            offline.public_key().as_bytes(),
            None,
        ))
        .await,
        Code::PermissionDenied,
        "certificate for a suspended subject",
    );

    // The revocation check is asked.
    let revoked_subject = "00000000000000000000000000000001".to_owned();
    let mut h = Harness::start_with(Arc::new(RevokedSubject(revoked_subject.clone()))).await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    let key = DeviceKey::generate(&h.rng).unwrap();
    h.identity.put(DeviceRecord {
        device_id: "dededededededededededededededede".into(),
        subject_id: revoked_subject.clone(),
        public_key: key.public_key().clone(),
        device_status: DeviceStatus::Active,
        subject_status: SubjectStatus::Active,
        attributes: Attributes::default(),
    });
    let revoked = Citizen {
        subject_id: revoked_subject,
        device_id: "dededededededededededededededede".into(),
        key,
    };
    expect_code(
        h.issue(token_request(&revoked, &[])).await,
        Code::PermissionDenied,
        "revoked subject",
    );
    h.issue(token_request(&citizen, &[]))
        .await
        .expect("others still get codes");
}

#[tokio::test]
async fn malformed_subject_ids_and_keys_are_invalid_arguments() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    for bad in [
        "",
        "not-a-subject",
        &citizen.subject_id.to_uppercase(),
        &citizen.subject_id[..30],
    ] {
        let request = IssueTokenRequest {
            subject_id: bad.to_owned(),
            ..unsigned_token_request(&citizen, &[])
        };
        expect_code(
            h.issue(signed(request, &citizen.key)).await,
            Code::InvalidArgument,
            "malformed subject id",
        );
    }

    let offline = DeviceKey::generate(&h.rng).unwrap();
    let mut off_curve = offline.public_key().as_bytes().to_vec();
    off_curve[64] ^= 1;
    let mut compressed = offline.public_key().as_bytes()[..33].to_vec();
    compressed[0] = 0x02;
    for (bad, what) in [
        (off_curve, "point off the curve"),
        (compressed, "compressed point"),
        (vec![0x04; 10], "too short"),
        (vec![], "empty"),
    ] {
        expect_code(
            h.certify(certificate_request(&citizen, &bad, None)).await,
            Code::InvalidArgument,
            what,
        );
    }
    let device_key = citizen.key.public_key().as_bytes().to_vec();
    let status = expect_code(
        h.certify(certificate_request(&citizen, &device_key, None))
            .await,
        Code::InvalidArgument,
        "the bound device key as offline key",
    );
    assert!(status.message().contains("bound device key"));
    // One certificate per offline key.
    let offline_bytes = offline.public_key().as_bytes().to_vec();
    h.certify(certificate_request(&citizen, &offline_bytes, None))
        .await
        .expect("fresh offline key");
    let status = expect_code(
        h.certify(certificate_request(&citizen, &offline_bytes, None))
            .await,
        Code::InvalidArgument,
        "offline key certified before",
    );
    assert!(status.message().contains("certified before"));
    assert_eq!(h.identity.recorded().len(), 1);
}

#[tokio::test]
async fn no_certificate_is_returned_unless_recorded() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    h.identity.fail_recording.store(true, Ordering::SeqCst);
    let offline = DeviceKey::generate(&h.rng).unwrap();
    let status = expect_code(
        h.certify(certificate_request(
            &citizen,
            offline.public_key().as_bytes(),
            None,
        ))
        .await,
        Code::Unavailable,
        "recording failed",
    );
    assert!(!status.message().contains("down"), "internal detail hidden");
    assert!(h.identity.recorded().is_empty());

    h.identity.fail_recording.store(false, Ordering::SeqCst);
    let offline = DeviceKey::generate(&h.rng).unwrap();
    h.certify(certificate_request(
        &citizen,
        offline.public_key().as_bytes(),
        None,
    ))
    .await
    .expect("identity back");
    assert_eq!(h.identity.recorded().len(), 1);
}

#[tokio::test]
async fn the_published_key_info_matches_the_jwks() {
    let mut h = Harness::start().await;
    let response = h
        .client
        .get_key_set(GetKeySetRequest {})
        .await
        .unwrap()
        .into_inner();
    let set = h.key_set().await;
    let info = &response.keys[0];
    let key = &set.keys()[0];
    assert_eq!(info.kid, key.kid().0.to_vec());
    assert_eq!(info.public_key, key.key.as_bytes());
    assert_eq!(info.status, citypass_proto::v1::KeyStatus::Active as i32);
    assert_eq!(
        info.algorithm,
        citypass_proto::v1::KeyAlgorithm::Ed25519 as i32
    );
    assert!(PublicKey::ed25519(&info.public_key).is_ok());
}

// ---------------------------------------------------------------------------------
// The real revocation check: a follower of a real revocation service (PostgreSQL log,
// Redis stream) on loopback.

mod revocation_service {
    use std::sync::Arc;
    use std::time::Duration;

    use citypass_proto::v1::revocation_service_client::RevocationServiceClient;
    use citypass_proto::v1::{self as pb, ReinstateRequest, RevokeRequest};
    use citypass_revocation_service::{
        Certificate, CertificateDirectory, DirectoryError, KeyringSigner, PostgresLog,
        RedisPublisher, Registry, RevocationApi, Settings,
    };
    use citypass_runtime::{Deadline, Server, ServerConfig};
    use citypass_testkit::tls::{As, TestPki};
    use citypass_token::{Keyring, SystemRandom};
    use futures::future::BoxFuture;
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;
    use tonic::transport::Channel;

    struct NoCertificates;

    impl CertificateDirectory for NoCertificates {
        fn live_certificates<'a>(
            &'a self,
            _owner: citypass_revocation_service::Owner<'a>,
            _deadline: Option<Deadline>,
        ) -> BoxFuture<'a, Result<Vec<Certificate>, DirectoryError>> {
            Box::pin(std::future::ready(Ok(Vec::new())))
        }
    }

    /// The revocation service over TLS with its real table: `client` is an operator
    /// (revoker), `issuer_tls` the issuer's identity for following it.
    pub struct Running {
        pub url: String,
        pub stream_key: String,
        pub database_url: String,
        pub client: RevocationServiceClient<Channel>,
        pub issuer_tls: Arc<citypass_runtime::Tls>,
        _stop: oneshot::Sender<()>,
    }

    pub async fn start() -> Running {
        let (pool, database_url) = citypass_testkit::fresh_database().await;
        pool.close().await;
        let log = Arc::new(PostgresLog::connect(&database_url, 4).await.unwrap());
        let stream_key = citypass_testkit::unique("citypass:test:issuer-revocation:");
        let publisher = RedisPublisher::connect(
            &citypass_testkit::redis_url(),
            stream_key.clone(),
            10_000,
            Duration::from_millis(500),
        )
        .await
        .expect("the test Redis answers");
        let ring = Keyring::generate("citypass-test", true, &SystemRandom::new()).unwrap();
        let settings = Settings {
            poll_interval: Duration::from_millis(50),
            heartbeat_interval: Duration::from_millis(200),
            stale_after: Duration::from_secs(1),
            cascade_sweep_delay: Duration::ZERO,
            ..Settings::default()
        };
        let revocations = Registry::new(
            settings,
            log,
            Arc::new(publisher),
            Arc::new(NoCertificates),
            Arc::new(KeyringSigner::from_keyring(&ring).unwrap()),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let pki = TestPki::new("revocation");
        tokio::spawn(
            Server::new(ServerConfig::new("revocation-test"))
                .tls(pki.server.clone())
                .add_service(
                    RevocationApi::new(Arc::new(revocations)).into_server(),
                    &citypass_revocation_service::AUTHORIZATION,
                )
                .serve(listener, async {
                    let _ = stopped.await;
                }),
        );
        let url = format!("https://{addr}");
        let client = RevocationServiceClient::new(
            pki.channel(addr, &As::Operator(&[citypass_runtime::Role::Revoker])),
        );
        Running {
            url,
            stream_key,
            database_url,
            client,
            issuer_tls: pki.client(&As::Service("issuer")),
            _stop: stop,
        }
    }

    impl Running {
        /// Revokes (kind 2: device, 3: subject); returns the epoch.
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
                .unwrap()
                .epoch
        }

        pub async fn reinstate(&mut self, kind: pb::TargetKind, id: &str) -> u64 {
            self.client
                .reinstate(ReinstateRequest {
                    target_kind: kind as i32,
                    target_id: id.to_owned(),
                    reason: pb::ReinstateReason::ErrorCorrected as i32,
                    note: String::new(),
                })
                .await
                .expect("Reinstate")
                .into_inner()
                .entry
                .unwrap()
                .epoch
        }

        /// Takes the log's database away (`false`: connections ended, database renamed,
        /// so reconnecting fails as for a dropped one) or brings it back (`true`).
        pub async fn set_database_available(&self, available: bool) {
            citypass_testkit::set_database_available(&self.database_url, available).await;
        }
    }
}

/// Waits until the view has applied `epoch`.
async fn follower_reaches(view: &citypass_issuer::RevocationView, epoch: u64) {
    tokio::time::timeout(Duration::from_secs(10), view.wait_for_epoch(epoch))
        .await
        .unwrap_or_else(|_| panic!("the follower did not reach epoch {epoch}: {view:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_subjects_and_devices_get_nothing_until_reinstated() {
    use citypass_proto::v1::TargetKind;
    let mut revocation = revocation_service::start().await;
    let settings = citypass_issuer::RevocationSettings {
        service: citypass_runtime::UpstreamConfig::new(revocation.url.clone()),
        follow: citypass_issuer::FollowMode::Redis,
        redis: Some(citypass_runtime::config::RedisConfig::new(
            citypass_testkit::redis_url(),
        )),
        stream_key: revocation.stream_key.clone(),
        ..citypass_issuer::RevocationSettings::default()
    };
    let check =
        citypass_issuer::FollowerCheck::start(&settings, None, Some(&revocation.issuer_tls), None)
            .expect("follower");
    let view = check.view().clone();
    let mut h = Harness::start_with(Arc::new(check)).await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    let other = h.citizen(AssuranceLevel::RealNameVerified);
    tokio::time::timeout(Duration::from_secs(10), view.wait_synced())
        .await
        .expect("the follower syncs");
    h.issue(token_request(&citizen, &[]))
        .await
        .expect("not revoked: issued");

    let epoch = revocation
        .revoke(TargetKind::Subject, &citizen.subject_id)
        .await;
    follower_reaches(&view, epoch).await;
    let status = expect_code(
        h.issue(token_request(&citizen, &[])).await,
        Code::PermissionDenied,
        "revoked subject",
    );
    assert_eq!(status.message(), "subject is revoked");
    let offline = DeviceKey::generate(&h.rng).unwrap();
    expect_code(
        h.certify(certificate_request(
            &citizen,
            offline.public_key().as_bytes(),
            None,
        ))
        .await,
        Code::PermissionDenied,
        "certificate for a revoked subject",
    );
    h.issue(token_request(&other, &[]))
        .await
        .expect("others still get codes");

    let epoch = revocation
        .reinstate(TargetKind::Subject, &citizen.subject_id)
        .await;
    follower_reaches(&view, epoch).await;
    h.issue(token_request(&citizen, &[]))
        .await
        .expect("reinstated: issued again");

    let epoch = revocation
        .revoke(TargetKind::Device, &citizen.device_id)
        .await;
    follower_reaches(&view, epoch).await;
    let status = expect_code(
        h.issue(token_request(&citizen, &[])).await,
        Code::PermissionDenied,
        "revoked device",
    );
    assert_eq!(status.message(), "device is revoked");
    let epoch = revocation
        .reinstate(TargetKind::Device, &citizen.device_id)
        .await;
    follower_reaches(&view, epoch).await;
    h.issue(token_request(&citizen, &[]))
        .await
        .expect("device reinstated: issued again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_fails_closed_on_stale_revocation_data() {
    use citypass_proto::v1::TargetKind;

    // Never synced (nothing answers there): UNAVAILABLE, not "not revoked".
    let unreachable =
        citypass_issuer::FollowerCheck::watch("http://127.0.0.1:9", None, Duration::from_secs(2))
            .expect("follower");
    let mut h = Harness::start_with(Arc::new(unreachable)).await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    let status = expect_code(
        h.issue(token_request(&citizen, &[])).await,
        Code::Unavailable,
        "never synced",
    );
    assert!(!status.message().contains("revocation data"), "{status:?}");

    // A follower of Watch whose log goes away: once its data is older than max_age,
    // issuance stops; a subject it already knows revoked stays PERMISSION_DENIED.
    let mut revocation = revocation_service::start().await;
    let check = citypass_issuer::FollowerCheck::watch(
        &revocation.url,
        Some(&revocation.issuer_tls),
        Duration::from_secs(2),
    )
    .unwrap();
    let view = check.view().clone();
    let mut h = Harness::start_with(Arc::new(check)).await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    let revoked = h.citizen(AssuranceLevel::RealNameVerified);
    let epoch = revocation
        .revoke(TargetKind::Subject, &revoked.subject_id)
        .await;
    follower_reaches(&view, epoch).await;
    h.issue(token_request(&citizen, &[]))
        .await
        .expect("fresh data: issued");

    revocation.set_database_available(false).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match h.issue(token_request(&citizen, &[])).await {
            Ok(_) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "still issuing on data {:?} old",
                    view.age()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                break;
            }
        }
    }
    assert!(view.age().unwrap() > Duration::from_secs(2));
    expect_code(
        h.issue(token_request(&revoked, &[])).await,
        Code::PermissionDenied,
        "known revoked, even on stale data",
    );

    revocation.set_database_available(true).await;
    tokio::time::timeout(
        Duration::from_secs(15),
        view.wait_fresh(Duration::from_millis(500)),
    )
    .await
    .expect("the follower is fresh again");
    h.issue(token_request(&citizen, &[]))
        .await
        .expect("fresh again: issued");
}
