//! Identity's feed of face templates into the verifier's galleries
//! (ListFaceTemplateChanges), followed by polling.
//!
//! Identity stores each template sealed (AES-256-GCM, `citypass_face::template`) and
//! lists every subject whose template or consents changed after a cursor, at its latest
//! state: a template with its live purposes, or none (withdrawn, deleted). The verifier
//! holds the same template keys, opens each template as it arrives, and keeps the
//! embeddings in memory only ([`FaceGalleries`]). Polling, not a stream: a withdrawal
//! reaches every replica within `face.feed.poll_interval` (2 s); while polls fail the
//! galleries are still used until `face.feed.max_age` (30 s) after the last complete
//! sync, then no template is used at all (every holder reads as not enrolled, and a
//! counter that requires the holder confirmed checks the ID card). So a withdrawal
//! takes at most `poll_interval` to take effect, or `max_age` while identity is down.
//!
//! Only counter-enrolled templates with a live `COUNTER_CHECK` consent serve the
//! counters' 1:1 check: a template enrolled from the app shows whatever face the phone's
//! holder chose, so it cannot prove that the person at the counter is the code's owner.
//! Templates with a live `FACE_PASS` consent (from either channel) go into one gallery
//! per place the consent names (`face_pass_places`); a change or a withdrawal replaces
//! or removes every place's row at once. Stale galleries serve no face pass either: the
//! gate is answered FACE_PASS_UNAVAILABLE and asks for the code.

use std::sync::Arc;
use std::time::Duration;

use citypass_face::TemplateChannel;
use citypass_face::{SealedTemplate, TemplateKeys};
use citypass_proto::v1::identity_service_client::IdentityServiceClient;
use citypass_proto::v1::{
    FaceChannel, FacePurpose, FaceTemplateChange, ListFaceTemplateChangesRequest,
};
use citypass_runtime::InjectTraceContext;
use citypass_token::{DeviceId, SubjectId};
use tonic::transport::Channel;

use super::FaceGalleries;

/// Changes asked for per call.
const PAGE_SIZE: i32 = 500;

/// Most pages one pass reads before it lets the galleries be used again (a pass
/// resumes from its cursor at the next poll).
const MAX_PAGES_PER_PASS: usize = 1_000;

/// Why a pass of the feed stopped.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// Identity did not answer (its status code only).
    #[error("identity's face template feed failed: {0}")]
    Unavailable(tonic::Code),
    /// The answer broke the API: a cursor that went backwards.
    #[error("identity's face template feed answered a cursor that went backwards")]
    CursorBackwards,
}

/// Whether identity's feed is behind `cursor`: its last sequence (when it says) is below
/// the cursor, so identity's sequence was wound back (SECURITY.md F5).
fn behind(last_sequence: Option<i64>, cursor: i64) -> bool {
    last_sequence.is_some_and(|last| last < cursor)
}

/// The feed's client and the keys that open its templates.
pub struct FaceFeed {
    client: IdentityServiceClient<InjectTraceContext<Channel>>,
    keys: TemplateKeys,
}

impl std::fmt::Debug for FaceFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceFeed")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl FaceFeed {
    /// Over `channel` (the verifier's upstream channel to identity, with its own
    /// certificate: identity serves the feed to `service:verifier` only).
    pub fn new(channel: Channel, keys: TemplateKeys) -> Self {
        FaceFeed {
            client: IdentityServiceClient::new(InjectTraceContext::new(channel)),
            keys,
        }
    }

    /// Reads the changes after `cursor` until none is left (or a pass's page limit),
    /// applies them to `galleries` and moves `cursor` past each page applied (so a
    /// pass that fails half way resumes where it stopped); marks the galleries synced
    /// when none is left, and answers whether that was reached.
    pub async fn sync(
        &self,
        galleries: &FaceGalleries,
        cursor: &mut i64,
    ) -> Result<bool, FeedError> {
        for _ in 0..MAX_PAGES_PER_PASS {
            let answer = self
                .client
                .clone()
                .list_face_template_changes(ListFaceTemplateChangesRequest {
                    after_sequence: *cursor,
                    page_size: PAGE_SIZE,
                })
                .await
                .map_err(|status| FeedError::Unavailable(status.code()))?
                .into_inner();
            if behind(answer.last_sequence, *cursor) {
                // Identity numbers changes from an earlier point than this cursor (its
                // database was restored or replaced): changes after the restore would
                // stay invisible. Drop every template and read the feed again from 0.
                tracing::warn!(
                    "identity's face feed is behind this verifier's cursor; reading it again from the start"
                );
                galleries.clear();
                *cursor = 0;
                continue;
            }
            if answer.next_sequence < *cursor {
                return Err(FeedError::CursorBackwards);
            }
            for change in answer.changes {
                self.apply(galleries, change);
            }
            *cursor = answer.next_sequence;
            if !answer.more {
                galleries.mark_synced();
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Reads the whole feed from the start into fresh galleries and, once it is read
    /// to the end, swaps them in for `galleries` and moves `cursor` to where that read
    /// ended. A rebuild that fails or does not reach the end changes nothing.
    pub async fn rebuild(
        &self,
        galleries: &FaceGalleries,
        cursor: &mut i64,
    ) -> Result<bool, FeedError> {
        let fresh = FaceGalleries::new();
        let mut from_start = 0;
        if !self.sync(&fresh, &mut from_start).await? {
            return Ok(false);
        }
        galleries.replace_with(&fresh);
        *cursor = from_start;
        galleries.mark_synced();
        Ok(true)
    }

    /// Polls every `interval` from the start of the feed, and rebuilds the galleries
    /// whole every `rebuild_every` ([`FaceFeed::rebuild`]), with a task that ends when
    /// `galleries` is dropped. Call inside a tokio runtime.
    pub fn follow(
        self,
        galleries: &Arc<FaceGalleries>,
        interval: Duration,
        rebuild_every: Duration,
    ) {
        let weak = Arc::downgrade(galleries);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut cursor = 0;
            let mut rebuilt = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                let Some(galleries) = weak.upgrade() else {
                    return;
                };
                if rebuilt.elapsed() >= rebuild_every {
                    match self.rebuild(&galleries, &mut cursor).await {
                        Ok(true) => rebuilt = tokio::time::Instant::now(),
                        Ok(false) => {}
                        Err(err) => {
                            tracing::warn!(error = %err, "face templates not rebuilt");
                        }
                    }
                    continue;
                }
                if let Err(err) = self.sync(&galleries, &mut cursor).await {
                    tracing::warn!(error = %err, "face templates not refreshed");
                }
            }
        });
    }

    /// One subject's latest state: enrolled for counter checks or not, and for face
    /// pass at which places (the template opened once for both).
    fn apply(&self, galleries: &FaceGalleries, change: FaceTemplateChange) {
        let Ok(subject) = SubjectId::parse(&change.subject_id) else {
            tracing::warn!("face template feed: a change without a valid subject id, skipped");
            return;
        };
        let template = change.template.as_ref();
        let counter = template.filter(|t| {
            t.channel == FaceChannel::Counter as i32
                && t.purposes.contains(&(FacePurpose::CounterCheck as i32))
        });
        // Face pass takes a template from either channel: the rider chose to walk
        // through by face at these places, whichever way they enrolled it.
        let pass = template.filter(|t| {
            t.purposes.contains(&(FacePurpose::FacePass as i32)) && !t.face_pass_places.is_empty()
        });
        let opened = match template.filter(|_| counter.is_some() || pass.is_some()) {
            None => None,
            Some(template) => {
                let sealed = SealedTemplate {
                    key_id: u16::try_from(template.key_id).unwrap_or(0),
                    bytes: template.sealed.clone(),
                };
                // Opened as the channel the feed states: the channel is bound into the
                // sealing, so a row relabelled (an app's as a counter's) does not open
                // and is used for nothing (finding F4).
                let channel = match FaceChannel::try_from(template.channel) {
                    Ok(FaceChannel::App) => Ok(TemplateChannel::App),
                    Ok(FaceChannel::Counter) => Ok(TemplateChannel::Counter),
                    _ => Err(citypass_face::TemplateError::Open),
                };
                match channel.and_then(|c| self.keys.open(&change.subject_id, c, &sealed)) {
                    Ok(embedding) => Some(embedding),
                    Err(err) => {
                        // The error names a key id at most, never the subject or the bytes.
                        tracing::warn!(error = %err, "face template feed: a template does not open; not used");
                        None
                    }
                }
            }
        };
        match (&opened, counter) {
            (Some(embedding), Some(_)) => galleries.enrol_counter(subject, embedding),
            _ => {
                galleries.withdraw_counter(&subject);
            }
        }
        match (&opened, pass) {
            (Some(embedding), Some(pass)) => {
                // An app enrolment names its device (unusable once that is revoked).
                let device = (pass.channel == FaceChannel::App as i32)
                    .then(|| DeviceId::parse(&pass.enrolled_by_device_id).ok())
                    .flatten();
                galleries.enrol_face_pass(subject, &pass.face_pass_places, embedding, device);
            }
            _ => {
                galleries.withdraw_face_pass(&subject);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_wound_back_below_the_cursor_is_read_again() {
        assert!(behind(Some(10), 11));
        assert!(behind(Some(0), 5));
        assert!(!behind(Some(11), 11));
        assert!(!behind(Some(12), 11));
        // An identity that does not say (older than the field): no resync.
        assert!(!behind(None, 11));
        assert!(!behind(Some(0), 0));
    }
}
