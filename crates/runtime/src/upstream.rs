//! Another service this one calls: its URL, timeouts, and a channel over TLS.
//!
//! Every service's configuration names its upstreams with [`UpstreamConfig`] (`url`,
//! `connect_timeout`, `request_timeout`), and [`UpstreamConfig::channel`] connects with
//! the process's own [`Tls`] identity: `https://` presents the process's certificate
//! and checks the server's against the CA and the URL's host; `http://` is plaintext,
//! which production refuses unless a mesh terminates mTLS
//! (`server.insecure_plaintext_behind_mesh`).

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

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
        }
    }

    /// Whether the URL is plaintext (`http://`).
    pub fn is_plaintext(&self) -> bool {
        self.url.starts_with("http://")
    }

    /// A channel that connects on first use and reconnects by itself, so a service
    /// starts even while its upstream is still starting.
    pub fn channel(&self, tls: Option<&Arc<Tls>>) -> Result<Channel, UpstreamError> {
        let url_error = |problem: String| UpstreamError::Url {
            url: self.url.clone(),
            problem,
        };
        let endpoint = Endpoint::from_shared(self.url.clone())
            .map_err(|e| url_error(e.to_string()))?
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .tcp_nodelay(true);
        match endpoint.uri().scheme_str() {
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
