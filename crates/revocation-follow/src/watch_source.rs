//! Following RevocationService.WatchRevocations: the backlog since the set's epoch, then new
//! entries, with a heartbeat about every second. Every message (heartbeats included)
//! counts as hearing from the log. A stream that fails, ends, falls silent for
//! `watch_silence` or sends entries that do not follow the set's epoch is dropped and
//! reopened from the set's epoch after `retry_interval`; meanwhile the set keeps
//! serving and its age grows.
//!
//! Entries are applied on the hash chain, and each heartbeat carries the service's
//! signed head: once the set is at the head's epoch its chain hash must be the head's.
//! An entry that does not follow the set's chain, or a head with another chain hash,
//! means the set is off the service's log (security review, finding 6): the follower
//! rebuilds it from List (see `resync`) before reopening Watch.

use std::sync::Arc;

use citypass_proto::v1::WatchRevocationsRequest;
use citypass_revocation::proto::{from_proto, head_from_proto};

use crate::config::FollowerConfig;
use crate::counters::inc;
use crate::prune::Pruner;
use crate::resync::{RevocationClient, rebuild_now};
use crate::retry::Retry;
use crate::sequencer::Origin;
use crate::source_state::SourceState;
use crate::state::Shared;

pub(crate) async fn run(shared: Arc<Shared>, mut client: RevocationClient, config: FollowerConfig) {
    let mut pruner = Pruner::new(config.prune_interval);
    let mut failing = false;
    let mut retry = Retry::new(&config);
    loop {
        let Ended {
            why,
            healthy,
            diverged,
        } = follow(&shared, &mut client, &config, &mut pruner).await;
        if healthy {
            retry.reset();
        }
        if diverged {
            tracing::warn!(reason = %why, "revocation set is off the service's chain; rebuilding it from List");
            if let Err(err) = rebuild_now(client.clone(), &shared, &config).await {
                tracing::warn!(error = %err, "revocation rebuild failed; retrying after reconnecting");
            }
        }
        inc(&shared.metrics.watch_errors);
        shared.set_source_state(SourceState::Disconnected);
        shared.sequencer().clear(&shared.metrics);
        if healthy || !failing {
            tracing::warn!(reason = %why, "revocation Watch ended; reconnecting");
        } else {
            tracing::debug!(reason = %why, "revocation Watch still down");
        }
        failing = true;
        pruner.maybe(&shared);
        tokio::time::sleep(retry.next_pause()).await;
    }
}

/// Why one Watch stream ended.
struct Ended {
    why: String,
    /// It delivered something before.
    healthy: bool,
    /// It showed the set off the service's chain.
    diverged: bool,
}

/// One Watch stream, until it ends.
async fn follow(
    shared: &Shared,
    client: &mut RevocationClient,
    config: &FollowerConfig,
    pruner: &mut Pruner,
) -> Ended {
    let ended = |why: String, healthy: bool| Ended {
        why,
        healthy,
        diverged: false,
    };
    let request = WatchRevocationsRequest {
        since_epoch: shared.applied_epoch(),
    };
    let mut stream =
        match tokio::time::timeout(config.request_timeout, client.watch_revocations(request)).await
        {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return ended(format!("Watch refused: {status}"), false),
            Err(_) => {
                let why = format!("Watch did not answer within {:?}", config.request_timeout);
                return ended(why, false);
            }
        };
    let mut healthy = false;
    loop {
        let message = match tokio::time::timeout(config.watch_silence, stream.message()).await {
            Ok(Ok(Some(message))) => message,
            Ok(Ok(None)) => return ended("the service ended the stream".to_owned(), healthy),
            Ok(Err(status)) => return ended(format!("Watch failed: {status}"), healthy),
            Err(_) => {
                let why = format!("no Watch message for {:?}", config.watch_silence);
                return ended(why, healthy);
            }
        };
        inc(&shared.metrics.watch_messages);
        let entries = match message
            .entries
            .iter()
            .map(from_proto)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(entries) => entries,
            Err(err) => {
                inc(&shared.metrics.invalid_messages);
                return ended(format!("Watch sent an invalid entry: {err}"), healthy);
            }
        };
        let heartbeat = entries.is_empty();
        let offered = shared.offer(Origin::Service, entries);
        if offered.invalid || offered.conflict {
            return Ended {
                why: "Watch sent entries that do not follow the set's chain".to_owned(),
                healthy,
                diverged: true,
            };
        }
        if shared.sequencer().has_gap() {
            let why = "Watch sent entries that do not follow the set's epoch";
            return ended(why.to_owned(), healthy);
        }
        if heartbeat {
            let head = match message.head.as_ref().map(head_from_proto) {
                Some(Ok(signed)) => signed.head,
                Some(Err(err)) => {
                    inc(&shared.metrics.invalid_messages);
                    return ended(format!("Watch sent an invalid head: {err}"), healthy);
                }
                None => {
                    inc(&shared.metrics.invalid_messages);
                    return ended(
                        "Watch sent a heartbeat without its head".to_owned(),
                        healthy,
                    );
                }
            };
            // A head beyond the set (entries on their way) or too far behind it to be
            // remembered says nothing either way.
            if shared
                .chain_at(head.epoch)
                .is_some_and(|chain| chain != head.chain)
            {
                return Ended {
                    why: format!(
                        "the service's chain hash at epoch {} is not the set's",
                        head.epoch
                    ),
                    healthy,
                    diverged: true,
                };
            }
        }
        shared.heard();
        shared.set_source_state(SourceState::Watching);
        healthy = true;
        pruner.maybe(shared);
    }
}
