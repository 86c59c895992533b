//! Resync: RevocationService.ListRevocations since the set's epoch, page after page, until the
//! set reaches the head the service reported, checking the chain on the way; and the
//! rebuild, for a set that turns out to be off the service's chain.
//!
//! A resync **confirms** the set (security review, finding 6): every entry List returns
//! must follow the set's chain hash, and once the set is at List's head its chain hash
//! must be the head's (or, if the stream has meanwhile taken the set further, the one
//! the set had at that epoch). So a successful resync proves that everything the set
//! applied, from wherever it came, is the service's log. If not, the set holds an entry
//! the log does not have (a forged stream message that chained onto the set's head; a
//! set ahead of the log's head, which List answers OUT_OF_RANGE): a set cannot un-apply
//! an entry, so the follower **rebuilds**: List from epoch 0 into a fresh set, each
//! entry checked against the chain and the end against the head, pruned as it goes,
//! then swapped in for the old one (which keeps answering meanwhile). The service is
//! reached over authenticated TLS, so what it says is the log; the head's signature
//! (for holders of the key set, e.g. gates) is not checked here.

use std::time::Duration;

use citypass_proto::v1::revocation_service_client::RevocationServiceClient;
use citypass_proto::v1::{ListRevocationsRequest, ListRevocationsResponse};
use citypass_revocation::proto::{from_proto, head_from_proto};
use citypass_revocation::{Chained, Head, RevocationSet};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::config::FollowerConfig;
use crate::counters::inc;
use crate::sequencer::{Origin, RecentChains};
use crate::state::Shared;

/// The RevocationService client a follower uses.
pub type RevocationClient = RevocationServiceClient<Channel>;

/// Why a resync failed. The follower keeps its set and retries.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResyncError {
    #[error("List failed: {0}")]
    Status(#[from] tonic::Status),
    #[error("List did not answer within {0:?}")]
    Timeout(Duration),
    #[error("List returned an entry that does not decode: {0}")]
    Invalid(String),
    #[error("List reported head {head} but returned nothing after epoch {epoch}")]
    Stuck { head: u64, epoch: u64 },
    #[error("the set is off the service's chain: {0}")]
    Diverged(String),
    #[error("the service's log does not chain: {0}")]
    Broken(String),
    #[error("cannot compare the chain at the service's head {0}: too far behind the set")]
    Unconfirmed(u64),
}

/// Brings the set to the service's head and confirms its chain (rebuilding it if it is
/// off the chain); returns the epoch reached. Success counts as hearing from the log
/// and as a confirmed check.
pub(crate) async fn resync(
    client: RevocationClient,
    shared: &Shared,
    config: &FollowerConfig,
) -> Result<u64, ResyncError> {
    let started = Instant::now();
    let mut client = client;
    let result = match pages(&mut client, shared, config).await {
        Err(ResyncError::Diverged(why)) => {
            tracing::warn!(reason = %why, "revocation set is off the service's chain; rebuilding it from List");
            shared.unconfirm();
            rebuild(&mut client, shared, config).await
        }
        other => other,
    };
    finish(shared, started, result)
}

/// Rebuilds the set from the service now, then catches up (the Watch follower, whose
/// stream showed the set off the chain).
pub(crate) async fn rebuild_now(
    client: RevocationClient,
    shared: &Shared,
    config: &FollowerConfig,
) -> Result<u64, ResyncError> {
    let started = Instant::now();
    let mut client = client;
    shared.unconfirm();
    let result = rebuild(&mut client, shared, config).await;
    finish(shared, started, result)
}

fn finish(
    shared: &Shared,
    started: Instant,
    result: Result<u64, ResyncError>,
) -> Result<u64, ResyncError> {
    match &result {
        Ok(epoch) => {
            inc(&shared.metrics.resyncs);
            shared.sequencer().restart_gap_window();
            shared.confirmed();
            shared.heard();
            tracing::debug!(epoch, took = ?started.elapsed(), "revocation resync done");
        }
        Err(_) => inc(&shared.metrics.resync_failures),
    }
    result
}

async fn list(
    client: &mut RevocationClient,
    config: &FollowerConfig,
    since: u64,
) -> Result<ListRevocationsResponse, ResyncError> {
    let request = ListRevocationsRequest {
        since_epoch: since,
        page_size: config.list_page_size,
        page_token: String::new(),
    };
    Ok(
        tokio::time::timeout(config.request_timeout, client.list_revocations(request))
            .await
            .map_err(|_| ResyncError::Timeout(config.request_timeout))??
            .into_inner(),
    )
}

/// A page's entries and head, decoded (nothing checked against any chain yet).
fn decode(
    shared: &Shared,
    page: &ListRevocationsResponse,
) -> Result<(Vec<Chained>, Head), ResyncError> {
    let invalid = |err: String| {
        inc(&shared.metrics.invalid_messages);
        ResyncError::Invalid(err)
    };
    let entries = page
        .entries
        .iter()
        .map(from_proto)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid(err.to_string()))?;
    let head = page
        .head
        .as_ref()
        .ok_or_else(|| invalid("a List page without its head".to_owned()))
        .and_then(|head| head_from_proto(head).map_err(|err| invalid(err.to_string())))?
        .head;
    if head.epoch != page.head_epoch {
        return Err(invalid(
            "a List page whose head is not head_epoch".to_owned(),
        ));
    }
    Ok((entries, head))
}

/// Reads List from the set's epoch up to the head, applying every page on the chain,
/// and confirms the chain at the head.
async fn pages(
    client: &mut RevocationClient,
    shared: &Shared,
    config: &FollowerConfig,
) -> Result<u64, ResyncError> {
    loop {
        let since = shared.applied_epoch();
        let page = match list(client, config, since).await {
            Err(ResyncError::Status(status)) if status.code() == tonic::Code::OutOfRange => {
                return Err(ResyncError::Diverged(format!(
                    "the set is at epoch {since}, beyond the log's head ({})",
                    status.message()
                )));
            }
            other => other?,
        };
        inc(&shared.metrics.list_pages);
        let (entries, head) = decode(shared, &page)?;
        let offered = shared.offer(Origin::Service, entries);
        if offered.invalid || offered.conflict {
            return Err(ResyncError::Diverged(format!(
                "the service's entries after epoch {since} do not follow the set's chain"
            )));
        }
        let epoch = shared.applied_epoch();
        if epoch >= head.epoch {
            return match shared.chain_at(head.epoch) {
                Some(chain) if chain == head.chain => Ok(epoch),
                Some(_) => Err(ResyncError::Diverged(format!(
                    "the set's chain hash at epoch {} is not the service's",
                    head.epoch
                ))),
                None => Err(ResyncError::Unconfirmed(head.epoch)),
            };
        }
        if epoch == since {
            return Err(ResyncError::Stuck {
                head: head.epoch,
                epoch,
            });
        }
    }
}

/// Builds a fresh set from ListRevocations since 0, checking the chain all the way and the head at
/// the end, and swaps it in; then catches up with [`pages`] (entries the stream brought
/// to the old set meanwhile).
async fn rebuild(
    client: &mut RevocationClient,
    shared: &Shared,
    config: &FollowerConfig,
) -> Result<u64, ResyncError> {
    let started = Instant::now();
    let mut set = RevocationSet::with_kinds(config.kinds);
    let mut recent = RecentChains::new(set.head());
    loop {
        let since = set.epoch();
        let page = list(client, config, since).await?;
        inc(&shared.metrics.list_pages);
        let (entries, head) = decode(shared, &page)?;
        for chained in entries {
            set.apply_chained(chained)
                .map_err(|err| ResyncError::Broken(err.to_string()))?;
            recent.push(set.head());
        }
        set.prune(citypass_token::unix_now());
        if set.epoch() >= head.epoch {
            if set.epoch() == head.epoch && set.chain() != head.chain {
                return Err(ResyncError::Broken(format!(
                    "the entries up to epoch {} do not chain to the head List reports",
                    head.epoch
                )));
            }
            break;
        }
        if set.epoch() == since {
            return Err(ResyncError::Stuck {
                head: head.epoch,
                epoch: since,
            });
        }
    }
    let epoch = set.epoch();
    shared.replace(set, recent);
    inc(&shared.metrics.rebuilds);
    tracing::warn!(epoch, took = ?started.elapsed(), "revocation set rebuilt from the service's log");
    match pages(client, shared, config).await {
        // Diverged again already: the next resync rebuilds again.
        Err(ResyncError::Diverged(why)) => Err(ResyncError::Diverged(why)),
        other => other,
    }
}
