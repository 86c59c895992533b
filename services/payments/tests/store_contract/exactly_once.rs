//! Exactly once: a gate's retry of a scan, a rider's double tap, and many TapOuts of
//! one trip at the same time (tasks on a multi-threaded runtime; over PostgreSQL,
//! separate connections) each produce exactly one trip, one charge, one outbox row,
//! and a balanced ledger whose receivables equal the charges.

use std::sync::Arc;

use citypass_payments::payments::Tapped;
use citypass_payments::trip::TripStatus;
use citypass_payments::{Fen, Payments, PaymentsStore, TransitAccount};

use crate::support::{
    T0, all_trips, boarding, entry, exit, ledger_balances, linked, live_charges, payments, race,
    tap_in,
};

/// The rider has `trips` trips and one live charge for each priced one that costs
/// something (none for a fare capped at zero); the ledger balances, and the outbox has
/// one row per charge.
async fn exactly_one_charge_per_trip(p: &Payments, account: TransitAccount, trips: usize) {
    let listed = all_trips(p, account).await;
    assert_eq!(listed.len(), trips, "{listed:#?}");
    let charges = live_charges(p, account).await;
    for trip in &listed {
        let expected = usize::from(trip.due() > Fen::ZERO);
        assert_eq!(
            charges.iter().filter(|c| c.trip == trip.id).count(),
            expected
        );
    }
    let costing = listed.iter().filter(|t| t.due() > Fen::ZERO).count();
    assert_eq!(charges.len(), costing, "{charges:#?}");
    let charged: i128 = charges.iter().map(|c| i128::from(c.amount.get())).sum();
    assert_eq!(ledger_balances(p).await, charged);
    assert_eq!(p.store().outbox(1000).await.unwrap().len(), charges.len());
}

pub(crate) async fn a_gate_retry_charges_once(store: Arc<dyn PaymentsStore>) {
    let p = payments(store);
    let a = linked(&p, 1).await;
    let opened = tap_in(&p, entry(a, "g-in", "s1", "pingguoyuan", T0)).await;
    assert_eq!(
        tap_in(&p, entry(a, "g-in", "s1", "pingguoyuan", T0)).await,
        opened
    );
    let closed = p
        .tap_out(exit(a, "g-out", "s2", "xidan", T0 + 1800))
        .await
        .unwrap();
    for _ in 0..3 {
        // The gate did not hear the answer and sends the same scan again.
        assert_eq!(
            p.tap_out(exit(a, "g-out", "s2", "xidan", T0 + 1800))
                .await
                .unwrap(),
            closed
        );
    }
    // A retry of the entry after the exit answers the trip as it stands.
    assert_eq!(
        tap_in(&p, entry(a, "g-in", "s1", "pingguoyuan", T0)).await,
        closed
    );
    let bus = tap_in(&p, boarding(a, "bus-1", "s3", "52", T0 + 7200)).await;
    assert_eq!(
        tap_in(&p, boarding(a, "bus-1", "s3", "52", T0 + 7200)).await,
        bus
    );
    exactly_one_charge_per_trip(&p, a, 2).await;
}

pub(crate) async fn a_double_tap_charges_once(store: Arc<dyn PaymentsStore>) {
    let p = payments(store);
    let a = linked(&p, 1).await;
    let opened = tap_in(&p, entry(a, "g-in-1", "s1", "xidan", T0)).await;
    // A second scan of the rider at the entry (another gate of the station, 5 s later).
    assert_eq!(
        tap_in(&p, entry(a, "g-in-2", "s2", "xidan", T0 + 5))
            .await
            .id,
        opened.id
    );
    let closed = p
        .tap_out(exit(a, "g-out-1", "s3", "pingguoyuan", T0 + 1800))
        .await
        .unwrap();
    let again = p
        .tap_out(exit(a, "g-out-2", "s4", "pingguoyuan", T0 + 1810))
        .await
        .unwrap();
    assert_eq!(
        again, closed,
        "a second exit scan is the same trip, not an exit without entry"
    );
    let bus = tap_in(&p, boarding(a, "bus-7", "s5", "52", T0 + 7200)).await;
    assert_eq!(
        tap_in(&p, boarding(a, "bus-7", "s6", "52", T0 + 7230))
            .await
            .id,
        bus.id
    );
    exactly_one_charge_per_trip(&p, a, 2).await;
}

pub(crate) async fn concurrent_tap_outs_of_one_scan_charge_once(store: Arc<dyn PaymentsStore>) {
    let p = payments(store);
    let a = linked(&p, 1).await;
    tap_in(&p, entry(a, "g-in", "s1", "pingguoyuan", T0)).await;
    let results = race(16, |_| {
        let p = p.clone();
        async move { p.tap_out(exit(a, "g-out", "s2", "xidan", T0 + 1800)).await }
    })
    .await;
    let trips: Vec<_> = results.into_iter().map(|r| r.unwrap()).collect();
    assert!(trips.iter().all(|t| *t == trips[0]), "{trips:#?}");
    assert_eq!(trips[0].status, TripStatus::Closed);
    exactly_one_charge_per_trip(&p, a, 1).await;
}

pub(crate) async fn concurrent_double_taps_charge_once(store: Arc<dyn PaymentsStore>) {
    let p = payments(store);
    let a = linked(&p, 1).await;
    let opened = tap_in(&p, entry(a, "g-in", "s1", "pingguoyuan", T0)).await;
    // Sixteen exit scans of one rider at once, each with its own scan id and gate.
    let results = race(16, |i| {
        let p = p.clone();
        async move {
            p.tap_out(exit(
                a,
                &format!("g-out-{i}"),
                &format!("x{i}"),
                "xidan",
                T0 + 1800,
            ))
            .await
        }
    })
    .await;
    for result in results {
        let trip = result.unwrap();
        assert_eq!((trip.id, trip.status), (opened.id, TripStatus::Closed));
    }
    exactly_one_charge_per_trip(&p, a, 1).await;
}

pub(crate) async fn concurrent_bus_taps_of_one_scan_charge_once(store: Arc<dyn PaymentsStore>) {
    let p = payments(store);
    let a = linked(&p, 1).await;
    let results = race(16, |_| {
        let p = p.clone();
        async move { p.tap_in(boarding(a, "bus-9", "s1", "944", T0)).await }
    })
    .await;
    let trips: Vec<_> = results
        .into_iter()
        .map(|r| match r.unwrap() {
            Tapped::Trip(trip) => *trip,
            Tapped::Refused(refusal) => panic!("{refusal:?}"),
        })
        .collect();
    assert!(trips.iter().all(|t| *t == trips[0]));
    exactly_one_charge_per_trip(&p, a, 1).await;
}

pub(crate) async fn concurrent_taps_of_one_rider_never_exceed_the_daily_cap(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store);
    let a = linked(&p, 1).await;
    // Sixteen 3-yuan bus rides of one rider, two minutes apart, arriving at once: the
    // rider's lock makes each see the others, so the day costs the 20-yuan cap, no more.
    let results = race(16, |i| {
        let p = p.clone();
        let at = T0 + 120 * u64::try_from(i).unwrap();
        async move {
            p.tap_in(boarding(
                a,
                &format!("bus-{i}"),
                &format!("s{i}"),
                "944",
                at,
            ))
            .await
        }
    })
    .await;
    let due: u64 = results
        .into_iter()
        .map(|r| match r.unwrap() {
            Tapped::Trip(trip) => trip.due().get(),
            Tapped::Refused(refusal) => panic!("{refusal:?}"),
        })
        .sum();
    assert_eq!(due, 2000);
    exactly_one_charge_per_trip(&p, a, 16).await;
    assert_eq!(ledger_balances(&p).await, 2000);
}
