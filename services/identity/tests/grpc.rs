//! The identity service over real gRPC on loopback, against real PostgreSQL.
//!
//! Each test starts the service on `127.0.0.1:0` with the shared runtime `Server` (the
//! same stack, health and reflection as in production), on a fresh database, and talks
//! to it with the generated client. Refusals are checked for their exact code *and* for
//! changing nothing: a digest of every table is taken before and after.

use std::time::Duration;

use citypass_identity::document::gb11643_check_char;
use citypass_identity::{IdentityConfig, PostgresStore, SandboxConfig, SandboxRule};
use citypass_proto::prost_types::Timestamp;
use citypass_proto::v1::identity_service_client::IdentityServiceClient;
use citypass_proto::v1::{
    AssuranceLevel, BindDeviceRequest, CreateBindingChallengeRequest, DeviceCertificate,
    DeviceStatus, DocumentType, EnrolRequest, FareClass, GetDeviceRequest, GetSubjectRequest,
    ListCertificatesRequest, ListDevicesRequest, RealNameCheckOutcome, RecordCertificateRequest,
    SetAttributesRequest, SetSubjectStatusRequest, Subject, SubjectStatus, UnbindDeviceRequest,
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
struct Harness {
    client: Client,
    issuer: Client,
    pool: PgPool,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start(config: IdentityConfig) -> Harness {
    let (pool, _url) = citypass_testkit::fresh_database().await;
    let store = PostgresStore::new(pool.clone()).await.expect("migrations");
    let service = citypass_identity::service(&config, store).expect("service");
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
        stop: Some(stop),
    }
}

async fn start_default() -> Harness {
    start(IdentityConfig::dev()).await
}

/// A digest of every row of every table: equal digests, nothing changed.
async fn digest(pool: &PgPool) -> String {
    let mut out = String::new();
    for table in [
        "subjects",
        "devices",
        "binding_challenges",
        "device_certificates",
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
fn resident_id(seq: u32) -> String {
    let first17 = format!("11010519900307{seq:03}");
    let check = gb11643_check_char(&first17).unwrap();
    format!("{first17}{check}")
}

fn enrol_request(number: &str, name: &str) -> EnrolRequest {
    EnrolRequest {
        document_type: DocumentType::ResidentIdCard.into(),
        document_number: number.to_owned(),
        name: name.to_owned(),
    }
}

async fn enrol(client: &mut Client, number: &str, name: &str) -> Subject {
    client
        .enrol(enrol_request(number, name))
        .await
        .expect("enrol")
        .into_inner()
        .subject
        .expect("subject")
}

fn rng() -> SystemRandom {
    SystemRandom::new()
}

async fn new_challenge(client: &mut Client, subject_id: &str) -> Vec<u8> {
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
fn bind_request(subject_id: &str, challenge: &[u8], key: &DeviceKey) -> BindDeviceRequest {
    let message = binding_message(subject_id, challenge, key.public_key());
    BindDeviceRequest {
        subject_id: subject_id.to_owned(),
        public_key: key.public_key().as_bytes().to_vec(),
        challenge: challenge.to_vec(),
        signature: key.sign(&rng(), &message).unwrap(),
        label: "my phone".to_owned(),
    }
}

async fn bind_new_device(client: &mut Client, subject_id: &str) -> String {
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

fn now_plus(seconds: i64) -> Timestamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Timestamp {
        seconds: i64::try_from(now).unwrap() + seconds,
        nanos: 0,
    }
}

fn random_serial() -> Vec<u8> {
    let mut serial = vec![0u8; 16];
    rng().fill(&mut serial).unwrap();
    serial
}

fn is_lower_hex_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[track_caller]
fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, needle: &str) {
    let status = result.expect_err("the call must be refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(needle),
        "message {:?} should contain {needle:?}",
        status.message()
    );
}

#[tokio::test]
async fn enrol_bind_and_serve_the_issuer() {
    let h = start_default().await;
    let mut client = h.client.clone();
    let mut issuer = h.issuer.clone();

    let subject = enrol(&mut client, &resident_id(1), "张三丰").await;
    assert!(
        is_lower_hex_id(&subject.subject_id),
        "{}",
        subject.subject_id
    );
    assert!(is_lower_hex_id(&subject.transit_account));
    assert_ne!(subject.transit_account, subject.subject_id);
    assert_eq!(subject.masked_name, "张**");
    assert_eq!(subject.status(), SubjectStatus::Active);
    assert_eq!(subject.real_name_check(), RealNameCheckOutcome::Matched);
    assert_eq!(subject.document_type(), DocumentType::ResidentIdCard);
    let attributes = subject.attributes.unwrap();
    assert_eq!(
        attributes.assurance_level(),
        AssuranceLevel::RealNameVerified
    );
    assert_eq!(attributes.fare_class(), FareClass::Adult);
    // Nothing personal is stored in clear.
    let stored: String = sqlx::query_scalar("SELECT string_agg(t::text, '|') FROM subjects t")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert!(!stored.contains(&resident_id(1)) && !stored.contains("张三丰"));

    let fetched = client
        .get_subject(GetSubjectRequest {
            subject_id: subject.subject_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .subject
        .unwrap();
    assert_eq!(fetched, subject);

    // Bind a device key, with proof of possession.
    let challenge = client
        .create_binding_challenge(CreateBindingChallengeRequest {
            subject_id: subject.subject_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(challenge.challenge.len(), 32);
    assert!(challenge.expires_at.unwrap().seconds > now_plus(0).seconds);
    let key = DeviceKey::generate(&rng()).unwrap();
    let device = client
        .bind_device(bind_request(
            &subject.subject_id,
            &challenge.challenge,
            &key,
        ))
        .await
        .unwrap()
        .into_inner()
        .device
        .unwrap();
    assert!(is_lower_hex_id(&device.device_id));
    assert_eq!(device.subject_id, subject.subject_id);
    assert_eq!(device.public_key, key.public_key().as_bytes());
    assert_eq!(device.status(), DeviceStatus::Active);
    assert_eq!(device.label, "my phone");
    assert!(device.unbound_at.is_none());

    // What the issuer asks: device, subject status, attributes (after an update).
    client
        .set_attributes(SetAttributesRequest {
            subject_id: subject.subject_id.clone(),
            fare_class: FareClass::Student.into(),
            medical_insurance_linked: Some(true),
            assurance_level: 0,
        })
        .await
        .unwrap();
    let view = issuer
        .get_device(GetDeviceRequest {
            device_id: device.device_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.device.as_ref(), Some(&device));
    assert_eq!(view.subject_status(), SubjectStatus::Active);
    let attrs = view.subject_attributes.unwrap();
    assert_eq!(attrs.fare_class(), FareClass::Student);
    assert!(attrs.medical_insurance_linked);
    assert_eq!(attrs.assurance_level(), AssuranceLevel::RealNameVerified);

    // The issuer records a certificate; a retry is safe; both lists show it.
    let cert = DeviceCertificate {
        serial: random_serial(),
        device_id: device.device_id.clone(),
        subject_id: String::new(),
        not_before: Some(now_plus(0)),
        not_after: Some(now_plus(3600)),
    };
    let recorded = issuer
        .record_certificate(RecordCertificateRequest {
            certificate: Some(cert.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .certificate
        .unwrap();
    assert_eq!(recorded.subject_id, subject.subject_id);
    assert_eq!(recorded.serial, cert.serial);
    let retried = issuer
        .record_certificate(RecordCertificateRequest {
            certificate: Some(cert.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .certificate
        .unwrap();
    assert_eq!(retried, recorded);
    for (device_id, subject_id) in [
        (device.device_id.clone(), String::new()),
        (String::new(), subject.subject_id.clone()),
    ] {
        let list = client
            .list_certificates(ListCertificatesRequest {
                device_id,
                subject_id,
                include_expired: false,
            })
            .await
            .unwrap()
            .into_inner()
            .certificates;
        assert_eq!(list, vec![recorded.clone()]);
    }

    let devices = client
        .list_devices(ListDevicesRequest {
            subject_id: subject.subject_id.clone(),
            include_unbound: false,
        })
        .await
        .unwrap()
        .into_inner()
        .devices;
    assert_eq!(devices.len(), 1);

    // Unbinding stops the device; no more certificates for it.
    let unbound = client
        .unbind_device(UnbindDeviceRequest {
            subject_id: subject.subject_id.clone(),
            device_id: device.device_id.clone(),
            reason: "phone lost".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .device
        .unwrap();
    assert_eq!(unbound.status(), DeviceStatus::Unbound);
    assert!(unbound.unbound_at.is_some());
    let mut another = cert.clone();
    another.serial = random_serial();
    assert_code(
        issuer
            .record_certificate(RecordCertificateRequest {
                certificate: Some(another),
            })
            .await,
        Code::FailedPrecondition,
        "UNBOUND",
    );
    let view = issuer
        .get_device(GetDeviceRequest {
            device_id: device.device_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.device.unwrap().status(), DeviceStatus::Unbound);
}

#[tokio::test]
async fn malformed_enrolments_are_refused_precisely_and_change_nothing() {
    let h = start_default().await;
    let mut client = h.client.clone();
    enrol(&mut client, &resident_id(2), "John Smith").await;
    let before = digest(&h.pool).await;

    let good = resident_id(3);
    let mut wrong_digit = good.clone();
    let last = if good.ends_with('0') { "1" } else { "0" };
    wrong_digit.replace_range(17.., last);
    let result = client.enrol(enrol_request(&wrong_digit, "李四")).await;
    let status = result.as_ref().unwrap_err().clone();
    assert_code(result, Code::InvalidArgument, "check digit");
    assert!(
        !status.message().contains(&wrong_digit[..17]),
        "never echo the number"
    );

    let refusals = [
        (enrol_request("1101051990030", "李四"), "18 characters"),
        (
            enrol_request(&format!("{}19901301001X", &good[..6]), "李四"),
            "not a real date",
        ),
        (enrol_request(&good, ""), "name"),
        (
            EnrolRequest {
                document_type: 0,
                ..enrol_request(&good, "李四")
            },
            "document_type",
        ),
        (
            EnrolRequest {
                document_type: 42,
                ..enrol_request(&good, "李四")
            },
            "document_type",
        ),
    ];
    for (request, needle) in refusals {
        assert_code(client.enrol(request).await, Code::InvalidArgument, needle);
    }

    // Duplicate enrolment: same document, any spelling of the name.
    assert_code(
        client
            .enrol(enrol_request(&resident_id(2), "Someone Else"))
            .await,
        Code::AlreadyExists,
        "already enrolled",
    );
    assert_eq!(digest(&h.pool).await, before);
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_refused() {
    let h = start_default().await;
    let mut client = h.client.clone();
    let mut issuer = h.issuer.clone();
    let unknown = "0123456789abcdef0123456789abcdef".to_owned();
    let before = digest(&h.pool).await;
    assert_code(
        client
            .get_subject(GetSubjectRequest {
                subject_id: unknown.clone(),
            })
            .await,
        Code::NotFound,
        "subject not found",
    );
    assert_code(
        client
            .create_binding_challenge(CreateBindingChallengeRequest {
                subject_id: unknown.clone(),
            })
            .await,
        Code::NotFound,
        "subject not found",
    );
    assert_code(
        client
            .list_devices(ListDevicesRequest {
                subject_id: unknown.clone(),
                include_unbound: true,
            })
            .await,
        Code::NotFound,
        "subject not found",
    );
    assert_code(
        issuer
            .get_device(GetDeviceRequest {
                device_id: unknown.clone(),
            })
            .await,
        Code::NotFound,
        "device not found",
    );
    let key = DeviceKey::generate(&rng()).unwrap();
    assert_code(
        client
            .bind_device(bind_request(&unknown, &[7; 32], &key))
            .await,
        Code::NotFound,
        "subject not found",
    );
    assert_code(
        client
            .get_subject(GetSubjectRequest {
                subject_id: unknown.to_uppercase(),
            })
            .await,
        Code::InvalidArgument,
        "subject_id",
    );
    assert_code(
        client
            .list_certificates(ListCertificatesRequest {
                device_id: unknown.clone(),
                subject_id: unknown.clone(),
                include_expired: true,
            })
            .await,
        Code::InvalidArgument,
        "exactly one",
    );
    assert_eq!(digest(&h.pool).await, before);
}

#[tokio::test]
async fn binding_refusals_are_precise_and_change_nothing() {
    let h = start_default().await;
    let mut client = h.client.clone();
    let subject = enrol(&mut client, &resident_id(4), "Jane Roe").await;
    let id = subject.subject_id.clone();
    let challenge = new_challenge(&mut client, &id).await;
    let key = DeviceKey::generate(&rng()).unwrap();
    let before = digest(&h.pool).await;

    // Malformed public key: wrong length, and a point not on the curve.
    let mut request = bind_request(&id, &challenge, &key);
    request.public_key.truncate(33);
    assert_code(
        client.bind_device(request).await,
        Code::InvalidArgument,
        "public_key",
    );
    let mut request = bind_request(&id, &challenge, &key);
    request.public_key[64] ^= 1;
    assert_code(
        client.bind_device(request).await,
        Code::InvalidArgument,
        "public_key",
    );

    // Bad signatures: another key's, one over another subject, a flipped bit.
    let other = DeviceKey::generate(&rng()).unwrap();
    let mut request = bind_request(&id, &challenge, &key);
    request.signature = bind_request(&id, &challenge, &other).signature;
    assert_code(
        client.bind_device(request).await,
        Code::Unauthenticated,
        "signature",
    );
    let mut request = bind_request(&id, &challenge, &key);
    request.signature =
        bind_request("ffffffffffffffffffffffffffffffff", &challenge, &key).signature;
    assert_code(
        client.bind_device(request).await,
        Code::Unauthenticated,
        "signature",
    );
    let mut request = bind_request(&id, &challenge, &key);
    request.signature[10] ^= 1;
    assert_code(
        client.bind_device(request).await,
        Code::Unauthenticated,
        "signature",
    );
    let mut request = bind_request(&id, &challenge, &key);
    request.signature.pop();
    assert_code(
        client.bind_device(request).await,
        Code::InvalidArgument,
        "signature",
    );
    // A challenge that was never issued (correctly signed).
    assert_code(
        client.bind_device(bind_request(&id, &[9; 32], &key)).await,
        Code::FailedPrecondition,
        "challenge",
    );
    assert_eq!(digest(&h.pool).await, before);

    // The challenge survived all that; it binds once, and only once.
    client
        .bind_device(bind_request(&id, &challenge, &key))
        .await
        .unwrap();
    let after_bind = digest(&h.pool).await;
    let fresh_key = DeviceKey::generate(&rng()).unwrap();
    assert_code(
        client
            .bind_device(bind_request(&id, &challenge, &fresh_key))
            .await,
        Code::FailedPrecondition,
        "already used",
    );
    // A key already bound is refused, even with a fresh challenge.
    let challenge = new_challenge(&mut client, &id).await;
    let after_challenge = digest(&h.pool).await;
    assert_code(
        client
            .bind_device(bind_request(&id, &challenge, &key))
            .await,
        Code::AlreadyExists,
        "public_key",
    );
    assert_eq!(digest(&h.pool).await, after_challenge);
    assert_ne!(after_bind, after_challenge);
}

#[tokio::test]
async fn expired_challenges_are_refused() {
    let mut config = IdentityConfig::dev();
    config.challenge_ttl = Duration::from_millis(300);
    let h = start(config).await;
    let mut client = h.client.clone();
    let subject = enrol(&mut client, &resident_id(5), "Jane Roe").await;
    let challenge = new_challenge(&mut client, &subject.subject_id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = digest(&h.pool).await;
    let key = DeviceKey::generate(&rng()).unwrap();
    assert_code(
        client
            .bind_device(bind_request(&subject.subject_id, &challenge, &key))
            .await,
        Code::FailedPrecondition,
        "expired",
    );
    assert_eq!(digest(&h.pool).await, before);
}

#[tokio::test]
async fn the_device_limit_is_enforced() {
    let mut config = IdentityConfig::dev();
    config.max_devices_per_subject = 2;
    let h = start(config).await;
    let mut client = h.client.clone();
    let subject = enrol(&mut client, &resident_id(6), "Jane Roe").await;
    let id = subject.subject_id.clone();
    let first = bind_new_device(&mut client, &id).await;
    bind_new_device(&mut client, &id).await;
    let challenge = new_challenge(&mut client, &id).await;
    let key = DeviceKey::generate(&rng()).unwrap();
    let before = digest(&h.pool).await;
    assert_code(
        client
            .bind_device(bind_request(&id, &challenge, &key))
            .await,
        Code::FailedPrecondition,
        "limit",
    );
    assert_eq!(digest(&h.pool).await, before);
    client
        .unbind_device(UnbindDeviceRequest {
            subject_id: id.clone(),
            device_id: first,
            reason: String::new(),
        })
        .await
        .unwrap();
    client
        .bind_device(bind_request(&id, &challenge, &key))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_suspended_subject_cannot_bind() {
    let h = start_default().await;
    let mut client = h.client.clone();
    let subject = enrol(&mut client, &resident_id(7), "Jane Roe").await;
    let id = subject.subject_id.clone();
    let challenge = new_challenge(&mut client, &id).await;
    let suspended = client
        .set_subject_status(SetSubjectStatusRequest {
            subject_id: id.clone(),
            status: SubjectStatus::Suspended.into(),
            reason: "fraud review".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .subject
        .unwrap();
    assert_eq!(suspended.status(), SubjectStatus::Suspended);
    let before = digest(&h.pool).await;
    let key = DeviceKey::generate(&rng()).unwrap();
    assert_code(
        client
            .bind_device(bind_request(&id, &challenge, &key))
            .await,
        Code::FailedPrecondition,
        "SUSPENDED",
    );
    assert_code(
        client
            .create_binding_challenge(CreateBindingChallengeRequest {
                subject_id: id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "SUSPENDED",
    );
    assert_code(
        client
            .set_subject_status(SetSubjectStatusRequest {
                subject_id: id.clone(),
                status: SubjectStatus::Rejected.into(),
                reason: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "ACTIVE or SUSPENDED",
    );
    assert_eq!(digest(&h.pool).await, before);
    // Re-activated, the same challenge binds.
    client
        .set_subject_status(SetSubjectStatusRequest {
            subject_id: id.clone(),
            status: SubjectStatus::Active.into(),
            reason: "cleared".to_owned(),
        })
        .await
        .unwrap();
    client
        .bind_device(bind_request(&id, &challenge, &key))
        .await
        .unwrap();
}

#[tokio::test]
async fn real_name_outcomes_show_in_status_and_assurance() {
    let mut config = IdentityConfig::dev();
    let unavailable = resident_id(8);
    config.real_name_sandbox = SandboxConfig {
        default_outcome: citypass_identity::Outcome::Matched,
        rules: vec![
            SandboxRule {
                outcome: citypass_identity::Outcome::Mismatched,
                document_number_suffix: None,
                name: Some("Wrong Name".to_owned()),
            },
            SandboxRule {
                outcome: citypass_identity::Outcome::Unavailable,
                document_number_suffix: Some(unavailable[10..].to_owned()),
                name: Some("Jane Roe".to_owned()),
            },
        ],
    };
    let h = start(config).await;
    let mut client = h.client.clone();

    let rejected = enrol(&mut client, &resident_id(9), "Wrong Name").await;
    assert_eq!(rejected.status(), SubjectStatus::Rejected);
    assert_eq!(rejected.real_name_check(), RealNameCheckOutcome::Mismatched);
    assert_eq!(
        rejected.attributes.unwrap().assurance_level(),
        AssuranceLevel::DocumentChecked
    );

    let pending = enrol(&mut client, &unavailable, "Jane Roe").await;
    assert_eq!(pending.status(), SubjectStatus::Pending);
    assert_eq!(pending.real_name_check(), RealNameCheckOutcome::Unavailable);
    assert_code(
        client
            .set_subject_status(SetSubjectStatusRequest {
                subject_id: pending.subject_id.clone(),
                status: SubjectStatus::Active.into(),
                reason: String::new(),
            })
            .await,
        Code::FailedPrecondition,
        "PENDING",
    );
    assert_code(
        client
            .create_binding_challenge(CreateBindingChallengeRequest {
                subject_id: pending.subject_id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "PENDING",
    );

    // The app retries (here the sandbox rule no longer matches the name): a new,
    // verified subject; the pending attempt is closed.
    let verified = enrol(&mut client, &unavailable, "Jane  ROE Smith").await;
    assert_eq!(verified.status(), SubjectStatus::Active);
    assert_ne!(verified.subject_id, pending.subject_id);
    let closed = client
        .get_subject(GetSubjectRequest {
            subject_id: pending.subject_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .subject
        .unwrap();
    assert_eq!(closed.status(), SubjectStatus::Rejected);
    assert_code(
        client.enrol(enrol_request(&unavailable, "Jane Roe")).await,
        Code::AlreadyExists,
        "already enrolled",
    );
}

#[tokio::test]
async fn certificate_refusals_are_precise_and_change_nothing() {
    let h = start_default().await;
    let mut client = h.client.clone();
    let mut issuer = h.issuer.clone();
    let subject = enrol(&mut client, &resident_id(10), "Jane Roe").await;
    let device_id = bind_new_device(&mut client, &subject.subject_id).await;
    let other = enrol(&mut client, &resident_id(11), "John Roe").await;
    let other_device = bind_new_device(&mut client, &other.subject_id).await;
    let good = DeviceCertificate {
        serial: random_serial(),
        device_id: device_id.clone(),
        subject_id: String::new(),
        not_before: Some(now_plus(0)),
        not_after: Some(now_plus(3600)),
    };
    issuer
        .record_certificate(RecordCertificateRequest {
            certificate: Some(good.clone()),
        })
        .await
        .unwrap();
    let before = digest(&h.pool).await;

    let record = |certificate: DeviceCertificate| RecordCertificateRequest {
        certificate: Some(certificate),
    };
    let cases = [
        (
            RecordCertificateRequest { certificate: None },
            Code::InvalidArgument,
            "certificate",
        ),
        (
            record(DeviceCertificate {
                serial: vec![1; 15],
                ..good.clone()
            }),
            Code::InvalidArgument,
            "serial",
        ),
        (
            record(DeviceCertificate {
                not_after: good.not_before,
                serial: random_serial(),
                ..good.clone()
            }),
            Code::InvalidArgument,
            "not_after",
        ),
        (
            record(DeviceCertificate {
                not_before: None,
                serial: random_serial(),
                ..good.clone()
            }),
            Code::InvalidArgument,
            "not_before",
        ),
        (
            record(DeviceCertificate {
                device_id: "0123456789abcdef0123456789abcdef".to_owned(),
                serial: random_serial(),
                ..good.clone()
            }),
            Code::NotFound,
            "device not found",
        ),
        (
            record(DeviceCertificate {
                subject_id: other.subject_id.clone(),
                serial: random_serial(),
                ..good.clone()
            }),
            Code::InvalidArgument,
            "subject_id",
        ),
        (
            record(DeviceCertificate {
                device_id: other_device.clone(),
                ..good.clone()
            }),
            Code::AlreadyExists,
            "serial",
        ),
        (
            record(DeviceCertificate {
                not_after: Some(now_plus(7200)),
                ..good.clone()
            }),
            Code::AlreadyExists,
            "serial",
        ),
    ];
    for (request, code, needle) in cases {
        assert_code(issuer.record_certificate(request).await, code, needle);
    }
    assert_eq!(digest(&h.pool).await, before);
}
