//! Another service this one calls: its URL, timeouts, and a channel over TLS.
//!
//! Every service's configuration names its upstreams with [`UpstreamConfig`] (`url`,
//! `connect_timeout`, `request_timeout`), and [`UpstreamConfig::channel`] connects with
//! the process's own [`Tls`] identity: `https://` presents the process's certificate
//! and checks the server's against the CA and the URL's host; `http://` is plaintext,
//! which production refuses unless a mesh terminates mTLS
//! (`server.insecure_plaintext_behind_mesh`).
//!
//! One HTTP/2 connection carries every call of a channel, so a channel to a ClusterIP
//! Service sends all its calls to the one pod the connection landed on. With
//! `dns_refresh` set, the channel spreads calls instead: it resolves the URL's host (a
//! headless Service, whose name resolves to every ready pod) every `dns_refresh`, keeps
//! one connection per address, and sends each call to the less loaded of two
//! (tonic's balancer, tower's power of two choices). The server's certificate is still
//! checked against the URL's host, with the process's CA as it is reloaded; the
//! process's own certificate is presented from tonic's TLS, which takes PEM, so after a
//! reload each address is connected afresh with the new one.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc::Sender;
use tokio_rustls::TlsConnector;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, Uri};

use crate::config::duration;
use crate::tls::{Tls, TlsError};

/// An upstream service (`identity: {url: https://identity:50051}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `https://host:port` (or `http://` behind a mesh).
    pub url: String,
    /// Longest a connection attempt may take (default `2s`; at most `1m`).
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "duration::deserialize_within::<_, 1, { duration::MAX_CONNECT_TIMEOUT_MS }>"
    )]
    pub connect_timeout: Duration,
    /// Longest one call may take when the caller's own deadline is longer or absent
    /// (default `5s`; at most `5m`).
    #[serde(
        default = "default_request_timeout",
        deserialize_with = "duration::deserialize_within::<_, 1, { duration::MAX_CALL_TIMEOUT_MS }>"
    )]
    pub request_timeout: Duration,
    /// Spread calls over every address the host resolves to (a headless Service),
    /// resolving it again this often (at least `1s`, at most `1m`); unset (the default):
    /// one connection to the host.
    #[serde(default, deserialize_with = "duration::deserialize_option")]
    pub dns_refresh: Option<Duration>,
}

/// Shortest and longest `dns_refresh`.
const DNS_REFRESH: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// Resolves a host and port to the addresses a balanced channel spreads calls over.
pub trait Resolve: Send + Sync + 'static {
    /// Every address of `host` at `port` now.
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'static>>;
}

/// The system's resolver (in a cluster: the cluster DNS).
#[derive(Debug, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'static>> {
        let host = host.to_owned();
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Why an upstream cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The URL does not parse, or has no host.
    #[error("upstream URL {url:?}: {problem}")]
    Url { url: String, problem: String },
    /// `https://` without TLS material, or TLS material that rustls refuses.
    #[error("upstream {url:?}: {problem}")]
    Tls { url: String, problem: String },
}

impl UpstreamConfig {
    /// An upstream at `url` with the default timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        UpstreamConfig {
            url: url.into(),
            connect_timeout: default_connect_timeout(),
            request_timeout: default_request_timeout(),
            dns_refresh: None,
        }
    }

    /// Whether the URL is plaintext (`http://`).
    pub fn is_plaintext(&self) -> bool {
        self.url.starts_with("http://")
    }

    /// A channel that connects on first use and reconnects by itself, so a service
    /// starts even while its upstream is still starting.
    /// With `dns_refresh`, the channel spreads calls over the host's addresses (see the
    /// module documentation); its resolver task ends when the channel is dropped.
    pub fn channel(&self, tls: Option<&Arc<Tls>>) -> Result<Channel, UpstreamError> {
        if self.dns_refresh.is_some() {
            return self.balanced_channel(tls, Arc::new(SystemResolver));
        }
        let url_error = |problem: String| UpstreamError::Url {
            url: self.url.clone(),
            problem,
        };
        let endpoint = connector_tls_endpoint(&self.url)
            .map_err(url_error)?
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .tcp_nodelay(true);
        let scheme = self.url.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("http") => Ok(endpoint.connect_lazy()),
            Some("https") => {
                let tls = tls.ok_or_else(|| UpstreamError::Tls {
                    url: self.url.clone(),
                    problem: "https:// needs TLS material (server.tls)".to_owned(),
                })?;
                let config = tls
                    .client_config()
                    .map_err(|e: TlsError| UpstreamError::Tls {
                        url: self.url.clone(),
                        problem: e.to_string(),
                    })?;
                let connector = TlsConnector::from(config);
                Ok(
                    endpoint.connect_with_connector_lazy(tower::service_fn(move |uri: Uri| {
                        let connector = connector.clone();
                        async move { connect_tls(&connector, &uri).await }
                    })),
                )
            }
            _ => Err(url_error(
                "the scheme must be https:// or http://".to_owned(),
            )),
        }
    }
}

impl UpstreamConfig {
    /// A channel that spreads calls over the addresses `resolver` gives for the URL's
    /// host, asked again every `dns_refresh` (default 10 s when unset here). Call inside
    /// a tokio runtime: a task follows the addresses until the channel is dropped.
    pub fn balanced_channel(
        &self,
        tls: Option<&Arc<Tls>>,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Channel, UpstreamError> {
        let url_error = |problem: String| UpstreamError::Url {
            url: self.url.clone(),
            problem,
        };
        let uri: Uri = self
            .url
            .parse()
            .map_err(|e: http::uri::InvalidUri| url_error(e.to_string()))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(url_error(
                    "the scheme must be https:// or http://".to_owned(),
                ));
            }
        };
        let host = uri
            .host()
            .ok_or_else(|| url_error("no host".to_owned()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let refresh = self.dns_refresh.unwrap_or(Duration::from_secs(10));
        if refresh < DNS_REFRESH.0 || refresh > DNS_REFRESH.1 {
            return Err(url_error(
                "dns_refresh must be between 1s and 1m".to_owned(),
            ));
        }
        let tls = match (https, tls) {
            (true, None) => {
                return Err(UpstreamError::Tls {
                    url: self.url.clone(),
                    problem: "https:// needs TLS material (server.tls)".to_owned(),
                });
            }
            (true, Some(tls)) => Some(tls.clone()),
            (false, _) => None,
        };
        let spread = Spread {
            config: self.clone(),
            origin: uri,
            host,
            port,
            refresh,
            tls,
            resolver,
        };
        // The first endpoint is checked here, so that a bad TLS identity fails the build.
        spread.endpoint(SocketAddr::from(([127, 0, 0, 1], port)))?;
        let (channel, changes) = Channel::balance_channel::<SocketAddr>(16);
        tokio::spawn(spread.follow(changes));
        Ok(channel)
    }
}

/// What a balanced channel's task needs to follow the host's addresses.
struct Spread {
    config: UpstreamConfig,
    /// The URL as configured: requests carry its authority, not an address.
    origin: Uri,
    host: String,
    port: u16,
    refresh: Duration,
    tls: Option<Arc<Tls>>,
    resolver: Arc<dyn Resolve>,
}

impl Spread {
    /// An endpoint at `addr` for this upstream: the server's certificate checked for the
    /// URL's host.
    fn endpoint(&self, addr: SocketAddr) -> Result<Endpoint, UpstreamError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| UpstreamError::Url {
                url: self.config.url.clone(),
                problem: e.to_string(),
            })?
            .origin(self.origin.clone())
            .connect_timeout(self.config.connect_timeout)
            .timeout(self.config.request_timeout)
            .tcp_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(endpoint);
        };
        let mut config = ClientTlsConfig::new().domain_name(self.host.clone());
        if let Some(identity) = tls.identity_pem() {
            config = config.identity(tonic::transport::Identity::from_pem(
                &identity.cert,
                &identity.key,
            ));
        }
        endpoint
            .tls_config_with_verifier(config, tls.server_verifier())
            .map_err(|e| UpstreamError::Tls {
                url: self.config.url.clone(),
                problem: e.to_string(),
            })
    }

    /// Resolves the host every `refresh` and tells the balancer which addresses came and
    /// went (and, after a TLS reload, connects every address afresh); keeps the last
    /// addresses while the host does not resolve. Ends when the channel is dropped.
    async fn follow(self, changes: Sender<Change<SocketAddr, Endpoint>>) {
        let mut current: BTreeSet<SocketAddr> = BTreeSet::new();
        let mut identity = self.tls.as_ref().and_then(|t| t.identity_pem());
        loop {
            // A resolver that hangs must not stop the following: bounded like a connect.
            let asked = tokio::time::timeout(
                self.config.connect_timeout,
                self.resolver.resolve(&self.host, self.port),
            )
            .await
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the resolver did not answer within connect_timeout",
                ))
            });
            match asked {
                Ok(found) if !found.is_empty() => {
                    let found: BTreeSet<SocketAddr> = found.into_iter().collect();
                    let now = self.tls.as_ref().and_then(|t| t.identity_pem());
                    let renewed = match (&identity, &now) {
                        (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
                        (None, None) => false,
                        _ => true,
                    };
                    identity = now;
                    for gone in current.difference(&found) {
                        if changes.send(Change::Remove(*gone)).await.is_err() {
                            return;
                        }
                    }
                    for addr in &found {
                        if current.contains(addr) && !renewed {
                            continue;
                        }
                        match self.endpoint(*addr) {
                            Ok(endpoint) => {
                                if changes.send(Change::Insert(*addr, endpoint)).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(upstream = %self.host, error = %e, "an upstream address cannot be used");
                            }
                        }
                    }
                    current = found;
                }
                Ok(_) => {
                    tracing::warn!(upstream = %self.host, "the upstream resolved to no address; keeping the last ones");
                }
                Err(e) => {
                    tracing::warn!(upstream = %self.host, error = %e, "the upstream did not resolve; keeping the last addresses");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.refresh) => {}
                () = changes.closed() => return,
            }
        }
    }
}

/// An endpoint for `url` whose connector does the TLS itself (the process's reloading
/// identity, [`Tls::client_config`]). tonic, built with its own TLS for the balanced
/// channels, hands a connector an `https://` URI only when its own TLS is configured,
/// so the endpoint's URI says `http://`; its origin, which every request carries
/// (`:scheme`, `:authority`), stays the URL as configured. The connector must use the
/// URI's host and port only (and 443 when no port is given).
pub fn connector_tls_endpoint(url: &str) -> Result<Endpoint, String> {
    let origin: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    let dial = match url.strip_prefix("https://") {
        Some(rest) => format!("http://{rest}"),
        None => url.to_owned(),
    };
    Ok(Endpoint::from_shared(dial)
        .map_err(|e| e.to_string())?
        .origin(origin))
}

/// TCP, then TLS with the URL's host as the name the server's certificate must carry.
async fn connect_tls(
    connector: &TlsConnector,
    uri: &Uri,
) -> Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>, std::io::Error> {
    let invalid = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, m.to_owned());
    let host = uri.host().ok_or_else(|| invalid("URL without a host"))?;
    let port = uri.port_u16().unwrap_or(443);
    // An IPv6 literal arrives in brackets.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_owned()).map_err(|_| invalid("invalid host name"))?;
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    let tls = connector.connect(name, tcp).await?;
    Ok(TokioIo::new(tls))
}
