//! gRPC health (`grpc.health.v1.Health`) for every service, aware of shutdown.
//!
//! Two invariants that tonic-health alone does not give:
//! - once shutdown has begun, nothing reports `SERVING` again (a service flipping its own
//!   status back while the pod drains would pull traffic onto a dying pod);
//! - `Watch` streams end when draining starts. A watch never finishes by itself, and a
//!   graceful HTTP/2 shutdown waits for every open stream, so one watching client would
//!   otherwise hold every drain to its timeout. The stream ends with `UNAVAILABLE`, which
//!   tells the client to reconnect elsewhere.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

use crate::probe::CheckOnly;

/// Sets the health of the services in one server. Cheap to clone; hand it to code that
/// knows when a dependency is down.
#[derive(Debug, Clone)]
pub struct HealthHandle {
    reporter: HealthReporter,
    draining: Arc<AtomicBool>,
}

impl HealthHandle {
    pub(crate) fn new() -> Self {
        HealthHandle {
            reporter: HealthReporter::new(),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Sets the status of `service` (its full gRPC name, or `""` for the whole server).
    /// Returns false, and changes nothing, when asked for `SERVING` during shutdown.
    pub async fn set(&self, service: &str, status: ServingStatus) -> bool {
        if status == ServingStatus::Serving && self.is_draining() {
            return false;
        }
        self.reporter.set_service_status(service, status).await;
        true
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Reports `NOT_SERVING` for the whole server and each of `services`, for good.
    pub(crate) async fn begin_drain(&self, services: &[String]) {
        self.draining.store(true, Ordering::Release);
        self.reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for service in services {
            self.reporter
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
    }

    /// The probe listener's service: `Check` only, from the same statuses.
    pub(crate) fn probe_service(&self) -> HealthServer<CheckOnly> {
        HealthServer::new(CheckOnly(HealthService::from_health_reporter(
            self.reporter.clone(),
        )))
    }

    /// The gRPC service; its `Watch` streams end once `drained` turns true.
    pub(crate) fn service(&self, drained: watch::Receiver<bool>) -> HealthServer<DrainAwareHealth> {
        HealthServer::new(DrainAwareHealth {
            inner: HealthService::from_health_reporter(self.reporter.clone()),
            drained,
        })
    }
}

/// tonic-health's service, with watches that end on drain.
#[derive(Debug)]
pub struct DrainAwareHealth {
    inner: HealthService,
    drained: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl Health for DrainAwareHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = WatchUntilDrained;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let inner = self.inner.watch(request).await?.into_inner();
        let mut drained = self.drained.clone();
        Ok(Response::new(WatchUntilDrained {
            inner: Box::pin(inner),
            drained: Some(Box::pin(async move {
                // A dropped sender means the server is gone: as good as drained.
                let _ = drained.wait_for(|drained| *drained).await;
            })),
        }))
    }
}

type BoxStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;
type BoxFuture = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A health watch that yields every status change, then `UNAVAILABLE` once draining starts.
pub struct WatchUntilDrained {
    inner: BoxStream,
    /// `None` once the final `UNAVAILABLE` was sent.
    drained: Option<BoxFuture>,
}

impl std::fmt::Debug for WatchUntilDrained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchUntilDrained").finish_non_exhaustive()
    }
}

impl Stream for WatchUntilDrained {
    type Item = Result<HealthCheckResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Every field is boxed, so the struct itself is Unpin.
        let this = self.get_mut();
        let Some(drained) = this.drained.as_mut() else {
            return Poll::Ready(None);
        };
        // Status changes first, so the NOT_SERVING set just before draining gets out.
        let changed = this.inner.as_mut().poll_next(cx);
        if changed.is_ready() {
            return changed;
        }
        match drained.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.drained = None;
                Poll::Ready(Some(Err(Status::unavailable("server is shutting down"))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
