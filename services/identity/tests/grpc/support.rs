//! The harness every test here shares: the service on loopback over TLS on a fresh
//! database, its clients, a digest of every table, and builders for valid enrolments,
//! challenges and signed binding requests.

use std::sync::Arc;

use citypass_identity::document::gb11643_check_char;
use citypass_identity::{IdentityConfig, PostgresStore};
use citypass_proto::prost_types::Timestamp;
use citypass_proto::v1::bind_device_request::Authority;
use citypass_proto::v1::identity_service_client::IdentityServiceClient;
use citypass_proto::v1::{
    BindDeviceRequest, CreateBindingChallengeRequest, DocumentType, EnrolRequest,
    IssueEnrolmentSecretRequest, Subject,
};
use citypass_runtime::{Role, Server, ServerConfig};
use citypass_testkit::tls::{As, TestPki};
use citypass_token::{DeviceKey, SecureRandom, SystemRandom, binding_message};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Code, Status};

type Client = IdentityServiceClient<Channel>;

/// A running service, its clients, and its database (to prove refusals change
/// nothing). `client` is an operator with `identity-admin` and `auditor` (citizens'
/// calls are open to anyone); `issuer` is the issuer service, which alone reads
/// devices and records certificates.
pub(crate) struct Harness {
    pub(crate) client: Client,
    pub(crate) issuer: Client,
    pub(crate) pool: PgPool,
    pki: TestPki,
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub(crate) async fn start(config: IdentityConfig) -> Harness {
    let (pool, _url) = citypass_testkit::fresh_database().await;
    start_on(config, pool).await
}

/// The service over an existing database (a restart with another configuration).
pub(crate) async fn start_on(config: IdentityConfig, pool: PgPool) -> Harness {
    let store = PostgresStore::new(pool.clone()).await.expect("migrations");
    let service = citypass_identity::service(&config, Arc::new(store)).expect("service");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let pki = TestPki::new("identity");
    let server = Server::new(ServerConfig::new("identity-test"))
        .tls(pki.server.clone())
        .add_service(service, &citypass_identity::AUTHORIZATION)
        .file_descriptor_set(citypass_proto::FILE_DESCRIPTOR_SET);
    tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    let client = IdentityServiceClient::new(
        pki.channel(addr, &As::Operator(&[Role::IdentityAdmin, Role::Auditor])),
    );
    let issuer = IdentityServiceClient::new(pki.channel(addr, &As::Service("issuer")));
    Harness {
        client,
        issuer,
        pool,
        pki,
        addr,
        stop: Some(stop),
    }
}

impl Harness {
    /// A client calling as `who` (`As::Nobody`: a citizen's app, no certificate).
    pub(crate) fn client_as(&self, who: &As) -> Client {
        IdentityServiceClient::new(self.pki.channel(self.addr, who))
    }
}

pub(crate) async fn start_default() -> Harness {
    start(IdentityConfig::dev()).await
}

/// A digest of every row of every table: equal digests, nothing changed.
pub(crate) async fn digest(pool: &PgPool) -> String {
    let mut out = String::new();
    for table in [
        "subjects",
        "devices",
        "binding_challenges",
        "device_certificates",
        "enrolment_secrets",
        "face_consents",
        "face_templates",
        "face_feed",
        "face_audit",
    ] {
        let sql = format!(
            "SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') \
             FROM {table} t"
        );
        let part: String = sqlx::query_scalar(&sql).fetch_one(pool).await.unwrap();
        out.push_str(table);
        out.push('=');
        out.push_str(&part);
        out.push(' ');
    }
    out
}

/// A valid resident ID number; `seq` (0..1000) makes it unique.
pub(crate) fn resident_id(seq: u32) -> String {
    let first17 = format!("11010519900307{seq:03}");
    let check = gb11643_check_char(&first17).unwrap();
    format!("{first17}{check}")
}

pub(crate) fn enrol_request(number: &str, name: &str) -> EnrolRequest {
    EnrolRequest {
        document_type: DocumentType::ResidentIdCard.into(),
        document_number: number.to_owned(),
        name: name.to_owned(),
        request_id: String::new(),
    }
}

/// The enrolment secret each subject's app holds (subject id → secret), as the app
/// keeps the one Enrol returned; `bind_request` sends it.
static SECRETS: std::sync::Mutex<Vec<(String, Vec<u8>)>> = std::sync::Mutex::new(Vec::new());

pub(crate) fn remember_secret(subject_id: &str, secret: Vec<u8>) {
    let mut secrets = SECRETS.lock().unwrap();
    secrets.retain(|(id, _)| id != subject_id);
    secrets.push((subject_id.to_owned(), secret));
}

/// The secret remembered for `subject_id`, or 32 random bytes (a subject the tests
/// never enrolled: the store refuses it for its own reasons first).
pub(crate) fn secret_of(subject_id: &str) -> Vec<u8> {
    let secrets = SECRETS.lock().unwrap();
    secrets
        .iter()
        .find(|(id, _)| id == subject_id)
        .map(|(_, secret)| secret.clone())
        .unwrap_or_else(|| {
            let mut random = vec![0u8; 32];
            rng().fill(&mut random).unwrap();
            random
        })
}

pub(crate) async fn enrol(client: &mut Client, number: &str, name: &str) -> Subject {
    let response = client
        .enrol(enrol_request(number, name))
        .await
        .expect("enrol")
        .into_inner();
    let subject = response.subject.expect("subject");
    assert_eq!(
        response.enrolment_secret.len(),
        32,
        "Enrol returns a secret"
    );
    remember_secret(&subject.subject_id, response.enrolment_secret);
    subject
}

pub(crate) fn rng() -> SystemRandom {
    SystemRandom::new()
}

/// A binding challenge; an operator also issues the subject a fresh enrolment secret
/// (a binding consumes the secret, and tests bind several devices per subject).
pub(crate) async fn new_challenge(client: &mut Client, subject_id: &str) -> Vec<u8> {
    if let Ok(issued) = client
        .issue_enrolment_secret(IssueEnrolmentSecretRequest {
            subject_id: subject_id.to_owned(),
        })
        .await
    {
        remember_secret(subject_id, issued.into_inner().enrolment_secret);
    }
    client
        .create_binding_challenge(CreateBindingChallengeRequest {
            subject_id: subject_id.to_owned(),
        })
        .await
        .expect("challenge")
        .into_inner()
        .challenge
}

/// A BindDevice request signed as the app signs it.
pub(crate) fn bind_request(
    subject_id: &str,
    challenge: &[u8],
    key: &DeviceKey,
) -> BindDeviceRequest {
    let message = binding_message(subject_id, challenge, key.public_key());
    BindDeviceRequest {
        subject_id: subject_id.to_owned(),
        public_key: key.public_key().as_bytes().to_vec(),
        challenge: challenge.to_vec(),
        signature: key.sign(&rng(), &message).unwrap(),
        label: "my phone".to_owned(),
        authority: Some(Authority::EnrolmentSecret(secret_of(subject_id))),
    }
}

pub(crate) async fn bind_new_device(client: &mut Client, subject_id: &str) -> String {
    let challenge = new_challenge(client, subject_id).await;
    let key = DeviceKey::generate(&rng()).unwrap();
    client
        .bind_device(bind_request(subject_id, &challenge, &key))
        .await
        .expect("bind")
        .into_inner()
        .device
        .unwrap()
        .device_id
}

pub(crate) fn now_plus(seconds: i64) -> Timestamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Timestamp {
        seconds: i64::try_from(now).unwrap() + seconds,
        nanos: 0,
    }
}

pub(crate) fn random_serial() -> Vec<u8> {
    let mut serial = vec![0u8; 16];
    rng().fill(&mut serial).unwrap();
    serial
}

#[track_caller]
pub(crate) fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, needle: &str) {
    let status = result.expect_err("the call must be refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(needle),
        "message {:?} should contain {needle:?}",
        status.message()
    );
}
