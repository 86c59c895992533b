//! Shed calls counted by reason, service and caller kind, read back from the
//! Prometheus scrape endpoint: each way a call is shed (the caller's rate, its open
//! calls, the server's concurrency limit) driven through the running verifier over
//! loopback mutual TLS by a gate's certificate. It installs the process-wide meter
//! provider, so it is a test binary (a process) of its own.

// The service tests' harness; this test uses only part of it.
#[path = "service/support.rs"]
#[allow(dead_code)]
mod support;

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use citypass_proto::v1::{self as pb, VerifyStreamRequest};
use citypass_runtime::scrape::Scrape;
use citypass_token::Scopes;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Code;

use support::{Harness, request};

/// Generous: the machine is shared and busy.
const PATIENCE: Duration = Duration::from_secs(60);

/// `GET /metrics` on a fresh connection: the body's lines.
async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: scrape\r\nConnection: close\r\n\r\n")
        .await
        .expect("sends");
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("reads");
    String::from_utf8(answer).expect("text")
}

/// The shed counter's value for a gate's calls to the verifier shed for `reason`.
fn shed(scraped: &str, reason: &str) -> u64 {
    scraped
        .lines()
        .filter(|l| l.starts_with("citypass_rpc_server_shed_total{"))
        .filter(|l| {
            l.contains(&format!("reason=\"{reason}\""))
                && l.contains("caller_kind=\"gate\"")
                && l.contains("rpc_service=\"citypass.v1.VerifierService\"")
        })
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .expect("a value") as u64
        })
        .sum()
}

/// How a call ended: its ErrorInfo reason if it was refused.
fn reason(result: &Result<tonic::Response<pb::VerifyResponse>, tonic::Status>) -> Option<String> {
    result.as_ref().err().map(|status| {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        citypass_runtime::reason_of(status).expect("a reason")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shed_reason_is_counted_and_scraped() {
    let (metrics, reader) = Scrape::new().expect("a reader");
    let provider = SdkMeterProvider::builder().with_reader(reader).build();
    opentelemetry::global::set_meter_provider(provider.clone());
    let (scrape_addr, scrape_task) = metrics
        .serve("127.0.0.1:0".parse().expect("an address"))
        .expect("serves");

    let mut h = Harness::start().await;
    let m = pb::Scene::Metro;

    // 1. The gate's rate: one call a second, twenty at once.
    h.config.server.limits.per_caller_per_second = NonZeroU32::new(1).expect("non-zero");
    h.restart_verifier().await;
    let calls: Vec<_> = (0..20)
        .map(|n| {
            let mut gate = h.gate("metro-entry-1");
            let code = h.code(Scopes::all());
            tokio::spawn(async move {
                gate.verify(request(
                    "metro-entry-1",
                    m,
                    &format!("rate-{n}"),
                    &code.text,
                ))
                .await
            })
        })
        .collect();
    let mut limited = 0;
    for call in calls {
        let result = tokio::time::timeout(PATIENCE, call)
            .await
            .expect("an answer")
            .expect("task");
        if let Some(why) = reason(&result) {
            assert_eq!(why, "RATE_LIMITED");
            limited += 1;
        }
    }
    assert!(
        limited > 0,
        "twenty calls at once, one a second: some are limited"
    );
    assert_eq!(shed(&scrape(scrape_addr).await, "rate_limited"), limited);

    // 2. The gate's open calls: one, held by an open VerifyStream.
    h.config.server.limits.per_caller_per_second = NonZeroU32::new(10_000).expect("non-zero");
    h.config.server.limits.open_calls_per_caller = 1;
    h.restart_verifier().await;
    let mut gate = h.gate("metro-entry-1");
    let (keep_open, scans) = futures::channel::mpsc::channel::<VerifyStreamRequest>(1);
    let stream = tokio::time::timeout(PATIENCE, gate.verify_stream(scans))
        .await
        .expect("in time")
        .expect("the stream opens");
    let code = h.code(Scopes::all());
    let refused = gate
        .verify(request("metro-entry-1", m, "open-1", &code.text))
        .await;
    assert_eq!(reason(&refused).as_deref(), Some("TOO_MANY_OPEN_CALLS"));
    assert_eq!(shed(&scrape(scrape_addr).await, "open_calls"), 1);
    drop((keep_open, stream));

    // 3. The server's concurrency limit: one slot, held by a Verify waiting on a hung
    // Redis; of two such calls, one holds the slot and the other is shed at once.
    h.config.server.limits.open_calls_per_caller = 16;
    h.config.server.concurrency_limit = NonZeroUsize::new(1).expect("non-zero");
    h.config.server.request_timeout = PATIENCE;
    if let Some(redis) = h.config.redis.as_mut() {
        redis.timeout = PATIENCE;
    }
    h.restart_verifier().await;
    h.redis.pause();
    let calls: Vec<_> = (0..2)
        .map(|n| {
            let mut gate = h.gate(if n == 0 { "metro-entry-1" } else { "bus-12" });
            let (gate_id, scene) = if n == 0 {
                ("metro-entry-1", m)
            } else {
                ("bus-12", pb::Scene::Bus)
            };
            let code = h.code(Scopes::all());
            tokio::spawn(async move {
                gate.verify(request(gate_id, scene, &format!("busy-{n}"), &code.text))
                    .await
            })
        })
        .collect();
    let shed_one = tokio::time::timeout(PATIENCE, async {
        loop {
            if shed(&scrape(scrape_addr).await, "overloaded") > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    h.redis.resume();
    shed_one.expect("one of the two calls is shed");
    let mut overloaded = 0;
    for call in calls {
        let result = tokio::time::timeout(PATIENCE, call)
            .await
            .expect("an answer once Redis is back")
            .expect("task");
        if let Some(why) = reason(&result) {
            assert_eq!(why, "OVERLOADED");
            overloaded += 1;
        }
    }
    assert_eq!(overloaded, 1, "one held the slot, the other was shed");
    assert_eq!(shed(&scrape(scrape_addr).await, "overloaded"), 1);

    // Nothing about who: no gate id in any shed line.
    let scraped = scrape(scrape_addr).await;
    assert!(
        scraped
            .lines()
            .filter(|l| l.starts_with("citypass_rpc_server_shed_total"))
            .all(|l| !l.contains("metro-entry-1") && !l.contains("bus-12")),
        "{scraped}"
    );
    scrape_task.abort();
}
