//! One contract for every NonceStore backend, run against the in-memory store and a
//! real Redis (from ./scripts/test; these tests fail, never skip, without it). Each
//! Redis test writes under its own random key prefix.

use std::sync::Arc;
use std::time::Duration;

use citypass_device_proof::{MemoryNonceStore, NonceStore, NonceStoreError, RedisNonceStore};

/// The contract, one function per rule.
mod contract {
    use super::*;

    pub async fn first_use_wins(store: Arc<dyn NonceStore>) {
        let ttl = Duration::from_secs(60);
        assert!(store.first_use("a", ttl).await.expect("store answers"));
        assert!(!store.first_use("a", ttl).await.expect("store answers"));
        assert!(!store.first_use("a", ttl).await.expect("store answers"));
    }

    pub async fn keys_are_independent(store: Arc<dyn NonceStore>) {
        let ttl = Duration::from_secs(60);
        assert!(store.first_use("a", ttl).await.unwrap());
        assert!(store.first_use("b", ttl).await.unwrap());
        assert!(store.first_use("a-longer", ttl).await.unwrap());
        assert!(!store.first_use("b", ttl).await.unwrap());
    }

    pub async fn marks_expire_after_their_ttl(store: Arc<dyn NonceStore>) {
        let ttl = Duration::from_millis(300);
        assert!(store.first_use("a", ttl).await.unwrap());
        assert!(!store.first_use("a", ttl).await.unwrap());
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            store.first_use("a", ttl).await.unwrap(),
            "expired marks free the key"
        );
    }

    pub async fn a_reuse_does_not_extend_the_mark(store: Arc<dyn NonceStore>) {
        let ttl = Duration::from_millis(600);
        assert!(store.first_use("a", ttl).await.unwrap());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!store.first_use("a", ttl).await.unwrap());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(store.first_use("a", ttl).await.unwrap());
    }

    pub async fn concurrent_uses_have_exactly_one_winner(store: Arc<dyn NonceStore>) {
        for round in 0..5 {
            let key = format!("race-{round}");
            let tasks: Vec<_> = (0..32)
                .map(|_| {
                    let store = store.clone();
                    let key = key.clone();
                    tokio::spawn(async move {
                        store
                            .first_use(&key, Duration::from_secs(60))
                            .await
                            .unwrap()
                    })
                })
                .collect();
            let mut winners = 0;
            for task in tasks {
                winners += usize::from(task.await.expect("task"));
            }
            assert_eq!(winners, 1, "round {round}");
        }
    }
}

async fn memory() -> Arc<dyn NonceStore> {
    Arc::new(MemoryNonceStore::new(10_000))
}

async fn redis() -> Arc<dyn NonceStore> {
    let url = citypass_testkit::redis_url();
    let prefix = citypass_testkit::unique("citypass-test:nonce:");
    Arc::new(
        RedisNonceStore::connect(&url, format!("{prefix}:"), Duration::from_secs(2))
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test Redis server: {e}")),
    )
}

citypass_testkit::contract_suite!(
    memory_backend => super::memory().await,
    redis_backend => super::redis().await;
    [
        contract::first_use_wins,
        contract::keys_are_independent,
        contract::marks_expire_after_their_ttl,
        contract::a_reuse_does_not_extend_the_mark,
        contract::concurrent_uses_have_exactly_one_winner,
    ]
);

#[tokio::test]
async fn a_full_memory_store_refuses_rather_than_forgets() {
    let store = MemoryNonceStore::new(3);
    let ttl = Duration::from_secs(60);
    for key in ["a", "b", "c"] {
        assert!(store.first_use(key, ttl).await.unwrap());
    }
    assert!(matches!(
        store.first_use("d", ttl).await,
        Err(NonceStoreError::Full)
    ));
    // Every live mark is still there.
    for key in ["a", "b", "c"] {
        assert!(!store.first_use(key, ttl).await.unwrap());
    }
    assert_eq!(store.len(), 3);
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_not_a_pass() {
    let result = RedisNonceStore::connect(
        "redis://127.0.0.1:1/",
        "citypass-test:",
        Duration::from_millis(300),
    )
    .await;
    assert!(matches!(result, Err(NonceStoreError::Backend(_))));
}
