//! TapIn/TapOut throughput of the payments logic on PostgreSQL, one run: RIDERS riders
//! (linked first, not timed) each enter and exit once, CONCURRENCY taps in flight at a
//! time; then the ledger is checked and one charge per trip asserted.
//!
//! ```text
//! CITYPASS_TEST_DATABASE_URL=postgres://... \
//!   cargo run --release -p citypass-payments --example throughput -- [RIDERS] [CONCURRENCY]
//! ```
//!
//! (`./scripts/test --check-services` starts a PostgreSQL; the example makes a fresh
//! database on it.) Each tap is one transaction: the rider's row lock, the rider's
//! state (link, arrears, the tap's record, the open trip, two days of trips), the writes.

use std::sync::Arc;
use std::time::Instant;

use citypass_payments::link::Provider;
use citypass_payments::payments::LinkRequest;
use citypass_payments::tap::{Place, TapIn, TapOut, TapRules, TapSettings};
use citypass_payments::{FareClass, FareTable, Payments, PostgresStore, TransitAccount};
use futures::stream::{self, StreamExt};

const T0: u64 = 1_800_000_000;

fn account(n: u32) -> TransitAccount {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    TransitAccount::from_bytes(bytes)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let riders: u32 = args.next().map_or(Ok(200), |a| a.parse())?;
    let concurrency: usize = args.next().map_or(Ok(16), |a| a.parse())?;
    let (pool, url) = citypass_testkit::fresh_database().await;
    PostgresStore::new(pool).await?;
    let max_connections = u32::try_from(concurrency)?.max(2);
    let store = PostgresStore::connect(&url, max_connections).await?;
    let fares = FareTable::from_yaml(include_str!("../config/fares.yaml"))?;
    let p = Payments::new(
        Arc::new(store),
        TapRules::new(Arc::new(fares), TapSettings::default())?,
    );
    for n in 0..riders {
        let request = LinkRequest {
            account: account(n),
            provider: Provider::Sandbox,
            token: "agr_sandbox_4f9c2a7e1b",
            last4: "0042",
            consent_version: "2026-01",
            consented_at: T0 - 10,
        };
        p.link(request, T0 - 5).await?;
    }

    let started = Instant::now();
    stream::iter(0..riders)
        .map(|n| {
            let p = p.clone();
            async move {
                p.tap_in(TapIn {
                    account: account(n),
                    gate_id: "g-in".to_owned(),
                    scan_id: format!("in-{n}"),
                    place: Place::Metro("pingguoyuan".to_owned()),
                    at: T0,
                    fare_class: FareClass::Adult,
                })
                .await
            }
        })
        .buffer_unordered(concurrency)
        .for_each(|r| async move {
            r.expect("tap in");
        })
        .await;
    let entries = started.elapsed();
    let exits_started = Instant::now();
    stream::iter(0..riders)
        .map(|n| {
            let p = p.clone();
            async move {
                p.tap_out(TapOut {
                    account: account(n),
                    gate_id: "g-out".to_owned(),
                    scan_id: format!("out-{n}"),
                    station: "xidan".to_owned(),
                    at: T0 + 1800,
                    fare_class: FareClass::Adult,
                })
                .await
            }
        })
        .buffer_unordered(concurrency)
        .for_each(|r| async move {
            r.expect("tap out");
        })
        .await;
    let exits = exits_started.elapsed();
    let (report, verdict) = p.check_ledger().await?;
    assert_eq!(verdict, Ok(()));
    assert_eq!(report.charges, u64::from(riders));
    let rate = |d: std::time::Duration| f64::from(riders) / d.as_secs_f64();
    println!(
        "{riders} riders, {concurrency} in flight: TapIn {:.0}/s ({:.2} s), TapOut {:.0}/s ({:.2} s); ledger balanced, {} charges",
        rate(entries),
        entries.as_secs_f64(),
        rate(exits),
        exits.as_secs_f64(),
        report.charges
    );
    Ok(())
}
