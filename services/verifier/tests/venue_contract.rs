//! The venue store's contract (scenic capacity and once a day), run against every
//! backend: memory, a real Redis (the one `./scripts/test` starts) and a real Redis
//! Cluster of three primaries each test starts on loopback
//! (`citypass_testkit::redis_cluster`). These tests fail, never skip, without them.

use std::sync::Arc;
use std::time::Duration;

use citypass_testkit::redis_cluster::LocalCluster;
use citypass_verifier::{
    Admission, Entry, MemoryVenueStore, RedisReplayStore, RedisVenueStore, VenueError, VenueStore,
};
use futures::StreamExt as _;

const DAY: i64 = 20_790;

fn id(n: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&n.to_be_bytes());
    out
}

/// Visitor `visitor` entering `venue` by scan `scan`, capacity `capacity`, once a day.
fn entry(venue: &str, visitor: u64, scan: u64, capacity: u32) -> Entry<'_> {
    Entry {
        venue,
        day: DAY,
        visitor: id(visitor),
        scan: id(1_000_000 + scan),
        capacity,
        entries_per_day: 1,
        // Kept a day from now: the test's keys go away by themselves.
        forget_at: citypass_token::unix_now() + 86_400,
    }
}

async fn enter(store: &dyn VenueStore, entry: Entry<'_>) -> Admission {
    store.enter(entry, None).await.expect("the store answers")
}

fn entered(entries_today: u32, remaining_capacity: u32) -> Admission {
    Admission::Entered {
        entries_today,
        remaining_capacity,
    }
}

async fn memory() -> Arc<dyn VenueStore> {
    Arc::new(MemoryVenueStore::new(1_000))
}

async fn redis_store(replay: RedisReplayStore) -> RedisVenueStore {
    RedisVenueStore::new(
        replay.connection(),
        citypass_testkit::unique("citypass:test:venues:"),
        Duration::from_secs(5),
    )
}

async fn redis() -> Arc<dyn VenueStore> {
    let client = redis::Client::open(citypass_testkit::redis_url()).expect("a Redis URL");
    let replay = RedisReplayStore::connect(client, "citypass:test:venues:", Duration::from_secs(5))
        .await
        .expect("the test Redis answers");
    Arc::new(redis_store(replay).await)
}

/// A store on a fresh local cluster, which lives as long as the store does.
struct OnCluster {
    store: RedisVenueStore,
    _cluster: LocalCluster,
}

impl VenueStore for OnCluster {
    fn enter<'a>(
        &'a self,
        entry: Entry<'a>,
        deadline: Option<citypass_runtime::Deadline>,
    ) -> futures::future::BoxFuture<'a, Result<Admission, VenueError>> {
        self.store.enter(entry, deadline)
    }
}

async fn cluster() -> Arc<dyn VenueStore> {
    let cluster = LocalCluster::start().await;
    let replay = RedisReplayStore::connect_cluster(
        &cluster.nodes,
        "citypass:test:venues:",
        Duration::from_secs(5),
        None,
    )
    .await
    .expect("the local cluster answers");
    Arc::new(OnCluster {
        store: redis_store(replay).await,
        _cluster: cluster,
    })
}

mod cases {
    pub(super) use super::{
        a_full_venue_refuses_and_a_visitor_who_entered_hears_so_first,
        a_retry_of_a_scan_counts_nothing_twice, a_venue_may_allow_more_entries_a_day,
        concurrent_entries_never_pass_the_capacity, venues_and_days_count_apart,
    };
}

citypass_testkit::contract_suite!(
    memory_backend => super::memory().await,
    redis_backend => super::redis().await,
    cluster_backend => super::cluster().await;
    [
        cases::a_retry_of_a_scan_counts_nothing_twice,
        cases::a_full_venue_refuses_and_a_visitor_who_entered_hears_so_first,
        cases::a_venue_may_allow_more_entries_a_day,
        cases::venues_and_days_count_apart,
        cases::concurrent_entries_never_pass_the_capacity,
    ]
);

async fn a_retry_of_a_scan_counts_nothing_twice(store: Arc<dyn VenueStore>) {
    let store = store.as_ref();
    assert_eq!(enter(store, entry("park", 1, 1, 10)).await, entered(1, 9));
    for _ in 0..3 {
        assert_eq!(
            enter(store, entry("park", 1, 1, 10)).await,
            entered(1, 9),
            "the same scan gets its first counts"
        );
    }
    assert_eq!(
        enter(store, entry("park", 1, 2, 10)).await,
        Admission::AlreadyEntered,
        "another scan of the same visitor is a second entry"
    );
    assert_eq!(
        enter(store, entry("park", 2, 3, 10)).await,
        entered(1, 8),
        "the retries took no capacity"
    );
}

async fn a_full_venue_refuses_and_a_visitor_who_entered_hears_so_first(store: Arc<dyn VenueStore>) {
    let store = store.as_ref();
    assert_eq!(enter(store, entry("museum", 1, 1, 2)).await, entered(1, 1));
    assert_eq!(enter(store, entry("museum", 2, 2, 2)).await, entered(1, 0));
    assert_eq!(
        enter(store, entry("museum", 3, 3, 2)).await,
        Admission::CapacityReached
    );
    assert_eq!(
        enter(store, entry("museum", 3, 3, 2)).await,
        Admission::CapacityReached,
        "a refusal is not recorded, and stays one while full"
    );
    assert_eq!(
        enter(store, entry("museum", 1, 4, 2)).await,
        Admission::AlreadyEntered,
        "the more precise reason"
    );
    assert_eq!(
        enter(store, entry("museum", 2, 2, 2)).await,
        entered(1, 0),
        "an admitted scan's retry is still answered when full"
    );
}

async fn a_venue_may_allow_more_entries_a_day(store: Arc<dyn VenueStore>) {
    let store = store.as_ref();
    let twice = |scan| Entry {
        entries_per_day: 2,
        ..entry("zoo", 1, scan, 100)
    };
    assert_eq!(enter(store, twice(1)).await, entered(1, 99));
    assert_eq!(enter(store, twice(2)).await, entered(2, 98));
    assert_eq!(enter(store, twice(3)).await, Admission::AlreadyEntered);
}

async fn venues_and_days_count_apart(store: Arc<dyn VenueStore>) {
    let store = store.as_ref();
    assert_eq!(enter(store, entry("lake", 1, 1, 5)).await, entered(1, 4));
    assert_eq!(
        enter(store, entry("hill", 1, 2, 5)).await,
        entered(1, 4),
        "another venue"
    );
    let tomorrow = Entry {
        day: DAY + 1,
        ..entry("lake", 1, 3, 5)
    };
    assert_eq!(enter(store, tomorrow).await, entered(1, 4), "another day");
}

async fn concurrent_entries_never_pass_the_capacity(store: Arc<dyn VenueStore>) {
    const VISITORS: u64 = 400;
    const CAPACITY: u32 = 150;
    let outcomes: Vec<Admission> = futures::stream::iter(0..VISITORS)
        .map(|n| {
            let store = store.clone();
            async move {
                let venue = "fair";
                store
                    .enter(entry(venue, n, n, CAPACITY), None)
                    .await
                    .expect("the store answers")
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let admitted = outcomes
        .iter()
        .filter(|o| matches!(o, Admission::Entered { .. }))
        .count();
    let full = outcomes
        .iter()
        .filter(|o| **o == Admission::CapacityReached)
        .count();
    assert_eq!(
        (admitted, full),
        (CAPACITY as usize, (VISITORS - u64::from(CAPACITY)) as usize)
    );
    let mut remaining: Vec<u32> = outcomes
        .iter()
        .filter_map(|o| match o {
            Admission::Entered {
                remaining_capacity, ..
            } => Some(*remaining_capacity),
            _ => None,
        })
        .collect();
    remaining.sort_unstable();
    assert_eq!(
        remaining,
        (0..CAPACITY).collect::<Vec<_>>(),
        "each place given once"
    );
}

/// Keys are one per venue-day, hash-tagged by it: an entry is one slot's script.
#[tokio::test]
async fn keys_are_hash_tagged_by_venue_and_day() {
    let client = redis::Client::open(citypass_testkit::redis_url()).unwrap();
    let replay = RedisReplayStore::connect(client, "p:", Duration::from_secs(5))
        .await
        .unwrap();
    let store = RedisVenueStore::new(replay.connection(), "p:", Duration::from_secs(5));
    assert_eq!(
        store.key("west-lake", DAY),
        format!("p:{{v:west-lake:{DAY}}}")
    );
}
