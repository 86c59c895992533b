//! Test fixtures: a gRPC service whose calls wait until the test releases them (to have
//! calls in flight on purpose), and a server started on 127.0.0.1:0.
//!
//! The service is written by hand against tonic's server API, with `()` as both messages,
//! so these tests need no generated code (and this crate no dependency on crates/proto).

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use citypass_runtime::{Deadline, ServeError, Server};
use http::uri::PathAndQuery;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::server::{NamedService, UnaryService};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_prost::ProstCodec;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pub const GATE: &str = "citypass.test.Gate";

/// The gate service's table: anyone may hold.
pub const GATE_POLICY: citypass_runtime::Policy = citypass_runtime::Policy {
    service: GATE,
    rules: &[citypass_runtime::Rule {
        method: "Hold",
        allow: &[citypass_runtime::Allow::Anyone],
    }],
};
const HOLD: &str = "/citypass.test.Gate/Hold";

/// `citypass.test.Gate/Hold`: reports that it started, then waits for a release.
#[derive(Clone)]
pub struct Gate {
    /// Each call reports the time left until its deadline, as the handler sees it.
    entered: mpsc::UnboundedSender<Option<Duration>>,
    release: Arc<Semaphore>,
}

/// The test's side of a [`Gate`].
pub struct GateControl {
    entered: mpsc::UnboundedReceiver<Option<Duration>>,
    release: Arc<Semaphore>,
}

impl GateControl {
    /// Waits until one more call is inside the handler; returns the time it had left.
    pub async fn entered(&mut self) -> Option<Duration> {
        self.entered.recv().await.expect("gate service dropped")
    }

    /// Lets `n` waiting (or future) calls finish.
    pub fn release(&self, n: usize) {
        self.release.add_permits(n);
    }
}

pub fn gate() -> (Gate, GateControl) {
    let (tx, rx) = mpsc::unbounded_channel();
    let release = Arc::new(Semaphore::new(0));
    (
        Gate {
            entered: tx,
            release: release.clone(),
        },
        GateControl {
            entered: rx,
            release,
        },
    )
}

impl NamedService for Gate {
    const NAME: &'static str = GATE;
}

impl tower::Service<http::Request<Body>> for Gate {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let gate = self.clone();
        Box::pin(async move {
            if request.uri().path() != HOLD {
                return Ok(Status::unimplemented("").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<(), ()>::default());
            Ok(grpc.unary(Hold(gate), request).await)
        })
    }
}

struct Hold(Gate);

impl UnaryService<()> for Hold {
    type Response = ();
    type Future = BoxFuture<Result<Response<()>, Status>>;

    fn call(&mut self, request: Request<()>) -> Self::Future {
        let gate = self.0.clone();
        let remaining = Deadline::of(&request).map(Deadline::remaining);
        Box::pin(async move {
            let _ = gate.entered.send(remaining);
            match gate.release.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => return Err(Status::aborted("gate closed")),
            }
            Ok(Response::new(()))
        })
    }
}

/// Calls `Gate/Hold` over `channel`.
pub async fn hold(channel: Channel) -> Result<(), Status> {
    hold_with(channel, Request::new(())).await
}

/// Calls `Gate/Hold` with a prepared request (e.g. one with a timeout set).
pub async fn hold_with(channel: Channel, request: Request<()>) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(format!("channel not ready: {e}")))?;
    grpc.unary(
        request,
        PathAndQuery::from_static(HOLD),
        ProstCodec::<(), ()>::default(),
    )
    .await
    .map(|_| ())
}

/// A running server and the means to stop it.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), ServeError>>,
}

impl Running {
    /// Resolves the shutdown future given to `serve`.
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("valid uri")
            .connect()
            .await
            .expect("connect to the test server")
    }

    /// Shuts down and waits for `serve` to return.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        self.shutdown();
        self.task.await.expect("serve task panicked")
    }
}

/// Starts `server` on 127.0.0.1:0.
pub async fn start(server: Server) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

/// One health `Check` of `service` (`""` for the whole server).
pub async fn check(channel: Channel, service: &str) -> Result<WireStatus, tonic::Code> {
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map_err(|status| status.code())?;
    Ok(response.into_inner().status())
}
