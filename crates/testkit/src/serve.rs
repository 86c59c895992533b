//! A built service serving on `127.0.0.1:0` for one test, stopped when dropped.

use std::net::SocketAddr;

use citypass_runtime::Server;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A server running for a test; dropping it shuts the server down.
pub struct Served {
    /// Where it listens.
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

/// Serves `server` on an ephemeral loopback port (call inside a tokio runtime).
pub async fn serve(server: Server) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    Served { addr, _stop: stop }
}
