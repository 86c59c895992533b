//! Face data in memory: consents, sealed templates, the feed, the processing record
//! and request nonces, under the store's one mutex.

use std::collections::{BTreeMap, HashMap};

use citypass_face::SealedTemplate;
use citypass_proto::v1::{DeviceStatus, FaceChannel, FacePurpose, SubjectStatus};
use futures::future::BoxFuture;

use super::{MemoryStore, State};
use crate::document::Date;
use crate::error::Error;
use crate::ids::SubjectId;
use crate::model::Timestamp;
use crate::model::face::{
    AUDIT_CONSENT, AUDIT_DELETE, AUDIT_ENROL, AUDIT_WITHDRAW, AuditEntry, Consent, Enrolment,
    FaceStats, FeedEntry, FeedTemplate, NewTemplate, Withdrawal,
};
use crate::store::{
    ACTION_FACE_CONSENT, ACTION_FACE_ENROL, FaceStore, UNBOUND_DEVICE_ACTOR, not_active,
};

/// Most expired nonces dropped per new one.
const EXPIRED_NONCE_BATCH: usize = 100;

#[derive(Debug, Default)]
pub(super) struct FaceState {
    /// (subject, purpose number) → consent; BTreeMap so a subject's come in purpose order.
    consents: BTreeMap<(SubjectId, i32), Consent>,
    templates: HashMap<SubjectId, StoredTemplate>,
    /// Subject → its latest change's sequence number.
    feed: HashMap<SubjectId, i64>,
    sequence: i64,
    audit: Vec<AuditEntry>,
    /// Nonce key → when its mark expires.
    nonces: HashMap<String, Timestamp>,
}

#[derive(Debug, Clone)]
struct StoredTemplate {
    sealed: SealedTemplate,
    channel: FaceChannel,
    device: Option<crate::ids::DeviceId>,
    enrolled_at: Timestamp,
}

impl FaceState {
    fn consents_of(&self, id: SubjectId) -> Vec<Consent> {
        self.consents
            .range((id, i32::MIN)..=(id, i32::MAX))
            .map(|(_, c)| c.clone())
            .collect()
    }

    fn note_change(&mut self, id: SubjectId) {
        self.sequence += 1;
        self.feed.insert(id, self.sequence);
    }

    fn audit(
        &mut self,
        id: SubjectId,
        action: &'static str,
        purpose: Option<FacePurpose>,
        channel: FaceChannel,
        actor: &str,
        now: Timestamp,
    ) {
        self.audit.push(AuditEntry {
            subject_id: id,
            action,
            purpose,
            channel,
            actor: actor.to_owned(),
            at: now,
        });
    }
}

impl FaceState {
    /// Deletes `id`'s app-enrolled template (one of its devices was just unbound); see
    /// [`UNBOUND_DEVICE_ACTOR`].
    pub(super) fn drop_app_template(&mut self, id: SubjectId, now: Timestamp) {
        if self
            .templates
            .get(&id)
            .is_some_and(|t| t.channel == FaceChannel::App)
        {
            self.templates.remove(&id);
            self.audit(
                id,
                AUDIT_DELETE,
                None,
                FaceChannel::App,
                UNBOUND_DEVICE_ACTOR,
                now,
            );
            self.note_change(id);
        }
    }
}

fn active(state: &State, id: SubjectId, action: &'static str) -> Result<(), Error> {
    let status = state.subject(id)?.subject.status;
    if status != SubjectStatus::Active {
        return Err(not_active(status, action));
    }
    Ok(())
}

impl FaceStore for MemoryStore {
    fn get_birth_date<'a>(&'a self, id: SubjectId) -> BoxFuture<'a, Result<Option<Date>, Error>> {
        Box::pin(async move { Ok(self.lock()?.subject(id)?.born_on) })
    }

    fn record_face_consent<'a>(
        &'a self,
        consent: Consent,
        actor: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Consent, Error>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            let id = consent.subject_id;
            active(&state, id, ACTION_FACE_CONSENT)?;
            if let Some(guardian) = consent.guardian {
                state.subject(guardian)?;
            }
            let face = &mut state.face;
            face.consents
                .insert((id, consent.purpose as i32), consent.clone());
            face.audit(
                id,
                AUDIT_CONSENT,
                Some(consent.purpose),
                consent.channel,
                actor,
                now,
            );
            if face.templates.contains_key(&id) {
                face.note_change(id);
            }
            Ok(consent)
        })
    }

    fn face_consents<'a>(&'a self, id: SubjectId) -> BoxFuture<'a, Result<Vec<Consent>, Error>> {
        Box::pin(async move {
            let state = self.lock()?;
            state.subject(id)?;
            Ok(state.face.consents_of(id))
        })
    }

    fn withdraw_face_consent<'a>(
        &'a self,
        id: SubjectId,
        purpose: Option<FacePurpose>,
        channel: FaceChannel,
        actor: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Withdrawal, Error>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            state.subject(id)?;
            let face = &mut state.face;
            let mut withdrawal = Withdrawal::default();
            for consent in face.consents_of(id) {
                if purpose.is_none_or(|p| p == consent.purpose) {
                    face.consents.remove(&(id, consent.purpose as i32));
                    face.audit(
                        id,
                        AUDIT_WITHDRAW,
                        Some(consent.purpose),
                        channel,
                        actor,
                        now,
                    );
                    withdrawal.withdrawn.push(consent.purpose);
                }
            }
            let had_template = face.templates.contains_key(&id);
            if had_template && face.consents_of(id).is_empty() {
                face.templates.remove(&id);
                face.audit(id, AUDIT_DELETE, None, channel, actor, now);
                withdrawal.template_deleted = true;
            }
            if had_template && !withdrawal.withdrawn.is_empty() {
                face.note_change(id);
            }
            Ok(withdrawal)
        })
    }

    fn enrol_face<'a>(
        &'a self,
        template: NewTemplate,
        actor: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Enrolment, Error>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            let id = template.subject_id;
            active(&state, id, ACTION_FACE_ENROL)?;
            let purposes: Vec<FacePurpose> = state
                .face
                .consents_of(id)
                .iter()
                .map(|c| c.purpose)
                .collect();
            if purposes.is_empty() {
                return Err(Error::FaceConsentRequired);
            }
            // The enrolling device is still bound (under the store's one lock, which an
            // unbind takes too).
            if let Some(device) = template.device {
                let bound = state.devices.get(&device).is_some_and(|r| {
                    r.device.subject_id == id && r.device.status == DeviceStatus::Active
                });
                if !bound {
                    return Err(Error::SigningDeviceNotActive);
                }
            }
            // A counter's template is not replaced from the app (finding F8).
            if template.channel == FaceChannel::App
                && state
                    .face
                    .templates
                    .get(&id)
                    .is_some_and(|t| t.channel == FaceChannel::Counter)
            {
                return Err(Error::CounterTemplateExists);
            }
            let enrolled_before = state.face.templates.len() as u64;
            let face = &mut state.face;
            face.templates.insert(
                id,
                StoredTemplate {
                    sealed: template.sealed,
                    channel: template.channel,
                    device: template.device,
                    enrolled_at: now,
                },
            );
            face.audit(id, AUDIT_ENROL, None, template.channel, actor, now);
            face.note_change(id);
            Ok(Enrolment {
                subject_id: id,
                purposes,
                channel: template.channel,
                enrolled_at: now,
                enrolled_before,
                enrolled_after: face.templates.len() as u64,
            })
        })
    }

    fn face_template<'a>(
        &'a self,
        id: SubjectId,
    ) -> BoxFuture<'a, Result<Option<SealedTemplate>, Error>> {
        Box::pin(async move {
            let state = self.lock()?;
            state.subject(id)?;
            Ok(state.face.templates.get(&id).map(|t| t.sealed.clone()))
        })
    }

    fn face_stats<'a>(&'a self) -> BoxFuture<'a, Result<FaceStats, Error>> {
        Box::pin(async move {
            let state = self.lock()?;
            let count = |purpose: FacePurpose| {
                state
                    .face
                    .consents
                    .keys()
                    .filter(|(_, p)| *p == purpose as i32)
                    .count() as u64
            };
            Ok(FaceStats {
                enrolled_people: state.face.templates.len() as u64,
                counter_check_consents: count(FacePurpose::CounterCheck),
                face_pass_consents: count(FacePurpose::FacePass),
            })
        })
    }

    fn face_last_sequence<'a>(&'a self) -> BoxFuture<'a, Result<i64, Error>> {
        Box::pin(async move { Ok(self.lock()?.face.sequence) })
    }

    fn face_changes<'a>(
        &'a self,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<FeedEntry>, Error>> {
        Box::pin(async move {
            let state = self.lock()?;
            let face = &state.face;
            let mut changed: Vec<(i64, SubjectId)> = face
                .feed
                .iter()
                .filter(|(_, seq)| **seq > after)
                .map(|(id, seq)| (*seq, *id))
                .collect();
            changed.sort_unstable();
            changed.truncate(limit);
            Ok(changed
                .into_iter()
                .map(|(sequence, id)| {
                    let consents = face.consents_of(id);
                    let template = face
                        .templates
                        .get(&id)
                        .filter(|_| !consents.is_empty())
                        .map(|t| FeedTemplate {
                            sealed: t.sealed.clone(),
                            purposes: consents.iter().map(|c| c.purpose).collect(),
                            face_pass_places: consents
                                .iter()
                                .find(|c| c.purpose == FacePurpose::FacePass)
                                .map(|c| c.places.clone())
                                .unwrap_or_default(),
                            enrolled_at: t.enrolled_at,
                            channel: t.channel,
                            device: t.device,
                        });
                    FeedEntry {
                        sequence,
                        subject_id: id,
                        template,
                    }
                })
                .collect())
        })
    }

    fn face_audit<'a>(&'a self, id: SubjectId) -> BoxFuture<'a, Result<Vec<AuditEntry>, Error>> {
        Box::pin(async move {
            let state = self.lock()?;
            state.subject(id)?;
            Ok(state
                .face
                .audit
                .iter()
                .filter(|a| a.subject_id == id)
                .cloned()
                .collect())
        })
    }

    fn first_use_nonce<'a>(
        &'a self,
        key: &'a str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            let nonces = &mut state.face.nonces;
            let expired: Vec<String> = nonces
                .iter()
                .filter(|(_, expiry)| **expiry <= now)
                .take(EXPIRED_NONCE_BATCH)
                .map(|(k, _)| k.clone())
                .collect();
            for k in expired {
                nonces.remove(&k);
            }
            match nonces.get(key) {
                Some(expiry) if *expiry > now => Ok(false),
                _ => {
                    nonces.insert(key.to_owned(), expires_at);
                    Ok(true)
                }
            }
        })
    }
}
