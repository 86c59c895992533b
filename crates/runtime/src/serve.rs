//! The entry point: one gRPC server with a service's handlers plus everything around them.
//!
//! A service's `main` loads its config, starts telemetry, builds its stores and handlers,
//! and hands them to a [`Server`]; everything else (tower stack, trace context, health,
//! reflection, graceful shutdown) is the same for every service and lives here.
//!
//! Shutdown sequence, once the shutdown future resolves:
//! 1. health reports `NOT_SERVING` for the server and every service, for good;
//! 2. the server keeps serving for `shutdown_delay`, so balancers see it and stop sending;
//! 3. the listener closes, connections get HTTP/2 GOAWAY, health watches end;
//! 4. in-flight calls get up to `shutdown_drain_timeout` to finish;
//! 5. `serve` returns: `Ok` if everything drained, [`ServeError::DrainTimedOut`] if not.
//!
//! With `server.health_listen` set, the [`probe`](crate::probe) listener answers health
//! `Check` in plaintext from the moment the service port serves until `serve` returns,
//! with the same statuses (so `NOT_SERVING` from step 1 on).

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

use std::sync::Arc;

use std::collections::HashSet;

use crate::authz::{AuthorizeLayer, Policy};
use crate::config::ServerConfig;
use crate::health::HealthHandle;
use crate::outcome::OutcomeLayer;
use crate::peer;
use crate::probe;
use crate::reflection::{self, ReflectionError};
use crate::shutdown;
use crate::stack::ServerStackLayer;
use crate::tls::Tls;
use crate::trace_context;

/// Concurrent HTTP/2 streams one connection may open.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;
/// How often an idle connection is pinged, and how long the answer may take.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections are closed (gracefully) after this long; clients reconnect, which
/// re-checks their certificate against the current CA.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(3600);

/// Why a server stopped other than by a clean shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A descriptor set passed for reflection is invalid.
    #[error(transparent)]
    Reflection(#[from] ReflectionError),
    /// The HTTP/2 server failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Calls were still running when the drain timeout ran out; they were abandoned.
    #[error("in-flight calls did not finish within the drain timeout of {0:?}")]
    DrainTimedOut(Duration),
    /// The TLS material could not be turned into a server configuration.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// A service's gRPC server: its handlers, the names health reports, and the descriptor
/// sets reflection serves.
///
/// ```text
/// let config: MyConfig = citypass_runtime::config::load(path.as_deref(), "CITYPASS")?;
/// let telemetry = citypass_runtime::telemetry::init(&config.server)?;
/// Server::new(config.server)
///     .add_service(VerifierServiceServer::new(verifier), &verifier::AUTHORIZATION)
///     .file_descriptor_set(citypass_proto::FILE_DESCRIPTOR_SET)
///     .run()
///     .await?;
/// telemetry.shutdown().await;
/// ```
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    routes: RoutesBuilder,
    service_names: Vec<String>,
    policies: Vec<&'static Policy>,
    descriptor_sets: Vec<Cow<'static, [u8]>>,
    health: HealthHandle,
    tls: Option<Arc<Tls>>,
    probe_listener: Option<TcpListener>,
    drain: (watch::Sender<bool>, watch::Receiver<bool>),
}

/// Tells long-lived calls that the server has begun to drain (see [`Server::draining`]).
#[derive(Debug, Clone)]
pub struct Draining(watch::Receiver<bool>);

impl Draining {
    /// Resolves once the drain has begun (never, if the server was dropped unserved).
    pub async fn started(&mut self) {
        if self.0.wait_for(|draining| *draining).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Server {
    /// A server with no services yet.
    pub fn new(config: ServerConfig) -> Self {
        Server {
            config,
            routes: RoutesBuilder::default(),
            service_names: Vec::new(),
            policies: Vec::new(),
            descriptor_sets: Vec::new(),
            health: HealthHandle::new(),
            tls: None,
            probe_listener: None,
            drain: watch::channel(false),
        }
    }

    /// The signal that this server has begun its graceful shutdown, for calls that
    /// would otherwise never end by themselves (server streams such as Watch): they end
    /// when it fires, so the drain finishes instead of timing out, and their callers
    /// reconnect to a replica that stays.
    pub fn draining(&self) -> Draining {
        Draining(self.drain.1.clone())
    }

    /// Serves over TLS with this identity (usually built from `config.tls`, and shared
    /// with the service's upstream clients). Without it the server is plaintext, which
    /// [`ServerConfig::check_transport`] allows only in dev or behind a mesh.
    pub fn tls(mut self, tls: impl Into<Option<Arc<Tls>>>) -> Self {
        self.tls = tls.into();
        self
    }

    /// Serves the probe listener on `listener` rather than binding
    /// `config.health_listen` (tests pass one bound to `127.0.0.1:0`).
    pub fn probe_listener(mut self, listener: TcpListener) -> Self {
        self.probe_listener = Some(listener);
        self
    }

    /// Adds a generated tonic service and its authorisation table (whose `service` must
    /// be the service's gRPC name); health reports it under that name.
    pub fn add_service<S>(mut self, service: S, policy: &'static Policy) -> Self
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        debug_assert_eq!(policy.service, S::NAME, "a policy for another service");
        self.routes.add_service(service);
        self.service_names.push(S::NAME.to_owned());
        self.policies.push(policy);
        self
    }

    /// Adds an encoded `FileDescriptorSet` for reflection (e.g. one generated by protox).
    pub fn file_descriptor_set(mut self, encoded: impl Into<Cow<'static, [u8]>>) -> Self {
        self.descriptor_sets.push(encoded.into());
        self
    }

    /// The health of this server's services, for code that knows when a dependency is
    /// down. Every added service reports `SERVING` once `serve` starts.
    pub fn health(&self) -> HealthHandle {
        self.health.clone()
    }

    /// Binds `config.listen` and serves until SIGTERM or ctrl-c.
    pub async fn run(self) -> Result<(), ServeError> {
        let addr = self.config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        self.serve(listener, shutdown::signal()).await
    }

    /// Serves on `listener` until `shutdown` resolves, then shuts down gracefully (see the
    /// module documentation). Tests pass a listener bound to `127.0.0.1:0`.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let Server {
            config,
            mut routes,
            service_names,
            policies,
            descriptor_sets,
            health,
            tls,
            probe_listener,
            drain: (drain_tx, drain_rx),
        } = self;
        let local_addr = listener.local_addr().ok();
        let probe_listener = match (probe_listener, config.health_listen) {
            (Some(listener), _) => Some(listener),
            (None, Some(addr)) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServeError::Bind { addr, source })?,
            ),
            (None, None) => None,
        };

        routes.add_service(health.service(drain_rx.clone()));
        if config.reflection {
            let (reflection_v1, reflection_v1alpha) = reflection::services(&descriptor_sets)?;
            routes
                .add_service(reflection_v1)
                .add_service(reflection_v1alpha);
        }
        for name in &service_names {
            health.set(name, tonic_health::ServingStatus::Serving).await;
        }

        let mut stop_accepting = drain_rx;
        if tls.is_none() {
            tracing::warn!("serving plaintext (no server.tls)");
        }
        let incoming = peer::incoming(listener, tls)?;
        let mut known: HashSet<String> = policies
            .iter()
            .flat_map(|p| {
                p.rules
                    .iter()
                    .map(move |r| format!("/{}/{}", p.service, r.method))
            })
            .collect();
        known.extend(
            ["Check", "Watch"]
                .into_iter()
                .map(|m| format!("/grpc.health.v1.Health/{m}")),
        );
        let server = tonic::transport::Server::builder()
            // HTTP/2 limits a caller cannot talk its way around: streams per connection
            // (the open-call cap counts per caller, not per connection), keepalive pings
            // that drop dead peers, and a connection age after which clients reconnect
            // (and so re-authenticate, see `peer`).
            .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .max_connection_age(MAX_CONNECTION_AGE)
            .trace_fn(trace_context::server_span)
            .layer(OutcomeLayer::new(known))
            .layer(AuthorizeLayer::new(&policies, &config.limits))
            .layer(ServerStackLayer::new(&config))
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop_accepting.wait_for(|drained| *drained).await;
            });
        tokio::pin!(server);
        tokio::pin!(shutdown);
        // Dropped when this function returns, whichever way: the probe listener closes
        // with the service port.
        let (_probe_stop, probe_stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some(listener) = probe_listener {
            tokio::spawn(probe::serve(
                listener,
                health.probe_service(),
                probe_stopped,
            ));
        }
        tracing::info!(addr = ?local_addr, services = ?service_names, "serving");

        tokio::select! {
            result = &mut server => {
                // The server stopped without being asked: only an error does that.
                return result.map_err(ServeError::from);
            }
            () = &mut shutdown => {}
        }

        tracing::info!("shutting down: reporting NOT_SERVING");
        health.begin_drain(&service_names).await;
        if !config.shutdown_delay.is_zero() {
            tokio::select! {
                result = &mut server => return result.map_err(ServeError::from),
                () = tokio::time::sleep(config.shutdown_delay) => {}
            }
        }

        tracing::info!(timeout = ?config.shutdown_drain_timeout, "closing listener and draining in-flight calls");
        let _ = drain_tx.send(true);
        match tokio::time::timeout(config.shutdown_drain_timeout, server).await {
            Ok(result) => {
                result?;
                tracing::info!("drained; stopped");
                Ok(())
            }
            Err(_) => {
                tracing::warn!("drain timeout reached with calls still in flight");
                Err(ServeError::DrainTimedOut(config.shutdown_drain_timeout))
            }
        }
    }
}
