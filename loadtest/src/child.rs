//! Servers the tool starts as child processes, so that their CPU time and memory can
//! be read from `/proc` apart from the generator's ([`crate::process`]), and the time
//! from spawn to ready measured.
//!
//! Ready means the first successful gRPC health check (`grpc.health.v1.Health/Check`,
//! SERVING) over mTLS, polled every 10 ms. A child gets a pipe as its standard input:
//! the tool's own `serve` children stop when it closes (so they never outlive the tool,
//! even when it is killed); every child is also killed and reaped when dropped.

use std::future::Future;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use citypass_runtime::{Tls, UpstreamConfig};
use tokio::time::Instant;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::error::LoadError;
use crate::process::Pid;

/// How long a child may take to become ready (a cold debug build of the whole stack on
/// a loaded machine is slow; a release one takes well under a second).
pub const READY_DEADLINE: Duration = Duration::from_secs(120);
/// Between two readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// A running child process.
pub struct ChildServer {
    /// What it is, for messages and the report.
    pub name: String,
    /// From spawn to the first successful health check.
    pub ready_after: Duration,
    child: Child,
    _stdin: Option<ChildStdin>,
}

impl ChildServer {
    /// Starts `program args`, then calls `probe` every 10 ms until it succeeds; fails
    /// when the child exits first or [`READY_DEADLINE`] passes. Returns the child and
    /// what the probe gave.
    pub async fn spawn<T, F, Fut>(
        name: &str,
        program: &Path,
        args: &[String],
        mut probe: F,
    ) -> Result<(ChildServer, T), LoadError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let failed = |problem: String| LoadError::Child {
            name: name.to_owned(),
            problem,
        };
        let started = Instant::now();
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| failed(format!("cannot start {}: {e}", program.display())))?;
        let stdin = child.stdin.take();
        let mut server = ChildServer {
            name: name.to_owned(),
            ready_after: Duration::ZERO,
            child,
            _stdin: stdin,
        };
        let mut last = String::from("no probe yet");
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(failed(format!("exited ({status}) before ready: {last}")));
            }
            match probe().await {
                Ok(value) => {
                    server.ready_after = started.elapsed();
                    return Ok((server, value));
                }
                Err(problem) => last = problem,
            }
            if started.elapsed() > READY_DEADLINE {
                return Err(failed(format!(
                    "not ready after {}s: {last}",
                    READY_DEADLINE.as_secs()
                )));
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// Its process id, for [`crate::process::Meter`].
    pub fn pid(&self) -> Pid {
        Pid::Child(self.child.id())
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        // Already gone is fine; either way reap it so no zombie is left.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One health check of the server at `url` with client identity `tls`: Ok when it
/// answers SERVING.
pub async fn healthy(url: &str, tls: &Arc<Tls>) -> Result<(), String> {
    let mut upstream = UpstreamConfig::new(url);
    upstream.connect_timeout = Duration::from_millis(500);
    upstream.request_timeout = Duration::from_secs(2);
    let channel = upstream.channel(Some(tls)).map_err(|e| e.to_string())?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|status| format!("health check: {:?} {}", status.code(), status.message()))?
        .into_inner();
    if answer.status == ServingStatus::Serving as i32 {
        Ok(())
    } else {
        Err(format!("health status {}", answer.status))
    }
}

/// A loopback port free now (bound and released: another process could take it in
/// between, which on a test machine is unlikely and fails loudly).
pub fn free_port() -> Result<u16, LoadError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| LoadError::Child {
        name: "port".to_owned(),
        problem: e.to_string(),
    })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| LoadError::Child {
            name: "port".to_owned(),
            problem: e.to_string(),
        })
}
