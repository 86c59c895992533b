//! The replay store's contract, run against every backend: memory, a real Redis (the one
//! `./scripts/test` starts) and a real Redis Cluster of three primaries that each test
//! starts on loopback (`citypass_testkit::redis_cluster`). These tests fail, never
//! skip, without them.

use std::sync::Arc;

use citypass_testkit::redis_cluster::LocalCluster;
use std::time::Duration;

use citypass_proto::v1::AssuranceLevel;
use citypass_token::{CertSerial, CodeKind, Cti};
use citypass_verifier::{
    Arrival, Basis, Mark, MemoryReplayStore, Outcome, PolicyRefusal, RedisReplayStore, ReplayStore,
    SceneFacts, Settled, StoredAnswer, Use,
};

const NOW: u64 = 1_800_000_000;

fn answer(epoch: u64) -> StoredAnswer {
    StoredAnswer::allow(
        CodeKind::Online,
        Basis {
            revocation_epoch: epoch,
            revocation_age: Some(Duration::from_millis(250)),
            key_set_age: Some(Duration::from_secs(3)),
        },
        NOW,
    )
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
    Mark::Token {
        cti: Cti::from_bytes(cti),
    }
}

/// One use of code `n` (online unless `mark` says otherwise) at `gate` as `scan`.
fn used<'a>(gate: &'a str, scan: &'a str, n: u64, mark: Mark, epoch: u64) -> Use<'a> {
    Use {
        gate_id: gate,
        scan_id: scan,
        fingerprint: fingerprint(n),
        mark,
        forget_at: NOW + 90,
        answer: Some(answer(epoch)),
        arrival: Arrival::Live,
    }
}

/// [`used`], reserving the mark (PENDING) rather than writing an answer.
fn reserved<'a>(gate: &'a str, scan: &'a str, n: u64, mark: Mark) -> Use<'a> {
    Use {
        answer: None,
        ..used(gate, scan, n, mark, 0)
    }
}

async fn settle(store: &dyn ReplayStore, used: Use<'_>, answer: StoredAnswer) -> Settled {
    store
        .settle(used, answer, None)
        .await
        .expect("the store answers")
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

/// A store on a fresh local cluster, which lives as long as the store does.
struct OnCluster {
    store: RedisReplayStore,
    _cluster: LocalCluster,
}

impl ReplayStore for OnCluster {
    fn record<'a>(
        &'a self,
        used: Use<'a>,
        now: u64,
        deadline: Option<citypass_runtime::Deadline>,
    ) -> futures::future::BoxFuture<'a, Result<Outcome, citypass_verifier::ReplayError>> {
        self.store.record(used, now, deadline)
    }

    fn settle<'a>(
        &'a self,
        used: Use<'a>,
        answer: StoredAnswer,
        deadline: Option<citypass_runtime::Deadline>,
    ) -> futures::future::BoxFuture<'a, Result<Settled, citypass_verifier::ReplayError>> {
        self.store.settle(used, answer, deadline)
    }
}

async fn cluster_store(cluster: &LocalCluster) -> RedisReplayStore {
    RedisReplayStore::connect_cluster(
        &cluster.nodes,
        citypass_testkit::unique("citypass:test:verifier:"),
        Duration::from_secs(5),
        None,
    )
    .await
    .expect("the local cluster answers")
}

async fn cluster() -> Arc<dyn ReplayStore> {
    let cluster = LocalCluster::start().await;
    Arc::new(OnCluster {
        store: cluster_store(&cluster).await,
        _cluster: cluster,
    })
}

/// The contract's properties, as the shared suite names them.
mod cases {
    pub(super) use super::{
        a_policy_refusal_is_settled_like_an_allow,
        a_reservation_never_settled_is_pending_for_its_scan_and_replayed_for_others,
        a_reserved_mark_is_settled_once_and_retries_get_the_settled_answer,
        a_retry_gets_the_first_answer_back,
        another_code_under_a_used_scan_id_conflicts_and_stays_unused,
        codes_presented_at_two_gates_concurrently_are_allowed_once,
        first_use_wins_and_another_gate_is_a_replay,
        late_uses_are_replays_only_on_a_counter_used_before,
        offline_counters_are_reserved_and_settled_too,
        offline_counters_only_go_up_and_retries_are_answered,
        review_a_mark_outlives_the_last_second_its_code_is_accepted,
    };
}

citypass_testkit::contract_suite!(
    memory_backend => super::memory().await,
    redis_backend => super::redis().await,
    cluster_backend => super::cluster().await;
    [
        cases::first_use_wins_and_another_gate_is_a_replay,
        cases::a_retry_gets_the_first_answer_back,
        cases::another_code_under_a_used_scan_id_conflicts_and_stays_unused,
        cases::offline_counters_only_go_up_and_retries_are_answered,
        cases::late_uses_are_replays_only_on_a_counter_used_before,
        cases::codes_presented_at_two_gates_concurrently_are_allowed_once,
        cases::review_a_mark_outlives_the_last_second_its_code_is_accepted,
        cases::a_reserved_mark_is_settled_once_and_retries_get_the_settled_answer,
        cases::a_reservation_never_settled_is_pending_for_its_scan_and_replayed_for_others,
        cases::a_policy_refusal_is_settled_like_an_allow,
        cases::offline_counters_are_reserved_and_settled_too,
    ]
);

/// An ALLOW with a scene result's facts.
fn with_scene(epoch: u64) -> StoredAnswer {
    StoredAnswer {
        scene: Some(SceneFacts::Government {
            assurance_level: AssuranceLevel::InPerson,
        }),
        ..answer(epoch)
    }
}

async fn a_reserved_mark_is_settled_once_and_retries_get_the_settled_answer(
    store: Arc<dyn ReplayStore>,
) {
    let store = store.as_ref();
    let mine = || reserved("gate-a", "s1", 1, token(1));
    assert_eq!(record(store, mine()).await, Outcome::First);
    assert_eq!(
        record(store, mine()).await,
        Outcome::Pending,
        "the same scan before the settlement runs the policy again"
    );
    assert_eq!(settle(store, mine(), with_scene(7)).await, Settled::Now);
    assert_eq!(
        record(store, mine()).await,
        Outcome::Retry(with_scene(7)),
        "the settled answer, scene result included"
    );
    assert_eq!(
        settle(store, mine(), answer(8)).await,
        Settled::Before(with_scene(7)),
        "a second settlement (a racing try) gets the first one back"
    );
    assert_eq!(record(store, mine()).await, Outcome::Retry(with_scene(7)));
    assert_eq!(
        settle(store, reserved("gate-b", "s1", 1, token(1)), answer(9)).await,
        Settled::Lost,
        "another scan cannot settle the mark"
    );
    assert_eq!(
        record(store, reserved("gate-b", "s9", 1, token(1))).await,
        Outcome::Replayed
    );
    assert_eq!(
        settle(store, reserved("gate-a", "s2", 2, token(2)), answer(9)).await,
        Settled::Lost,
        "nothing to settle where nothing was reserved"
    );
    assert_eq!(
        record(store, reserved("gate-a", "s2", 2, token(2))).await,
        Outcome::First,
        "and that settle reserved nothing"
    );
}

/// A crash (or a lost reply, or a fail-closed policy) between the reservation and the
/// settlement: the scan's retries find it PENDING (never a false REPLAYED), everyone
/// else finds the code used.
async fn a_reservation_never_settled_is_pending_for_its_scan_and_replayed_for_others(
    store: Arc<dyn ReplayStore>,
) {
    let store = store.as_ref();
    assert_eq!(
        record(store, reserved("gate-a", "s1", 1, token(1))).await,
        Outcome::First
    );
    for _ in 0..3 {
        assert_eq!(
            record(store, reserved("gate-a", "s1", 1, token(1))).await,
            Outcome::Pending
        );
    }
    assert_eq!(
        record(store, reserved("gate-b", "s1", 1, token(1))).await,
        Outcome::Replayed
    );
    assert_eq!(
        record(store, reserved("gate-a", "s2", 1, token(1))).await,
        Outcome::Replayed,
        "a new scan id for the same code is a replay: the pending policy may have taken effect"
    );
    assert_eq!(
        record(store, used("gate-a", "s1", 1, token(1), 7)).await,
        Outcome::Pending,
        "a try that would write its answer at once does not overwrite the reservation"
    );
}

async fn a_policy_refusal_is_settled_like_an_allow(store: Arc<dyn ReplayStore>) {
    let store = store.as_ref();
    let refused = StoredAnswer {
        refusal: Some(PolicyRefusal::CapacityReached),
        ..answer(7)
    };
    let mine = || reserved("gate-a", "s1", 1, token(1));
    assert_eq!(record(store, mine()).await, Outcome::First);
    assert_eq!(settle(store, mine(), refused.clone()).await, Settled::Now);
    assert_eq!(record(store, mine()).await, Outcome::Retry(refused));
    assert_eq!(
        record(store, reserved("gate-b", "s2", 1, token(1))).await,
        Outcome::Replayed
    );
}

async fn offline_counters_are_reserved_and_settled_too(store: Arc<dyn ReplayStore>) {
    let store = store.as_ref();
    let serial = CertSerial::from_bytes([9u8; 16]);
    let offline = |counter| Mark::Offline { serial, counter };
    let mine = || reserved("gate-a", "s1", 10, offline(5));
    assert_eq!(record(store, mine()).await, Outcome::First);
    assert_eq!(record(store, mine()).await, Outcome::Pending);
    assert_eq!(
        record(store, reserved("gate-b", "s2", 11, offline(5))).await,
        Outcome::Replayed
    );
    assert_eq!(
        record(store, reserved("gate-b", "s3", 12, offline(4))).await,
        Outcome::CounterReplay,
        "a reserved counter is the highest used"
    );
    assert_eq!(settle(store, mine(), with_scene(3)).await, Settled::Now);
    assert_eq!(record(store, mine()).await, Outcome::Retry(with_scene(3)));
    assert_eq!(
        settle(store, reserved("gate-b", "s2", 11, offline(5)), answer(1)).await,
        Settled::Lost
    );
}

/// Review of the verifier (replay window): a code is accepted up to and including the
/// second `forget_at`, so its mark must outlive that whole second. Redis expired it at
/// the second's start (`PEXPIREAT forget_at × 1000`), which let the code be used again
/// at any number of gates during its last accepted second.
async fn review_a_mark_outlives_the_last_second_its_code_is_accepted(store: Arc<dyn ReplayStore>) {
    let store = store.as_ref();
    let ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_millis()
    };
    // Start early in a second, so that both uses fall inside it even on a busy machine.
    while ms() % 1000 > 300 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let now = u64::try_from(ms() / 1000).expect("seconds fit");
    let last_second = |gate| Use {
        forget_at: now,
        ..used(gate, "s1", 1, token(1), 7)
    };
    let first = store
        .record(last_second("gate-a"), now, None)
        .await
        .unwrap();
    let second = store
        .record(last_second("gate-b"), now, None)
        .await
        .unwrap();
    assert_eq!((first, second), (Outcome::First, Outcome::Replayed));
}

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
    let serial = CertSerial::from_bytes([7u8; 16]);
    let offline = |counter| Mark::Offline { serial, counter };
    let mut first = used("gate-a", "s1", 10, offline(5), 7);
    if let Some(answer) = first.answer.as_mut() {
        answer.code_kind = CodeKind::Offline.into();
    }
    assert_eq!(record(store, first.clone()).await, Outcome::First);
    assert_eq!(
        record(store, used("gate-b", "s1", 11, offline(4), 7)).await,
        Outcome::CounterReplay
    );
    assert_eq!(
        record(store, used("gate-b", "s2", 12, offline(5), 7)).await,
        Outcome::Replayed,
        "a second code with the same counter is a copy"
    );
    let first_answer = first.answer.clone().expect("an answer");
    let mut retry = first.clone();
    retry.answer = Some(StoredAnswer {
        basis: Basis {
            revocation_epoch: 99,
            ..first_answer.basis
        },
        ..first_answer.clone()
    });
    assert_eq!(
        record(store, retry).await,
        Outcome::Retry(first_answer.clone())
    );
    assert_eq!(
        record(store, used("gate-b", "s3", 13, offline(u64::MAX), 7)).await,
        Outcome::First,
        "counters compare as numbers all the way up"
    );
    assert_eq!(
        record(store, used("gate-b", "s4", 14, offline(6), 7)).await,
        Outcome::CounterReplay
    );
    let mut retry = first.clone();
    retry.answer = Some(answer(100));
    assert_eq!(
        record(store, retry).await,
        Outcome::Retry(first_answer),
        "an earlier scan's retry still gets its answer after a newer counter"
    );
}

async fn late_uses_are_replays_only_on_a_counter_used_before(store: Arc<dyn ReplayStore>) {
    let store = store.as_ref();
    let serial = CertSerial::from_bytes([8u8; 16]);
    let offline = |counter| Mark::Offline { serial, counter };
    let late = |gate, scan, n, counter| Use {
        arrival: Arrival::Late,
        ..used(gate, scan, n, offline(counter), 7)
    };
    assert_eq!(
        record(store, used("gate-a", "s1", 20, offline(7), 7)).await,
        Outcome::First
    );
    assert_eq!(
        record(store, late("gate-b", "s1", 21, 5)).await,
        Outcome::First,
        "an offline gate's earlier scan, uploaded after a newer online one"
    );
    assert_eq!(
        record(store, late("gate-b", "s1", 21, 5)).await,
        Outcome::Retry(answer(7)),
        "an upload retried"
    );
    assert_eq!(
        record(store, late("gate-c", "s1", 22, 5)).await,
        Outcome::Replayed,
        "the same counter from another gate is a double use"
    );
    assert_eq!(
        record(store, late("gate-c", "s2", 23, 7)).await,
        Outcome::Replayed,
        "so is the counter used online"
    );
    assert_eq!(
        record(store, late("gate-c", "s3", 24, 9)).await,
        Outcome::First
    );
    assert_eq!(
        record(store, used("gate-a", "s2", 25, offline(8), 7)).await,
        Outcome::CounterReplay,
        "a late use moves the highest counter up for live ones"
    );
    assert_eq!(
        record(store, used("gate-a", "s3", 26, offline(6), 7)).await,
        Outcome::CounterReplay,
        "and never lowers it"
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
        store.key(Key::Mark(Mark::Token {
            cti: Cti::from_bytes([0xab; 16])
        })),
        format!("p:{{t:{}}}", "ab".repeat(16))
    );
    assert_eq!(
        store.key(Key::Mark(Mark::Offline {
            serial: CertSerial::from_bytes([1; 16]),
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

/// On the cluster, marks spread over every primary (keys are hashed by the mark), and a
/// retry still finds its answer on the mark's shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marks_spread_over_the_clusters_shards() {
    let cluster = LocalCluster::start().await;
    let store = cluster_store(&cluster).await;
    for n in 0..300 {
        let scan = format!("scan-{n}");
        assert_eq!(
            store
                .record(used("gate-a", &scan, n, token(n), 1), NOW, None)
                .await
                .unwrap(),
            Outcome::First
        );
    }
    let counts = cluster.keys_per_node().await;
    assert_eq!(
        counts.iter().sum::<i64>(),
        600,
        "a mark and a scan claim per code"
    );
    assert!(
        counts.iter().all(|count| *count > 50),
        "every shard holds marks: {counts:?}"
    );
    assert_eq!(
        store
            .record(used("gate-a", "scan-7", 7, token(7), 2), NOW, None)
            .await
            .unwrap(),
        Outcome::Retry(answer(1))
    );
}

/// Review of the verifier (memory store): every offline use counts against the
/// capacity, not one per certificate, so one phone's certificate cannot grow the memory
/// without bound; when full of live entries the store refuses rather than forgets.
#[tokio::test]
async fn review_the_memory_store_counts_every_offline_use_against_its_capacity() {
    const CAPACITY: usize = 30;
    let store = MemoryReplayStore::new(CAPACITY);
    let serial = CertSerial::from_bytes([3u8; 16]);
    let mut recorded = 0u64;
    let refused = loop {
        let scan = format!("scan-{recorded}");
        let used = used(
            "gate-a",
            &scan,
            recorded,
            Mark::Offline {
                serial,
                counter: recorded + 1,
            },
            1,
        );
        match store.record(used, NOW, None).await {
            Ok(outcome) => assert_eq!(outcome, Outcome::First),
            Err(err) => break err,
        }
        recorded += 1;
        assert!(recorded < 1_000, "the store never filled up");
    };
    assert!(
        matches!(refused, citypass_verifier::ReplayError::Full),
        "{refused:?}"
    );
    // Each use holds a scan claim and a counter: about half the capacity in uses.
    assert!(
        (recorded as usize) * 2 < CAPACITY,
        "{recorded} uses held in a store of {CAPACITY}"
    );
    // Past the certificate's time, its uses are forgotten and room comes back.
    let later = used("gate-a", "scan-later", 5_000, token(5_000), 1);
    assert_eq!(
        store.record(later, NOW + 1_000, None).await.unwrap(),
        Outcome::First
    );
}
