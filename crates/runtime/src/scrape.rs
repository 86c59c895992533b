//! The Prometheus scrape endpoint: `GET /metrics` in the text exposition format, on its
//! own plain-HTTP listener (`server.metrics_listen`), beside the OTLP export.
//!
//! Why a second way out for the same metrics: a city's operations team often runs
//! Prometheus and scrapes pods directly, without a collector in between; the endpoint
//! costs nothing until scraped (the OpenTelemetry Prometheus reader collects on demand).
//! Why plain HTTP on a port of its own rather than a route on the gRPC listener: the
//! service port is mutual TLS and admits only callers in the authorisation table, while
//! a scraper holds no citypass certificate; the metrics carry no personal data (scene,
//! decision, reason, durations), and in Kubernetes a network policy admits only the
//! scraper to this port.
//!
//! The server is deliberately small: HTTP/1.1, one route, at most
//! [`MAX_CONNECTIONS`] connections at a time, each given [`CONNECTION_TIME`] in all (a
//! slow or stuck client cannot hold the listener).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{Encoder as _, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Connections served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 16;
/// The longest one connection may last, scrape included.
pub const CONNECTION_TIME: Duration = Duration::from_secs(10);

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The OpenTelemetry Prometheus reader could not be made.
    #[error("cannot make the Prometheus reader: {0}")]
    Reader(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr} for metrics: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// No tokio runtime to serve on.
    #[error("the metrics endpoint needs a tokio runtime: start telemetry from inside one")]
    NoRuntime,
}

/// Metrics as Prometheus scrapes them: a registry that an OpenTelemetry reader fills.
#[derive(Clone, Debug)]
pub struct Scrape {
    registry: Registry,
}

impl Scrape {
    /// A registry, and the reader to add to the meter provider that fills it.
    pub fn new() -> Result<(Self, opentelemetry_prometheus::PrometheusExporter), ScrapeError> {
        let registry = Registry::new();
        let reader = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .map_err(|err| ScrapeError::Reader(err.to_string()))?;
        Ok((Scrape { registry }, reader))
    }

    /// The current metrics in the text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec fails only on a metric family the registry itself made
        // invalid; an empty answer is then better than none.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }

    /// Binds `addr` and serves `GET /metrics` until the returned task is aborted.
    /// Returns the bound address (for `:0`) and the task.
    pub fn serve(&self, addr: SocketAddr) -> Result<(SocketAddr, JoinHandle<()>), ScrapeError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ScrapeError::NoRuntime)?;
        let listen = |source| ScrapeError::Listen { addr, source };
        let std_listener = std::net::TcpListener::bind(addr).map_err(listen)?;
        std_listener.set_nonblocking(true).map_err(listen)?;
        let bound = std_listener.local_addr().map_err(listen)?;
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(std_listener).map_err(listen)?
        };
        let task = runtime.spawn(accept(listener, self.clone()));
        tracing::info!(%bound, "metrics: Prometheus scrape endpoint GET /metrics");
        Ok((bound, task))
    }
}

async fn accept(listener: TcpListener, scrape: Scrape) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(%err, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let scrape = scrape.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let answer = respond(&request, &scrape);
                async move { Ok::<_, Infallible>(answer) }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIME, connection).await;
            drop(permit);
        });
    }
}

fn respond(request: &Request<Incoming>, scrape: &Scrape) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            Bytes::from(scrape.render()),
        ),
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"GET only\n"),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"metrics are at /metrics\n"),
        ),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}
