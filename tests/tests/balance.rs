//! Per-call balancing of an upstream channel (`dns_refresh`,
//! crates/runtime/src/upstream.rs): one channel's calls reach every address its host
//! resolves to, over real mutual TLS to real servers on loopback, and follow the
//! addresses as they come and go. (A ClusterIP Service would pin every call to the pod
//! its one HTTP/2 connection landed on.)
//!
//! The backends tell themselves apart by what health says of one name: SERVING on
//! the first, NOT_SERVING on the second, unknown (NOT_FOUND) on the third. The
//! resolver is the test's, so that three loopback servers can stand for the pods one
//! headless Service name resolves to; the system resolver is `SystemResolver`.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use citypass_proto::v1::issuer_service_client::IssuerServiceClient;
use citypass_proto::v1::issuer_service_server::{IssuerService, IssuerServiceServer};
use citypass_proto::v1::{
    GetKeySetRequest, GetKeySetResponse, IssueDeviceCertificateRequest,
    IssueDeviceCertificateResponse, IssueTokenRequest, IssueTokenResponse,
};
use citypass_runtime::{
    Allow, Policy, Resolve, Rule, Server, ServerConfig, ServingStatus, UpstreamConfig,
};
use citypass_testkit::Served;
use citypass_testkit::tls::{As, TestPki};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// The name whose health tells the backends apart.
const PROBE: &str = "which.backend";
/// Generous: the machine is busy, and each change waits for one refresh.
const DEADLINE: Duration = Duration::from_secs(90);

/// The addresses "the DNS" answers now.
#[derive(Default)]
struct Addresses(Mutex<Vec<SocketAddr>>);

impl Addresses {
    fn set(&self, addresses: &[SocketAddr]) {
        *self.0.lock().expect("the addresses") = addresses.to_vec();
    }
}

impl Resolve for Addresses {
    fn resolve(
        &self,
        _host: &str,
        _port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'static>> {
        let now = self.0.lock().expect("the addresses").clone();
        Box::pin(async move { Ok(now) })
    }
}

/// An RPC only the verifier may call: an answer proves the channel presented the
/// verifier's certificate (the authorisation layer refuses anyone else).
const VERIFIER_ONLY: Policy = Policy {
    service: "citypass.v1.IssuerService",
    rules: &[
        Rule {
            method: "IssueToken",
            allow: &[Allow::Service("verifier")],
        },
        Rule {
            method: "IssueDeviceCertificate",
            allow: &[Allow::Service("verifier")],
        },
        Rule {
            method: "GetKeySet",
            allow: &[Allow::Service("verifier")],
        },
    ],
};

/// Answers GetKeySet with an empty set; nothing else.
struct KeySetOnly;

#[tonic::async_trait]
impl IssuerService for KeySetOnly {
    async fn issue_token(
        &self,
        _: tonic::Request<IssueTokenRequest>,
    ) -> Result<tonic::Response<IssueTokenResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this test"))
    }

    async fn issue_device_certificate(
        &self,
        _: tonic::Request<IssueDeviceCertificateRequest>,
    ) -> Result<tonic::Response<IssueDeviceCertificateResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this test"))
    }

    async fn get_key_set(
        &self,
        _: tonic::Request<GetKeySetRequest>,
    ) -> Result<tonic::Response<GetKeySetResponse>, tonic::Status> {
        Ok(tonic::Response::new(GetKeySetResponse::default()))
    }
}

/// A real citypass server with the test CA's identity, its health saying `status` of
/// [`PROBE`] (none: unknown), and [`VERIFIER_ONLY`]'s GetKeySet.
async fn backend(pki: &TestPki, status: Option<ServingStatus>) -> Served {
    let mut config = ServerConfig::new("citypass-identity");
    // The test calls as fast as it can; the per-caller limit is not what it tests.
    // (Health is open to anyone, so the per-address limit counts its calls.)
    let many = std::num::NonZeroU32::new(1_000_000).expect("non-zero");
    config.limits.per_caller_per_second = many;
    config.limits.anonymous_per_second = many;
    let server = Server::new(config)
        .tls(pki.server.clone())
        .add_service(IssuerServiceServer::new(KeySetOnly), &VERIFIER_ONLY);
    if let Some(status) = status {
        assert!(server.health().set(PROBE, status).await);
    }
    citypass_testkit::serve(server).await
}

/// Which backend answered one call: `a`, `b` or `c`.
async fn which(channel: &Channel) -> &'static str {
    let answer = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: PROBE.to_owned(),
        })
        .await;
    match answer.map(|r| r.into_inner().status()) {
        Ok(tonic_health::pb::health_check_response::ServingStatus::Serving) => "a",
        Ok(tonic_health::pb::health_check_response::ServingStatus::NotServing) => "b",
        Err(status) if status.code() == tonic::Code::NotFound => "c",
        other => panic!("an unexpected answer: {other:?}"),
    }
}

/// Calls until `done` holds for the counts of the last `window` calls (or the deadline
/// passes, which fails).
async fn calls_until(
    channel: &Channel,
    window: usize,
    what: &str,
    done: impl Fn(&BTreeMap<&'static str, usize>) -> bool,
) {
    let started = Instant::now();
    let mut last: Vec<&'static str> = Vec::new();
    loop {
        last.push(which(channel).await);
        if last.len() > window {
            last.remove(0);
        }
        let mut counts = BTreeMap::new();
        for b in &last {
            *counts.entry(*b).or_insert(0) += 1;
        }
        if last.len() == window && done(&counts) {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{what}: the last {window} calls went {counts:?}"
        );
    }
}

#[tokio::test]
async fn one_channel_spreads_its_calls_over_every_address_and_follows_them() {
    let pki = TestPki::new("identity");
    let a = backend(&pki, Some(ServingStatus::Serving)).await;
    let b = backend(&pki, Some(ServingStatus::NotServing)).await;
    let c = backend(&pki, None).await;

    let addresses = Arc::new(Addresses::default());
    addresses.set(&[a.addr, b.addr]);
    // `localhost` is a name the servers' certificates carry: what is checked is the
    // URL's host, whatever address a connection goes to.
    let mut upstream = UpstreamConfig::new("https://localhost:50051");
    upstream.dns_refresh = Some(Duration::from_secs(1));
    let channel = upstream
        .balanced_channel(Some(&pki.client(&As::Service("issuer"))), addresses.clone())
        .expect("a balanced channel");

    // Both addresses get calls, over the one channel.
    calls_until(&channel, 40, "a and b", |n| {
        n.get("a").copied().unwrap_or(0) >= 5 && n.get("b").copied().unwrap_or(0) >= 5
    })
    .await;

    // a leaves (its pod is no longer ready), c arrives: the calls follow.
    addresses.set(&[b.addr, c.addr]);
    calls_until(&channel, 40, "b and c, not a", |n| {
        !n.contains_key("a")
            && n.get("b").copied().unwrap_or(0) >= 5
            && n.get("c").copied().unwrap_or(0) >= 5
    })
    .await;

    // The name resolves to nothing for a while: the last addresses are kept.
    addresses.set(&[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    calls_until(&channel, 20, "the last addresses kept", |n| {
        !n.contains_key("a")
    })
    .await;
}

#[tokio::test]
async fn a_balanced_channel_checks_the_servers_name_and_presents_its_identity() {
    let pki = TestPki::new("identity");
    let a = backend(&pki, Some(ServingStatus::Serving)).await;
    let b = backend(&pki, Some(ServingStatus::NotServing)).await;
    let addresses = Arc::new(Addresses::default());
    addresses.set(&[a.addr, b.addr]);

    // The verifier's certificate is presented on every connection: each call is
    // admitted, wherever it goes; another service's is refused by who it is.
    let mut upstream = UpstreamConfig::new("https://localhost:50051");
    upstream.dns_refresh = Some(Duration::from_secs(1));
    for (who, admitted) in [("verifier", true), ("payments", false)] {
        let channel = upstream
            .balanced_channel(Some(&pki.client(&As::Service(who))), addresses.clone())
            .expect("a balanced channel");
        for _ in 0..20 {
            let answer = IssuerServiceClient::new(channel.clone())
                .get_key_set(GetKeySetRequest::default())
                .await;
            match (admitted, answer) {
                (true, Ok(_)) => {}
                (false, Err(status)) if status.code() == tonic::Code::PermissionDenied => {}
                (_, other) => panic!("{who}: {other:?}"),
            }
        }
    }

    // A host the server's certificate does not carry: no call gets through.
    let mut wrong = UpstreamConfig::new("https://payments:50055");
    wrong.dns_refresh = Some(Duration::from_secs(1));
    wrong.connect_timeout = Duration::from_secs(5);
    wrong.request_timeout = Duration::from_secs(5);
    let channel = wrong
        .balanced_channel(Some(&pki.client(&As::Service("issuer"))), addresses.clone())
        .expect("a balanced channel");
    let refused = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: PROBE.to_owned(),
        })
        .await;
    assert!(refused.is_err(), "{refused:?}");

    // https:// without TLS material, and a refresh out of bounds, are refused at once.
    let mut upstream = UpstreamConfig::new("https://localhost:50051");
    upstream.dns_refresh = Some(Duration::from_secs(1));
    assert!(upstream.balanced_channel(None, addresses.clone()).is_err());
    upstream.dns_refresh = Some(Duration::from_millis(10));
    assert!(
        upstream
            .balanced_channel(Some(&pki.client(&As::Service("issuer"))), addresses)
            .is_err()
    );
}

#[tokio::test]
async fn a_renewed_certificate_is_presented_on_fresh_connections() {
    let pki = TestPki::new("identity");
    let a = backend(&pki, Some(ServingStatus::Serving)).await;
    let b = backend(&pki, Some(ServingStatus::NotServing)).await;
    let addresses = Arc::new(Addresses::default());
    addresses.set(&[a.addr, b.addr]);

    // The process's certificate files say payments; then they are renewed as the
    // verifier (cert-manager rewrites the mounted Secret) and reloaded.
    let dir = tempfile::tempdir().expect("a directory");
    let issue = |name: &str| {
        pki.ca()
            .issue(&citypass_pki::Subject::service(name))
            .expect("a certificate")
            .write_dir(dir.path())
            .expect("the files")
    };
    let files = issue("payments");
    let tls = citypass_runtime::Tls::from_files(&files).expect("TLS from the files");
    let mut upstream = UpstreamConfig::new("https://localhost:50051");
    upstream.dns_refresh = Some(Duration::from_secs(1));
    let channel = upstream
        .balanced_channel(Some(&tls), addresses.clone())
        .expect("a balanced channel");
    let key_set = || async {
        IssuerServiceClient::new(channel.clone())
            .get_key_set(GetKeySetRequest::default())
            .await
            .map_err(|s| s.code())
    };
    assert_eq!(key_set().await.err(), Some(tonic::Code::PermissionDenied));

    issue("verifier");
    tls.reload().expect("the renewed files");
    // Within a refresh or so every address is connected afresh with the new
    // certificate: twenty admitted calls in a row.
    let started = Instant::now();
    let mut admitted = 0;
    while admitted < 20 {
        match key_set().await {
            Ok(_) => admitted += 1,
            Err(tonic::Code::PermissionDenied) => admitted = 0,
            Err(other) => panic!("{other:?}"),
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the renewed certificate is not presented"
        );
        if admitted == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
