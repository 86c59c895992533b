//! `citypass dev` honours OpenTelemetry's standard variables: with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a collector (here an in-test OTLP receiver),
//! its RPC spans arrive, each with the gRPC status code the call ended with, and refused
//! calls are not marked as the server's errors.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// Longest the test waits for spans to arrive.
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        if let Ok(mut kept) = self.spans.lock() {
            kept.extend(spans);
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// The finished server span of `method`, with its status code, if collected.
fn finished(collector: &Collector, method: &str) -> Option<(i64, i32)> {
    let spans = collector.spans.lock().ok()?;
    spans.iter().find_map(|span| {
        let named = attribute(span, "rpc.method") == Some(&Value::StringValue(method.into()));
        match (named, attribute(span, "rpc.grpc.status_code")) {
            (true, Some(Value::IntValue(code))) => {
                Some((*code, span.status.as_ref().map_or(0, |s| s.code)))
            }
            _ => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_spans_arrive_at_the_standard_endpoint_with_their_status() {
    let collector = Collector::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );

    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let mut child = Command::new(env!("CARGO_BIN_EXE_citypass"))
        .args(["dev", "--identity-port", "0", "--issuer-port", "0"])
        .args([
            "--revocation-port",
            "0",
            "--verifier-port",
            "0",
            "--payments-port",
            "0",
            "--keys-dir",
        ])
        .arg(&keys)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start citypass dev");
    let stdout = child.stdout.take().expect("stdout");
    let dev = Dev(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The demo citizen's enrolment, binding and code are the successful calls.
    let mut revocation = None;
    let deadline = Instant::now() + PATIENCE;
    while revocation.is_none() {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("citypass dev prints its addresses");
        if line.trim_start().starts_with("revocation") {
            revocation = line.split_whitespace().last().map(str::to_owned);
        }
    }
    // A refused call: an auditor may list, not revoke.
    let auditor = dir.path().join("auditor.pem");
    let made = Command::new(env!("CARGO_BIN_EXE_citypass"))
        .args(["pki", "operator", "otel", "--role", "auditor", "--dir"])
        .arg(keys.join("pki"))
        .arg("--out")
        .arg(&auditor)
        .output()
        .expect("citypass pki operator");
    assert!(made.status.success());
    let refused = Command::new(env!("CARGO_BIN_EXE_citypass"))
        .args(["admin", "revoke", "token", &"ab".repeat(16)])
        .args(["--revocation", revocation.as_deref().unwrap_or_default()])
        .arg("--credential")
        .arg(&auditor)
        .output()
        .expect("citypass admin revoke");
    assert_eq!(refused.status.code(), Some(2));

    let deadline = Instant::now() + PATIENCE;
    loop {
        let issued = finished(&collector, "IssueToken");
        let revoke = finished(&collector, "Revoke");
        if let (Some(issued), Some(revoke)) = (issued, revoke) {
            assert_eq!(issued.0, 0, "IssueToken ended OK");
            assert_eq!(revoke.0, 7, "Revoke ended PERMISSION_DENIED");
            assert_ne!(
                revoke.1,
                StatusCode::Error as i32,
                "a refused caller is not the server's error"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spans with status codes did not arrive within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(dev);
}
