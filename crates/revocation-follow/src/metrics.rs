//! A follower's counters and gauges, as plain atomics, read two ways: by callers through
//! [`MetricsSnapshot`], and as OpenTelemetry instruments on the global meter
//! ([`register`], names under `citypass.revocation.*`), observed at collection time so
//! the hot path does no metrics work at all.
//!
//! The OpenTelemetry instruments carry one attribute, `source` (`redis` or `watch`):
//! nothing about a subject, device or token ever becomes an attribute. They are made
//! when the follower starts, from whatever global meter provider is installed then
//! (`citypass_runtime::telemetry::init` installs one; before it, they are no-ops). Their
//! callbacks hold the follower's state weakly: once the follower and all its views are
//! gone they observe nothing.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::metrics::AsyncInstrument;
use opentelemetry::{InstrumentationScope, KeyValue};

use crate::config::Source;
use crate::view::{RevocationView, Shared, SourceState};

/// Instrumentation scope of the follower's instruments.
const SCOPE: &str = "citypass-revocation-follow";

/// The applied epoch (gauge): the set is complete up to it.
pub const EPOCH: &str = "citypass.revocation.epoch";
/// Seconds since the follower last heard from the log (gauge); absent before the first
/// sync.
pub const AGE: &str = "citypass.revocation.age";
/// Entries applied to the set, from any source (counter).
pub const ENTRIES_APPLIED: &str = "citypass.revocation.entries_applied";
/// Completed List resyncs, start-up included (counter).
pub const RESYNCS: &str = "citypass.revocation.resyncs";
/// Failed List resyncs (counter).
pub const RESYNC_FAILURES: &str = "citypass.revocation.resync_failures";
/// Gaps opened (counter).
pub const GAPS: &str = "citypass.revocation.gaps";
/// Redis errors, connection failures and disconnects (counter; `source=redis` only).
pub const REDIS_ERRORS: &str = "citypass.revocation.redis_errors";
/// Messages read from the follower's stream: Redis Stream messages (`source=redis`) or
/// Watch messages, heartbeats included (`source=watch`) (counter).
pub const STREAM_MESSAGES: &str = "citypass.revocation.stream_messages";
/// The one attribute on every instrument: `redis` or `watch`.
pub const SOURCE_ATTRIBUTE: &str = "source";

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) entries_applied: AtomicU64,
    pub(crate) stream_messages: AtomicU64,
    pub(crate) invalid_messages: AtomicU64,
    pub(crate) out_of_order: AtomicU64,
    pub(crate) gaps: AtomicU64,
    pub(crate) resyncs: AtomicU64,
    pub(crate) resync_failures: AtomicU64,
    pub(crate) list_pages: AtomicU64,
    pub(crate) redis_errors: AtomicU64,
    pub(crate) watch_messages: AtomicU64,
    pub(crate) watch_errors: AtomicU64,
    pub(crate) pruned: AtomicU64,
    pub(crate) pending: AtomicU64,
    pub(crate) epoch: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn inc(counter: &AtomicU64) {
    add(counter, 1);
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A follower's metrics at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Entries applied to the set, from any source ([`ENTRIES_APPLIED`]).
    pub entries_applied: u64,
    /// Stream messages read ([`STREAM_MESSAGES`] with `source=redis`).
    pub stream_messages: u64,
    /// Stream messages or List/Watch entries that did not decode or apply; each forces
    /// a resync (`revocation_follower_invalid_messages_total`).
    pub invalid_messages: u64,
    /// Stream entries that arrived above a missing epoch and were held
    /// (`revocation_follower_out_of_order_total`).
    pub out_of_order: u64,
    /// Gaps opened: times the follower started holding entries for a missing epoch
    /// ([`GAPS`]).
    pub gaps: u64,
    /// Completed List resyncs, start-up included ([`RESYNCS`]).
    pub resyncs: u64,
    /// Failed List resyncs ([`RESYNC_FAILURES`]).
    pub resync_failures: u64,
    /// List pages read (`revocation_follower_list_pages_total`).
    pub list_pages: u64,
    /// Redis errors, connection failures and disconnects ([`REDIS_ERRORS`]).
    pub redis_errors: u64,
    /// Watch messages received, heartbeats included ([`STREAM_MESSAGES`] with
    /// `source=watch`).
    pub watch_messages: u64,
    /// Watch streams that failed, ended or fell silent
    /// (`revocation_follower_watch_errors_total`).
    pub watch_errors: u64,
    /// Entries dropped by pruning (`revocation_follower_pruned_total`).
    pub pruned: u64,
    /// Entries held above a gap now (`revocation_follower_pending`).
    pub pending: u64,
    /// The epoch the set is complete up to ([`EPOCH`]).
    pub epoch: u64,
    /// Time since the log was last heard from; `None` before the first sync ([`AGE`],
    /// in seconds, not reported when `None`).
    pub age: Option<Duration>,
    /// Entries in the set (`revocation_follower_entries`).
    pub entries: u64,
    /// What the follower is connected to.
    pub source_state: SourceState,
}

impl Metrics {
    pub(crate) fn snapshot(&self, view: &RevocationView) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            entries_applied: get(&self.entries_applied),
            stream_messages: get(&self.stream_messages),
            invalid_messages: get(&self.invalid_messages),
            out_of_order: get(&self.out_of_order),
            gaps: get(&self.gaps),
            resyncs: get(&self.resyncs),
            resync_failures: get(&self.resync_failures),
            list_pages: get(&self.list_pages),
            redis_errors: get(&self.redis_errors),
            watch_messages: get(&self.watch_messages),
            watch_errors: get(&self.watch_errors),
            pruned: get(&self.pruned),
            pending: get(&self.pending),
            epoch: view.epoch(),
            age: view.age(),
            entries: view.len() as u64,
            source_state: view.source_state(),
        }
    }
}

/// Registers the follower's instruments on the global meter (see the module
/// documentation). Called once per follower, at start.
pub(crate) fn register(shared: &Arc<Shared>, source: &Source) {
    let meter = opentelemetry::global::meter_with_scope(
        InstrumentationScope::builder(SCOPE)
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    );
    let redis = matches!(source, Source::Redis { .. });
    let source = if redis { "redis" } else { "watch" };
    let weak = Arc::downgrade(shared);

    meter
        .u64_observable_gauge(EPOCH)
        .with_description("The epoch the revocation set is complete up to")
        .with_unit("{epoch}")
        .with_callback(observe(&weak, source, |shared| Some(shared.epoch())))
        .build();
    meter
        .f64_observable_gauge(AGE)
        .with_description(
            "Seconds since the revocation follower last heard from the log (absent before the first sync)",
        )
        .with_unit("s")
        .with_callback(observe(&weak, source, |shared| {
            shared.age().map(|age| age.as_secs_f64())
        }))
        .build();

    let stream_messages: Counter = if redis {
        |m| &m.stream_messages
    } else {
        |m| &m.watch_messages
    };
    let mut counters: Vec<(&'static str, &'static str, &'static str, Counter)> = vec![
        (
            ENTRIES_APPLIED,
            "Revocation log entries applied to the set",
            "{entry}",
            |m| &m.entries_applied,
        ),
        (
            RESYNCS,
            "Completed resyncs from RevocationService.List, start-up included",
            "{resync}",
            |m| &m.resyncs,
        ),
        (
            RESYNC_FAILURES,
            "Failed resyncs from RevocationService.List",
            "{resync}",
            |m| &m.resync_failures,
        ),
        (
            GAPS,
            "Gaps opened: entries held above a missing epoch",
            "{gap}",
            |m| &m.gaps,
        ),
        (
            STREAM_MESSAGES,
            "Messages read from the Redis Stream or the Watch stream",
            "{message}",
            stream_messages,
        ),
    ];
    if redis {
        counters.push((
            REDIS_ERRORS,
            "Redis errors, connection failures and disconnects",
            "{error}",
            |m| &m.redis_errors,
        ));
    }
    for (name, description, unit, counter) in counters {
        meter
            .u64_observable_counter(name)
            .with_description(description)
            .with_unit(unit)
            .with_callback(observe(&weak, source, move |shared| {
                Some(counter(&shared.metrics).load(Ordering::Relaxed))
            }))
            .build();
    }
}

/// Picks one counter out of [`Metrics`].
type Counter = fn(&Metrics) -> &AtomicU64;

/// A callback observing `read` of the follower's state, if it is still alive and
/// `read` has a value, with the `source` attribute.
fn observe<T>(
    shared: &Weak<Shared>,
    source: &'static str,
    read: impl Fn(&Shared) -> Option<T> + Send + Sync + 'static,
) -> impl Fn(&dyn AsyncInstrument<T>) + Send + Sync + 'static {
    let shared = shared.clone();
    let attributes = [KeyValue::new(SOURCE_ATTRIBUTE, Cow::Borrowed(source))];
    move |observer| {
        if let Some(value) = shared.upgrade().and_then(|shared| read(&shared)) {
            observer.observe(value, &attributes);
        }
    }
}
