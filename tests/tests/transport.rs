//! TLS on the wire: a plaintext client gets nothing from a TLS service, and a service
//! picks up renewed certificate files without a restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use citypass_identity::{IdentityConfig, build};
use citypass_pki::{Authority, CA_LIFE, Subject};
use citypass_proto::v1::GetSubjectRequest;
use citypass_proto::v1::identity_service_client::IdentityServiceClient;
use citypass_runtime::{Role, Tls, TlsConfig, UpstreamConfig};
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Longest a test waits for a condition before failing.
const PATIENCE: Duration = Duration::from_secs(30);

struct Running {
    addr: std::net::SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn serve(tls: TlsConfig) -> Running {
    let mut config = IdentityConfig::dev();
    config.server.tls = Some(tls);
    let built = build(config).await.expect("identity builds");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(built.server.serve(listener, async {
        let _ = stopped.await;
    }));
    Running { addr, _stop: stop }
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
