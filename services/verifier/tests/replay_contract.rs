//! The replay store's contract, run against every backend: memory and a real Redis
//! (the one `./scripts/test` starts; these tests fail, never skip, without it).

use std::sync::Arc;
use std::time::Duration;

use citypass_token::CodeKind;
use citypass_verifier::{
    Basis, Mark, MemoryReplayStore, Outcome, RedisReplayStore, ReplayStore, StoredAnswer, Use,
};

const NOW: u64 = 1_800_000_000;

fn answer(epoch: u64) -> StoredAnswer {
    StoredAnswer {
        code_kind: CodeKind::Online,
        basis: Basis {
            revocation_epoch: epoch,
            revocation_age: Some(Duration::from_millis(250)),
            key_set_age: Some(Duration::from_secs(3)),
        },
        decided_at: NOW,
    }
}

fn fingerprint(n: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..8].copy_from_slice(&n.to_be_bytes());
    out
}

fn token(n: u64) -> Mark {
    let mut cti = [0u8; 16];
    cti[..8].copy_from_slice(&n.to_be_bytes());
    cti[8] = 0xA5;
    Mark::Token { cti }
}

/// One use of code `n` (online unless `mark` says otherwise) at `gate` as `scan`.
fn used<'a>(gate: &'a str, scan: &'a str, n: u64, mark: Mark, epoch: u64) -> Use<'a> {
    Use {
        gate_id: gate,
        scan_id: scan,
        fingerprint: fingerprint(n),
        mark,
        forget_at: NOW + 90,
        answer: answer(epoch),
    }
}

async fn record(store: &dyn ReplayStore, used: Use<'_>) -> Outcome {
    store
        .record(used, NOW, None)
        .await
        .expect("the store answers")
}

async fn memory() -> Arc<dyn ReplayStore> {
    Arc::new(MemoryReplayStore::new(100_000))
}

async fn redis_at(prefix: &str) -> Arc<dyn ReplayStore> {
    let client = redis::Client::open(citypass_testkit::redis_url()).expect("a Redis URL");
    Arc::new(
        RedisReplayStore::connect(client, prefix, Duration::from_secs(5))
            .await
            .expect("the test Redis answers"),
    )
}

async fn redis() -> Arc<dyn ReplayStore> {
    redis_at(&citypass_testkit::unique("citypass:test:verifier:")).await
}

/// Runs `$case` against each backend.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod memory_backend {
            $(#[tokio::test] async fn $case() { super::$case(super::memory().await).await })*
        }
        mod redis_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(super::redis().await).await })*
        }
    };
}

contract!(
    first_use_wins_and_another_gate_is_a_replay,
    a_retry_gets_the_first_answer_back,
    another_code_under_a_used_scan_id_conflicts_and_stays_unused,
    offline_counters_only_go_up_and_retries_are_answered,
    codes_presented_at_two_gates_concurrently_are_allowed_once,
);

async fn first_use_wins_and_another_gate_is_a_replay(store: Arc<dyn ReplayStore>) {
    let store = store.as_ref();
    assert_eq!(
        record(store, used("gate-a", "s1", 1, token(1), 7)).await,
        Outcome::First
    );
    assert_eq!(
        record(store, used("gate-b", "s1", 1, token(1), 7)).await,
        Outcome::Replayed
    );
    assert_eq!(
        record(store, used("gate-a", "s2", 1, token(1), 7)).await,
        Outcome::Replayed,
        "the same gate with another scan id is a replay too"
    );
    assert_eq!(
        record(store, used("gate-b", "s3", 2, token(2), 7)).await,
        Outcome::First,
        "another code is not touched"
    );
}

async fn a_retry_gets_the_first_answer_back(store: Arc<dyn ReplayStore>) {
    let store = store.as_ref();
    assert_eq!(
        record(store, used("gate-a", "s1", 1, token(1), 7)).await,
        Outcome::First
    );
    // The retry carries a later epoch; the answer is the first one.
    assert_eq!(
        record(store, used("gate-a", "s1", 1, token(1), 9)).await,
        Outcome::Retry(answer(7))
    );
    assert_eq!(
        record(store, used("gate-a", "s1", 1, token(1), 9)).await,
        Outcome::Retry(answer(7)),
        "every retry, not only the first"
    );
    assert_eq!(
        record(store, used("gate-b", "s1", 1, token(1), 9)).await,
        Outcome::Replayed
    );
}

async fn another_code_under_a_used_scan_id_conflicts_and_stays_unused(store: Arc<dyn ReplayStore>) {
    let store = store.as_ref();
    assert_eq!(
        record(store, used("gate-a", "s1", 1, token(1), 7)).await,
        Outcome::First
    );
    assert_eq!(
        record(store, used("gate-a", "s1", 2, token(2), 7)).await,
        Outcome::ScanIdConflict
    );
    assert_eq!(
        record(store, used("gate-a", "s2", 2, token(2), 7)).await,
        Outcome::First,
        "the conflicting code was not burned"
    );
}

async fn offline_counters_only_go_up_and_retries_are_answered(store: Arc<dyn ReplayStore>) {
    let store = store.as_ref();
    let serial = [7u8; 16];
    let offline = |counter| Mark::Offline { serial, counter };
    let mut first = used("gate-a", "s1", 10, offline(5), 7);
    first.answer.code_kind = CodeKind::Offline;
    assert_eq!(record(store, first).await, Outcome::First);
    assert_eq!(
        record(store, used("gate-b", "s1", 11, offline(4), 7)).await,
        Outcome::CounterReplay
    );
    assert_eq!(
        record(store, used("gate-b", "s2", 12, offline(5), 7)).await,
        Outcome::Replayed,
        "a second code with the same counter is a copy"
    );
    let mut retry = first;
    retry.answer.basis.revocation_epoch = 99;
    assert_eq!(record(store, retry).await, Outcome::Retry(first.answer));
    assert_eq!(
        record(store, used("gate-b", "s3", 13, offline(u64::MAX), 7)).await,
        Outcome::First,
        "counters compare as numbers all the way up"
    );
    assert_eq!(
        record(store, used("gate-b", "s4", 14, offline(6), 7)).await,
        Outcome::CounterReplay
    );
    let mut retry = first;
    retry.answer.basis.revocation_epoch = 100;
    assert_eq!(
        record(store, retry).await,
        Outcome::Retry(first.answer),
        "an earlier scan's retry still gets its answer after a newer counter"
    );
}

/// How many codes the concurrency case presents, each at two gates at once.
const CODES: u64 = 10_000;

async fn codes_presented_at_two_gates_concurrently_are_allowed_once(store: Arc<dyn ReplayStore>) {
    let mut tasks = tokio::task::JoinSet::new();
    for gate in ["gate-a", "gate-b"] {
        let store = store.clone();
        tasks.spawn(async move {
            let mut uses = futures::stream::iter(0..CODES)
                .map(|n| {
                    let store = store.clone();
                    async move {
                        let scan = format!("scan-{n}");
                        store
                            .record(used(gate, &scan, n, token(n), 1), NOW, None)
                            .await
                            .expect("the store answers")
                    }
                })
                .buffered(64);
            let mut outcomes = Vec::with_capacity(CODES as usize);
            while let Some(outcome) = uses.next().await {
                outcomes.push(outcome);
            }
            outcomes
        });
    }
    let a = tasks.join_next().await.unwrap().unwrap();
    let b = tasks.join_next().await.unwrap().unwrap();
    let mut firsts = 0;
    for (x, y) in a.iter().zip(&b) {
        let allowed = [x, y].iter().filter(|o| ***o == Outcome::First).count();
        let replayed = [x, y].iter().filter(|o| ***o == Outcome::Replayed).count();
        assert_eq!((allowed, replayed), (1, 1), "one use per code: {x:?} {y:?}");
        firsts += allowed;
    }
    assert_eq!(firsts as u64, CODES);
}

use futures::StreamExt as _;

/// A verifier restarted between a gate's first try and its retry: a new store on the
/// same Redis gives the retry its first answer, never a false replay.
#[tokio::test]
async fn a_retry_after_a_restart_gets_the_first_answer() {
    let prefix = citypass_testkit::unique("citypass:test:verifier:");
    let before = redis_at(&prefix).await;
    assert_eq!(
        record(before.as_ref(), used("gate-a", "s1", 1, token(1), 7)).await,
        Outcome::First
    );
    drop(before);
    let after = redis_at(&prefix).await;
    assert_eq!(
        record(after.as_ref(), used("gate-a", "s1", 1, token(1), 8)).await,
        Outcome::Retry(answer(7))
    );
}

/// Keys carry the mark's hash tag, so a cluster spreads marks by code and each script
/// touches one slot.
#[tokio::test]
async fn keys_are_hash_tagged_by_their_mark() {
    let client = redis::Client::open(citypass_testkit::redis_url()).unwrap();
    let store = RedisReplayStore::connect(client, "p:", Duration::from_secs(5))
        .await
        .unwrap();
    use citypass_verifier::replay::Key;
    assert_eq!(
        store.key(Key::Mark(Mark::Token { cti: [0xab; 16] })),
        format!("p:{{t:{}}}", "ab".repeat(16))
    );
    assert_eq!(
        store.key(Key::Mark(Mark::Offline {
            serial: [1; 16],
            counter: 3
        })),
        format!("p:{{o:{}}}", "01".repeat(16)),
        "every counter of a certificate on one key"
    );
    assert!(store.key(Key::Scan(&[2; 16])).starts_with("p:{s:"));
}

/// A store that does not answer within the deadline is an error (the decision then
/// fails closed), not a wait.
#[tokio::test]
async fn a_redis_that_does_not_answer_is_an_error_within_the_deadline() {
    // A listener that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let started = std::time::Instant::now();
    match RedisReplayStore::connect(client, "p:", Duration::from_millis(300)).await {
        Err(_) => {}
        Ok(store) => {
            let deadline = citypass_runtime::Deadline::after(Duration::from_millis(300));
            let result = store
                .record(used("gate-a", "s1", 1, token(1), 7), NOW, Some(deadline))
                .await;
            assert!(
                result.is_err(),
                "a silent Redis decides nothing: {result:?}"
            );
        }
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    silent.abort();
}
