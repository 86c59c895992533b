//! TLS on the wire: a plaintext client gets nothing from a TLS service, and a service
//! picks up renewed certificate files without a restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use citypass_identity::{IdentityConfig, build};
use citypass_pki::{Authority, CA_LIFE, Subject};
use citypass_proto::v1::GetSubjectRequest;
use citypass_proto::v1::identity_service_client::IdentityServiceClient;
use citypass_runtime::{Role, Tls, TlsConfig, UpstreamConfig};
use citypass_testkit::Served;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

/// Longest a test waits for a condition before failing.
const PATIENCE: Duration = Duration::from_secs(30);

/// Identity, built from a dev configuration with these TLS files, serving.
async fn serve(tls: TlsConfig) -> Served {
    let mut config = IdentityConfig::dev();
    config.server.tls = Some(tls);
    citypass_testkit::serve(build(config).await.expect("identity builds").server).await
}

#[tokio::test]
async fn a_plaintext_client_gets_nothing_from_a_tls_service() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::generate(CA_LIFE).unwrap();
    let files = ca
        .issue(&Subject::service("identity"))
        .unwrap()
        .write_dir(dir.path())
        .unwrap();
    let running = serve(files).await;
    let mut upstream = UpstreamConfig::new(format!("http://{}", running.addr));
    upstream.request_timeout = Duration::from_secs(5);
    let mut plaintext = IdentityServiceClient::new(upstream.channel(None).unwrap());
    let status = plaintext
        .get_subject(GetSubjectRequest::default())
        .await
        .expect_err("no answer over plaintext");
    // The TLS server never sees an HTTP/2 request: the connection fails, and the
    // error is the client's transport's, not an answer from the server.
    assert!(
        matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown
        ),
        "{status:?}"
    );
    assert!(
        std::error::Error::source(&status).is_some(),
        "a transport failure: {status:?}"
    );
    assert!(
        status
            .metadata()
            .get(citypass_runtime::authz::REFUSED_BY)
            .is_none()
    );
}

/// The certificate the server at `addr` presents, DER.
async fn served_certificate(addr: std::net::SocketAddr, ca_pem: &[u8]) -> Vec<u8> {
    let tls = Tls::from_pem(ca_pem, None).unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls.client_config().unwrap());
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let stream = connector.connect(name, tcp).await.expect("handshake");
    let (_, session) = stream.get_ref();
    session.peer_certificates().expect("a certificate")[0].to_vec()
}

fn der(pem: &str) -> Vec<u8> {
    citypass_runtime::tls::pem_certificates(pem.as_bytes()).unwrap()[0].to_vec()
}

#[tokio::test]
async fn renewed_certificate_files_are_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::generate(CA_LIFE).unwrap();
    let first = ca.issue(&Subject::service("identity")).unwrap();
    let mut files = first.write_dir(dir.path()).unwrap();
    files.reload_interval = Duration::from_millis(100);
    let running = serve(files).await;
    let ca_pem = ca.cert_pem().as_bytes().to_vec();
    assert_eq!(
        served_certificate(running.addr, &ca_pem).await,
        der(&first.cert_pem)
    );

    // cert-manager renews: new key, new certificate, written in place.
    let renewed = ca.issue(&Subject::service("identity")).unwrap();
    renewed.write_dir(dir.path()).unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        if served_certificate(running.addr, &ca_pem).await == der(&renewed.cert_pem) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not served within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A renewal that callers could not accept (another CA's certificate) is refused:
    // the service keeps serving the one that works.
    let other = Authority::generate(CA_LIFE).unwrap();
    let mut broken = other.issue(&Subject::service("identity")).unwrap();
    broken.ca_pem = ca.cert_pem().to_owned();
    broken.write_dir(dir.path()).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        served_certificate(running.addr, &ca_pem).await,
        der(&renewed.cert_pem),
        "a certificate that does not chain to the CA is not served"
    );

    // Calls work on the renewed certificate.
    let issued = ca
        .issue(&Subject::operator(
            "ops",
            &[Role::Auditor],
            Duration::from_secs(600),
        ))
        .unwrap();
    let client_tls: Arc<Tls> = Tls::from_pem(
        &ca_pem,
        Some((issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())),
    )
    .unwrap();
    let mut client = IdentityServiceClient::new(
        UpstreamConfig::new(format!("https://{}", running.addr))
            .channel(Some(&client_tls))
            .unwrap(),
    );
    let status = client
        .get_subject(GetSubjectRequest {
            subject_id: "0123456789abcdef0123456789abcdef".to_owned(),
        })
        .await
        .expect_err("no such subject");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
}

/// TLS presenting a certificate for `subject` from `authority`, trusting `ca_pem`.
fn identity_tls(authority: &Authority, subject: &Subject, ca_pem: &[u8]) -> Arc<Tls> {
    let issued = authority.issue(subject).unwrap();
    Tls::from_pem(
        ca_pem,
        Some((issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())),
    )
    .unwrap()
}

#[tokio::test]
async fn operators_come_from_the_operators_ca_and_only_operators_do() {
    let dir = tempfile::tempdir().unwrap();
    let deployment = Authority::generate(CA_LIFE).unwrap();
    let operators = Authority::generate(CA_LIFE).unwrap();
    let mut files = deployment
        .issue(&Subject::service("identity"))
        .unwrap()
        .write_dir(dir.path())
        .unwrap();
    let operator_ca = dir.path().join("operators-ca.crt");
    std::fs::write(&operator_ca, operators.cert_pem()).unwrap();
    files.operator_ca_file = Some(operator_ca);
    let running = serve(files).await;
    let ca_pem = deployment.cert_pem().as_bytes();
    let client = |tls: Arc<Tls>| {
        IdentityServiceClient::new(
            UpstreamConfig::new(format!("https://{}", running.addr))
                .channel(Some(&tls))
                .unwrap(),
        )
    };
    let unknown = "0123456789abcdef0123456789abcdef".to_owned();
    let get_subject = |tls: Arc<Tls>| {
        let mut client = client(tls);
        let subject_id = unknown.clone();
        async move {
            client
                .get_subject(GetSubjectRequest { subject_id })
                .await
                .expect_err("no such subject")
                .code()
        }
    };
    let auditor = Subject::operator("ops", &[Role::Auditor], Duration::from_secs(600));
    // An operator certificate from the operators' CA is an operator.
    assert_eq!(
        get_subject(identity_tls(&operators, &auditor, ca_pem)).await,
        tonic::Code::NotFound
    );
    // The deployment CA cannot make operators...
    assert_eq!(
        get_subject(identity_tls(&deployment, &auditor, ca_pem)).await,
        tonic::Code::Unauthenticated
    );
    // ...and the operators' CA cannot make services.
    let issuer = Subject::service("issuer");
    let status = client(identity_tls(&operators, &issuer, ca_pem))
        .get_device(citypass_proto::v1::GetDeviceRequest {
            device_id: unknown.clone(),
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    let status = client(identity_tls(&deployment, &issuer, ca_pem))
        .get_device(citypass_proto::v1::GetDeviceRequest { device_id: unknown })
        .await
        .expect_err("no such device");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
}
