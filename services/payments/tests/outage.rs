//! PostgreSQL taken away in the middle of a run of taps and brought back: taps during
//! the outage fail UNAVAILABLE and write nothing; the gates' retries of the same scans
//! afterwards record each trip once, with one charge each and a balanced ledger.

use std::sync::Arc;

use citypass_payments::tap::{Place, TapIn, TapOut, TapRules, TapSettings};
use citypass_payments::{FareClass, FareTable, Payments, PostgresStore, TransitAccount};
use citypass_runtime::{ErrorKind, ServiceError};

const T0: u64 = 1_800_000_000;
const RIDERS: u8 = 6;

fn entry(account: TransitAccount, n: u8) -> TapIn {
    TapIn {
        account,
        gate_id: "g-in".to_owned(),
        scan_id: format!("in-{n}"),
        place: Place::Metro("pingguoyuan".to_owned()),
        at: T0,
        fare_class: FareClass::Adult,
    }
}

fn exit(account: TransitAccount, n: u8) -> TapOut {
    TapOut {
        account,
        gate_id: "g-out".to_owned(),
        scan_id: format!("out-{n}"),
        station: "xidan".to_owned(),
        at: T0 + 1800,
        fare_class: FareClass::Adult,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taps_through_a_postgres_outage_are_charged_once() {
    let (pool, url) = citypass_testkit::fresh_database().await;
    PostgresStore::new(pool).await.unwrap(); // migrate
    // The service's own small pool, which the outage empties.
    let store = PostgresStore::connect(&url, 4).await.unwrap();
    let fares = FareTable::from_yaml(include_str!("../config/fares.yaml")).unwrap();
    let p = Payments::new(
        Arc::new(store),
        TapRules::new(Arc::new(fares), TapSettings::default()).unwrap(),
    );
    let riders: Vec<TransitAccount> = (1..=RIDERS)
        .map(|n| TransitAccount::from_bytes([n; 16]))
        .collect();
    for (n, &account) in (1..).zip(&riders) {
        p.link(
            citypass_payments::payments::LinkRequest {
                account,
                provider: citypass_payments::link::Provider::Sandbox,
                token: "agr_sandbox_4f9c2a7e1b",
                last4: "0042",
                consent_version: "2026-01",
                consented_at: T0 - 10,
            },
            T0 - 5,
        )
        .await
        .unwrap();
        p.tap_in(entry(account, n)).await.unwrap();
    }
    // Half the riders leave before the outage.
    for (n, &account) in (1..).zip(&riders).take(3) {
        p.tap_out(exit(account, n)).await.unwrap();
    }

    citypass_testkit::set_database_available(&url, false).await;
    for (n, &account) in (1..).zip(&riders).skip(3) {
        let err = p.tap_out(exit(account, n)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    }
    citypass_testkit::set_database_available(&url, true).await;

    // The gates retry every exit scan (the answered ones too): a new connection is
    // made as needed; each trip is closed and charged once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for (n, &account) in (1..).zip(&riders) {
        loop {
            match p.tap_out(exit(account, n)).await {
                Ok(trip) => {
                    assert_eq!(trip.fare.unwrap().due.get(), 500);
                    break;
                }
                Err(err) => {
                    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
                    assert!(
                        std::time::Instant::now() < deadline,
                        "PostgreSQL did not come back"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
    for &account in &riders {
        let charges = p.store().charges(account).await.unwrap();
        assert_eq!(charges.len(), 1);
    }
    let (report, verdict) = p.check_ledger().await.unwrap();
    assert_eq!(verdict, Ok(()));
    assert_eq!((report.charges, report.operators), (6, 3000));
    assert_eq!(p.store().outbox(100).await.unwrap().len(), 6);
}
