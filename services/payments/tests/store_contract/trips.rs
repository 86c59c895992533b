//! Trips: opened, priced (bands, transfers, the daily cap, the maximum fare), refused,
//! and charged once each, with a balanced ledger and an outbox row per pending charge.

use std::sync::Arc;

use citypass_payments::charge::{ChargeKey, ChargeStatus, NO_PAYMENT_LINK};
use citypass_payments::outbox::OutboxStatus;
use citypass_payments::payments::Tapped;
use citypass_payments::tap::Refusal;
use citypass_payments::trip::{TapKey, TripStatus};
use citypass_payments::{Error, Fen, Mode, Payments, PaymentsStore};

use crate::support::{
    T0, all_trips, boarding, entry, exit, ledger_balances, linked, live_charges, payments, rider,
    tap_in,
};

pub(crate) async fn a_metro_trip_opens_at_entry_and_is_priced_at_exit(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store);
    let a = linked(&p, 1).await;
    let opened = tap_in(&p, entry(a, "g-in", "s1", "pingguoyuan", T0)).await;
    assert_eq!(opened.status, TripStatus::Open);
    assert_eq!(
        opened.id,
        TapKey::of("g-in", "s1"),
        "the trip id is the entry's key"
    );
    assert!(
        live_charges(&p, a).await.is_empty(),
        "nothing is charged at entry"
    );

    let closed = p
        .tap_out(exit(a, "g-out", "s2", "xidan", T0 + 1800))
        .await
        .unwrap();
    assert_eq!(closed.id, opened.id);
    assert_eq!(closed.status, TripStatus::Closed);
    let fare = closed.fare.clone().unwrap();
    assert_eq!((fare.distance_m, fare.due), (Some(16_149), Fen::new(500)));

    let charges = live_charges(&p, a).await;
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0].key, ChargeKey::of(&closed));
    assert_eq!(charges[0].amount, Fen::new(500));
    assert_eq!(charges[0].status, ChargeStatus::Pending);
    assert_eq!(charges[0].operator, "metro");
    let outbox = p.store().outbox(10).await.unwrap();
    assert_eq!(outbox.len(), 1, "the charge's outbox row, written with it");
    assert_eq!(
        (outbox[0].charge, outbox[0].status),
        (charges[0].key, OutboxStatus::Pending)
    );
    assert_eq!(ledger_balances(&p).await, 500);
    assert_eq!(all_trips(&p, a).await, vec![closed]);
}

pub(crate) async fn a_bus_tap_is_priced_at_once_and_a_change_is_discounted(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store);
    let a = linked(&p, 1).await;
    let bus = tap_in(&p, boarding(a, "bus-52-1", "s1", "52", T0)).await;
    assert_eq!((bus.mode, bus.status), (Mode::Bus, TripStatus::Closed));
    assert_eq!(bus.fare.as_ref().unwrap().due, Fen::new(200));
    assert_eq!(bus.fare.as_ref().unwrap().operator, "bjbus");

    // Into the metro 30 minutes later: 1 yuan off the 5.
    tap_in(&p, entry(a, "g-in", "s2", "pingguoyuan", T0 + 1800)).await;
    let metro = p
        .tap_out(exit(a, "g-out", "s3", "xidan", T0 + 3600))
        .await
        .unwrap();
    let fare = metro.fare.unwrap();
    assert_eq!(
        (fare.base, fare.transfer, fare.due),
        (Fen::new(500), Fen::new(100), Fen::new(400))
    );

    // Back on a bus 10 minutes later: no second discount in the chain.
    let back = tap_in(&p, boarding(a, "bus-52-2", "s4", "52", T0 + 4200)).await;
    assert_eq!(back.fare.unwrap().due, Fen::new(200));
    assert_eq!(live_charges(&p, a).await.len(), 3);
    assert_eq!(ledger_balances(&p).await, 800);
}

pub(crate) async fn the_daily_cap_counts_the_days_earlier_trips(store: Arc<dyn PaymentsStore>) {
    let p = payments(store);
    let a = linked(&p, 1).await;
    let mut dues = Vec::new();
    // Four 7-yuan trips from 16:00 Beijing time; the cap is 20 yuan a day.
    for i in 0..4u64 {
        let at = T0 + i * 3600;
        tap_in(&p, entry(a, "g-in", &format!("in{i}"), "pingguoyuan", at)).await;
        let trip = p
            .tap_out(exit(a, "g-out", &format!("out{i}"), "tuqiao", at + 3000))
            .await
            .unwrap();
        dues.push(trip.fare.unwrap().due.get());
    }
    assert_eq!(dues, vec![700, 700, 600, 0]);
    assert_eq!(
        live_charges(&p, a).await.len(),
        3,
        "a zero fare is not charged"
    );
    // The next day (from 00:00 Beijing, 16:00 UTC) starts afresh.
    let next_day = T0 + 86_400;
    tap_in(&p, entry(a, "g-in", "next", "pingguoyuan", next_day)).await;
    let trip = p
        .tap_out(exit(a, "g-out", "next-out", "tuqiao", next_day + 3000))
        .await
        .unwrap();
    assert_eq!(trip.fare.unwrap().due, Fen::new(700));
    assert_eq!(ledger_balances(&p).await, 2700);
}

pub(crate) async fn a_missing_tap_costs_the_maximum_fare(store: Arc<dyn PaymentsStore>) {
    let p = payments(store);
    // An exit without an entry.
    let a = linked(&p, 1).await;
    let unmatched = p
        .tap_out(exit(a, "g-out", "s1", "xidan", T0))
        .await
        .unwrap();
    assert_eq!(unmatched.status, TripStatus::Unmatched);
    assert_eq!(unmatched.entry, None);
    assert_eq!(unmatched.fare.unwrap().due, Fen::new(1000));

    // An entry never exited: closed by the expiry pass once 4 h have passed, not before.
    let b = linked(&p, 2).await;
    let open = tap_in(&p, entry(b, "g-in", "s2", "xidan", T0)).await;
    assert!(
        p.expire_open_trips(T0 + 4 * 3600 - 1)
            .await
            .unwrap()
            .closed
            .is_empty()
    );
    let closed = p.expire_open_trips(T0 + 4 * 3600).await.unwrap().closed;
    assert_eq!(closed.len(), 1);
    assert_eq!(
        (closed[0].id, closed[0].status),
        (open.id, TripStatus::Unmatched)
    );
    assert_eq!(closed[0].fare.as_ref().unwrap().due, Fen::new(1000));
    assert!(
        p.expire_open_trips(T0 + 5 * 3600)
            .await
            .unwrap()
            .closed
            .is_empty(),
        "once"
    );

    // An entry never exited, then another entry after 4 h: the first is closed at the
    // maximum fare, the second opens.
    let c = linked(&p, 3).await;
    let first = tap_in(&p, entry(c, "g-in", "s3", "xidan", T0)).await;
    let second = tap_in(&p, entry(c, "g-in", "s4", "xidan", T0 + 5 * 3600)).await;
    assert_eq!(second.status, TripStatus::Open);
    let trips = all_trips(&p, c).await;
    assert_eq!(trips[1].id, first.id);
    assert_eq!(trips[1].status, TripStatus::Unmatched);
    // Exiting a trip open too long costs the maximum fare, once.
    let late = p
        .tap_out(exit(c, "g-out", "s5", "xidan", T0 + 10 * 3600))
        .await
        .unwrap();
    assert_eq!((late.id, late.status), (second.id, TripStatus::Unmatched));
    assert_eq!(live_charges(&p, c).await.len(), 2);
    assert_eq!(ledger_balances(&p).await, 4000);
}

pub(crate) async fn refused_taps_change_nothing(store: Arc<dyn PaymentsStore>) {
    let p = payments(store);
    let stranger = rider(9);
    assert_eq!(
        p.tap_in(entry(stranger, "g-in", "s1", "xidan", T0))
            .await
            .unwrap(),
        Tapped::Refused(Refusal::NoPaymentLink)
    );
    assert!(matches!(
        p.tap_out(exit(stranger, "g-out", "s2", "xidan", T0)).await,
        Err(Error::NoPaymentLink)
    ));
    assert!(all_trips(&p, stranger).await.is_empty());

    let a = linked(&p, 1).await;
    assert!(matches!(
        p.tap_in(entry(a, "g-in", "s3", "no-such-station", T0))
            .await,
        Err(Error::UnknownStation)
    ));
    assert!(matches!(
        p.tap_in(boarding(a, "bus", "s4", "no-such-route", T0))
            .await,
        Err(Error::UnknownRoute)
    ));
    assert!(matches!(
        p.tap_in(entry(a, "g in", "s5", "xidan", T0)).await,
        Err(Error::InvalidArgument {
            field: "gate_id",
            ..
        })
    ));
    assert!(matches!(
        p.tap_in(entry(a, "g-in", "s5", "xidan", 0)).await,
        Err(Error::InvalidArgument {
            field: "tapped_at",
            ..
        })
    ));
    assert!(all_trips(&p, a).await.is_empty());

    tap_in(&p, entry(a, "g-in", "s6", "xidan", T0)).await;
    assert_eq!(
        p.tap_in(entry(a, "g-in-2", "s7", "pingguoyuan", T0 + 600))
            .await
            .unwrap(),
        Tapped::Refused(Refusal::TripAlreadyOpen)
    );
    assert!(matches!(
        p.tap_out(exit(a, "g-out", "s8", "no-such-station", T0 + 900))
            .await,
        Err(Error::UnknownStation)
    ));
    assert_eq!(all_trips(&p, a).await.len(), 1);
    let (report, verdict) = p.check_ledger().await.unwrap();
    assert_eq!((report.charges, verdict), (0, Ok(())));
}

pub(crate) async fn a_charge_without_a_link_is_arrears_and_blocks_entry(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store);
    let a = linked(&p, 1).await;
    tap_in(&p, entry(a, "g-in", "s1", "pingguoyuan", T0)).await;
    p.unlink(a, T0 + 60).await.unwrap();
    // The rider can still leave; the fare is owed.
    let trip = p
        .tap_out(exit(a, "g-out", "s2", "xidan", T0 + 1800))
        .await
        .unwrap();
    assert_eq!(trip.status, TripStatus::Closed);
    let arrears = p.arrears(a).await.unwrap();
    assert_eq!(arrears.total, Fen::new(500));
    assert_eq!(arrears.charges.len(), 1);
    assert_eq!(arrears.charges[0].status, ChargeStatus::Declined);
    assert_eq!(
        arrears.charges[0].decline_code.as_deref(),
        Some(NO_PAYMENT_LINK)
    );
    assert!(
        p.store().outbox(10).await.unwrap().is_empty(),
        "nothing to send"
    );

    p.link(crate::support::link_request(a), T0 + 2000)
        .await
        .unwrap();
    assert_eq!(
        p.tap_in(entry(a, "g-in", "s3", "xidan", T0 + 2100))
            .await
            .unwrap(),
        Tapped::Refused(Refusal::Arrears)
    );
    assert_eq!(ledger_balances(&p).await, 500);
}

/// An expiry pass in which one rider's closing fails goes on with the others, counts
/// the failure, and closes that rider's trip at the next pass.
pub(crate) async fn an_expiry_pass_goes_on_past_a_failing_rider(store: Arc<dyn PaymentsStore>) {
    let p = payments(store.clone());
    let mut riders = Vec::new();
    for n in 1..=3u8 {
        let a = linked(&p, n).await;
        // Started in order, so the failing rider (the first) is listed first.
        tap_in(
            &p,
            entry(a, "g-in", &format!("s{n}"), "xidan", T0 + u64::from(n)),
        )
        .await;
        riders.push(a);
    }
    let faulty = crate::support::Faulty {
        settle: None,
        rider: Some(riders[0]),
        inner: store.clone(),
    };
    let with_fault = Payments::new(Arc::new(faulty), p.rules().clone());
    let expired = with_fault
        .expire_open_trips(T0 + 5 * 3600)
        .await
        .expect("one rider's failure does not fail the pass");
    assert_eq!((expired.closed.len(), expired.failed), (2, 1));
    assert_eq!(all_trips(&p, riders[0]).await[0].status, TripStatus::Open);
    for &a in &riders[1..] {
        assert_eq!(all_trips(&p, a).await[0].status, TripStatus::Unmatched);
    }
    let expired = p.expire_open_trips(T0 + 5 * 3600 + 60).await.unwrap();
    assert_eq!((expired.closed.len(), expired.failed), (1, 0));
    ledger_balances(&p).await;
}

/// The state a tap is decided on holds the rider's trips from two days before the
/// earlier of the tap and the open trip's start (`window_start`): with an open trip
/// started days before the tap, the trips between the two bounds are there too (the
/// PostgreSQL store reads that part with a statement of its own), and older ones are
/// not.
pub(crate) async fn the_state_holds_the_window_an_open_trip_widens(store: Arc<dyn PaymentsStore>) {
    use citypass_payments::decision::{Answer, Decision, Write};
    use std::sync::Mutex;

    const DAY: u64 = 86_400;
    let p = payments(store.clone());
    let a = linked(&p, 1).await;
    // Bus rides at T0 (before the window), T0 + 2 days (between the bounds) and
    // T0 + 4 days (after the tap's own bound), written as the bus tap at T0 wrote its
    // trip; the metro trip opened at T0 + 3 days; the state read at T0 + 5.5 days.
    let first = tap_in(&p, boarding(a, "bus-g", "s0", "52", T0)).await;
    let ride = |scan: &str, at: u64| {
        let mut trip = first.clone();
        trip.id = TapKey::of("bus-g", scan);
        if let Some(e) = trip.entry.as_mut() {
            e.scan_id = scan.to_owned();
            e.at = at;
        }
        trip
    };
    let (between, after) = (ride("s2", T0 + 2 * DAY), ride("s4", T0 + 4 * DAY));
    let at = T0 + 11 * DAY / 2;
    let rides = [between.clone(), after.clone()];
    let put = |_: &_| {
        Ok(Decision {
            writes: rides.iter().cloned().map(Write::PutTrip).collect(),
            answer: Answer::Nothing,
        })
    };
    store.with_rider(a, None, at, &put).await.unwrap();
    let open = tap_in(&p, entry(a, "g-in", "s3", "xidan", T0 + 3 * DAY)).await;
    assert_eq!(open.status, TripStatus::Open);

    let seen = Mutex::new(None);
    let inspect = |state: &citypass_payments::decision::RiderState| {
        let mut recent: Vec<_> = state.recent.iter().map(|t| t.id).collect();
        recent.sort_by_key(|id| id.0);
        *seen.lock().unwrap() = Some((state.open.as_ref().map(|t| t.id), recent));
        Ok(Decision::answer(Answer::Nothing))
    };
    store.with_rider(a, None, at, &inspect).await.unwrap();
    let mut expected = vec![between.id, after.id];
    expected.sort_by_key(|id| id.0);
    assert_eq!(
        seen.lock().unwrap().take(),
        Some((Some(open.id), expected)),
        "the open trip, and the rides from two days before its start on (not the first)"
    );
}

/// Both stores agree where they used to drift: a trip written again replaces every
/// field; an unlink dated before the link is clamped to the link's time; a write that
/// a unique index refuses (a second open trip, a second live charge of a trip) gives
/// the same error on both.
pub(crate) async fn both_stores_write_and_refuse_alike(store: Arc<dyn PaymentsStore>) {
    use citypass_payments::charge::Charge;
    use citypass_payments::decision::{Answer, Decision, Write};

    let p = payments(store.clone());
    let a = linked(&p, 1).await;
    let opened = tap_in(&p, entry(a, "g-in", "s1", "xidan", T0)).await;
    let write = |writes: Vec<Write>| {
        let store = store.clone();
        async move {
            let decide = move |_: &_| {
                Ok(Decision {
                    writes: writes.clone(),
                    answer: Answer::Nothing,
                })
            };
            store.with_rider(a, None, T0 + 10, &decide).await
        }
    };
    // The whole trip replaced: entry, fare class and start too.
    let mut changed = opened.clone();
    changed.fare_class = citypass_payments::FareClass::Student;
    if let Some(e) = changed.entry.as_mut() {
        e.gate_id = "g-other".to_owned();
        e.place = "pingguoyuan".to_owned();
        e.scan_id = "s-other".to_owned();
        e.at = T0 + 5;
    }
    write(vec![Write::PutTrip(changed.clone())]).await.unwrap();
    let stored = store.trip(a, opened.id).await.unwrap().unwrap().trip;
    assert_eq!(stored, changed);

    // A second open trip: refused alike.
    let mut second = changed.clone();
    second.id = TapKey::of("g-in", "s-second");
    match write(vec![Write::PutTrip(second)]).await {
        Err(Error::Corrupt(what)) => assert_eq!(what, "a second open trip"),
        other => panic!("{other:?}"),
    }

    // A second live charge of one trip: refused alike.
    let closed = p
        .tap_out(exit(a, "g-out", "s2", "xidan", T0 + 1800))
        .await
        .unwrap();
    let charge: Charge = live_charges(&p, a).await.remove(0);
    assert_eq!(charge.trip, closed.id);
    let again = Charge {
        key: ChargeKey([9; 16]),
        provider_key: ChargeKey([9; 16]),
        ..charge
    };
    match write(vec![Write::Charge(again)]).await {
        Err(Error::Corrupt(what)) => assert_eq!(what, "a second live charge for one trip"),
        other => panic!("{other:?}"),
    }
    assert_eq!(live_charges(&p, a).await.len(), 1);

    // An unlink dated before the link: at the link's time.
    let b = rider(2);
    let made = p.link(crate::support::link_request(b), T0).await.unwrap();
    let ended = p.unlink(b, T0 - 100).await.unwrap();
    assert_eq!(ended.unlinked_at, Some(made.linked_at));
    ledger_balances(&p).await;
}
