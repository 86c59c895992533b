//! A follower's counters and gauges (`counters`) as OpenTelemetry instruments on the
//! global meter ([`register`], names under `citypass.revocation.*`), observed at
//! collection time so the hot path does no metrics work at all.
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

use opentelemetry::metrics::AsyncInstrument;
use opentelemetry::{InstrumentationScope, KeyValue};

use crate::config::Source;
use crate::counters::Counters;
use crate::state::Shared;

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
/// Sets rebuilt from List because they were off the service's chain (counter).
pub const REBUILDS: &str = "citypass.revocation.rebuilds";
/// Entries whose chain hash conflicted with the one applied at their epoch (counter).
pub const CHAIN_CONFLICTS: &str = "citypass.revocation.chain_conflicts";
/// Gaps opened (counter).
pub const GAPS: &str = "citypass.revocation.gaps";
/// Redis errors, connection failures and disconnects (counter; `source=redis` only).
pub const REDIS_ERRORS: &str = "citypass.revocation.redis_errors";
/// Messages read from the follower's stream: Redis Stream messages (`source=redis`) or
/// Watch messages, heartbeats included (`source=watch`) (counter).
pub const STREAM_MESSAGES: &str = "citypass.revocation.stream_messages";
/// The one attribute on every instrument: `redis` or `watch`.
pub const SOURCE_ATTRIBUTE: &str = "source";

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
            "Completed resyncs from RevocationService.ListRevocations, start-up included",
            "{resync}",
            |m| &m.resyncs,
        ),
        (
            RESYNC_FAILURES,
            "Failed resyncs from RevocationService.ListRevocations",
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
            REBUILDS,
            "Revocation sets rebuilt from List because they were off the service's hash chain",
            "{rebuild}",
            |m| &m.rebuilds,
        ),
        (
            CHAIN_CONFLICTS,
            "Revocation entries whose chain hash conflicted with the one applied at their epoch",
            "{entry}",
            |m| &m.conflicts,
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

/// Picks one counter out of [`Counters`].
type Counter = fn(&Counters) -> &AtomicU64;

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
