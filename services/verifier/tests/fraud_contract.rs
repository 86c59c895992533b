//! The fraud log's contract, on memory and on a real Redis (the one `./scripts/test`
//! starts): newest first, paged, bounded, and a page token it never gave out refused.

use std::sync::Arc;
use std::time::Duration;

use citypass_token::Scene;
use citypass_verifier::{
    FraudError, FraudKind, FraudLog, FraudSignal, MemoryFraudLog, RedisFraudLog, RedisReplayStore,
};

const CAPACITY: usize = 5;

fn signal(n: u64) -> FraudSignal {
    FraudSignal {
        detected_at: 1_800_000_000 + n,
        scanned_at: 1_799_999_000 + n,
        gate_id: format!("bus-{n}"),
        scene: Scene::Bus,
        kind: if n.is_multiple_of(2) {
            FraudKind::CodeReused
        } else {
            FraudKind::CounterReused
        },
        mark_digest: format!("{n:016x}"),
    }
}

async fn memory() -> Arc<dyn FraudLog> {
    Arc::new(MemoryFraudLog::new(CAPACITY))
}

async fn redis() -> Arc<dyn FraudLog> {
    let client = redis::Client::open(citypass_testkit::redis_url()).expect("a Redis URL");
    let prefix = citypass_testkit::unique("citypass:test:fraud:");
    let store = RedisReplayStore::connect(client, prefix.clone(), Duration::from_secs(5))
        .await
        .expect("the test Redis answers");
    Arc::new(RedisFraudLog::new(
        store.connection(),
        &prefix,
        CAPACITY,
        Duration::from_secs(5),
    ))
}

async fn signals_are_listed_newest_first_in_pages(log: Arc<dyn FraudLog>) {
    assert!(log.list(10, None).await.unwrap().signals.is_empty());
    for n in 1..=4 {
        log.record(signal(n), None).await.unwrap();
    }
    let first = log.list(3, None).await.unwrap();
    assert_eq!(first.signals, vec![signal(4), signal(3), signal(2)]);
    let token = first.next_page_token.expect("a second page");
    let second = log.list(3, Some(token)).await.unwrap();
    assert_eq!(second.signals, vec![signal(1)]);
    assert_eq!(second.next_page_token, None);
    let exact = log.list(4, None).await.unwrap();
    assert_eq!(exact.signals.len(), 4);
    assert_eq!(exact.next_page_token, None, "no empty last page");
}

async fn the_log_keeps_the_newest_signals_up_to_its_capacity(log: Arc<dyn FraudLog>) {
    for n in 1..=8 {
        log.record(signal(n), None).await.unwrap();
    }
    let all = log.list(100, None).await.unwrap();
    let expected: Vec<_> = (4..=8).rev().map(signal).collect();
    assert_eq!(all.signals, expected);
}

async fn a_page_token_it_never_gave_out_is_refused(log: Arc<dyn FraudLog>) {
    log.record(signal(1), None).await.unwrap();
    for token in ["x", "1-", "-1", "1-2-3", "18446744073709551616000-0 "] {
        assert!(
            matches!(
                log.list(10, Some(token.to_owned())).await,
                Err(FraudError::BadPageToken)
            ),
            "{token}"
        );
    }
}

mod cases {
    pub(super) use super::{
        a_page_token_it_never_gave_out_is_refused, signals_are_listed_newest_first_in_pages,
        the_log_keeps_the_newest_signals_up_to_its_capacity,
    };
}

citypass_testkit::contract_suite!(
    memory_backend => super::memory().await,
    redis_backend => super::redis().await;
    [
        cases::signals_are_listed_newest_first_in_pages,
        cases::the_log_keeps_the_newest_signals_up_to_its_capacity,
        cases::a_page_token_it_never_gave_out_is_refused,
    ]
);
