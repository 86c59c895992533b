//! The harness every test here shares: an issuer served on loopback with an in-process
//! fake of the identity service, one citizen with a bound device, signed requests, and
//! the check that a refusal carries its precise status and ErrorInfo reason.

use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use citypass_issuer::{
    CertificateRecord, DeviceRecord, Environment, IdentityError, IdentityLookup, IssuanceConfig,
    Keys, MemoryNonceStore, NothingRevoked, RevocationCheck, issuer_service, sign_request,
};
use citypass_proto::prost_types;
use citypass_proto::v1::issuer_service_client::IssuerServiceClient;
use citypass_proto::v1::{
    AssuranceLevel, Attributes, DeviceStatus, GetKeySetRequest, IssueDeviceCertificateRequest,
    IssueTokenRequest, Scene, SubjectStatus,
};
use citypass_runtime::{Deadline, Server, ServerConfig};
use citypass_token::{
    DeviceId, DeviceKey, KeySet, Keyring, Kid, SnapshotKey, SubjectId, SubjectKey, SystemRandom,
    verify_key_set,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;

// ---------------------------------------------------------------------------------
// The fake identity service.

#[derive(Default)]
pub(crate) struct FakeIdentity {
    devices: Mutex<HashMap<DeviceId, DeviceRecord>>,
    recorded: Mutex<Vec<CertificateRecord>>,
    pub(crate) fail_recording: AtomicBool,
}

impl FakeIdentity {
    pub(crate) fn put(&self, record: DeviceRecord) {
        self.devices.lock().unwrap().insert(record.device, record);
    }

    pub(crate) fn update(&self, device_id: &str, change: impl FnOnce(&mut DeviceRecord)) {
        change(
            self.devices
                .lock()
                .unwrap()
                .get_mut(&id(device_id))
                .expect("device"),
        );
    }

    pub(crate) fn recorded(&self) -> Vec<CertificateRecord> {
        self.recorded.lock().unwrap().clone()
    }
}

impl IdentityLookup for FakeIdentity {
    fn get_device<'a>(
        &'a self,
        device: &'a DeviceId,
        _deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Option<Arc<DeviceRecord>>, IdentityError>> {
        let found = self
            .devices
            .lock()
            .unwrap()
            .get(device)
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

// ---------------------------------------------------------------------------------
// The harness: an issuer served on loopback, and one citizen with a bound device.

pub(crate) struct Citizen {
    pub(crate) subject_id: String,
    pub(crate) device_id: String,
    pub(crate) key: DeviceKey,
}

pub(crate) struct Harness {
    pub(crate) client: IssuerServiceClient<Channel>,
    pub(crate) identity: Arc<FakeIdentity>,
    pub(crate) keys: Arc<Keys>,
    pub(crate) ring_json: String,
    /// The snapshot key the ring publishes (its private half is the revocation
    /// service's; the issuer never holds it).
    pub(crate) snapshot_kid: Kid,
    pub(crate) subject_key: SubjectKey,
    pub(crate) rng: SystemRandom,
    _stop: oneshot::Sender<()>,
}

/// An id from its text form (the tests' citizens keep ids as the API spells them).
pub(crate) fn id<T: std::str::FromStr>(text: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    text.parse().expect("a well-formed id")
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

impl Harness {
    pub(crate) async fn start() -> Self {
        Self::start_with(Arc::new(NothingRevoked)).await
    }

    pub(crate) async fn start_with(revocation: Arc<dyn RevocationCheck>) -> Self {
        let rng = SystemRandom::new();
        let mut ring = Keyring::generate("citypass-test", true, &rng).expect("ring");
        let snapshot_kid = ring
            .publish_snapshot_key(
                SnapshotKey::generate(true, &rng)
                    .expect("snapshot key")
                    .public_key(),
            )
            .expect("published");
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
            snapshot_kid,
            subject_key,
            rng,
            _stop: stop,
        }
    }

    /// A citizen at `level`, with one ACTIVE device bound.
    pub(crate) fn citizen(&self, level: AssuranceLevel) -> Citizen {
        let key = DeviceKey::generate(&self.rng).expect("device key");
        let citizen = Citizen {
            subject_id: SubjectId::generate().expect("id").to_string(),
            device_id: DeviceId::generate().expect("id").to_string(),
            key,
        };
        self.identity.put(DeviceRecord {
            device: id(&citizen.device_id),
            subject: id(&citizen.subject_id),
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
    pub(crate) async fn key_set(&mut self) -> KeySet {
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
        verify_key_set(signer, &response.jwks_json, &response.signature)
            .expect("key set signature verifies");
        assert_eq!(response.keys.len(), set.keys().len());
        set
    }

    pub(crate) async fn issue(
        &mut self,
        request: IssueTokenRequest,
    ) -> Result<citypass_proto::v1::IssueTokenResponse, tonic::Status> {
        self.client
            .issue_token(request)
            .await
            .map(|r| r.into_inner())
    }

    pub(crate) async fn certify(
        &mut self,
        request: IssueDeviceCertificateRequest,
    ) -> Result<citypass_proto::v1::IssueDeviceCertificateResponse, tonic::Status> {
        self.client
            .issue_device_certificate(request)
            .await
            .map(|r| r.into_inner())
    }
}

pub(crate) fn unsigned_token_request(citizen: &Citizen, scopes: &[Scene]) -> IssueTokenRequest {
    IssueTokenRequest {
        subject_id: citizen.subject_id.clone(),
        device_id: citizen.device_id.clone(),
        requested_scopes: scopes.iter().map(|s| *s as i32).collect(),
        want_svg: false,
        proof: None,
    }
}

/// Signs `request` as `key`'s device would.
pub(crate) fn signed<R: citypass_issuer::SignedRequest>(mut request: R, key: &DeviceKey) -> R {
    *request.proof_mut() = Some(sign_request(R::METHOD, &request, key).expect("sign"));
    request
}

pub(crate) fn token_request(citizen: &Citizen, scopes: &[Scene]) -> IssueTokenRequest {
    signed(unsigned_token_request(citizen, scopes), &citizen.key)
}

pub(crate) fn certificate_request(
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

pub(crate) fn expect_code<T: std::fmt::Debug>(
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
