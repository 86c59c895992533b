//! Propagation of revocations from acknowledgement to enforcement, under load.
//!
//! ```sh
//! # with the servers ./scripts/test starts (or any PostgreSQL and Redis):
//! CITYPASS_TEST_DATABASE_URL=postgres://… CITYPASS_TEST_REDIS_URL=redis://… \
//!   cargo run --release -p citypass-revocation-follow --example propagation -- 1000
//! # options: [COUNT=1000] [--concurrency 4] [--list-callers 2] [--snapshot-callers 1]
//! #          [--hot-threads 1] [--database-url URL] [--redis-url URL]
//! ```
//!
//! Starts the revocation service (PostgreSQL log, Redis publisher) and a follower in
//! Redis mode with production timings in this process, puts load on both (see
//! `tests/support/propagation.rs`), performs COUNT token revocations and prints, per
//! revocation, the time from Revoke's acknowledgement until the follower's set holds
//! it: p50/p90/p99/max and how many were seen. Without `--database-url` it creates a
//! fresh database on the server named by `CITYPASS_TEST_DATABASE_URL`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use support::propagation::{Options, Report, quantile, run};

fn usage() -> ! {
    eprintln!(
        "usage: propagation [COUNT] [--concurrency N] [--list-callers N] [--snapshot-callers N] [--hot-threads N] [--database-url URL] [--redis-url URL]"
    );
    std::process::exit(2)
}

fn parse() -> Options {
    let mut options = Options {
        count: 1000,
        concurrency: 4,
        list_callers: 2,
        snapshot_callers: 1,
        hot_threads: 1,
        database_url: None,
        redis_url: std::env::var(citypass_testkit::REDIS_URL_VAR).unwrap_or_default(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        let number = |text: String| text.parse::<usize>().unwrap_or_else(|_| usage());
        match arg.as_str() {
            "--concurrency" => options.concurrency = number(value()),
            "--list-callers" => options.list_callers = number(value()),
            "--snapshot-callers" => options.snapshot_callers = number(value()),
            "--hot-threads" => options.hot_threads = number(value()),
            "--database-url" => options.database_url = Some(value()),
            "--redis-url" => options.redis_url = value(),
            "-h" | "--help" => usage(),
            count => options.count = number(count.to_owned()),
        }
    }
    if options.redis_url.is_empty() {
        eprintln!(
            "no Redis: set {} or pass --redis-url",
            citypass_testkit::REDIS_URL_VAR
        );
        std::process::exit(2);
    }
    if options.database_url.is_none() && std::env::var(citypass_testkit::DATABASE_URL_VAR).is_err()
    {
        eprintln!(
            "no PostgreSQL: set {} or pass --database-url",
            citypass_testkit::DATABASE_URL_VAR
        );
        std::process::exit(2);
    }
    options
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// (busy, total) jiffies of all cores, from /proc/stat.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    // idle + iowait
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn line(name: &str, sorted: &[Duration]) {
    println!(
        "{name:<28} p50 {:>10}  p90 {:>10}  p99 {:>10}  max {:>10}",
        ms(quantile(sorted, 0.50)),
        ms(quantile(sorted, 0.90)),
        ms(quantile(sorted, 0.99)),
        ms(sorted.last().copied().unwrap_or_default())
    );
}

#[tokio::main]
async fn main() {
    let options = parse();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "propagation: {} revocations, {} concurrent revokers; load: {} List callers, {} Snapshot callers, {} hot-path threads; {} cores; loadavg before {}",
        options.count,
        options.concurrency,
        options.list_callers,
        options.snapshot_callers,
        options.hot_threads,
        cores,
        loadavg()
    );
    let cpu_before = cpu_jiffies();
    let report: Report = run(options).await;
    let cpu = match (cpu_before, cpu_jiffies()) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            format!("{:.0}%", 100.0 * (b1 - b0) as f64 / (t1 - t0) as f64)
        }
        _ => "?".to_owned(),
    };
    let secs = report.elapsed.as_secs_f64();
    println!(
        "seen by the follower: {}/{} ({} already enforced when the acknowledgement arrived)",
        report.seen, report.count, report.enforced_at_ack
    );
    line("ack -> enforced", &report.ack_to_enforced);
    line("Revoke sent -> enforced", &report.sent_to_enforced);
    line("Revoke round trip", &report.revoke_rtt);
    println!(
        "over {:.1} s: {:.0} revocations/s; load: {:.0} ListRevocations pages/s, {:.1} Snapshots/s, {:.2} M hot-path queries/s; machine CPU busy {} (all cores, whole run); loadavg after {}",
        secs,
        report.count as f64 / secs,
        report.list_calls as f64 / secs,
        report.snapshot_calls as f64 / secs,
        report.hot_queries as f64 / secs / 1e6,
        cpu,
        loadavg()
    );
    let m = report.follower;
    println!(
        "follower: epoch {}, entries applied {}, stream messages {}, out of order {}, gaps {}, resyncs {}, resync failures {}, redis errors {}",
        m.epoch,
        m.entries_applied,
        m.stream_messages,
        m.out_of_order,
        m.gaps,
        m.resyncs,
        m.resync_failures,
        m.redis_errors
    );
    if report.seen != report.count {
        std::process::exit(1);
    }
}
