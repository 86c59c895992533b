//! What starts a graceful shutdown: SIGTERM (how Kubernetes stops a pod) or ctrl-c (how a
//! developer stops `citypass dev`).
//!
//! The sequence that follows lives in [`crate::serve`]; this module only says *when*.
//! Tests pass their own future instead, so nothing here is needed to test shutdown.

/// Resolves on the first SIGTERM or ctrl-c.
///
/// If a handler cannot be installed, the failure is logged and that source is ignored:
/// a service that cannot hear ctrl-c must not take that as a request to stop.
pub async fn signal() {
    let ctrl_c = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => tracing::info!("ctrl-c received"),
            Err(err) => {
                tracing::warn!(%err, "cannot listen for ctrl-c");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate() => {}
    }
}

#[cfg(unix)]
async fn terminate() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut sigterm) => {
            sigterm.recv().await;
            tracing::info!("SIGTERM received");
        }
        Err(err) => {
            tracing::warn!(%err, "cannot listen for SIGTERM");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(not(unix))]
async fn terminate() {
    std::future::pending::<()>().await;
}
