//! Propagation from acknowledgement to enforcement, under load: shared by the
//! `propagation` example (which prints figures) and a test (which checks that every
//! revocation is seen, without timing assertions).
//!
//! Set-up: the revocation service on loopback with a PostgreSQL log and the Redis
//! publisher, and a follower in Redis mode with production timings. Background load:
//! List callers reading the whole log in pages, Snapshot callers (a full sync and a
//! signature each), and threads hammering the follower's hot-path query. Then `count`
//! token revocations from `concurrency` callers; for each, the time from Revoke's
//! acknowledgement (the response received) until the follower's set holds it; zero
//! when it already held it at that moment (the service publishes before it answers).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use citypass_proto::v1::{GetRevocationSnapshotRequest, ListRevocationsRequest};
use citypass_revocation::TargetKind;
use citypass_revocation_follow::{FollowerConfig, MetricsSnapshot, RevocationView};
use citypass_revocation_service::{Log, PostgresLog};
use citypass_token::{Cti, SubjectId};
use tokio::time::Instant;

use super::{Client, random_bytes, redis_publisher, revoke_request, serve, service_settings};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Registry to measure.
    pub count: usize,
    /// Callers revoking at once.
    pub concurrency: usize,
    /// Tasks calling List (whole log, pages of 500) in a loop.
    pub list_callers: usize,
    /// Tasks calling Snapshot in a loop.
    pub snapshot_callers: usize,
    /// Threads querying the follower's set in a busy loop (the verifier's hot path).
    pub hot_threads: usize,
    /// PostgreSQL for the log; `None`: a fresh database on the test server.
    pub database_url: Option<String>,
    /// Redis for the stream.
    pub redis_url: String,
}

/// What was measured.
#[derive(Debug)]
pub struct Report {
    pub count: usize,
    /// Registry the follower's set held within 10 s of their acknowledgement.
    pub seen: usize,
    /// Already enforced when the acknowledgement arrived.
    pub enforced_at_ack: usize,
    /// Acknowledgement → enforcement, sorted.
    pub ack_to_enforced: Vec<Duration>,
    /// Revoke sent → enforcement (includes the Revoke call itself), sorted.
    pub sent_to_enforced: Vec<Duration>,
    /// Revoke round trips, sorted.
    pub revoke_rtt: Vec<Duration>,
    pub elapsed: Duration,
    pub list_calls: u64,
    pub snapshot_calls: u64,
    pub hot_queries: u64,
    pub follower: MetricsSnapshot,
}

/// The `q` quantile (0..=1) of sorted durations.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Measured {
    seen: bool,
    at_ack: bool,
    ack_to_enforced: Duration,
    sent_to_enforced: Duration,
    rtt: Duration,
}

async fn revoke_and_measure(client: &mut Client, view: &RevocationView) -> Measured {
    let cti = random_bytes();
    let sent = Instant::now();
    let entry = client
        .revoke(revoke_request(TargetKind::Token, &hex::encode(cti)))
        .await
        .expect("Revoke")
        .into_inner()
        .entry
        .expect("entry");
    let acked = Instant::now();
    let at_ack = view.token_revoked(&Cti::from_bytes(cti));
    let enforced = if at_ack {
        Some(acked)
    } else {
        tokio::time::timeout(Duration::from_secs(10), view.wait_for_epoch(entry.epoch))
            .await
            .ok()
            .map(|()| Instant::now())
    };
    let seen = enforced.is_some() && view.token_revoked(&Cti::from_bytes(cti));
    let enforced = enforced.unwrap_or(acked + Duration::from_secs(10));
    Measured {
        seen,
        at_ack,
        ack_to_enforced: enforced - acked,
        sent_to_enforced: enforced - sent,
        rtt: acked - sent,
    }
}

pub async fn run(options: Options) -> Report {
    let log: Arc<dyn Log> = match &options.database_url {
        Some(url) => Arc::new(PostgresLog::connect(url, 10).await.expect("PostgreSQL")),
        None => {
            let (pool, url) = citypass_testkit::fresh_database().await;
            pool.close().await;
            Arc::new(PostgresLog::connect(&url, 10).await.expect("PostgreSQL"))
        }
    };
    let key = super::stream_key();
    let publisher = redis_publisher(&options.redis_url, &key).await;
    let service = serve(log, publisher, service_settings()).await;
    let follower = service.follow(FollowerConfig::redis(options.redis_url.clone(), key));
    let view = follower.view();
    tokio::time::timeout(Duration::from_secs(10), view.wait_synced())
        .await
        .expect("the follower syncs");

    // Background load.
    let stop = Arc::new(AtomicBool::new(false));
    let list_calls = Arc::new(AtomicU64::new(0));
    let snapshot_calls = Arc::new(AtomicU64::new(0));
    let hot_queries = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..options.list_callers {
        let (mut client, stop, calls) = (service.client.clone(), stop.clone(), list_calls.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let mut since = 0;
                loop {
                    let page = client
                        .list_revocations(ListRevocationsRequest {
                            since_epoch: since,
                            page_size: 500,
                            page_token: String::new(),
                        })
                        .await
                        .expect("List")
                        .into_inner();
                    calls.fetch_add(1, Ordering::Relaxed);
                    match page.entries.last() {
                        Some(last) if !page.next_page_token.is_empty() => since = last.epoch,
                        _ => break,
                    }
                }
            }
        }));
    }
    for _ in 0..options.snapshot_callers {
        let (mut client, stop, calls) =
            (service.client.clone(), stop.clone(), snapshot_calls.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                client
                    .get_revocation_snapshot(GetRevocationSnapshotRequest::default())
                    .await
                    .expect("Snapshot");
                calls.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut threads = Vec::new();
    for t in 0..options.hot_threads {
        let (view, stop, queries) = (view.clone(), stop.clone(), hot_queries.clone());
        threads.push(std::thread::spawn(move || {
            let mut cti = [0u8; 16];
            cti[0] = u8::try_from(t % 256).unwrap_or(0);
            let subject = SubjectId::from_bytes([0x5b; 16]);
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..1000 {
                    n = n.wrapping_add(1);
                    cti[8..].copy_from_slice(&n.to_le_bytes());
                    std::hint::black_box(view.token_revoked(&Cti::from_bytes(cti)));
                    std::hint::black_box(view.subject_revoked(&subject, n));
                }
                queries.fetch_add(2000, Ordering::Relaxed);
                std::thread::yield_now();
            }
        }));
    }
    // Let the load settle in.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let concurrency = options.concurrency.max(1);
    let mut revokers = Vec::new();
    for i in 0..concurrency {
        let share = options.count / concurrency + usize::from(i < options.count % concurrency);
        let (mut client, view) = (service.client.clone(), view.clone());
        revokers.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(share);
            for _ in 0..share {
                out.push(revoke_and_measure(&mut client, &view).await);
            }
            out
        }));
    }
    let mut measured = Vec::with_capacity(options.count);
    for revoker in revokers {
        measured.extend(revoker.await.expect("revoker"));
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for task in load {
        let _ = task.await;
    }
    for thread in threads {
        let _ = thread.join();
    }

    let mut ack_to_enforced: Vec<Duration> = measured.iter().map(|m| m.ack_to_enforced).collect();
    let mut sent_to_enforced: Vec<Duration> = measured.iter().map(|m| m.sent_to_enforced).collect();
    let mut revoke_rtt: Vec<Duration> = measured.iter().map(|m| m.rtt).collect();
    ack_to_enforced.sort();
    sent_to_enforced.sort();
    revoke_rtt.sort();
    Report {
        count: options.count,
        seen: measured.iter().filter(|m| m.seen).count(),
        enforced_at_ack: measured.iter().filter(|m| m.at_ack).count(),
        ack_to_enforced,
        sent_to_enforced,
        revoke_rtt,
        elapsed,
        list_calls: list_calls.load(Ordering::Relaxed),
        snapshot_calls: snapshot_calls.load(Ordering::Relaxed),
        hot_queries: hot_queries.load(Ordering::Relaxed),
        follower: view.metrics(),
    }
}
