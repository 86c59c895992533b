//! The Prometheus scrape endpoint, over a real loopback socket: what a meter records
//! is what `GET /metrics` answers, and nothing else is served.

use std::time::Duration;

use citypass_runtime::scrape::Scrape;
use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One HTTP/1.1 request on a fresh connection; the whole answer, as text.
async fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let request = format!("{method} {path} HTTP/1.1\r\nHost: scrape\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sends");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("reads");
    String::from_utf8(answer).expect("text")
}

#[tokio::test]
async fn what_a_meter_records_is_what_a_scrape_reads() {
    let (scrape, reader) = Scrape::new().expect("a reader");
    let provider = SdkMeterProvider::builder().with_reader(reader).build();
    let decisions = provider
        .meter("citypass-test")
        .u64_counter("citypass.test.decisions")
        .with_description("Decisions in the test")
        .build();
    decisions.add(3, &[KeyValue::new("reason", "replayed")]);
    decisions.add(2, &[KeyValue::new("reason", "none")]);

    let (addr, task) = scrape
        .serve("127.0.0.1:0".parse().expect("an address"))
        .expect("serves");
    let answer = http(addr, "GET", "/metrics").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("text/plain; version=0.0.4"), "{answer}");
    assert!(
        answer
            .lines()
            .any(|l| l.starts_with("citypass_test_decisions_total")
                && l.contains("reason=\"replayed\"")
                && l.ends_with(" 3")),
        "{answer}"
    );
    assert!(
        answer
            .lines()
            .any(|l| l.starts_with("citypass_test_decisions_total")
                && l.contains("reason=\"none\"")
                && l.ends_with(" 2")),
        "{answer}"
    );

    decisions.add(1, &[KeyValue::new("reason", "none")]);
    let again = http(addr, "GET", "/metrics").await;
    assert!(
        again
            .lines()
            .any(|l| l.starts_with("citypass_test_decisions_total")
                && l.contains("reason=\"none\"")
                && l.ends_with(" 3")),
        "a scrape reads the values of its moment: {again}"
    );

    let elsewhere = http(addr, "GET", "/").await;
    assert!(elsewhere.starts_with("HTTP/1.1 404"), "{elsewhere}");
    let posted = http(addr, "POST", "/metrics").await;
    assert!(posted.starts_with("HTTP/1.1 405"), "{posted}");

    task.abort();
}
