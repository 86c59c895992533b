//! The probe listener (`server.health_listen`) of a real service whose service port is
//! TLS: it answers health `Check` in plaintext, as the kubelet's gRPC probe calls it,
//! refuses everything else, reports `NOT_SERVING` once the drain begins, and closes with
//! the service port.

use std::time::Duration;

use citypass_identity::{IdentityConfig, build};
use citypass_pki::{Authority, CA_LIFE, Subject};
use citypass_proto::v1::GetSubjectRequest;
use citypass_proto::v1::identity_service_client::IdentityServiceClient;
use citypass_runtime::UpstreamConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Longest a test waits for a condition before failing.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long the server keeps serving `NOT_SERVING` after the shutdown signal: long
/// enough that a busy machine still sees it, and the test then waits it out.
const SHUTDOWN_DELAY: Duration = Duration::from_secs(10);
const IDENTITY: &str = "citypass.v1.IdentityService";

fn plaintext(addr: std::net::SocketAddr) -> Channel {
    let mut upstream = UpstreamConfig::new(format!("http://{addr}"));
    upstream.request_timeout = Duration::from_secs(10);
    upstream.channel(None).expect("a plaintext channel")
}

async fn check(channel: Channel, service: &str) -> Result<ServingStatus, Code> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map(|answer| answer.into_inner().status())
        .map_err(|status| status.code())
}

#[tokio::test]
async fn the_probe_port_answers_check_in_plaintext_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::generate(CA_LIFE).unwrap();
    let tls = ca
        .issue(&Subject::service("identity"))
        .unwrap()
        .write_dir(dir.path())
        .unwrap();
    let mut config = IdentityConfig::dev();
    config.server.tls = Some(tls);
    config.server.shutdown_delay = SHUTDOWN_DELAY;
    let probes = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let probe_addr = probes.local_addr().unwrap();
    let server = build(config)
        .await
        .expect("identity builds")
        .server
        .probe_listener(probes);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service_addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));

    // The kubelet's calls: the whole server, and the service by name.
    let probe = plaintext(probe_addr);
    assert_eq!(check(probe.clone(), "").await, Ok(ServingStatus::Serving));
    assert_eq!(
        check(probe.clone(), IDENTITY).await,
        Ok(ServingStatus::Serving)
    );
    assert_eq!(
        check(probe.clone(), "no.such.Service").await,
        Err(Code::NotFound)
    );

    // Nothing else: not Watch, not the service's RPCs.
    let watch = HealthClient::new(probe.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect_err("no watch on the probe port");
    assert_eq!(watch.code(), Code::Unimplemented, "{watch:?}");
    let rpc = IdentityServiceClient::new(probe.clone())
        .get_subject(GetSubjectRequest::default())
        .await
        .expect_err("no RPC on the probe port");
    assert_eq!(rpc.code(), Code::Unimplemented, "{rpc:?}");

    // The service port still speaks TLS only: the same plaintext Check gets no answer.
    let refused = check(plaintext(service_addr), "").await;
    assert!(
        matches!(refused, Err(Code::Unavailable | Code::Unknown)),
        "{refused:?}"
    );

    // Shutdown: NOT_SERVING on the probe port while the service drains...
    stop.send(()).unwrap();
    let flipped = tokio::time::timeout(PATIENCE, async {
        loop {
            if check(probe.clone(), "").await == Ok(ServingStatus::NotServing) {
                return check(probe.clone(), IDENTITY).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the probe port reports NOT_SERVING once shutdown begins");
    assert_eq!(flipped, Ok(ServingStatus::NotServing));

    // ...and the probe port closes with the service port.
    tokio::time::timeout(PATIENCE, serving)
        .await
        .expect("serve returns after the drain")
        .expect("serve task")
        .expect("a clean drain");
    drop(probe);
    let closed = tokio::time::timeout(PATIENCE, async {
        while TcpStream::connect(probe_addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the probe port still accepts after serve returned"
    );
}
