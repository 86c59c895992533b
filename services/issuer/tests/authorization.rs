//! The issuer's authorisation table, over real TLS, on the issuer as `build` makes it:
//! every RPC against every kind of caller. Codes go only to device-signed requests,
//! which the handler checks first: a certificate does not stand in for a device
//! signature.

use std::net::SocketAddr;

use citypass_issuer::{AUTHORIZATION, Config, build};
use citypass_proto::v1::IssueTokenRequest;
use citypass_proto::v1::issuer_service_client::IssuerServiceClient;
use citypass_runtime::authz::REFUSED_BY;
use citypass_runtime::{Role, ServerConfig};
use citypass_testkit::tls::{As, TestPki};
use citypass_testkit::{Served, serve};
use citypass_token::{Keyring, SystemRandom};
use tonic::Code;

struct Running {
    addr: SocketAddr,
    pki: TestPki,
    _served: Served,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new("issuer");
    let ring = Keyring::generate("citypass-test", true, &SystemRandom::new()).unwrap();
    let ring_path = dir.path().join("keyring.json");
    std::fs::write(&ring_path, ring.to_json()).unwrap();
    let mut config = Config::dev(ServerConfig::new("issuer-test"));
    config.server.tls = Some(pki.server_files(&dir.path().join("tls")));
    config.keyring.path = ring_path;
    // Identity and revocation are not running: the table is checked before either is
    // asked, and an allowed call fails on its own terms.
    let served = serve(build(config).await.expect("the issuer builds").server).await;
    Running {
        addr: served.addr,
        pki,
        _served: served,
        _dir: dir,
    }
}

#[tokio::test]
async fn every_rpc_answers_every_caller_as_the_table_says() {
    let running = start().await;
    citypass_testkit::authz::assert_table_holds(&running.pki, running.addr, &AUTHORIZATION).await;
}

#[tokio::test]
async fn a_certificate_is_no_device_signature() {
    let running = start().await;
    for who in [
        As::Nobody,
        As::Operator(&Role::ALL),
        As::Service("verifier"),
    ] {
        let mut client = IssuerServiceClient::new(running.pki.channel(running.addr, &who));
        let status = client
            .issue_token(IssueTokenRequest {
                subject_id: "0123456789abcdef0123456789abcdef".to_owned(),
                device_id: "fedcba9876543210fedcba9876543210".to_owned(),
                ..IssueTokenRequest::default()
            })
            .await
            .expect_err("an unsigned request gets no code");
        assert_eq!(status.code(), Code::Unauthenticated, "{who:?}: {status:?}");
        assert!(
            status.metadata().get(REFUSED_BY).is_none(),
            "the proof check refused"
        );
    }
    // An impostor's certificate is refused before the handler.
    let mut client = IssuerServiceClient::new(running.pki.channel(
        running.addr,
        &As::OtherCa(Box::new(As::Service("verifier"))),
    ));
    let status = client
        .issue_token(IssueTokenRequest::default())
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.metadata().get(REFUSED_BY).is_some());
}
