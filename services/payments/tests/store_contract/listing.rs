//! Listing: a rider's trips newest first, in pages, within a time range, with their
//! charges.

use std::sync::Arc;

use citypass_payments::PaymentsStore;
use citypass_payments::store::TripQuery;

use crate::support::{T0, boarding, linked, payments, tap_in};

pub(crate) async fn trips_are_listed_newest_first_in_pages(store: Arc<dyn PaymentsStore>) {
    let p = payments(store);
    let a = linked(&p, 1).await;
    let other = linked(&p, 2).await;
    let mut made = Vec::new();
    for i in 0..7u64 {
        made.push(tap_in(&p, boarding(a, "bus", &format!("s{i}"), "1", T0 + i * 7200)).await);
    }
    tap_in(&p, boarding(other, "bus", "x", "1", T0)).await;
    made.reverse();

    let mut listed = Vec::new();
    let mut query = TripQuery {
        since: None,
        until: None,
        after: None,
        limit: 3,
    };
    loop {
        let page = p.trips(a, query).await.unwrap();
        assert!(page.trips.len() <= 3);
        for view in &page.trips {
            let charge = view.charge.as_ref().expect("each bus trip is charged");
            assert_eq!(charge.trip, view.trip.id);
        }
        listed.extend(page.trips.into_iter().map(|v| v.trip));
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, made);

    let window = p
        .trips(
            a,
            TripQuery {
                since: Some(T0 + 7200),
                until: Some(T0 + 3 * 7200),
                after: None,
                limit: 0,
            },
        )
        .await
        .unwrap();
    let ids: Vec<_> = window.trips.iter().map(|v| v.trip.id).collect();
    assert_eq!(ids, vec![made[4].id, made[5].id]);
    assert_eq!(window.next, None);
}
