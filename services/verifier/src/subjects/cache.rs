//! Identity's subject profiles, cached for a bounded age: never a call per scan on
//! the hot path.
//!
//! - **Age.** A profile fetched less than `max_age` ago is answered from memory; an
//!   older one is fetched again. So an attribute change or a suspension reaches the
//!   gates within `max_age` (plus one call); a subject *revocation* does not wait for
//!   it (the revocation step refuses at once).
//! - **Size.** At most `capacity` subjects. When full, expired entries are dropped
//!   first; if that frees nothing, an arbitrary eighth of the entries goes (the map's
//!   own order): amortised constant work per miss, no order to keep per hit. A small
//!   hand-written map rather than a cache crate: the tree has none, and moka (the
//!   usual choice) brings a large dependency tree for what is ~100 lines here.
//! - **Coalescing.** Concurrent misses for one subject share one call: the first
//!   starts it, the others wait on the same shared future.
//! - **Deadlines.** The call carries the earlier of the scan's deadline and the
//!   upstream's request timeout; a waiter gives up at its own deadline. A failure or
//!   timeout is [`SubjectsError::Unavailable`] (identity's NOT_FOUND is
//!   [`SubjectsError::UnknownSubject`]); failures are not cached.
//!
//! Metrics on the runtime's meter: `citypass.verifier.subjects.cache` (counter) by
//! `result` = `hit`, `miss`, `error`. No subject in any attribute.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use citypass_runtime::Deadline;
use citypass_token::SubjectId;
use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use tokio::time::Instant;

use crate::subjects::{SubjectProfile, SubjectsError};

/// The cache counter's name.
pub const CACHE_METRIC: &str = "citypass.verifier.subjects.cache";

/// Where profiles come from (identity's GetSubjectProfile; a fake in tests).
pub trait ProfileSource: Send + Sync + 'static {
    /// The subject's profile, or `UnknownSubject` / `Unavailable`, within `deadline`.
    fn fetch(
        &self,
        subject: SubjectId,
        deadline: Deadline,
    ) -> BoxFuture<'_, Result<SubjectProfile, SubjectsError>>;
}

type Fetch = Shared<BoxFuture<'static, Result<Arc<SubjectProfile>, SubjectsError>>>;

#[derive(Default)]
struct Entry {
    /// The last profile fetched, and when.
    ready: Option<(Arc<SubjectProfile>, Instant)>,
    /// The call under way, shared by every waiter.
    pending: Option<Fetch>,
}

struct Inner {
    source: Arc<dyn ProfileSource>,
    max_age: Duration,
    capacity: usize,
    timeout: Duration,
    entries: Mutex<HashMap<SubjectId, Entry>>,
    counter: Counter<u64>,
}

/// The cache; see the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct ProfileCache(Arc<Inner>);

impl std::fmt::Debug for ProfileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileCache")
            .field("max_age", &self.0.max_age)
            .field("capacity", &self.0.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl ProfileCache {
    /// Profiles from `source`, each reused for `max_age`, at most `capacity` (at least
    /// 1) of them, each call bounded by `timeout`.
    pub fn new(
        source: Arc<dyn ProfileSource>,
        max_age: Duration,
        capacity: usize,
        timeout: Duration,
    ) -> Self {
        let counter = opentelemetry::global::meter("citypass-verifier")
            .u64_counter(CACHE_METRIC)
            .with_description("Subject profile lookups, by result (hit, miss, error)")
            .build();
        ProfileCache(Arc::new(Inner {
            source,
            max_age,
            capacity: capacity.max(1),
            timeout,
            entries: Mutex::new(HashMap::new()),
            counter,
        }))
    }

    /// Subjects held (fetched or being fetched).
    pub fn len(&self) -> usize {
        self.0
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The subject's profile: from memory when younger than `max_age`, else from the
    /// source (one call for concurrent misses), within `deadline`.
    pub async fn get(
        &self,
        subject: SubjectId,
        deadline: Option<Deadline>,
    ) -> Result<Arc<SubjectProfile>, SubjectsError> {
        let call_deadline = {
            let upstream = Deadline::after(self.0.timeout);
            deadline.map_or(upstream, |d| d.min(upstream))
        };
        let fetch = {
            let mut entries = self
                .0
                .entries
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((profile, at)) = entries.get(&subject).and_then(|e| e.ready.as_ref())
                && at.elapsed() < self.0.max_age
            {
                self.count("hit");
                return Ok(profile.clone());
            }
            self.count("miss");
            if !entries.contains_key(&subject) && entries.len() >= self.0.capacity {
                self.evict(&mut entries);
            }
            let entry = entries.entry(subject).or_default();
            match &entry.pending {
                Some(pending) => pending.clone(),
                None => {
                    let fetch = self.start(subject, call_deadline);
                    entry.pending = Some(fetch.clone());
                    fetch
                }
            }
        };
        let answer = match call_deadline.run(fetch).await {
            Ok(answer) => answer,
            Err(_) => Err(SubjectsError::Unavailable),
        };
        if answer.is_err() {
            self.count("error");
        }
        answer
    }

    /// The shared call for `subject`; it files its own result.
    fn start(&self, subject: SubjectId, deadline: Deadline) -> Fetch {
        let inner = self.0.clone();
        async move {
            let answer = match deadline.run(inner.source.fetch(subject, deadline)).await {
                Ok(Ok(profile)) => Ok(Arc::new(profile)),
                Ok(Err(err)) => Err(err),
                Err(_) => Err(SubjectsError::Unavailable),
            };
            let mut entries = inner.entries.lock().unwrap_or_else(PoisonError::into_inner);
            match &answer {
                Ok(profile) => {
                    let entry = entries.entry(subject).or_default();
                    entry.pending = None;
                    entry.ready = Some((profile.clone(), Instant::now()));
                }
                Err(_) => {
                    // Nothing young enough to keep: forget the subject (a stale
                    // profile is never answered).
                    entries.remove(&subject);
                }
            }
            answer
        }
        .boxed()
        .shared()
    }

    /// Makes room for one more subject.
    fn evict(&self, entries: &mut HashMap<SubjectId, Entry>) {
        let max_age = self.0.max_age;
        entries.retain(|_, e| {
            e.pending.is_some()
                || e.ready
                    .as_ref()
                    .is_some_and(|(_, at)| at.elapsed() < max_age)
        });
        if entries.len() >= self.0.capacity {
            let drop = (self.0.capacity / 8).max(1);
            let victims: Vec<SubjectId> = entries
                .iter()
                .filter(|(_, e)| e.pending.is_none())
                .map(|(id, _)| *id)
                .take(drop)
                .collect();
            for id in victims {
                entries.remove(&id);
            }
        }
    }

    fn count(&self, result: &'static str) {
        self.0.counter.add(1, &[KeyValue::new("result", result)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citypass_proto::v1::{AssuranceLevel, FareClass, SubjectStatus};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts calls; answers after `delay`; fails while `fail` is set.
    struct Counting {
        calls: AtomicUsize,
        delay: Duration,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Counting {
        fn new(delay: Duration) -> Arc<Self> {
            Arc::new(Counting {
                calls: AtomicUsize::new(0),
                delay,
                fail: false.into(),
            })
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    fn profile() -> SubjectProfile {
        SubjectProfile {
            status: SubjectStatus::Active,
            assurance: AssuranceLevel::RealNameVerified,
            fare_class: FareClass::Adult,
            medical_insurance_linked: false,
            transit_account: "00".repeat(16),
            government_pseudonym: None,
            masked_name: "L* L**".to_owned(),
        }
    }

    impl ProfileSource for Counting {
        fn fetch(
            &self,
            subject: SubjectId,
            _deadline: Deadline,
        ) -> BoxFuture<'_, Result<SubjectProfile, SubjectsError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                if self.fail.load(Ordering::SeqCst) {
                    return Err(SubjectsError::Unavailable);
                }
                if subject.as_bytes()[0] == 0xee {
                    return Err(SubjectsError::UnknownSubject);
                }
                Ok(profile())
            })
        }
    }

    fn subject(n: u8) -> SubjectId {
        SubjectId::from_bytes([n; 16])
    }

    const LONG: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn a_profile_is_reused_for_its_age_then_fetched_again() {
        let source = Counting::new(Duration::ZERO);
        let cache = ProfileCache::new(source.clone(), Duration::from_secs(60), 10, LONG);
        cache.get(subject(1), None).await.unwrap();
        cache.get(subject(1), None).await.unwrap();
        assert_eq!(source.calls(), 1, "the second is a hit");
        tokio::time::advance(Duration::from_secs(59)).await;
        cache.get(subject(1), None).await.unwrap();
        assert_eq!(source.calls(), 1, "still young enough");
        tokio::time::advance(Duration::from_secs(2)).await;
        cache.get(subject(1), None).await.unwrap();
        assert_eq!(source.calls(), 2, "past max_age: fetched again");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_misses_make_one_call() {
        let source = Counting::new(Duration::from_millis(100));
        let cache = ProfileCache::new(source.clone(), Duration::from_secs(60), 10, LONG);
        let all = futures::future::join_all((0..20).map(|_| cache.get(subject(2), None))).await;
        assert!(all.iter().all(Result::is_ok));
        assert_eq!(source.calls(), 1);
        // Another subject is its own call.
        cache.get(subject(3), None).await.unwrap();
        assert_eq!(source.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_size_stays_bounded() {
        let source = Counting::new(Duration::ZERO);
        let cache = ProfileCache::new(source.clone(), Duration::from_secs(60), 16, LONG);
        for n in 0..100 {
            cache.get(subject(n), None).await.unwrap();
            assert!(cache.len() <= 16, "{} held", cache.len());
        }
        assert_eq!(source.calls(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_and_timeouts_are_unavailable_and_not_cached() {
        let source = Counting::new(Duration::ZERO);
        let cache = ProfileCache::new(source.clone(), Duration::from_secs(60), 10, LONG);
        source.fail.store(true, Ordering::SeqCst);
        assert_eq!(
            cache.get(subject(4), None).await.unwrap_err(),
            SubjectsError::Unavailable
        );
        source.fail.store(false, Ordering::SeqCst);
        cache.get(subject(4), None).await.unwrap();
        assert_eq!(source.calls(), 2, "the failure was not kept");
        assert_eq!(
            cache.get(subject(0xee), None).await.unwrap_err(),
            SubjectsError::UnknownSubject
        );

        // A source slower than the scan's deadline, and than the upstream timeout.
        let slow = Counting::new(Duration::from_secs(10));
        let cache = ProfileCache::new(slow.clone(), Duration::from_secs(60), 10, LONG);
        let started = Instant::now();
        let deadline = Deadline::after(Duration::from_millis(300));
        assert_eq!(
            cache.get(subject(5), Some(deadline)).await.unwrap_err(),
            SubjectsError::Unavailable
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        let started = Instant::now();
        assert_eq!(
            cache.get(subject(6), None).await.unwrap_err(),
            SubjectsError::Unavailable
        );
        let waited = started.elapsed();
        assert!(
            waited >= LONG && waited < Duration::from_secs(6),
            "{waited:?}"
        );
    }
}
