//! The daily settlement: per operator, the day's charges, what the provider confirmed,
//! what it still sends, what it declined; cancelled charges and other days excluded.

use std::sync::Arc;

use citypass_payments::link::Provider;
use citypass_payments::payments::LinkRequest;
use citypass_payments::provider::Sandbox;
use citypass_payments::settlement::OperatorLine;
use citypass_payments::worker::OutboxWorker;
use citypass_payments::{Fen, PaymentsStore};

use crate::support::{T0, boarding, entry, exit, linked, payments, rider, tap_in, void};

pub(crate) async fn the_day_is_settled_per_operator(store: Arc<dyn PaymentsStore>) {
    let p = payments(store.clone());
    let a = linked(&p, 1).await;
    let b = rider(2);
    p.link(
        LinkRequest {
            account: b,
            provider: Provider::Alipay,
            token: "decline-agreement-2",
            last4: "0002",
            consent_version: "2026-01",
            consented_at: T0 - 10,
        },
        T0 - 5,
    )
    .await
    .unwrap();
    // Rider a: metro 5 yuan and a 944 bus (3 yuan), both confirmed; a voided 52 bus.
    tap_in(&p, entry(a, "g-in", "s1", "pingguoyuan", T0)).await;
    p.tap_out(exit(a, "g-out", "s2", "xidan", T0 + 1800))
        .await
        .unwrap();
    tap_in(&p, boarding(a, "bus-1", "s3", "944", T0 + 9000)).await;
    tap_in(&p, boarding(a, "bus-2", "s4", "52", T0 + 12_000)).await;
    p.void(void(a, "bus-2", "s4", T0 + 12_002)).await.unwrap();
    // Rider b: a 52 bus, declined.
    tap_in(&p, boarding(b, "bus-3", "s5", "52", T0 + 600)).await;
    OutboxWorker::new(store.clone(), Arc::new(Sandbox::default()))
        .run_once(T0 + 20_000)
        .await
        .unwrap();
    // Rider a, still pending: a metro trip after the worker's pass.
    tap_in(&p, entry(a, "g-in", "s6", "xidan", T0 + 21_000)).await;
    p.tap_out(exit(a, "g-out", "s7", "wangfujing", T0 + 22_000))
        .await
        .unwrap();
    // The next day (T0 is 16:00 in Beijing): not in this settlement.
    let next_day = T0 + 86_400;
    tap_in(&p, boarding(a, "bus-1", "s8", "944", next_day)).await;

    let day = p.rules().day_of(T0);
    let settlement = p.settlement(day).await.unwrap();
    let line = |operator: &str, charges, due, confirmed, pending, declined| OperatorLine {
        operator: operator.to_owned(),
        charges,
        due: Fen::new(due),
        confirmed: Fen::new(confirmed),
        pending: Fen::new(pending),
        declined: Fen::new(declined),
        refunded: Fen::ZERO,
    };
    assert_eq!(
        settlement.lines,
        vec![
            line("bjbus", 1, 200, 0, 0, 200),
            line("metro", 2, 800, 500, 300, 0),
            line("suburban-bus", 1, 300, 300, 0, 0),
        ]
    );
    assert_eq!(
        settlement.to_csv(),
        "operator,charges,due,confirmed,pending,declined,refunded\n\
         bjbus,1,2.00,0.00,0.00,2.00,0.00\n\
         metro,2,8.00,5.00,3.00,0.00,0.00\n\
         suburban-bus,1,3.00,3.00,0.00,0.00,0.00\n"
    );
    assert_eq!(p.settlement(day + 1).await.unwrap().lines.len(), 1);
}
