//! The probe listener: `grpc.health.v1.Health/Check`, and nothing else, in plaintext on a
//! port of its own (`server.health_listen`), for the kubelet's native gRPC probes.
//!
//! Why a second listener: the service port speaks TLS only, and the kubelet's gRPC probe
//! speaks plaintext HTTP/2 with no way to give it TLS or a certificate. The other ways
//! out are worse: an `exec` probe needs a probe binary and a client identity inside the
//! image and forks a process every period; a TCP probe says only that a socket is bound,
//! not that the server reports `SERVING` (so a draining pod would still look ready);
//! plaintext on the service port would undo the transport guarantee for every RPC.
//!
//! What it exposes: the same statuses as the service port's health (one reporter), so a
//! draining pod reports `NOT_SERVING` here at the same moment; which services exist is
//! public in the API anyway. `Watch` (a stream that never ends by itself), reflection and
//! every RPC of the service answer `UNIMPLEMENTED`: no handler, no database and no
//! personal data can be reached from this port. It is limited like the metrics endpoint:
//! few streams per connection, a short timeout per call. It opens when the service port
//! serves, stays up through the drain (reporting `NOT_SERVING`), and closes with it.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::HealthService;

/// Concurrent calls one probe connection may open (the kubelet makes one at a time).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 4;
/// The longest one `Check` may take (it reads a map in memory).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Health with `Check` only: what the kubelet calls.
#[derive(Debug)]
pub struct CheckOnly(pub(crate) HealthService);

#[tonic::async_trait]
impl Health for CheckOnly {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.0.check(request).await
    }

    type WatchStream = futures::stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented(
            "the probe port answers Check only; Watch is on the service port",
        ))
    }
}

/// Serves `service` on `listener` until `stop` fires or its sender is dropped.
pub(crate) async fn serve(
    listener: TcpListener,
    service: HealthServer<CheckOnly>,
    stop: oneshot::Receiver<()>,
) {
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "probes: grpc.health.v1.Health/Check in plaintext");
    let served = tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .timeout(CALL_TIMEOUT)
        .add_service(service)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
            let _ = stop.await;
        })
        .await;
    if let Err(err) = served {
        tracing::warn!(%err, "probes: the probe listener failed");
    }
}
