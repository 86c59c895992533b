//! Resync: RevocationService.List since the set's epoch, page after page, until the
//! set reaches the head the service reported.

use std::time::Duration;

use citypass_proto::v1::ListRequest;
use citypass_proto::v1::revocation_service_client::RevocationServiceClient;
use citypass_revocation::proto::from_proto;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::config::FollowerConfig;
use crate::counters::inc;
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
    #[error("List returned an entry that does not apply: {0}")]
    Invalid(String),
    #[error("List reported head {head} but returned nothing after epoch {epoch}")]
    Stuck { head: u64, epoch: u64 },
}

/// Reads List from the set's epoch up to the head, applying every page; returns the
/// epoch reached. Success counts as hearing from the log.
pub(crate) async fn resync(
    mut client: RevocationClient,
    shared: &Shared,
    config: &FollowerConfig,
) -> Result<u64, ResyncError> {
    let started = Instant::now();
    let result = pages(&mut client, shared, config).await;
    match &result {
        Ok(epoch) => {
            inc(&shared.metrics.resyncs);
            shared.sequencer().restart_gap_window();
            shared.heard();
            tracing::debug!(epoch, took = ?started.elapsed(), "revocation resync done");
        }
        Err(_) => inc(&shared.metrics.resync_failures),
    }
    result
}

async fn pages(
    client: &mut RevocationClient,
    shared: &Shared,
    config: &FollowerConfig,
) -> Result<u64, ResyncError> {
    loop {
        let since = shared.applied_epoch();
        let request = ListRequest {
            since_epoch: since,
            page_size: config.list_page_size,
            page_token: String::new(),
        };
        let page = tokio::time::timeout(config.request_timeout, client.list(request))
            .await
            .map_err(|_| ResyncError::Timeout(config.request_timeout))??
            .into_inner();
        inc(&shared.metrics.list_pages);
        let entries = page
            .entries
            .iter()
            .map(from_proto)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| {
                inc(&shared.metrics.invalid_messages);
                ResyncError::Invalid(err.to_string())
            })?;
        let offered = shared.offer(entries);
        if offered.invalid {
            return Err(ResyncError::Invalid("see the log".into()));
        }
        let epoch = shared.applied_epoch();
        if epoch >= page.head_epoch {
            return Ok(epoch);
        }
        if epoch == since {
            return Err(ResyncError::Stuck {
                head: page.head_epoch,
                epoch,
            });
        }
    }
}
