//! IssueToken throughput of the issuer against a bare tonic server that only signs,
//! measured in one run on the same machine, with the same load.
//!
//! ```text
//! cargo run --release -p citypass-issuer --example throughput -- [SECONDS] [CONCURRENCY] [tls|plain]
//! ```
//!
//! Every server and the load generator use TLS (`tls`, the default: a throwaway CA,
//! clients without certificates, as citizens' apps) or plaintext (`plain`), so the
//! cost of TLS shows by running both.
//!
//! Three servers run on the runtime's `Server` (same tower stack) on loopback:
//! - **bare signer**: IssueToken only signs a code (`Issuer::issue_token`);
//! - **verify+sign**: also verifies the device's ES256 proof, the crypto the issuer
//!   cannot avoid, and nothing else (a floor for the real service);
//! - **issuer**: the real service: proof check, single-use nonce (in-memory store),
//!   GetDevice through the issuer's cache (an in-process identity with 64 devices: the
//!   steady state of the 3 s cache), revocation stand-in, policy, signing.
//!
//! Requests are signed before each timed round (the proof's signing cost is the
//! phone's, not the issuer's), and every server receives the same kind of signed
//! requests. Rounds alternate to even out drift; the load generator shares the
//! machine's cores with the servers, as in the NOTES figures.

use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use citypass_issuer::{
    CertificateRecord, DeviceRecord, Environment, IdentityError, IdentityLookup, IssuanceConfig,
    Keys, MemoryNonceStore, NothingRevoked, issuer_service, sign_request,
};
use citypass_proto::prost_types::Timestamp;
use citypass_proto::v1::issuer_service_client::IssuerServiceClient;
use citypass_proto::v1::issuer_service_server::{IssuerService, IssuerServiceServer};
use citypass_proto::v1::{
    AssuranceLevel, Attributes, DeviceStatus, GetKeySetRequest, GetKeySetResponse,
    IssueDeviceCertificateRequest, IssueDeviceCertificateResponse, IssueTokenRequest,
    IssueTokenResponse, SubjectStatus,
};
use citypass_runtime::{Deadline, Server, ServerConfig, UpstreamConfig};
use citypass_testkit::tls::{As, TestPki};
use citypass_token::{DeviceKey, Issuer, Keyring, Scopes, SystemRandom};
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

const DEVICES: usize = 64;
const CHANNELS: usize = 4;
/// Requests signed ahead of each round, per second of the round; a round stops early
/// if it uses them all (the rate is taken over the time it ran).
const REQUESTS_PER_SECOND: usize = 40_000;

struct Identity(HashMap<citypass_token::DeviceId, DeviceRecord>);

impl IdentityLookup for Identity {
    fn get_device<'a>(
        &'a self,
        device: &'a citypass_token::DeviceId,
        _: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Option<Arc<DeviceRecord>>, IdentityError>> {
        let found = self.0.get(device).cloned().map(Arc::new);
        Box::pin(std::future::ready(Ok(found)))
    }

    fn record_certificate<'a>(
        &'a self,
        _: &'a CertificateRecord,
        _: Option<Deadline>,
    ) -> BoxFuture<'a, Result<(), IdentityError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The baseline: signs and answers, nothing else.
struct Bare(Issuer);

/// A second reference: the crypto the issuer cannot avoid (verify the device's ES256
/// proof, sign the code), and nothing else: no nonce, no lookup, no policy.
struct CryptoFloor {
    issuer: Issuer,
    keys: HashMap<String, citypass_token::PublicKey>,
}

#[tonic::async_trait]
impl IssuerService for CryptoFloor {
    async fn issue_token(
        &self,
        request: Request<IssueTokenRequest>,
    ) -> Result<Response<IssueTokenResponse>, Status> {
        let mut request = request.into_inner();
        let proof = request
            .proof
            .take()
            .ok_or_else(|| Status::unauthenticated(""))?;
        let ts = proof.timestamp.unwrap_or_default();
        let key = self
            .keys
            .get(&request.device_id)
            .ok_or_else(|| Status::not_found(""))?;
        let body = citypass_token::sha256(&prost::Message::encode_to_vec(&request));
        citypass_token::RequestProof {
            method: citypass_issuer::ISSUE_TOKEN,
            seconds: ts.seconds,
            nanos: ts.nanos,
            nonce: &proof.nonce,
            body_sha256: &body,
        }
        .verify(key, &proof.signature)
        .map_err(|_| Status::unauthenticated(""))?;
        Bare::sign(&self.issuer)
    }

    async fn issue_device_certificate(
        &self,
        _: Request<IssueDeviceCertificateRequest>,
    ) -> Result<Response<IssueDeviceCertificateResponse>, Status> {
        Err(Status::unimplemented(""))
    }

    async fn get_key_set(
        &self,
        _: Request<GetKeySetRequest>,
    ) -> Result<Response<GetKeySetResponse>, Status> {
        Err(Status::unimplemented(""))
    }
}

impl Bare {
    fn sign(issuer: &Issuer) -> Result<Response<IssueTokenResponse>, Status> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let issued = issuer
            .issue_token(&[0x42; 16], Scopes::all(), now, 60)
            .map_err(|_| Status::internal("sign"))?;
        let ts = |s: u64| Timestamp {
            seconds: i64::try_from(s).unwrap_or(i64::MAX),
            nanos: 0,
        };
        Ok(Response::new(IssueTokenResponse {
            qr_text: issued.text,
            issued_at: Some(ts(issued.iat)),
            expires_at: Some(ts(issued.exp)),
            scopes: vec![1, 2, 3, 4],
            svg: None,
        }))
    }
}

#[tonic::async_trait]
impl IssuerService for Bare {
    async fn issue_token(
        &self,
        _request: Request<IssueTokenRequest>,
    ) -> Result<Response<IssueTokenResponse>, Status> {
        Bare::sign(&self.0)
    }

    async fn issue_device_certificate(
        &self,
        _: Request<IssueDeviceCertificateRequest>,
    ) -> Result<Response<IssueDeviceCertificateResponse>, Status> {
        Err(Status::unimplemented(""))
    }

    async fn get_key_set(
        &self,
        _: Request<GetKeySetRequest>,
    ) -> Result<Response<GetKeySetResponse>, Status> {
        Err(Status::unimplemented(""))
    }
}

fn server_config() -> ServerConfig {
    let mut config = ServerConfig::new("throughput");
    config.concurrency_limit = std::num::NonZeroUsize::new(4096).expect("non-zero");
    // One load generator plays every app: lift the per-address limits so they do not
    // cap the measurement.
    config.limits.anonymous_per_second = std::num::NonZeroU32::new(1_000_000).expect("non-zero");
    config.limits.open_calls_per_caller = 100_000;
    config
}

/// Serves `server` on loopback (over TLS with `tls`); returns its URL.
async fn serve(server: Server, tls: Option<&TestPki>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = match tls {
        Some(pki) => server.tls(pki.server.clone()),
        None => server,
    };
    tokio::spawn(async move {
        server
            .serve(listener, std::future::pending())
            .await
            .expect("server");
    });
    match tls {
        Some(_) => format!("https://{addr}"),
        None => format!("http://{addr}"),
    }
}

struct Device {
    subject_id: String,
    device_id: String,
    key: DeviceKey,
}

/// Signs `count` fresh requests across the cores.
async fn presign(devices: &Arc<Vec<Device>>, count: usize) -> Vec<IssueTokenRequest> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = count.div_ceil(threads);
    let mut tasks = Vec::new();
    for t in 0..threads {
        let devices = devices.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            (t * per..((t + 1) * per).min(count))
                .map(|i| {
                    let d = &devices[i % devices.len()];
                    let mut request = IssueTokenRequest {
                        subject_id: d.subject_id.clone(),
                        device_id: d.device_id.clone(),
                        ..IssueTokenRequest::default()
                    };
                    request.proof = Some(
                        sign_request(citypass_issuer::ISSUE_TOKEN, &request, &d.key).expect("sign"),
                    );
                    request
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut out = Vec::with_capacity(count);
    for task in tasks {
        out.extend(task.await.expect("signing task"));
    }
    out
}

/// Sends pre-signed requests from `concurrency` tasks for `seconds`; returns the rate
/// of successful calls and the number of failures.
async fn round(
    url: &str,
    tls: Option<&TestPki>,
    requests: Vec<IssueTokenRequest>,
    seconds: u64,
    concurrency: usize,
) -> (f64, usize) {
    let client_tls = tls.map(|pki| pki.client(&As::Nobody));
    let mut channels: Vec<Channel> = Vec::new();
    for _ in 0..CHANNELS {
        channels.push(
            UpstreamConfig::new(url)
                .channel(client_tls.as_ref())
                .expect("channel"),
        );
    }
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let mut client = IssuerServiceClient::new(channels[i % CHANNELS].clone());
        let (requests, next, ok, failed) =
            (requests.clone(), next.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = requests.get(n) else {
                    break;
                };
                match client.issue_token(request.clone()).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
    let elapsed = start.elapsed().as_secs_f64();
    (
        ok.load(Ordering::Relaxed) as f64 / elapsed,
        failed.load(Ordering::Relaxed),
    )
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let pki = match args.next().as_deref() {
        Some("plain") => None,
        _ => Some(TestPki::new("issuer")),
    };
    let tls = pki.as_ref();

    let rng = SystemRandom::new();
    let ring = Keyring::generate("citypass-throughput", true, &rng).expect("ring");
    let bare = Bare(ring.issuer().expect("issuer"));
    let floor_issuer = ring.issuer().expect("issuer");
    let keys = Keys::from_keyring(ring, Environment::Dev).expect("keys");

    let devices: Vec<Device> = (0..DEVICES)
        .map(|i| Device {
            subject_id: format!("{i:032x}"),
            device_id: format!("d{i:031x}"),
            key: DeviceKey::generate(&rng).expect("device key"),
        })
        .collect();
    let identity = Identity(
        devices
            .iter()
            .map(|d| {
                let device = citypass_token::DeviceId::parse(&d.device_id).expect("device id");
                (
                    device,
                    DeviceRecord {
                        device,
                        subject: citypass_token::SubjectId::parse(&d.subject_id)
                            .expect("subject id"),
                        public_key: d.key.public_key().clone(),
                        device_status: DeviceStatus::Active,
                        subject_status: SubjectStatus::Active,
                        attributes: Attributes {
                            assurance_level: AssuranceLevel::RealNameVerified as i32,
                            ..Attributes::default()
                        },
                    },
                )
            })
            .collect(),
    );
    let floor = CryptoFloor {
        issuer: floor_issuer,
        keys: devices
            .iter()
            .map(|d| (d.device_id.clone(), d.key.public_key().clone()))
            .collect(),
    };
    let devices = Arc::new(devices);
    let issuer = issuer_service(
        IssuanceConfig::default(),
        keys,
        Arc::new(MemoryNonceStore::new(2_000_000)),
        Arc::new(identity),
        Arc::new(NothingRevoked),
    )
    .expect("issuer");

    let table = &citypass_issuer::AUTHORIZATION;
    let bare_url = serve(
        Server::new(server_config()).add_service(IssuerServiceServer::new(bare), table),
        tls,
    )
    .await;
    let floor_url = serve(
        Server::new(server_config()).add_service(IssuerServiceServer::new(floor), table),
        tls,
    )
    .await;
    let issuer_url = serve(Server::new(server_config()).add_service(issuer, table), tls).await;

    println!(
        "IssueToken, {seconds} s per round, {concurrency} concurrent calls over {CHANNELS} connections, loopback, {}",
        if tls.is_some() { "TLS" } else { "plaintext" }
    );
    let mut rates = [Vec::new(), Vec::new(), Vec::new()];
    let servers = [
        ("bare signer", &bare_url),
        ("verify+sign", &floor_url),
        ("issuer", &issuer_url),
    ];
    for _ in 0..2 {
        for (i, (name, url)) in servers.iter().enumerate() {
            let requests = presign(&devices, REQUESTS_PER_SECOND * seconds as usize).await;
            let (rate, failed) = round(url, tls, requests, seconds, concurrency).await;
            println!("  {name:<12} {rate:>9.0} req/s  ({failed} failed)");
            rates[i].push(rate);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let [bare, floor, issuer] = rates.map(|r| mean(&r));
    println!(
        "mean: bare signer {bare:.0} req/s, verify+sign {floor:.0} req/s, issuer {issuer:.0} req/s"
    );
    println!(
        "issuer / bare signer = {:.2}; issuer / verify+sign = {:.2}",
        issuer / bare,
        issuer / floor
    );
}
