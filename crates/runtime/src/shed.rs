//! Calls refused for load, counted by why, where and by what kind of caller: the
//! counter `citypass.rpc.server.shed` (Prometheus: `citypass_rpc_server_shed_total`).
//!
//! A shed call also shows in `rpc.server.call.duration` as `RESOURCE_EXHAUSTED`, but
//! that status mixes three causes an operator answers differently: the pod is full
//! (add pods), one caller is over its rate (look at that caller), one caller holds too
//! many open calls (a client that leaks streams). So each is counted with:
//!
//! - `reason`: `overloaded` (the server's concurrency limit, [`crate::stack`]),
//!   `rate_limited` or `open_calls` (the caller's rate and open-call cap,
//!   [`crate::authz`]);
//! - `rpc.service`: the called service (only paths the server has reach either layer,
//!   so the set is bounded);
//! - `caller.kind`: `gate`, `service`, `operator` or `anonymous` (no certificate:
//!   citizens' apps, probes), and `caller.service`, the calling service's name, for
//!   services only. Never a gate's id (thousands of them: the metric's cardinality),
//!   an operator's name or anything about a citizen (personal data).

use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;

use crate::caller::Principal;

/// The counter's name.
pub const SHED: &str = "citypass.rpc.server.shed";

/// Why a call was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    /// No slot free under the server's concurrency limit.
    Overloaded,
    /// The caller is over its request rate.
    RateLimited,
    /// The caller holds as many open calls as it may.
    OpenCalls,
}

impl ShedReason {
    /// The `reason` attribute's value.
    pub fn name(self) -> &'static str {
        match self {
            ShedReason::Overloaded => "overloaded",
            ShedReason::RateLimited => "rate_limited",
            ShedReason::OpenCalls => "open_calls",
        }
    }
}

/// The counter, made from the global meter provider (so after telemetry is set up).
#[derive(Debug, Clone)]
pub struct ShedCounter {
    counter: Counter<u64>,
}

impl ShedCounter {
    /// Registers the counter on the global meter provider.
    pub fn new() -> Self {
        ShedCounter {
            counter: opentelemetry::global::meter("citypass-runtime")
                .u64_counter(SHED)
                .with_description("Calls refused for load, by reason, service and caller kind")
                .build(),
        }
    }

    /// Counts one call to `path` (`/package.Service/Method`) shed for `reason`, from
    /// `caller` (`None`: no certificate).
    pub fn record(&self, reason: ShedReason, path: &str, caller: Option<&Principal>) {
        let service = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .map_or("unknown", |(service, _)| service);
        let mut attributes = vec![
            KeyValue::new("reason", reason.name()),
            KeyValue::new("rpc.service", service.to_owned()),
        ];
        match caller {
            None => attributes.push(KeyValue::new("caller.kind", "anonymous")),
            Some(Principal::Gate(_)) => attributes.push(KeyValue::new("caller.kind", "gate")),
            Some(Principal::Operator { .. }) => {
                attributes.push(KeyValue::new("caller.kind", "operator"));
            }
            Some(Principal::Service(name)) => {
                attributes.push(KeyValue::new("caller.kind", "service"));
                attributes.push(KeyValue::new("caller.service", name.clone()));
            }
        }
        self.counter.add(1, &attributes);
    }
}

impl Default for ShedCounter {
    fn default() -> Self {
        ShedCounter::new()
    }
}
