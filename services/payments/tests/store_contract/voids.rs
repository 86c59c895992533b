//! Voids: a gate cancels its own tap within the void window (the turnstile did not
//! turn); a charge already made is cancelled and reversed in the ledger.

use std::sync::Arc;

use citypass_payments::charge::{ChargeKey, ChargeStatus};
use citypass_payments::outbox::OutboxStatus;
use citypass_payments::trip::TripStatus;
use citypass_payments::{Error, Fen, PaymentsStore};

use crate::support::{
    T0, all_trips, boarding, entry, exit, ledger_balances, linked, live_charges, payments, rider,
    tap_in, void,
};

pub(crate) async fn a_voided_entry_cancels_its_trip(store: Arc<dyn PaymentsStore>) {
    let p = payments(store);
    let a = linked(&p, 1).await;
    let opened = tap_in(&p, entry(a, "g-in", "s1", "xidan", T0)).await;
    let voided = p.void(void(a, "g-in", "s1", T0 + 3)).await.unwrap();
    assert_eq!((voided.id, voided.status), (opened.id, TripStatus::Voided));
    assert_eq!(
        p.void(void(a, "g-in", "s1", T0 + 4)).await.unwrap(),
        voided,
        "idempotent"
    );
    assert!(matches!(
        p.tap_in(entry(a, "g-in", "s1", "xidan", T0 + 5)).await,
        Err(Error::TapVoided)
    ));
    // The rider taps again (a new scan) and gets through: a new trip.
    let again = tap_in(&p, entry(a, "g-in", "s2", "xidan", T0 + 6)).await;
    assert_eq!(again.status, TripStatus::Open);
    assert_ne!(again.id, opened.id);
    assert_eq!(all_trips(&p, a).await.len(), 2);
    assert!(p.store().charges(a).await.unwrap().is_empty());
    ledger_balances(&p).await;
}

pub(crate) async fn a_voided_exit_reopens_the_trip_and_reverses_its_charge(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store);
    let a = linked(&p, 1).await;
    let opened = tap_in(&p, entry(a, "g-in", "s1", "pingguoyuan", T0)).await;
    let closed = p
        .tap_out(exit(a, "g-out", "s2", "xidan", T0 + 1800))
        .await
        .unwrap();
    let first_key = ChargeKey::of(&closed);
    assert_eq!(ledger_balances(&p).await, 500);

    let reopened = p.void(void(a, "g-out", "s2", T0 + 1803)).await.unwrap();
    assert_eq!(
        (reopened.id, reopened.status),
        (opened.id, TripStatus::Open)
    );
    assert_eq!((reopened.exit.clone(), reopened.fare.clone()), (None, None));
    assert!(live_charges(&p, a).await.is_empty());
    let charges = p.store().charges(a).await.unwrap();
    assert_eq!(
        (charges[0].key, charges[0].status),
        (first_key, ChargeStatus::Cancelled)
    );
    let outbox = p.store().outbox(10).await.unwrap();
    assert_eq!(outbox[0].status, OutboxStatus::Cancelled);
    assert_eq!(
        ledger_balances(&p).await,
        0,
        "the reversal undid the charge"
    );
    let (report, _) = p.check_ledger().await.unwrap();
    assert_eq!((report.reversal_postings, report.cancelled_charges), (1, 1));

    // The rider taps out again: one new charge, under a new key.
    let closed = p
        .tap_out(exit(a, "g-out", "s3", "xidan", T0 + 1805))
        .await
        .unwrap();
    assert_eq!(closed.status, TripStatus::Closed);
    let live = live_charges(&p, a).await;
    assert_eq!(live.len(), 1);
    assert_ne!(live[0].key, first_key);
    assert_eq!(live[0].amount, Fen::new(500));
    assert_eq!(ledger_balances(&p).await, 500);
}

pub(crate) async fn a_voided_bus_tap_reverses_its_charge(store: Arc<dyn PaymentsStore>) {
    let p = payments(store);
    let a = linked(&p, 1).await;
    tap_in(&p, boarding(a, "bus-1", "s1", "944", T0)).await;
    assert_eq!(ledger_balances(&p).await, 300);
    let voided = p.void(void(a, "bus-1", "s1", T0 + 2)).await.unwrap();
    assert_eq!(voided.status, TripStatus::Voided);
    assert!(live_charges(&p, a).await.is_empty());
    assert_eq!(ledger_balances(&p).await, 0);
}

pub(crate) async fn a_late_or_foreign_void_is_refused(store: Arc<dyn PaymentsStore>) {
    let p = payments(store);
    let a = linked(&p, 1).await;
    tap_in(&p, entry(a, "g-in", "s1", "xidan", T0)).await;
    assert!(matches!(
        p.void(void(a, "g-in", "s1", T0 + 11)).await,
        Err(Error::VoidTooLate(_))
    ));
    assert!(matches!(
        p.void(void(a, "other-gate", "s1", T0 + 1)).await,
        Err(Error::TapNotFound)
    ));
    assert!(matches!(
        p.void(void(rider(2), "g-in", "s1", T0 + 1)).await,
        Err(Error::TapNotFound)
    ));
    assert!(matches!(
        p.void(void(a, "g-in", "never", T0 + 1)).await,
        Err(Error::TapNotFound)
    ));
    assert_eq!(all_trips(&p, a).await[0].status, TripStatus::Open);
}

/// A scan at a second gate, recorded as a repeat of the first (a double tap), means
/// the rider went through there: the first gate's void is then refused
/// (`TAP_REPEATED`) and the trip stands, for an exit, an entry and a bus boarding. A
/// void of the repeat itself only marks it; after that the first tap may be voided.
pub(crate) async fn a_void_after_a_repeat_at_another_gate_is_refused(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store);
    // Exit at X closes the trip; 3 s later a scan at Y (same station) is a repeat.
    let a = linked(&p, 1).await;
    tap_in(&p, entry(a, "g-in", "s1", "pingguoyuan", T0)).await;
    let closed = p
        .tap_out(exit(a, "out-x", "s2", "xidan", T0 + 1800))
        .await
        .unwrap();
    let repeat = p
        .tap_out(exit(a, "out-y", "s3", "xidan", T0 + 1803))
        .await
        .unwrap();
    assert_eq!(repeat, closed, "recorded as a repeat");
    assert!(matches!(
        p.void(void(a, "out-x", "s2", T0 + 1805)).await,
        Err(Error::TapRepeated)
    ));
    assert_eq!(all_trips(&p, a).await[0].status, TripStatus::Closed);
    assert_eq!(live_charges(&p, a).await.len(), 1);
    // The rider is outside: the next entry opens a trip.
    let next = tap_in(&p, entry(a, "g-in", "s4", "xidan", T0 + 3600)).await;
    assert_eq!(next.status, TripStatus::Open);
    p.tap_out(exit(a, "out-x", "s5", "xidan", T0 + 3700))
        .await
        .unwrap();

    // Entry at X, a repeat at Y: X's void does not void the trip the rider is in.
    let b = linked(&p, 2).await;
    let opened = tap_in(&p, entry(b, "in-x", "s1", "xidan", T0)).await;
    assert_eq!(
        tap_in(&p, entry(b, "in-y", "s2", "xidan", T0 + 3)).await,
        opened
    );
    assert!(matches!(
        p.void(void(b, "in-x", "s1", T0 + 5)).await,
        Err(Error::TapRepeated)
    ));
    let exited = p
        .tap_out(exit(b, "out-x", "s3", "pingguoyuan", T0 + 1800))
        .await
        .unwrap();
    assert_eq!(
        (exited.id, exited.status),
        (opened.id, TripStatus::Closed),
        "priced as the trip it was, not as an exit without entry"
    );

    // A bus boarding at reader 1, a repeat at reader 2: the ride is not made free.
    let c = linked(&p, 3).await;
    tap_in(&p, boarding(c, "bus-1", "s1", "944", T0)).await;
    tap_in(&p, boarding(c, "bus-2", "s2", "944", T0 + 3)).await;
    assert!(matches!(
        p.void(void(c, "bus-1", "s1", T0 + 5)).await,
        Err(Error::TapRepeated)
    ));
    assert_eq!(live_charges(&p, c).await.len(), 1);

    // The repeat's own void only marks it; then the first tap may be voided.
    let d = linked(&p, 4).await;
    tap_in(&p, boarding(d, "bus-1", "s11", "944", T0)).await;
    let ride = tap_in(&p, boarding(d, "bus-2", "s12", "944", T0 + 3)).await;
    assert_eq!(
        p.void(void(d, "bus-2", "s12", T0 + 4)).await.unwrap(),
        ride,
        "only the repeat is marked"
    );
    assert_eq!(live_charges(&p, d).await.len(), 1);
    let voided = p.void(void(d, "bus-1", "s11", T0 + 5)).await.unwrap();
    assert_eq!(voided.status, TripStatus::Voided);
    assert!(live_charges(&p, d).await.is_empty());
    ledger_balances(&p).await;
}

/// A void must come after its tap (a 2 s skew allowed) and within the window: one
/// dated before the tap is refused (INVALID_ARGUMENT `voided_at`), however early, and
/// changes nothing.
pub(crate) async fn a_void_dated_before_its_tap_is_refused(store: Arc<dyn PaymentsStore>) {
    let p = payments(store);
    let a = linked(&p, 1).await;
    tap_in(&p, boarding(a, "bus-1", "s1", "944", T0)).await;
    for before in [3, 60, 3600, T0 - 1] {
        assert!(
            matches!(
                p.void(void(a, "bus-1", "s1", T0 - before)).await,
                Err(Error::InvalidArgument {
                    field: "voided_at",
                    ..
                })
            ),
            "{before} s before"
        );
    }
    assert_eq!(live_charges(&p, a).await.len(), 1);
    assert_eq!(all_trips(&p, a).await[0].status, TripStatus::Closed);
    // Within the skew allowance, and at the window's end, it is taken.
    tap_in(&p, entry(a, "g-in", "s2", "xidan", T0 + 600)).await;
    let voided = p.void(void(a, "g-in", "s2", T0 + 598)).await.unwrap();
    assert_eq!(voided.status, TripStatus::Voided);
    tap_in(&p, entry(a, "g-in", "s3", "xidan", T0 + 700)).await;
    assert!(matches!(
        p.void(void(a, "g-in", "s3", T0 + 711)).await,
        Err(Error::VoidTooLate(_))
    ));
    let voided = p.void(void(a, "g-in", "s3", T0 + 710)).await.unwrap();
    assert_eq!(voided.status, TripStatus::Voided);
    ledger_balances(&p).await;
}

/// With the server's clock set (as the service sets it), a void stamped far from it is
/// refused (INVALID_ARGUMENT `voided_at`), even one inside its tap's window by the
/// gate's own stamps.
pub(crate) async fn a_void_far_from_the_servers_clock_is_refused(store: Arc<dyn PaymentsStore>) {
    let server_now = Arc::new(std::sync::atomic::AtomicU64::new(T0 + 3600));
    let clock = server_now.clone();
    let p = payments(store).with_server_clock(
        Arc::new(move || clock.load(std::sync::atomic::Ordering::SeqCst)),
        std::time::Duration::from_secs(300),
    );
    let a = linked(&p, 1).await;
    tap_in(&p, boarding(a, "bus-1", "s1", "944", T0)).await;
    match p.void(void(a, "bus-1", "s1", T0 + 2)).await {
        Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "voided_at"),
        other => panic!("{other:?}"),
    }
    assert_eq!(live_charges(&p, a).await.len(), 1);
    server_now.store(T0 + 3, std::sync::atomic::Ordering::SeqCst);
    let voided = p.void(void(a, "bus-1", "s1", T0 + 2)).await.unwrap();
    assert_eq!(voided.status, TripStatus::Voided);
    ledger_balances(&p).await;
}
