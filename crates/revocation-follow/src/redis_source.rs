//! Following the Redis Stream, with List as the authority.
//!
//! One task, one dedicated Redis connection (an `XREAD BLOCK` holds it):
//!
//! 1. Connect and read the stream's last id (the anchor), *then* resync from List.
//!    Every message at or before the anchor was appended after its commit, so before
//!    the List read began: List covers it. Everything after the anchor is read from the
//!    stream. Duplicates of what List returned are dropped by epoch.
//! 2. Tail: `XREAD BLOCK` from the last id read; entries go through the
//!    [`Sequencer`] (epoch order, gaps held for the gap window, then a List resync;
//!    each entry applied only if it follows the set's hash chain). An entry that does
//!    not, or that conflicts with the one applied or held at its epoch, asks for a
//!    resync at once, which confirms the set's chain with the service's or rebuilds the
//!    set (see `resync`).
//! 3. Every `check_interval`, ListRevocations since the epoch anyway: a publish that failed with
//!    no later entry to reveal the gap is picked up there, and the set's chain hash is
//!    compared with the service's head, which reveals a forged entry that chained onto
//!    the set's head and whose real counterpart never came (deleted from the stream).
//!    Resyncs run concurrently with the stream reads, so a slow List never holds up
//!    entries arriving on the stream.
//!
//!    **Freshness.** Redis alone vouches for nothing (security review, finding 6):
//!    anyone who can write to it can keep it answering while hiding entries. A
//!    successful read with no gap outstanding and no resync needed counts as hearing
//!    from the log only while the last *confirmed* check (a resync that ended on the
//!    service's head with the same chain hash) is at most `check_interval +
//!    request_timeout` old, which a healthy follower always is. When List checks fail,
//!    the data therefore ages like any data the service no longer vouches for, and
//!    callers (the issuer's `max_age`) fail closed; the checks are retried.
//! 4. Any Redis error, timeout or disconnect ends the tail: the stream is no longer
//!    trusted (messages may have been lost while it was down, and a restarted Redis
//!    has a new stream), held entries are dropped, and the follower polls List every
//!    `poll_interval` while it reconnects every `retry_interval`; once connected, it
//!    starts again at 1.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use citypass_revocation::stream::{FIELD_ENTRY, FIELD_EPOCH, decode_message};
use redis::AsyncCommands as _;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use tokio::time::Instant;

use crate::config::FollowerConfig;
use crate::counters::inc;
use crate::prune::{Pruner, clamp};
use crate::resync::{ResyncError, RevocationClient, resync};
use crate::retry::Retry;
use crate::sequencer::Origin;
use crate::source_state::SourceState;
use crate::state::Shared;

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

async fn within<T>(
    limit: Duration,
    work: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, LinkError> {
    Ok(tokio::time::timeout(limit, work)
        .await
        .map_err(|_| LinkError::Timeout(limit))??)
}

type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub(crate) async fn run(
    shared: Arc<Shared>,
    client: RevocationClient,
    config: FollowerConfig,
    redis: redis::Client,
    key: String,
) {
    let mut pruner = Pruner::new(config.prune_interval);
    let mut lost = false;
    let mut next_poll = Instant::now();
    let mut reconnect = Retry::new(&config);
    loop {
        match connect(&redis, &key, &config).await {
            Ok((connection, anchor)) => {
                reconnect.reset();
                if lost {
                    tracing::info!("revocation stream reachable again; resyncing from List");
                }
                let err = tail(
                    &shared,
                    &client,
                    &config,
                    &mut pruner,
                    connection,
                    &key,
                    anchor,
                )
                .await;
                inc(&shared.metrics.redis_errors);
                tracing::warn!(error = %err, "lost the revocation stream; polling List until Redis is back");
                lost = true;
                // Nothing read before the loss is trusted to be complete.
                shared.sequencer().clear(&shared.metrics);
                next_poll = Instant::now();
            }
            Err(err) => {
                inc(&shared.metrics.redis_errors);
                if !lost {
                    tracing::warn!(error = %err, "cannot read the revocation stream; polling List until Redis answers");
                    lost = true;
                }
            }
        }
        shared.set_source_state(SourceState::Polling);
        if Instant::now() >= next_poll {
            if let Err(err) = resync(client.clone(), &shared, &config).await {
                tracing::debug!(error = %err, "revocation List poll failed");
            }
            next_poll = Instant::now() + config.poll_interval;
        }
        pruner.maybe(&shared);
        let wake = (Instant::now() + reconnect.next_pause()).min(next_poll);
        tokio::time::sleep_until(wake).await;
    }
}

/// A dedicated connection and the stream's last id (`0-0` for an empty stream).
async fn connect(
    redis: &redis::Client,
    key: &str,
    config: &FollowerConfig,
) -> Result<(MultiplexedConnection, String), LinkError> {
    // Responses are bounded here, per command: an XREAD BLOCK legitimately waits.
    let options = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.request_timeout))
        .set_response_timeout(None);
    let mut connection = within(
        config.request_timeout,
        redis.get_multiplexed_async_connection_with_config(&options),
    )
    .await?;
    let last: StreamRangeReply = within(
        config.request_timeout,
        connection.xrevrange_count(key, "+", "-", 1),
    )
    .await?;
    let anchor = last
        .ids
        .first()
        .map_or_else(|| "0-0".to_owned(), |m| m.id.clone());
    Ok((connection, anchor))
}

/// One `XREAD BLOCK wait` from `after`.
async fn read(
    mut connection: MultiplexedConnection,
    key: String,
    after: String,
    wait: Duration,
    count: usize,
    timeout: Duration,
) -> Result<Option<StreamReadReply>, LinkError> {
    let options = StreamReadOptions::default()
        .block(usize::try_from(wait.as_millis()).unwrap_or(usize::MAX))
        .count(count);
    within(
        wait + timeout,
        connection.xread_options(&[key.as_str()], &[after.as_str()], &options),
    )
    .await
}

/// Tails until Redis fails; returns why. Resyncs (needed, for a gap, or the periodic
/// check) run as a second future beside the pending read.
async fn tail(
    shared: &Shared,
    client: &RevocationClient,
    config: &FollowerConfig,
    pruner: &mut Pruner,
    connection: MultiplexedConnection,
    key: &str,
    anchor: String,
) -> LinkError {
    let mut last_id = anchor;
    // Resync generations: the set is known incomplete while `done < wanted` (after
    // connecting, after an invalid message).
    let mut wanted: u64 = 1;
    let mut done: u64 = 0;
    let mut next_resync = Instant::now();
    let mut next_check = Instant::now() + config.check_interval;
    let mut failing = false;
    let mut reading: Option<Pending<'_, Result<Option<StreamReadReply>, LinkError>>> = None;
    let mut resyncing: Option<Pending<'_, (u64, Result<u64, ResyncError>)>> = None;
    shared.set_source_state(SourceState::Streaming);
    loop {
        let now = Instant::now();
        if resyncing.is_none() {
            let gap = shared.sequencer().must_resync(config.gap_window);
            if ((done < wanted || gap) && now >= next_resync) || now >= next_check {
                let generation = wanted;
                let client = client.clone();
                resyncing = Some(Box::pin(async move {
                    (generation, resync(client, shared, config).await)
                }));
            }
        }
        if reading.is_none() {
            let mut until = (now + config.block).min(pruner.next());
            if resyncing.is_none() {
                until = until.min(next_check);
                if done < wanted {
                    until = until.min(next_resync);
                }
            }
            if let Some(deadline) = shared.sequencer().gap_deadline(config.gap_window) {
                until = until.min(deadline);
            }
            let wait = clamp(until.saturating_duration_since(now));
            reading = Some(Box::pin(read(
                connection.clone(),
                key.to_owned(),
                last_id.clone(),
                wait,
                config.read_count,
                config.request_timeout,
            )));
        }
        let resync_done = async {
            match resyncing.as_mut() {
                Some(future) => future.await,
                None => std::future::pending().await,
            }
        };
        let Some(reading_now) = reading.as_mut() else {
            unreachable!("a read is always pending here");
        };
        tokio::select! {
            result = reading_now => {
                reading = None;
                let reply = match result {
                    Ok(reply) => reply,
                    Err(err) => return err,
                };
                let mut entries = Vec::new();
                for stream in reply.into_iter().flat_map(|r| r.keys) {
                    for message in stream.ids {
                        inc(&shared.metrics.stream_messages);
                        let epoch: Option<Vec<u8>> = message.get(FIELD_EPOCH);
                        let entry: Option<Vec<u8>> = message.get(FIELD_ENTRY);
                        match decode_message(epoch.as_deref(), entry.as_deref()) {
                            Ok(chained) => entries.push(chained),
                            Err(err) => {
                                inc(&shared.metrics.invalid_messages);
                                tracing::warn!(error = %err, id = %message.id, "undecodable revocation stream message; resyncing");
                                wanted += 1;
                            }
                        }
                        last_id = message.id;
                    }
                }
                let offered = shared.offer(Origin::Stream, entries);
                if offered.invalid || offered.conflict {
                    // Only the service can say which of two chains is the log.
                    wanted += 1;
                }
                if done >= wanted
                    && !shared.sequencer().has_gap()
                    && shared.confirmed_within(config.check_interval + config.request_timeout)
                {
                    shared.heard();
                }
            }
            (generation, result) = resync_done => {
                resyncing = None;
                match result {
                    Ok(_) => {
                        done = done.max(generation);
                        if failing {
                            tracing::info!("revocation List answers again");
                            failing = false;
                        }
                        next_check = Instant::now() + config.check_interval;
                    }
                    Err(err) => {
                        if !failing {
                            tracing::warn!(error = %err, "revocation resync failed; retrying");
                            failing = true;
                        }
                        // A failed periodic check leaves the stream's data as complete
                        // as it was, but unconfirmed: it ages once the last confirmation
                        // is older than the window; a failed needed resync leaves it
                        // incomplete.
                        next_resync = Instant::now() + config.retry_interval;
                        next_check = next_check.max(next_resync);
                    }
                }
            }
        }
        pruner.maybe(shared);
    }
}
