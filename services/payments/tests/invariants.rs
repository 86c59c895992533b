//! Random days of one rider (entries, exits, bus rides, gate retries, double taps,
//! voids, expiry passes, unlinking, outbox passes against the sandbox), on the
//! in-memory store: after every step the ledger's invariants hold, a trip has at most
//! one live charge and it is the trip's fare, at most one trip is open, no day costs
//! more than the cap, only the refusals the rules name ever come back, and the ledger's
//! captures are what the sandbox charged.

use std::collections::HashMap;
use std::sync::Arc;

use citypass_payments::charge::ChargeStatus;
use citypass_payments::link::Provider;
use citypass_payments::payments::LinkRequest;
use citypass_payments::provider::{Sandbox, SandboxConfig};
use citypass_payments::store::TripQuery;
use citypass_payments::tap::{Place, TapIn, TapOut, TapRules, TapSettings, Void};
use citypass_payments::trip::TripStatus;
use citypass_payments::worker::OutboxWorker;
use citypass_payments::{
    Error, FareClass, FareTable, Fen, MemoryStore, Payments, PaymentsStore, TransitAccount,
};
use proptest::prelude::*;

const T0: u64 = 1_800_000_000;
const STATIONS: [&str; 5] = ["pingguoyuan", "xidan", "tuqiao", "xizhimen", "sihui"];
const ROUTES: [&str; 3] = ["1", "52", "944"];

#[derive(Debug, Clone)]
enum Step {
    Entry {
        station: usize,
        gate: u8,
    },
    Exit {
        station: usize,
        gate: u8,
    },
    Bus {
        route: usize,
        gate: u8,
    },
    /// The gate sends the last scan again.
    Retry,
    /// The gate of the last scan voids it.
    VoidLast,
    Expire,
    Unlink,
    Relink,
    /// An outbox pass against the sandbox (which times out once after success).
    Work,
}

fn step() -> impl Strategy<Value = (Step, u64)> {
    let step = prop_oneof![
        4 => (0..STATIONS.len(), 0..3u8).prop_map(|(station, gate)| Step::Entry { station, gate }),
        4 => (0..STATIONS.len(), 0..3u8).prop_map(|(station, gate)| Step::Exit { station, gate }),
        2 => (0..ROUTES.len(), 0..3u8).prop_map(|(route, gate)| Step::Bus { route, gate }),
        2 => Just(Step::Retry),
        2 => Just(Step::VoidLast),
        1 => Just(Step::Expire),
        1 => Just(Step::Unlink),
        1 => Just(Step::Relink),
        2 => Just(Step::Work),
    ];
    // Seconds since the previous step: often within the double-tap and void windows,
    // sometimes hours (past max_trip, into the next day).
    let gap = prop_oneof![3 => 0..15u64, 3 => 60..3600u64, 1 => 3600..30_000u64];
    (step, gap)
}

fn link(account: TransitAccount, at: u64) -> LinkRequest<'static> {
    LinkRequest {
        account,
        provider: Provider::Sandbox,
        token: "agr_sandbox_4f9c2a7e1b",
        last4: "0042",
        consent_version: "2026-01",
        consented_at: at,
    }
}

/// Errors the rules may answer to a legitimate gate; anything else is a bug.
fn expected(err: &Error) -> bool {
    matches!(
        err,
        Error::NoPaymentLink
            | Error::TapVoided
            | Error::ScanReused
            | Error::TapNotFound
            | Error::VoidTooLate(_)
            | Error::TripMovedOn
            | Error::AlreadyLinked
            | Error::NotLinked
    )
}

async fn check(p: &Payments, account: TransitAccount, rules: &TapRules) {
    let (report, verdict) = p.check_ledger().await.unwrap();
    assert_eq!(verdict, Ok(()), "{report:?}");
    let trips = p
        .trips(
            account,
            TripQuery {
                since: None,
                until: None,
                after: None,
                limit: 500,
            },
        )
        .await
        .unwrap()
        .trips;
    assert!(
        trips
            .iter()
            .filter(|v| v.trip.status == TripStatus::Open)
            .count()
            <= 1
    );
    let charges = p.store().charges(account).await.unwrap();
    let mut per_day: HashMap<i64, Fen> = HashMap::new();
    for view in &trips {
        let live: Vec<_> = charges
            .iter()
            .filter(|c| c.trip == view.trip.id && c.status != ChargeStatus::Cancelled)
            .collect();
        let due = view.trip.due();
        if due == Fen::ZERO {
            assert!(live.is_empty(), "{view:?}");
        } else {
            assert_eq!(live.len(), 1, "{view:?}");
            assert_eq!(live[0].amount, due);
        }
        let day = per_day
            .entry(rules.day_of(view.trip.started_at()))
            .or_default();
        *day = day.checked_add(due).unwrap();
    }
    let cap = rules.fares.config().daily_cap;
    assert!(per_day.values().all(|&d| d <= cap), "{per_day:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_days_keep_every_invariant(steps in prop::collection::vec(step(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let fares = FareTable::from_yaml(include_str!("../config/fares.yaml")).unwrap();
            let rules = TapRules::new(Arc::new(fares), TapSettings::default()).unwrap();
            let store: Arc<dyn PaymentsStore> = Arc::new(MemoryStore::new());
            let p = Payments::new(store.clone(), rules.clone());
            let sandbox = Arc::new(Sandbox::new(SandboxConfig {
                timeouts_after_success: 1,
                ..SandboxConfig::default()
            }));
            let worker = OutboxWorker::new(store, sandbox.clone());
            let account = TransitAccount::from_bytes([7; 16]);
            p.link(link(account, T0), T0).await.unwrap();
            let mut at = T0;
            let mut last: Option<(String, String, Step)> = None;
            for (n, (step, gap)) in steps.into_iter().enumerate() {
                at += gap;
                let scan = format!("s{n}");
                let result: Result<(), Error> = match &step {
                    Step::Entry { station, gate } => {
                        let gate = format!("in-{gate}");
                        last = Some((gate.clone(), scan.clone(), step.clone()));
                        p.tap_in(TapIn {
                            account, gate_id: gate, scan_id: scan,
                            place: Place::Metro(STATIONS[*station].to_owned()),
                            at, fare_class: FareClass::Adult,
                        }).await.map(drop)
                    }
                    Step::Bus { route, gate } => {
                        let gate = format!("bus-{gate}");
                        last = Some((gate.clone(), scan.clone(), step.clone()));
                        p.tap_in(TapIn {
                            account, gate_id: gate, scan_id: scan,
                            place: Place::Bus(ROUTES[*route].to_owned()),
                            at, fare_class: FareClass::Student,
                        }).await.map(drop)
                    }
                    Step::Exit { station, gate } => {
                        let gate = format!("out-{gate}");
                        last = Some((gate.clone(), scan.clone(), step.clone()));
                        p.tap_out(TapOut {
                            account, gate_id: gate, scan_id: scan,
                            station: STATIONS[*station].to_owned(),
                            at, fare_class: FareClass::Adult,
                        }).await.map(drop)
                    }
                    Step::Retry => match &last {
                        Some((gate, scan, Step::Exit { station, .. })) => p.tap_out(TapOut {
                            account, gate_id: gate.clone(), scan_id: scan.clone(),
                            station: STATIONS[*station].to_owned(), at, fare_class: FareClass::Adult,
                        }).await.map(drop),
                        Some((gate, scan, Step::Entry { station, .. })) => p.tap_in(TapIn {
                            account, gate_id: gate.clone(), scan_id: scan.clone(),
                            place: Place::Metro(STATIONS[*station].to_owned()),
                            at, fare_class: FareClass::Adult,
                        }).await.map(drop),
                        Some((gate, scan, Step::Bus { route, .. })) => p.tap_in(TapIn {
                            account, gate_id: gate.clone(), scan_id: scan.clone(),
                            place: Place::Bus(ROUTES[*route].to_owned()),
                            at, fare_class: FareClass::Student,
                        }).await.map(drop),
                        _ => Ok(()),
                    },
                    Step::VoidLast => match &last {
                        Some((gate, scan, _)) => p.void(Void {
                            account, gate_id: gate.clone(), scan_id: scan.clone(), at,
                        }).await.map(drop),
                        None => Ok(()),
                    },
                    Step::Expire => p.expire_open_trips(at).await.map(drop),
                    Step::Unlink => p.unlink(account, at).await.map(drop),
                    Step::Relink => p.link(link(account, at), at).await.map(drop),
                    Step::Work => worker.run_once(at).await.map(drop),
                };
                if let Err(err) = &result {
                    assert!(expected(err), "step {n} {step:?}: {err:?}");
                }
                check(&p, account, &rules).await;
                // What the provider charged is never cancelled or declined here; what
                // the ledger captured, the provider charged (with the same amount).
                let charges = p.store().charges(account).await.unwrap();
                for (key, amount) in sandbox.approved() {
                    let charge = charges.iter().find(|c| c.provider_key == key).unwrap();
                    assert_eq!(charge.amount, amount);
                    assert!(
                        matches!(charge.status, ChargeStatus::Succeeded | ChargeStatus::Retrying),
                        "{charge:?}"
                    );
                }
                for charge in charges.iter().filter(|c| c.status == ChargeStatus::Succeeded) {
                    assert!(sandbox.approved().contains(&(charge.provider_key, charge.amount)));
                }
            }
            // Two more passes send everything (the sandbox times out once per key):
            // the ledger's captures are then exactly what the provider charged.
            for _ in 0..2 {
                worker.run_once(at).await.unwrap();
            }
            let (report, _) = p.check_ledger().await.unwrap();
            let charged: i128 = sandbox.approved().iter().map(|(_, f)| i128::from(f.get())).sum();
            assert_eq!(report.captured, charged);
        });
    }
}
