//! Random days of one rider (entries, exits, bus rides, gate retries, double taps,
//! voids, expiry passes, unlinking, outbox passes against the sandbox, offline gates'
//! taps uploaded late, which may re-price a trip with a refund), on the
//! in-memory store: after every step the ledger's invariants hold, a trip has at most
//! one live charge and it is the trip's fare (or more, refunded down to it, for a
//! re-priced trip), at most one trip is open, no day costs
//! more than the cap, only the refusals the rules name ever come back, and the ledger's
//! captures are what the sandbox charged.

use std::collections::HashMap;
use std::sync::Arc;

use citypass_payments::charge::ChargeStatus;
use citypass_payments::link::Provider;
use citypass_payments::payments::LinkRequest;
use citypass_payments::payments::Tapped;
use citypass_payments::provider::{Sandbox, SandboxConfig};
use citypass_payments::store::TripQuery;
use citypass_payments::tap::{
    LateKind, LateTap, Place, TapIn, TapOut, TapRules, TapSettings, Void,
};
use citypass_payments::trip::{Trip, TripId, TripStatus};
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
    /// The gate of an earlier scan (`back` scans before the last) voids it, as when
    /// the rider's next scan at another gate was accepted meanwhile.
    VoidEarlier {
        back: usize,
    },
    /// The rider's last scan is taken again at another gate of the same place (a new
    /// scan: a double tap), then the first gate voids its scan.
    RepeatElsewhereThenVoid,
    Expire,
    Unlink,
    Relink,
    /// An outbox pass against the sandbox (which times out once after success).
    Work,
    /// An offline gate's tap taken `back` seconds ago, uploaded now.
    Late {
        kind: usize,
        station: usize,
        gate: u8,
        back: u64,
    },
}

const LATE_KINDS: [LateKind; 3] = [LateKind::MetroEntry, LateKind::MetroExit, LateKind::Bus];

fn step() -> impl Strategy<Value = (Step, u64)> {
    let step = prop_oneof![
        4 => (0..STATIONS.len(), 0..3u8).prop_map(|(station, gate)| Step::Entry { station, gate }),
        4 => (0..STATIONS.len(), 0..3u8).prop_map(|(station, gate)| Step::Exit { station, gate }),
        2 => (0..ROUTES.len(), 0..3u8).prop_map(|(route, gate)| Step::Bus { route, gate }),
        2 => Just(Step::Retry),
        2 => Just(Step::VoidLast),
        2 => (1..3usize).prop_map(|back| Step::VoidEarlier { back }),
        2 => Just(Step::RepeatElsewhereThenVoid),
        1 => Just(Step::Expire),
        1 => Just(Step::Unlink),
        1 => Just(Step::Relink),
        2 => Just(Step::Work),
        3 => (0..LATE_KINDS.len(), 0..STATIONS.len(), 0..3u8, prop_oneof![0..120u64, 120..20_000u64])
            .prop_map(|(kind, station, gate, back)| Step::Late { kind, station, gate, back }),
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
            | Error::TapRepeated
            | Error::LateTapNotVoidable
            | Error::AlreadyLinked
            | Error::NotLinked
    )
}

/// A scan a gate let through and that was not voided: its trip must stand (an exit's
/// trip not open again, no taken tap's trip voided).
struct Taken {
    gate: String,
    scan: String,
    trip: TripId,
    exit: bool,
    voided: bool,
}

async fn check(p: &Payments, account: TransitAccount, rules: &TapRules, taken: &[Taken]) {
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
        // A trip re-priced by a late tap (both taps, its id not its entry's) keeps the
        // charge it had, refunded down to its fare (the ledger check proves the sum).
        let repriced = view
            .trip
            .entry
            .as_ref()
            .is_some_and(|e| e.key() != view.trip.id)
            || (view.trip.exit.is_some()
                && view.trip.entry.is_some()
                && live.first().is_some_and(|c| c.amount > due));
        if due == Fen::ZERO && !repriced {
            assert!(live.is_empty(), "{view:?}");
        } else if repriced {
            assert!(live.len() <= 1, "{view:?}");
            assert!(live.iter().all(|c| c.amount >= due), "{view:?} {live:?}");
        } else {
            assert_eq!(live.len(), 1, "{view:?}");
            assert_eq!(live[0].amount, due);
        }
        let day = per_day
            .entry(rules.day_of(view.trip.started_at()))
            .or_default();
        *day = day.checked_add(due).unwrap();
    }
    for scan in taken.iter().filter(|t| !t.voided) {
        let trip = &trips
            .iter()
            .find(|v| v.trip.id == scan.trip)
            .expect("a taken scan's trip")
            .trip;
        assert_ne!(
            trip.status,
            TripStatus::Voided,
            "a taken scan's trip was voided: {trip:?}"
        );
        if scan.exit {
            assert_ne!(
                trip.status,
                TripStatus::Open,
                "an exit's trip is open again: {trip:?}"
            );
        }
    }
    let cap = rules.fares.config().daily_cap;
    assert!(per_day.values().all(|&d| d <= cap), "{per_day:?}");
}

fn tapped(t: Tapped) -> Option<Trip> {
    match t {
        Tapped::Trip(trip) => Some(*trip),
        Tapped::Refused(_) => None,
    }
}

/// Notes a scan the gate let through (a trip answered).
fn took(taken: &mut Vec<Taken>, gate: String, scan: String, trip: Option<Trip>, exit: bool) {
    if let Some(trip) = trip {
        taken.push(Taken {
            gate,
            scan,
            trip: trip.id,
            exit,
            voided: false,
        });
    }
}

/// Notes a void its gate was granted.
fn voided(taken: &mut [Taken], gate: &str, scan: &str) {
    for t in taken
        .iter_mut()
        .filter(|t| t.gate == gate && t.scan == scan)
    {
        t.voided = true;
    }
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
            let mut scans: Vec<(String, String)> = Vec::new();
            let mut taken: Vec<Taken> = Vec::new();
            let mut last_late: Option<LateTap> = None;
            for (n, (step, gap)) in steps.into_iter().enumerate() {
                at += gap;
                let scan = format!("s{n}");
                let result: Result<(), Error> = match &step {
                    Step::Entry { station, gate } => {
                        let gate = format!("in-{gate}");
                        last = Some((gate.clone(), scan.clone(), step.clone()));
                        scans.push((gate.clone(), scan.clone()));
                        p.tap_in(TapIn {
                            account, gate_id: gate.clone(), scan_id: scan.clone(),
                            place: Place::Metro(STATIONS[*station].to_owned()),
                            at, fare_class: FareClass::Adult,
                        }).await.map(|t| took(&mut taken, gate, scan, tapped(t), false))
                    }
                    Step::Bus { route, gate } => {
                        let gate = format!("bus-{gate}");
                        last = Some((gate.clone(), scan.clone(), step.clone()));
                        scans.push((gate.clone(), scan.clone()));
                        p.tap_in(TapIn {
                            account, gate_id: gate.clone(), scan_id: scan.clone(),
                            place: Place::Bus(ROUTES[*route].to_owned()),
                            at, fare_class: FareClass::Student,
                        }).await.map(|t| took(&mut taken, gate, scan, tapped(t), false))
                    }
                    Step::Exit { station, gate } => {
                        let gate = format!("out-{gate}");
                        last = Some((gate.clone(), scan.clone(), step.clone()));
                        scans.push((gate.clone(), scan.clone()));
                        p.tap_out(TapOut {
                            account, gate_id: gate.clone(), scan_id: scan.clone(),
                            station: STATIONS[*station].to_owned(),
                            at, fare_class: FareClass::Adult,
                        }).await.map(|t| took(&mut taken, gate, scan, Some(t), true))
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
                        Some((_, _, Step::Late { .. })) => match last_late.clone() {
                            Some(tap) => p.late_tap(tap, at).await.map(drop),
                            None => Ok(()),
                        },
                        _ => Ok(()),
                    },
                    Step::VoidLast => match &last {
                        Some((gate, scan, _)) => p.void(Void {
                            account, gate_id: gate.clone(), scan_id: scan.clone(), at,
                        }).await.map(|_| voided(&mut taken, gate, scan)),
                        None => Ok(()),
                    },
                    Step::VoidEarlier { back } => match scans.len().checked_sub(1 + back) {
                        Some(i) => {
                            let (gate, scan) = scans[i].clone();
                            p.void(Void {
                                account, gate_id: gate.clone(), scan_id: scan.clone(), at,
                            }).await.map(|_| voided(&mut taken, &gate, &scan))
                        }
                        None => Ok(()),
                    },
                    Step::RepeatElsewhereThenVoid => match last.clone() {
                        Some((first_gate, first_scan, first)) => {
                            let gate = format!("{first_gate}-b");
                            scans.push((gate.clone(), scan.clone()));
                            let repeat = match &first {
                                Step::Exit { station, .. } => p.tap_out(TapOut {
                                    account, gate_id: gate.clone(), scan_id: scan.clone(),
                                    station: STATIONS[*station].to_owned(), at, fare_class: FareClass::Adult,
                                }).await.map(|t| took(&mut taken, gate.clone(), scan.clone(), Some(t), true)),
                                Step::Entry { station, .. } => p.tap_in(TapIn {
                                    account, gate_id: gate.clone(), scan_id: scan.clone(),
                                    place: Place::Metro(STATIONS[*station].to_owned()),
                                    at, fare_class: FareClass::Adult,
                                }).await.map(|t| took(&mut taken, gate.clone(), scan.clone(), tapped(t), false)),
                                Step::Bus { route, .. } => p.tap_in(TapIn {
                                    account, gate_id: gate.clone(), scan_id: scan.clone(),
                                    place: Place::Bus(ROUTES[*route].to_owned()),
                                    at, fare_class: FareClass::Student,
                                }).await.map(|t| took(&mut taken, gate.clone(), scan.clone(), tapped(t), false)),
                                _ => Ok(()),
                            };
                            last = Some((gate, scan.clone(), first));
                            at += 1;
                            match repeat {
                                Ok(()) => p.void(Void {
                                    account, gate_id: first_gate.clone(), scan_id: first_scan.clone(), at,
                                }).await.map(|_| voided(&mut taken, &first_gate, &first_scan)),
                                Err(err) => Err(err),
                            }
                        }
                        None => Ok(()),
                    },
                    Step::Expire => p.expire_open_trips(at).await.map(drop),
                    Step::Unlink => p.unlink(account, at).await.map(drop),
                    Step::Relink => p.link(link(account, at), at).await.map(drop),
                    Step::Work => worker.run_once(at).await.map(drop),
                    Step::Late { kind, station, gate, back } => {
                        let kind = LATE_KINDS[*kind];
                        let (gate, place) = match kind {
                            LateKind::Bus => (format!("off-bus-{gate}"), ROUTES[*station % ROUTES.len()]),
                            LateKind::MetroEntry => (format!("off-in-{gate}"), STATIONS[*station]),
                            LateKind::MetroExit => (format!("off-out-{gate}"), STATIONS[*station]),
                        };
                        let tap = LateTap {
                            account, kind, gate_id: gate.clone(), scan_id: scan.clone(),
                            place: place.to_owned(), at: at.saturating_sub(*back).max(T0),
                            fare_class: FareClass::Adult,
                        };
                        last = Some((gate.clone(), scan.clone(), step.clone()));
                        scans.push((gate.clone(), scan.clone()));
                        last_late = Some(tap.clone());
                        let exit = kind == LateKind::MetroExit;
                        p.late_tap(tap, at).await.map(|t| took(&mut taken, gate, scan, tapped(t), exit))
                    }
                };
                if let Err(err) = &result {
                    assert!(expected(err), "step {n} {step:?}: {err:?}");
                }
                check(&p, account, &rules, &taken).await;
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
            // Each an hour on: past any backoff.
            for _ in 0..2 {
                at += 3600;
                worker.run_once(at).await.unwrap();
            }
            let (report, _) = p.check_ledger().await.unwrap();
            let charged: i128 = sandbox.approved().iter().map(|(_, f)| i128::from(f.get())).sum();
            assert_eq!(report.captured, charged);
        });
    }
}
