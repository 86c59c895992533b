//! Late taps: what offline gates took, uploaded through the verifier after the fact
//! (RecordOfflineTap). An offline entry and an online exit make one trip at the right
//! fare in either order: uploaded first, it opens the trip; uploaded after the exit
//! (charged the maximum fare as an exit without entry), it re-prices that trip and the
//! difference is refunded in the ledger, once, under retries and concurrency.

use std::sync::Arc;

use citypass_payments::charge::ChargeStatus;
use citypass_payments::outbox::Settlement;
use citypass_payments::payments::Tapped;
use citypass_payments::tap::{LateKind, LateTap, Refusal};
use citypass_payments::trip::{Trip, TripStatus};
use citypass_payments::{Error, FareClass, Fen, Payments, PaymentsStore, TransitAccount};

use crate::support::{
    T0, all_trips, boarding, entry, exit, ledger_balances, linked, live_charges, payments, race,
    rider, tap_in, void,
};

fn late(
    account: TransitAccount,
    kind: LateKind,
    gate: &str,
    scan: &str,
    place: &str,
    at: u64,
) -> LateTap {
    LateTap {
        account,
        kind,
        gate_id: gate.to_owned(),
        scan_id: scan.to_owned(),
        place: place.to_owned(),
        at,
        fare_class: FareClass::Adult,
    }
}

/// The trip a late tap recorded (panics on a refusal).
async fn late_tap(p: &Payments, tap: LateTap, now: u64) -> Trip {
    match p.late_tap(tap, now).await.unwrap() {
        Tapped::Trip(trip) => *trip,
        Tapped::Refused(refusal) => panic!("refused: {refusal:?}"),
    }
}

fn due(trip: &Trip) -> Fen {
    trip.fare.as_ref().map_or(Fen::ZERO, |f| f.due)
}

/// The ledger's refund postings and their sum.
async fn refunds(p: &Payments) -> (u64, i128) {
    let (report, _) = p.check_ledger().await.unwrap();
    (report.refund_postings, report.refunded)
}

pub(crate) async fn an_offline_entry_uploaded_before_the_exit_opens_the_trip(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store);
    let a = linked(&p, 1).await;
    let entry = late(a, LateKind::MetroEntry, "off-in", "s1", "pingguoyuan", T0);
    let opened = late_tap(&p, entry.clone(), T0 + 600).await;
    assert_eq!(opened.status, TripStatus::Open);
    assert_eq!(
        opened.entry.as_ref().unwrap().at,
        T0,
        "entered at the scan's time"
    );
    // The upload retried: the same trip, nothing new.
    assert_eq!(late_tap(&p, entry.clone(), T0 + 700).await, opened);

    let closed = p
        .tap_out(exit(a, "g-out", "s2", "xidan", T0 + 1800))
        .await
        .unwrap();
    assert_eq!((closed.id, closed.status), (opened.id, TripStatus::Closed));
    assert_eq!(due(&closed), Fen::new(500));
    // Retried once more after the exit: still the one trip, charged once.
    assert_eq!(late_tap(&p, entry, T0 + 2000).await, closed);
    assert_eq!(all_trips(&p, a).await, vec![closed]);
    assert_eq!(live_charges(&p, a).await.len(), 1);
    assert_eq!(ledger_balances(&p).await, 500);
    assert_eq!(refunds(&p).await, (0, 0));
}

pub(crate) async fn an_offline_entry_uploaded_after_the_exit_reprices_the_trip(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store);
    let a = linked(&p, 1).await;
    let unmatched = p
        .tap_out(exit(a, "g-out", "s2", "xidan", T0 + 1800))
        .await
        .unwrap();
    assert_eq!(unmatched.status, TripStatus::Unmatched);
    assert_eq!(due(&unmatched), Fen::new(1000));
    // The provider took the maximum fare before the upload.
    let charge = live_charges(&p, a).await.remove(0);
    assert!(p.store().dispatch(charge.key).await.unwrap());
    p.store()
        .settle(charge.key, Settlement::Approved, T0 + 1900)
        .await
        .unwrap();

    let entry = late(a, LateKind::MetroEntry, "off-in", "s1", "pingguoyuan", T0);
    let repriced = late_tap(&p, entry.clone(), T0 + 2400).await;
    assert_eq!(repriced.id, unmatched.id, "the same trip");
    assert_eq!(repriced.status, TripStatus::Closed);
    assert_eq!(repriced.entry.as_ref().unwrap().place, "pingguoyuan");
    assert_eq!(repriced.exit, unmatched.exit);
    assert_eq!(due(&repriced), Fen::new(500));
    assert_eq!(refunds(&p).await, (1, 500), "the difference, returned");
    // The charge stays what the provider took; the ledger holds the refund.
    let charges = live_charges(&p, a).await;
    assert_eq!(charges.len(), 1);
    assert_eq!(
        (charges[0].amount, charges[0].status),
        (Fen::new(1000), ChargeStatus::Succeeded)
    );
    assert_eq!(ledger_balances(&p).await, 500, "the operator is due 5 yuan");
    // The day's settlement: the metro charged 10 yuan, the provider confirmed them, and
    // 5 come off the payout, owed back to the rider.
    let settlement = p.settlement(p.rules().day_of(T0)).await.unwrap();
    assert_eq!(settlement.lines.len(), 1);
    let metro = &settlement.lines[0];
    assert_eq!(
        (
            metro.operator.as_str(),
            metro.due,
            metro.confirmed,
            metro.refunded
        ),
        ("metro", Fen::new(1000), Fen::new(1000), Fen::new(500))
    );
    assert!(
        settlement
            .to_csv()
            .ends_with("metro,1,10.00,10.00,0.00,0.00,5.00\n")
    );

    // Retried, and retried at once by several verifiers: nothing more.
    let results = race(8, |_| {
        let (p, entry) = (p.clone(), entry.clone());
        async move { p.late_tap(entry, T0 + 2500).await }
    })
    .await;
    for result in results {
        assert_eq!(result.unwrap(), Tapped::Trip(Box::new(repriced.clone())));
    }
    assert_eq!(refunds(&p).await, (1, 500));
    assert_eq!(all_trips(&p, a).await, vec![repriced]);
    assert_eq!(ledger_balances(&p).await, 500);
    // A refunded charge is not cancelled afterwards.
    assert!(p.void(void(a, "g-out", "s2", T0 + 1805)).await.is_err());
    assert_eq!(ledger_balances(&p).await, 500);
}

pub(crate) async fn an_offline_entry_racing_the_online_exit_makes_one_trip(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store);
    for n in 1..=6u8 {
        let a = linked(&p, n).await;
        let results = race(2, |i| {
            let p = p.clone();
            async move {
                if i == 0 {
                    let scan = format!("in-{n}");
                    let entry = late(a, LateKind::MetroEntry, "off-in", &scan, "pingguoyuan", T0);
                    p.late_tap(entry, T0 + 2000).await.map(|_| ())
                } else {
                    p.tap_out(exit(a, "g-out", &format!("out-{n}"), "xidan", T0 + 1800))
                        .await
                        .map(|_| ())
                }
            }
        })
        .await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let trips = all_trips(&p, a).await;
        assert_eq!(trips.len(), 1, "one trip whichever came first");
        assert_eq!(
            (trips[0].status, due(&trips[0])),
            (TripStatus::Closed, Fen::new(500))
        );
    }
    // Each rider is due 5 yuan net of any refund.
    assert_eq!(ledger_balances(&p).await, 6 * 500);
}

pub(crate) async fn a_repriced_trip_takes_the_transfer_and_the_daily_cap(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store);
    // A bus, then the metro within 90 minutes: the change is discounted once the trip
    // has its entry, as for any trip.
    let a = linked(&p, 1).await;
    tap_in(&p, boarding(a, "bus-52-1", "b1", "52", T0)).await;
    p.tap_out(exit(a, "g-out", "s3", "xidan", T0 + 3600))
        .await
        .unwrap();
    let entry = late(
        a,
        LateKind::MetroEntry,
        "off-in",
        "s2",
        "pingguoyuan",
        T0 + 1800,
    );
    let repriced = late_tap(&p, entry, T0 + 4000).await;
    let fare = repriced.fare.unwrap();
    assert_eq!(
        (fare.base, fare.transfer, fare.due),
        (Fen::new(500), Fen::new(100), Fen::new(400))
    );

    // The daily cap: 20 yuan of earlier trips that day leave nothing to pay.
    let b = linked(&p, 2).await;
    for i in 0..2u64 {
        p.tap_out(exit(b, "g-out", &format!("x{i}"), "xidan", T0 + i * 600))
            .await
            .unwrap();
    }
    let unmatched = p
        .tap_out(exit(b, "g-out", "x9", "xidan", T0 + 7200))
        .await
        .unwrap();
    assert_eq!(due(&unmatched), Fen::ZERO, "capped already");
    let entry = late(
        b,
        LateKind::MetroEntry,
        "off-in",
        "y1",
        "pingguoyuan",
        T0 + 5400,
    );
    let repriced = late_tap(&p, entry, T0 + 7300).await;
    assert_eq!(repriced.status, TripStatus::Closed);
    assert_eq!(due(&repriced), Fen::ZERO, "never charged beyond the cap");
    let (report, verdict) = p.check_ledger().await.unwrap();
    assert_eq!(verdict, Ok(()), "{report:?}");
    assert_eq!(report.refund_postings, 1, "rider a's only");
}

pub(crate) async fn an_offline_tap_of_a_trip_closed_by_the_expiry_pass(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store);
    // Uploaded after the longest trip: closed at once, as the expiry pass would have.
    let a = linked(&p, 1).await;
    let entry = late(a, LateKind::MetroEntry, "off-in", "s1", "pingguoyuan", T0);
    let closed = late_tap(&p, entry, T0 + 5 * 3600).await;
    assert_eq!(closed.status, TripStatus::Unmatched);
    assert_eq!(due(&closed), Fen::new(1000));
    assert!(
        p.expire_open_trips(T0 + 6 * 3600)
            .await
            .unwrap()
            .closed
            .is_empty(),
        "nothing left open"
    );
    // The rider can enter online at once.
    let next = tap_in(&p, entry_at(a, T0 + 5 * 3600 + 10)).await;
    assert_eq!(next.status, TripStatus::Open);

    // An offline entry uploaded in time, its exit's gate offline too: the expiry pass
    // closes the trip at the maximum fare; the exit uploaded later re-prices it.
    let b = linked(&p, 2).await;
    let entry = late(b, LateKind::MetroEntry, "off-in", "t1", "pingguoyuan", T0);
    let opened = late_tap(&p, entry.clone(), T0 + 600).await;
    let expired = p.expire_open_trips(T0 + 4 * 3600).await.unwrap().closed;
    assert_eq!(expired.iter().filter(|t| t.id == opened.id).count(), 1);
    // The entry's upload retried after the expiry: the closed trip, nothing new.
    let again = late_tap(&p, entry, T0 + 4 * 3600 + 5).await;
    assert_eq!((again.id, again.status), (opened.id, TripStatus::Unmatched));
    let exit = late(b, LateKind::MetroExit, "off-out", "t2", "xidan", T0 + 1800);
    let repriced = late_tap(&p, exit.clone(), T0 + 4 * 3600 + 10).await;
    assert_eq!(
        (repriced.id, repriced.status, due(&repriced)),
        (opened.id, TripStatus::Closed, Fen::new(500))
    );
    assert_eq!(late_tap(&p, exit, T0 + 4 * 3600 + 20).await, repriced);
    assert_eq!(all_trips(&p, b).await, vec![repriced]);
    assert_eq!(refunds(&p).await, (1, 500));
    // a: 10 yuan, b: 5 yuan net.
    assert_eq!(ledger_balances(&p).await, 1500);
}

fn entry_at(account: TransitAccount, at: u64) -> citypass_payments::tap::TapIn {
    entry(account, "g-in", "online-1", "gucheng", at)
}

pub(crate) async fn offline_bus_taps_are_flat_fares(store: Arc<dyn PaymentsStore>) {
    let p = payments(store);
    let a = linked(&p, 1).await;
    let bus = late(a, LateKind::Bus, "bus-52-7", "b1", "52", T0);
    let ride = late_tap(&p, bus.clone(), T0 + 900).await;
    assert_eq!(
        (ride.status, due(&ride)),
        (TripStatus::Closed, Fen::new(200))
    );
    assert_eq!(late_tap(&p, bus, T0 + 950).await, ride);
    assert_eq!(live_charges(&p, a).await.len(), 1);
    // An unknown station is refused outright.
    let bad = late(a, LateKind::MetroEntry, "off-in", "z2", "atlantis", T0);
    assert!(p.late_tap(bad, T0 + 60).await.is_err());
    assert_eq!(ledger_balances(&p).await, 200);
}

/// The rider's charges, each DECLINED `NO_PAYMENT_LINK`, and their sum.
async fn declined_without_link(p: &Payments, account: TransitAccount) -> Fen {
    let charges = live_charges(p, account).await;
    assert!(!charges.is_empty());
    for charge in &charges {
        assert_eq!(
            (charge.status, charge.decline_code.as_deref()),
            (ChargeStatus::Declined, Some("NO_PAYMENT_LINK")),
            "{charge:?}"
        );
    }
    p.arrears(account).await.unwrap().total
}

/// Finding 3: a rider rode offline and unlinked before the upload; the ride is not
/// free: the trip is recorded with a DECLINED charge (arrears), as the expiry pass
/// records one.
pub(crate) async fn late_tap_finding_3_a_late_tap_without_a_link_is_owed_as_arrears(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store);
    let now = T0 + 5 * 3600;
    // Rode offline (bus), unlinked, uploaded, relinked: refused for the arrears.
    let a = linked(&p, 1).await;
    p.unlink(a, T0 + 100).await.unwrap();
    let ride = late_tap(&p, late(a, LateKind::Bus, "bus-52-7", "b1", "52", T0), now).await;
    assert_eq!(
        (ride.status, due(&ride)),
        (TripStatus::Closed, Fen::new(200))
    );
    assert_eq!(declined_without_link(&p, a).await, Fen::new(200));
    p.link(crate::support::link_request(a), now + 10)
        .await
        .unwrap();
    assert_eq!(
        p.tap_in(entry(a, "g-in", "n1", "gucheng", now + 20))
            .await
            .unwrap(),
        Tapped::Refused(Refusal::Arrears)
    );

    // Never linked: an exit without an entry, an entry past the longest trip.
    let b = rider(9);
    let exit_only = late(b, LateKind::MetroExit, "off-out", "x1", "xidan", T0);
    let unmatched = late_tap(&p, exit_only, now).await;
    assert_eq!(
        (unmatched.status, due(&unmatched)),
        (TripStatus::Unmatched, Fen::new(1000))
    );
    assert_eq!(declined_without_link(&p, b).await, Fen::new(1000));
    let c = rider(10);
    let overstayed = late(c, LateKind::MetroEntry, "off-in", "e1", "pingguoyuan", T0);
    let closed = late_tap(&p, overstayed, now).await;
    assert_eq!(
        (closed.status, due(&closed)),
        (TripStatus::Unmatched, Fen::new(1000))
    );
    assert_eq!(declined_without_link(&p, c).await, Fen::new(1000));
    // An entry in time opens the trip; the expiry pass charges it as arrears.
    let d = rider(11);
    let entry_in_time = late(d, LateKind::MetroEntry, "off-in", "e2", "pingguoyuan", T0);
    let opened = late_tap(&p, entry_in_time, T0 + 600).await;
    assert_eq!(opened.status, TripStatus::Open);
    p.expire_open_trips(T0 + 4 * 3600).await.unwrap();
    assert_eq!(declined_without_link(&p, d).await, Fen::new(1000));
    let (_, verdict) = p.check_ledger().await.unwrap();
    assert_eq!(verdict, Ok(()));
}

/// Finding 5: a re-priced trip is priced against the trips before it, and its refund
/// never takes the day below what the daily cap gives for the whole day.
pub(crate) async fn late_tap_finding_5_a_refund_never_takes_the_day_below_the_cap(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store);
    // Three exits without entry: 10 + 10 + 0 yuan (capped at 20, the third's 10 let
    // off). The first one's entry uploaded: 5 yuan, but then the third would have
    // cost 5: the day stays at 20, nothing to return.
    let a = linked(&p, 1).await;
    for (scan, at) in [("x1", T0 + 1800), ("x2", T0 + 3600), ("x3", T0 + 7200)] {
        p.tap_out(exit(a, "g-out", scan, "xidan", at))
            .await
            .unwrap();
    }
    assert_eq!(ledger_balances(&p).await, 2000);
    let entry = late(a, LateKind::MetroEntry, "off-in", "e1", "pingguoyuan", T0);
    let repriced = late_tap(&p, entry, T0 + 7300).await;
    assert_eq!(repriced.status, TripStatus::Closed);
    assert_eq!(refunds(&p).await, (0, 0));
    assert_eq!(ledger_balances(&p).await, 2000, "the day's cap, kept");

    // 10 + 10 yuan, then a bus ride capped to 0 (2 let off): the entry brings the
    // first trip to 5, the day to min(20, 5 + 10 + 2) = 17: 3 returned, not 5.
    let b = linked(&p, 2).await;
    for (scan, at) in [("y1", T0 + 1800), ("y2", T0 + 3600)] {
        p.tap_out(exit(b, "g-out", scan, "xidan", at))
            .await
            .unwrap();
    }
    let bus = tap_in(&p, boarding(b, "bus-52-1", "yb", "52", T0 + 12_000)).await;
    assert_eq!(due(&bus), Fen::ZERO);
    let entry = late(b, LateKind::MetroEntry, "off-in", "f1", "pingguoyuan", T0);
    let repriced = late_tap(&p, entry, T0 + 12_100).await;
    assert_eq!(repriced.status, TripStatus::Closed);
    assert_eq!(due(&repriced), Fen::new(700));
    assert_eq!(refunds(&p).await, (1, 300));
    assert_eq!(ledger_balances(&p).await, 2000 + 1700);
}

/// Finding 6: a late tap, or a tap of a trip a late tap completed, is not voided.
pub(crate) async fn late_tap_finding_6_late_taps_and_repriced_trips_are_not_voided(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store);
    let refused = |result: Result<Trip, Error>| {
        let err = result.unwrap_err();
        assert!(matches!(err, Error::LateTapNotVoidable), "{err:?}");
    };
    let a = linked(&p, 1).await;
    // A bus boarding uploaded at once: its void does not make the ride free.
    late_tap(
        &p,
        late(a, LateKind::Bus, "bus-52-7", "b1", "52", T0),
        T0 + 3,
    )
    .await;
    refused(p.void(void(a, "bus-52-7", "b1", T0 + 5)).await);
    // A late exit closes the online entry's trip: neither tap reopens or voids it.
    tap_in(&p, entry(a, "g-in", "e1", "gucheng", T0 + 600)).await;
    let exit_late = late(a, LateKind::MetroExit, "off-out", "o1", "xidan", T0 + 1800);
    let closed = late_tap(&p, exit_late, T0 + 1802).await;
    assert_eq!(closed.status, TripStatus::Closed);
    refused(p.void(void(a, "off-out", "o1", T0 + 1805)).await);
    refused(p.void(void(a, "g-in", "e1", T0 + 605)).await);
    // An exit without entry re-priced by the entry uploaded: the exit stands.
    p.tap_out(exit(a, "g-out", "o2", "xidan", T0 + 9000))
        .await
        .unwrap();
    let entry_late = late(
        a,
        LateKind::MetroEntry,
        "off-in",
        "i2",
        "pingguoyuan",
        T0 + 8000,
    );
    late_tap(&p, entry_late, T0 + 9002).await;
    refused(p.void(void(a, "g-out", "o2", T0 + 9005)).await);
    assert_eq!(live_charges(&p, a).await.len(), 3);

    // Without a link: the DECLINED charge (arrears) is not cleared by a void.
    let b = rider(9);
    late_tap(
        &p,
        late(b, LateKind::MetroExit, "off-out", "x1", "xidan", T0),
        T0 + 2,
    )
    .await;
    refused(p.void(void(b, "off-out", "x1", T0 + 4)).await);
    assert_eq!(p.arrears(b).await.unwrap().total, Fen::new(1000));
    let trips = all_trips(&p, a).await;
    assert!(
        trips
            .iter()
            .all(|t| t.status != TripStatus::Voided && t.status != TripStatus::Open)
    );
}

/// Finding 7: a late tap's charge is stamped when it arrives, not at the scan time,
/// so it never lands in a day already settled; the trip keeps the scan time.
pub(crate) async fn late_tap_finding_7_late_charges_are_stamped_when_they_arrive(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store);
    let now = T0 + 2 * 86_400;
    let a = linked(&p, 1).await;
    let ride = late_tap(&p, late(a, LateKind::Bus, "bus-52-7", "b1", "52", T0), now).await;
    assert_eq!(ride.entry.as_ref().unwrap().at, T0);
    tap_in(&p, entry(a, "g-in", "e1", "gucheng", now - 600)).await;
    let exit_late = late(a, LateKind::MetroExit, "off-out", "o1", "xidan", now - 60);
    late_tap(&p, exit_late, now).await;
    let exit_only = late(a, LateKind::MetroExit, "off-out", "o2", "xidan", T0 + 3600);
    late_tap(&p, exit_only, now + 5).await;
    let b = rider(9);
    late_tap(
        &p,
        late(b, LateKind::Bus, "bus-52-7", "b2", "52", T0),
        now + 5,
    )
    .await;
    for account in [a, b] {
        for charge in live_charges(&p, account).await {
            assert!(charge.created_at >= now, "{charge:?}");
            assert!(charge.settled_at.is_none_or(|at| at >= now), "{charge:?}");
        }
    }
    // The scan's day, settled already, is left as it was reported.
    let settled = p.settlement(p.rules().day_of(T0)).await.unwrap();
    assert!(settled.lines.is_empty(), "{settled:?}");
}

pub(crate) async fn a_voided_trip_does_not_stand_between_an_entry_and_its_exit(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store);
    let a = linked(&p, 1).await;
    // The offline entry at T0; an online entry at T0+600 whose turnstile did not turn
    // (voided); the online exit at T0+1800 without an entry: the maximum fare.
    let voided = tap_in(&p, entry(a, "g-in", "v1", "gucheng", T0 + 600)).await;
    p.void(void(a, "g-in", "v1", T0 + 605)).await.unwrap();
    let unmatched = p
        .tap_out(exit(a, "g-out", "v2", "xidan", T0 + 1800))
        .await
        .unwrap();
    assert_eq!(unmatched.status, TripStatus::Unmatched);
    // The entry uploaded: it completes the exit, the voided trip aside.
    let entry = late(a, LateKind::MetroEntry, "off-in", "v0", "pingguoyuan", T0);
    let repriced = late_tap(&p, entry, T0 + 2000).await;
    assert_eq!(
        (repriced.id, repriced.status, due(&repriced)),
        (unmatched.id, TripStatus::Closed, Fen::new(500))
    );
    let trips = all_trips(&p, a).await;
    assert_eq!(trips.len(), 2);
    assert!(
        trips
            .iter()
            .any(|t| t.id == voided.id && t.status == TripStatus::Voided)
    );
    assert_eq!(ledger_balances(&p).await, 500);
}
