//! The tower stack in front of every service's handlers: timeout, concurrency limit, load
//! shedding, and the mapping of their failures to gRPC statuses.
//!
//! Order, outermost first, and why:
//! 1. map failures to a status, so a shed or timed-out call is a proper gRPC answer
//!    (`RESOURCE_EXHAUSTED`, `DEADLINE_EXCEEDED`) instead of a broken HTTP/2 stream;
//! 2. load shedding: when no slot is free the call is refused at once rather than queued,
//!    so an overloaded pod answers fast and the client can go elsewhere (counted in
//!    `citypass.rpc.server.shed`, reason `overloaded`: [`crate::shed`]);
//! 3. the concurrency limit, one semaphore shared by all connections (the layer is applied
//!    once and cloned per connection; clones share the semaphore);
//! 4. the timeout, inside the limit, so only admitted calls are timed.
//!
//! Each admitted call also carries its [`Deadline`] in its extensions, for handlers to pass
//! on to the work they do.
//!
//! Health and reflection calls bypass all of it. A pod shedding load must still answer its
//! probes, or Kubernetes restarts it under load and moves that load to its neighbours.
//!
//! A slot is held until the response *headers* are ready; a streaming response keeps
//! flowing after that without a slot.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tonic::Status;
use tonic::body::Body;
use tower::limit::ConcurrencyLimit;
use tower::load_shed::LoadShed;
use tower::load_shed::error::Overloaded;
use tower::timeout::Timeout;
use tower::timeout::error::Elapsed;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};

use crate::caller::Caller;
use crate::config::ServerConfig;
use crate::deadline::Deadline;
use crate::shed::{ShedCounter, ShedReason};

/// Paths that are never shed, limited or timed out: probes and operator tooling.
const EXEMPT_PREFIXES: &[&str] = &["/grpc.health.v1.Health/", "/grpc.reflection."];

type Limited<S> = LoadShed<ConcurrencyLimit<Timeout<S>>>;

/// The server stack as a tower layer, for `tonic::transport::Server::builder().layer(..)`.
#[derive(Debug, Clone)]
pub struct ServerStackLayer {
    request_timeout: Duration,
    concurrency_limit: usize,
    shed: ShedCounter,
}

impl ServerStackLayer {
    /// Limits from the server configuration.
    pub fn new(config: &ServerConfig) -> Self {
        ServerStackLayer {
            request_timeout: config.request_timeout,
            concurrency_limit: config.concurrency_limit.get(),
            shed: ShedCounter::new(),
        }
    }
}

impl<S: Clone> Layer<S> for ServerStackLayer {
    type Service = ServerStack<S>;

    fn layer(&self, inner: S) -> ServerStack<S> {
        let limited = ServiceBuilder::new()
            .load_shed()
            .concurrency_limit(self.concurrency_limit)
            .timeout(self.request_timeout)
            .service(inner.clone());
        ServerStack {
            limited,
            exempt: inner,
            request_timeout: self.request_timeout,
            shed: self.shed.clone(),
        }
    }
}

/// See [`ServerStackLayer`].
#[derive(Clone)]
pub struct ServerStack<S> {
    limited: Limited<S>,
    exempt: S,
    request_timeout: Duration,
    shed: ShedCounter,
}

impl<S> std::fmt::Debug for ServerStack<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerStack").finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for ServerStack<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    /// Always ready: readiness (and so shedding) is decided per call in `call`, once the
    /// path says which branch the call takes.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let path = request.uri().path();
        if EXEMPT_PREFIXES
            .iter()
            .any(|prefix| path.starts_with(prefix))
        {
            let clone = self.exempt.clone();
            let exempt = std::mem::replace(&mut self.exempt, clone);
            Box::pin(async move { exempt.oneshot(request).await.map_err(Into::into) })
        } else {
            // Who called what, for the shed counter: the authorisation layer (outside
            // this one) put the caller in the extensions.
            let path = path.to_owned();
            let deadline = Deadline::for_request(request.headers(), self.request_timeout);
            request.extensions_mut().insert(deadline);
            let clone = self.limited.clone();
            let limited = std::mem::replace(&mut self.limited, clone);
            let caller = request
                .extensions()
                .get::<Caller>()
                .and_then(|caller| caller.principal.clone());
            let shed = self.shed.clone();
            Box::pin(async move {
                let result = limited.oneshot(request).await;
                if let Err(err) = &result
                    && err.is::<Overloaded>()
                {
                    shed.record(ShedReason::Overloaded, &path, caller.as_deref());
                }
                recover(result)
            })
        }
    }
}

/// Turns the stack's own failures into gRPC answers; handler responses pass untouched.
/// A shed call (`OVERLOADED`) is counted by the caller of this function, which knows
/// the path and the caller ([`crate::shed`]).
fn recover(result: Result<Response<Body>, BoxError>) -> Result<Response<Body>, BoxError> {
    let err = match result {
        Ok(response) => return Ok(response),
        Err(err) => err,
    };
    let status = if err.is::<Overloaded>() {
        // Not logged above debug: logging every shed call would add load when overloaded.
        tracing::debug!("call shed: concurrency limit reached");
        crate::status::status_with_reason(
            tonic::Code::ResourceExhausted,
            "server overloaded; retry with backoff",
            "OVERLOADED",
        )
    } else if err.is::<Elapsed>() {
        tracing::warn!("call exceeded the server's request timeout");
        crate::status::status_with_reason(
            tonic::Code::DeadlineExceeded,
            "request timed out",
            "TIMEOUT",
        )
    } else {
        match err.downcast::<Status>() {
            Ok(status) => *status,
            Err(err) => {
                tracing::error!(error = %err, "call failed in the server stack");
                Status::internal("internal error")
            }
        }
    };
    Ok(status.into_http())
}
