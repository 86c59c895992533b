//! Following RevocationService.Watch: the backlog since the set's epoch, then new
//! entries, with a heartbeat about every second. Every message (heartbeats included)
//! counts as hearing from the log. A stream that fails, ends, falls silent for
//! `watch_silence` or sends entries that do not follow the set's epoch is dropped and
//! reopened from the set's epoch after `retry_interval`; meanwhile the set keeps
//! serving and its age grows.

use std::sync::Arc;

use citypass_proto::v1::WatchRequest;
use citypass_revocation::proto::from_proto;

use crate::config::FollowerConfig;
use crate::counters::inc;
use crate::prune::Pruner;
use crate::resync::RevocationClient;
use crate::retry::Retry;
use crate::source_state::SourceState;
use crate::state::Shared;

pub(crate) async fn run(shared: Arc<Shared>, mut client: RevocationClient, config: FollowerConfig) {
    let mut pruner = Pruner::new(config.prune_interval);
    let mut failing = false;
    let mut retry = Retry::new(&config);
    loop {
        let (why, healthy) = follow(&shared, &mut client, &config, &mut pruner).await;
        if healthy {
            retry.reset();
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

/// One Watch stream, until it ends; returns why it ended, and whether it delivered
/// anything before.
async fn follow(
    shared: &Shared,
    client: &mut RevocationClient,
    config: &FollowerConfig,
    pruner: &mut Pruner,
) -> (String, bool) {
    let request = WatchRequest {
        since_epoch: shared.applied_epoch(),
    };
    let mut stream = match tokio::time::timeout(config.request_timeout, client.watch(request)).await
    {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => return (format!("Watch refused: {status}"), false),
        Err(_) => {
            let why = format!("Watch did not answer within {:?}", config.request_timeout);
            return (why, false);
        }
    };
    let mut healthy = false;
    loop {
        let message = match tokio::time::timeout(config.watch_silence, stream.message()).await {
            Ok(Ok(Some(message))) => message,
            Ok(Ok(None)) => return ("the service ended the stream".to_owned(), healthy),
            Ok(Err(status)) => return (format!("Watch failed: {status}"), healthy),
            Err(_) => {
                let why = format!("no Watch message for {:?}", config.watch_silence);
                return (why, healthy);
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
                return (format!("Watch sent an invalid entry: {err}"), healthy);
            }
        };
        let offered = shared.offer(entries);
        if offered.invalid || shared.sequencer().has_gap() {
            let why = "Watch sent entries that do not follow the set's epoch";
            return (why.to_owned(), healthy);
        }
        shared.heard();
        shared.set_source_state(SourceState::Watching);
        healthy = true;
        pruner.maybe(shared);
    }
}
