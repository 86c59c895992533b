//! The citizens' apps of an IssueToken run: enrolled and bound before it, their
//! requests signed before it, their connections opened before it.
//!
//! - **Pool.** `--citizens N` synthetic citizens (sample resident ids, nobody's), each
//!   enrolled and given one bound device through the app's own flows
//!   (`citypass_app::App`: Enrol, CreateBindingChallenge, BindDevice), paced below the
//!   services' per-address limit for anonymous callers. A Verify run's riders
//!   ([`crate::riders`]) are enrolled the same way, then link a sandbox payment account
//!   ([`Then::LinkPayment`]). A sample id already enrolled (a running stack loaded
//!   before) is skipped for the next one.
//! - **Signed requests.** An IssueToken request carries the device's ES256 proof
//!   over a timestamp and a single-use nonce, and the issuer refuses a proof older
//!   than its freshness window (30 s by default). Every request of a run is signed
//!   just before it starts (request *i* by citizen *i* mod N), so the generator signs
//!   nothing while it measures; that caps an IssueToken run at [`MAX_ISSUE_DURATION`]
//!   (a longer one would have to sign while it runs).
//! - **Connections.** Apps call without a client certificate, so the services limit
//!   them per source address (50 calls a second by default): one gateway address
//!   would be throttled long before the issuer is loaded. Like phones behind many
//!   addresses, the run spreads its requests over connections from distinct loopback
//!   source addresses (127.0.0.2, 127.0.0.3, …), each below that limit.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use citypass_app::{App, AppError, AppState, Endpoints};
use citypass_proto::v1::issuer_service_client::IssuerServiceClient;
use citypass_proto::v1::{DocumentType, IssueTokenRequest, PaymentProvider};
use citypass_runtime::Tls;
use citypass_token::{DeviceKey, SystemRandom};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Uri};

use crate::error::LoadError;

/// Longest IssueToken run: its requests are all signed before it, and the issuer
/// accepts a proof for 30 s.
pub const MAX_ISSUE_DURATION: Duration = Duration::from_secs(20);
/// Calls per second from one source address, below the services' anonymous limit
/// (50) with room for the timer's jitter.
pub const CALLS_PER_ADDRESS: u32 = 40;
/// Most source addresses (127.0.0.2 to 127.0.0.251).
const MAX_ADDRESSES: u32 = 250;
/// Pause after each citizen's three enrolment calls (below 50 a second).
const ENROL_PACE: Duration = Duration::from_millis(80);

/// One citizen's app: ids and the bound device key. The ids are synthetic and never
/// printed.
pub struct Citizen {
    pub subject_id: String,
    pub device_id: String,
    pub key: DeviceKey,
}

fn app_error(e: impl std::fmt::Display) -> LoadError {
    LoadError::Citizens(e.to_string())
}

/// The payment provider's token of a rider's sandbox account: the sandbox charges it
/// (a token starting `decline` would be declined).
const SANDBOX_TOKEN: &str = "agr_sandbox_loadtest";
/// Its last four digits, as the app shows them.
const SANDBOX_LAST4: &str = "4242";
/// The consent text's version the riders agree to.
const CONSENT_VERSION: &str = "loadtest-1";
/// Sample ids tried beyond `n` when some are already enrolled.
const SPARE_IDS: usize = 1000;

/// What each citizen's app does once its device is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Nothing more (an IssueToken citizen).
    Nothing,
    /// Link a sandbox payment account (device-signed LinkAccount): a rider.
    LinkPayment,
}

/// Whether identity refused an enrolment as it refuses a document enrolled already.
fn enrolled_before(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::AlreadyExists
        || citypass_runtime::reason_of(status).as_deref() == Some("ENROLMENT_NOT_ACCEPTED")
}

/// Enrols `n` citizens at `endpoints`, binds a device for each and does `then`.
pub async fn enrol(endpoints: &Endpoints, n: usize, then: Then) -> Result<Vec<Citizen>, LoadError> {
    let rng = SystemRandom::new();
    let mut first = [0u8; 2];
    citypass_token::SecureRandom::fill(&rng, &mut first).map_err(app_error)?;
    let first = u16::from_le_bytes(first);
    let mut citizens = Vec::with_capacity(n);
    let mut k = 0usize;
    while citizens.len() < n {
        if k >= n + SPARE_IDS {
            let enrolled = citizens.len();
            return Err(app_error(format!(
                "{k} sample ids tried, {enrolled} of {n} citizens enrolled: the others were enrolled before"
            )));
        }
        let mut app = App::new(endpoints, AppState::default()).map_err(app_error)?;
        // Consecutive sample ids (distinct for 1 000 citizens: the id's last three
        // digits).
        let seq = first.wrapping_add(u16::try_from(k % 65_536).map_err(app_error)?);
        k += 1;
        let enrolled = app
            .enrol(
                DocumentType::ResidentIdCard,
                &citypass_stack::sample_resident_id(seq),
                "Load Test Citizen",
            )
            .await;
        match enrolled {
            Ok(_) => {}
            // A sample id enrolled before (by an earlier run, or by another pool of this
            // run): identity answers it as any refused enrolment, ENROLMENT_NOT_ACCEPTED
            // (it does not tell enrolled from mismatched); the sandbox's real-name check
            // matches every sample name, so here it means enrolled. Try the next id.
            Err(AppError::Rpc { status, .. }) if enrolled_before(&status) => {
                tokio::time::sleep(ENROL_PACE).await;
                continue;
            }
            Err(e) => return Err(app_error(e)),
        }
        app.bind("load test device").await.map_err(app_error)?;
        if then == Then::LinkPayment {
            app.link(
                PaymentProvider::Sandbox,
                SANDBOX_TOKEN,
                SANDBOX_LAST4,
                CONSENT_VERSION,
            )
            .await
            .map_err(app_error)?;
        }
        let state = &app.state;
        let pkcs8 = state
            .device_key_pkcs8
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| app_error("no device key after binding"))?;
        citizens.push(Citizen {
            subject_id: state
                .subject_id
                .clone()
                .ok_or_else(|| app_error("no subject"))?,
            device_id: state
                .device_id
                .clone()
                .ok_or_else(|| app_error("no device"))?,
            key: DeviceKey::from_pkcs8(&pkcs8, &rng).map_err(app_error)?,
        });
        tokio::time::sleep(ENROL_PACE).await;
    }
    Ok(citizens)
}

/// `n` IssueToken requests, request `i` from citizen `i` mod the pool, each signed
/// now with a fresh nonce.
pub fn sign(citizens: &[Citizen], n: usize) -> Result<Vec<IssueTokenRequest>, LoadError> {
    if citizens.is_empty() {
        return Err(LoadError::Citizens("no citizen to sign with".to_owned()));
    }
    (0..n)
        .map(|i| {
            let citizen = &citizens[i % citizens.len()];
            let mut request = IssueTokenRequest {
                subject_id: citizen.subject_id.clone(),
                device_id: citizen.device_id.clone(),
                ..IssueTokenRequest::default()
            };
            request.proof = Some(
                citypass_device_proof::sign_request(
                    citypass_device_proof::ISSUE_TOKEN,
                    &request,
                    &citizen.key,
                )
                .map_err(app_error)?,
            );
            Ok(request)
        })
        .collect()
}

/// How many source addresses a run at `rate` needs.
pub fn addresses_for(rate: u32) -> Result<u32, LoadError> {
    let n = rate.div_ceil(CALLS_PER_ADDRESS).max(1);
    if n > MAX_ADDRESSES {
        return Err(LoadError::Settings(format!(
            "IssueToken at {rate}/s needs {n} source addresses of {CALLS_PER_ADDRESS}/s each; at most {MAX_ADDRESSES}"
        )));
    }
    Ok(n)
}

/// One client per source address for the issuer at `url` (TLS with `tls`, no client
/// certificate), each connected before the run.
pub async fn connect(
    url: &str,
    tls: &Arc<Tls>,
    addresses: u32,
) -> Result<Vec<IssuerServiceClient<Channel>>, LoadError> {
    let config = tls.client_config()?;
    let connector = TlsConnector::from(config);
    let mut clients = Vec::new();
    for k in 0..addresses {
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + u8::try_from(k).unwrap_or(0)));
        let connector = connector.clone();
        // The connector does the TLS (connect_from): see connector_tls_endpoint.
        let endpoint = citypass_runtime::connector_tls_endpoint(url)
            .map_err(|e| LoadError::Citizens(format!("{url}: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(crate::gates::CALL_TIMEOUT)
            .tcp_nodelay(true);
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |uri: Uri| {
                let connector = connector.clone();
                async move { connect_from(source, &connector, &uri).await }
            }))
            .await
            .map_err(|e| LoadError::Citizens(format!("connecting from {source}: {e}")))?;
        clients.push(IssuerServiceClient::new(channel));
    }
    Ok(clients)
}

/// TCP from `source`, then TLS with the URL's host as the server's name.
async fn connect_from(
    source: IpAddr,
    connector: &TlsConnector,
    uri: &Uri,
) -> Result<TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>, std::io::Error> {
    let invalid = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, m.to_owned());
    let host = uri.host().ok_or_else(|| invalid("URL without a host"))?;
    let port = uri.port_u16().unwrap_or(443);
    let ip: IpAddr = host
        .parse()
        .map_err(|_| invalid("the issuer's URL must name an IP"))?;
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let tcp = socket.connect(SocketAddr::new(ip, port)).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(host.to_owned()).map_err(|_| invalid("bad host name"))?;
    Ok(TokioIo::new(connector.connect(name, tcp).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_keep_each_below_the_anonymous_limit() {
        assert_eq!(addresses_for(1).unwrap(), 1);
        assert_eq!(addresses_for(40).unwrap(), 1);
        assert_eq!(addresses_for(41).unwrap(), 2);
        assert_eq!(addresses_for(5000).unwrap(), 125);
        assert!(addresses_for(20_000).is_err());
    }
}
