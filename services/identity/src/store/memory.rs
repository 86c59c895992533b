//! The embedded store: everything in one process's memory, behind one mutex.
//!
//! For `citypass dev` and tests: no server to install, nothing survives a restart.
//! One `std::sync::Mutex` around the whole state makes every store call atomic (no
//! call awaits while holding it), which is how this backend keeps the same guarantees
//! PostgreSQL gets from transactions and constraints.

mod face;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use citypass_proto::v1::{DeviceStatus, SubjectStatus};
use futures::future::BoxFuture;

use super::{
    ACTION_BIND, ACTION_CHALLENGE, MAX_OUTSTANDING_CHALLENGES, SUPERSEDED_REASON, Store,
    not_active, status_name,
};
use crate::document::DocumentHash;
use crate::enrolment::{Authority, EnrolmentGrant};
use crate::error::Error;
use crate::ids::{CertSerial, DeviceId, SubjectId};
use crate::model::{
    AttributesUpdate, Certificate, CertificateOwner, CertificatePage, Challenge, Device,
    DevicePage, DeviceView, NewCertificate, NewDevice, NewSubject, StoredPseudonym, Subject,
    Timestamp,
};
use citypass_pseudonym::{KeyId, Pseudonym};

/// The in-memory store. Cloning shares the same data.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    subjects: HashMap<SubjectId, SubjectRecord>,
    /// The ACTIVE or SUSPENDED subject of each document.
    enrolled: HashMap<DocumentHash, SubjectId>,
    devices: HashMap<DeviceId, DeviceRecord>,
    /// Every public key ever bound.
    keys: HashSet<Vec<u8>>,
    challenges: HashMap<[u8; 32], ChallengeRecord>,
    certificates: HashMap<CertSerial, Certificate>,
    /// Each subject's current enrolment secret (hash and expiry).
    enrolments: HashMap<SubjectId, EnrolmentGrant>,
    /// Consents, templates, the feed, the processing record, request nonces.
    face: face::FaceState,
}

#[derive(Debug)]
struct SubjectRecord {
    subject: Subject,
    document_hash: DocumentHash,
    #[allow(dead_code)] // kept for parity with the PostgreSQL column
    document_key_id: KeyId,
    transit_account: StoredPseudonym,
    government_pseudonym: Option<Pseudonym>,
    born_on: Option<crate::document::Date>,
    #[allow(dead_code)] // kept for parity with the PostgreSQL audit column
    status_reason: String,
    /// In binding order.
    devices: Vec<DeviceId>,
}

#[derive(Debug)]
struct DeviceRecord {
    device: Device,
    #[allow(dead_code)] // kept for parity with the PostgreSQL audit column
    unbind_reason: Option<String>,
}

#[derive(Debug)]
struct ChallengeRecord {
    challenge: Challenge,
    created_at: Timestamp,
    /// Tie-breaker for challenges created in the same microsecond.
    sequence: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, Error> {
        self.state.lock().map_err(|_| Error::Poisoned)
    }
}

impl State {
    fn subject(&self, id: SubjectId) -> Result<&SubjectRecord, Error> {
        self.subjects.get(&id).ok_or(Error::SubjectNotFound)
    }

    fn subject_mut(&mut self, id: SubjectId) -> Result<&mut SubjectRecord, Error> {
        self.subjects.get_mut(&id).ok_or(Error::SubjectNotFound)
    }
}

fn by_binding_order(devices: &mut [Device]) {
    devices.sort_by(|a, b| a.bound_at.cmp(&b.bound_at).then(a.id.cmp(&b.id)));
}

impl Store for MemoryStore {
    fn find_enrolled_subject<'a>(
        &'a self,
        document: &'a [DocumentHash],
    ) -> BoxFuture<'a, Result<Option<Subject>, Error>> {
        Box::pin(async move {
            let state = self.lock()?;
            Ok(document
                .iter()
                .find_map(|hash| state.enrolled.get(hash))
                .and_then(|id| state.subjects.get(id))
                .map(|r| r.subject.clone()))
        })
    }

    fn insert_subject<'a>(
        &'a self,
        new: NewSubject,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Subject, Error>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            if state.subjects.contains_key(&new.id) {
                return Err(Error::Corrupt("subject id collision"));
            }
            let enrolled = matches!(new.status, SubjectStatus::Active | SubjectStatus::Suspended);
            let hashes = new.all_document_hashes();
            if enrolled && hashes.iter().any(|h| state.enrolled.contains_key(h)) {
                return Err(Error::AlreadyEnrolled);
            }
            let hash = new.document_hash.hash;
            let document_key_id = new.document_hash.key_id;
            let transit_account = StoredPseudonym {
                key_id: new.transit_account.key_id,
                value: Some(new.transit_account.value.clone()),
            };
            if new.status == SubjectStatus::Active {
                for record in state.subjects.values_mut() {
                    if hashes.contains(&record.document_hash)
                        && record.subject.status == SubjectStatus::Pending
                    {
                        record.subject.status = SubjectStatus::Rejected;
                        record.subject.updated_at = now;
                        SUPERSEDED_REASON.clone_into(&mut record.status_reason);
                    }
                }
            }
            let enrolment = new.enrolment;
            let government_pseudonym = new.government_pseudonym.clone();
            let born_on = new.born_on;
            let subject = new.into_subject(now);
            if enrolled {
                state.enrolled.insert(hash, subject.id);
            }
            state.enrolments.insert(subject.id, enrolment);
            state.subjects.insert(
                subject.id,
                SubjectRecord {
                    subject: subject.clone(),
                    document_hash: hash,
                    document_key_id,
                    transit_account,
                    government_pseudonym,
                    born_on,
                    status_reason: String::new(),
                    devices: Vec::new(),
                },
            );
            Ok(subject)
        })
    }

    fn get_subject<'a>(&'a self, id: SubjectId) -> BoxFuture<'a, Result<Subject, Error>> {
        Box::pin(async move { Ok(self.lock()?.subject(id)?.subject.clone()) })
    }

    fn get_government_pseudonym<'a>(
        &'a self,
        id: SubjectId,
    ) -> BoxFuture<'a, Result<Option<Pseudonym>, Error>> {
        Box::pin(async move { Ok(self.lock()?.subject(id)?.government_pseudonym.clone()) })
    }

    fn get_transit_account<'a>(
        &'a self,
        id: SubjectId,
    ) -> BoxFuture<'a, Result<StoredPseudonym, Error>> {
        Box::pin(async move { Ok(self.lock()?.subject(id)?.transit_account.clone()) })
    }

    fn update_attributes<'a>(
        &'a self,
        id: SubjectId,
        update: AttributesUpdate,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Subject, Error>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            let subject = &mut state.subject_mut(id)?.subject;
            let attributes = &mut subject.attributes;
            if let Some(fare_class) = update.fare_class {
                attributes.fare_class = fare_class;
            }
            if let Some(linked) = update.medical_insurance_linked {
                attributes.medical_insurance_linked = linked;
            }
            if let Some(level) = update.assurance_level {
                attributes.assurance_level = level;
            }
            subject.updated_at = now;
            Ok(subject.clone())
        })
    }

    fn set_subject_status<'a>(
        &'a self,
        id: SubjectId,
        status: SubjectStatus,
        reason: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Subject, Error>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            let record = state.subject_mut(id)?;
            let current = record.subject.status;
            if !matches!(current, SubjectStatus::Active | SubjectStatus::Suspended) {
                return Err(Error::StatusFrozen(status_name(current)));
            }
            if current != status {
                record.subject.status = status;
                record.subject.updated_at = now;
                reason.clone_into(&mut record.status_reason);
            }
            Ok(record.subject.clone())
        })
    }

    fn grant_enrolment<'a>(
        &'a self,
        subject_id: SubjectId,
        grant: EnrolmentGrant,
        _now: Timestamp,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            state.subject(subject_id)?;
            state.enrolments.insert(subject_id, grant);
            Ok(())
        })
    }

    fn create_challenge<'a>(
        &'a self,
        challenge: Challenge,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            let status = state.subject(challenge.subject_id)?.subject.status;
            if status != SubjectStatus::Active {
                return Err(not_active(status, ACTION_CHALLENGE));
            }
            state.challenges.retain(|_, c| c.challenge.expires_at > now);
            let sequence = state
                .challenges
                .values()
                .map(|c| c.sequence)
                .max()
                .map_or(0, |s| s + 1);
            let subject_id = challenge.subject_id;
            state.challenges.insert(
                challenge.bytes,
                ChallengeRecord {
                    challenge,
                    created_at: now,
                    sequence,
                },
            );
            let mut mine: Vec<_> = state
                .challenges
                .iter()
                .filter(|(_, c)| c.challenge.subject_id == subject_id)
                .map(|(bytes, c)| (c.created_at, c.sequence, *bytes))
                .collect();
            if mine.len() > MAX_OUTSTANDING_CHALLENGES {
                mine.sort_unstable();
                for (_, _, bytes) in &mine[..mine.len() - MAX_OUTSTANDING_CHALLENGES] {
                    state.challenges.remove(bytes);
                }
            }
            Ok(())
        })
    }

    fn bind_device<'a>(
        &'a self,
        new: NewDevice,
        max_devices: u32,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Device, Error>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            let record = state.subject(new.subject_id)?;
            if record.subject.status != SubjectStatus::Active {
                return Err(not_active(record.subject.status, ACTION_BIND));
            }
            let active = record
                .devices
                .iter()
                .filter_map(|id| state.devices.get(id))
                .filter(|d| d.device.status == DeviceStatus::Active)
                .count();
            match state.challenges.get(&new.challenge) {
                Some(c) if c.challenge.subject_id == new.subject_id => {
                    if c.challenge.expires_at <= now {
                        return Err(Error::ChallengeExpired);
                    }
                }
                _ => return Err(Error::ChallengeUnknown),
            }
            let authorised = match new.authority {
                Authority::EnrolmentSecret(hash) => state
                    .enrolments
                    .get(&new.subject_id)
                    .is_some_and(|g| g.secret_hash == hash && g.expires_at > now),
                Authority::BoundDevice(id) => state.devices.get(&id).is_some_and(|d| {
                    d.device.subject_id == new.subject_id && d.device.status == DeviceStatus::Active
                }),
            };
            if !authorised {
                return Err(Error::BindingNotAuthorized);
            }
            if u32::try_from(active).unwrap_or(u32::MAX) >= max_devices {
                return Err(Error::DeviceLimit { limit: max_devices });
            }
            if state.keys.contains(&new.public_key) {
                return Err(Error::KeyAlreadyBound);
            }
            if state.devices.contains_key(&new.id) {
                return Err(Error::Corrupt("device id collision"));
            }
            // Every check passed: now change everything at once.
            state.challenges.remove(&new.challenge);
            if let Authority::EnrolmentSecret(_) = new.authority {
                state.enrolments.remove(&new.subject_id);
            }
            state.keys.insert(new.public_key.clone());
            let device = Device {
                id: new.id,
                subject_id: new.subject_id,
                public_key: new.public_key,
                status: DeviceStatus::Active,
                label: new.label,
                bound_at: now,
                unbound_at: None,
            };
            state.subject_mut(new.subject_id)?.devices.push(device.id);
            state.devices.insert(
                device.id,
                DeviceRecord {
                    device: device.clone(),
                    unbind_reason: None,
                },
            );
            Ok(device)
        })
    }

    fn unbind_device<'a>(
        &'a self,
        subject_id: SubjectId,
        device_id: DeviceId,
        reason: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Device, Error>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            let record = state
                .devices
                .get_mut(&device_id)
                .filter(|r| r.device.subject_id == subject_id)
                .ok_or(Error::DeviceNotFound)?;
            let unbound = record.device.status == DeviceStatus::Active;
            if unbound {
                record.device.status = DeviceStatus::Unbound;
                record.device.unbound_at = Some(now);
                record.unbind_reason = Some(reason.to_owned());
            }
            let device = record.device.clone();
            if unbound {
                state.face.drop_app_template(subject_id, now);
            }
            Ok(device)
        })
    }

    fn list_devices<'a>(
        &'a self,
        subject_id: SubjectId,
        include_unbound: bool,
        page: DevicePage,
    ) -> BoxFuture<'a, Result<Vec<Device>, Error>> {
        Box::pin(async move {
            let state = self.lock()?;
            let mut devices: Vec<Device> = state
                .subject(subject_id)?
                .devices
                .iter()
                .filter_map(|id| state.devices.get(id))
                .map(|r| &r.device)
                .filter(|d| include_unbound || d.status == DeviceStatus::Active)
                .filter(|d| {
                    page.after
                        .is_none_or(|after| (d.bound_at, d.id) > (after.bound_at, after.device_id))
                })
                .cloned()
                .collect();
            by_binding_order(&mut devices);
            devices.truncate(page.limit);
            Ok(devices)
        })
    }

    fn get_device<'a>(&'a self, id: DeviceId) -> BoxFuture<'a, Result<DeviceView, Error>> {
        Box::pin(async move {
            let state = self.lock()?;
            let device = &state.devices.get(&id).ok_or(Error::DeviceNotFound)?.device;
            let subject = &state
                .subjects
                .get(&device.subject_id)
                .ok_or(Error::Corrupt("device without subject"))?
                .subject;
            Ok(DeviceView {
                device: device.clone(),
                subject_status: subject.status,
                subject_attributes: subject.attributes,
            })
        })
    }

    fn record_certificate<'a>(
        &'a self,
        new: NewCertificate,
        max_live: u32,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Certificate, Error>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            let device = &state
                .devices
                .get(&new.device_id)
                .ok_or(Error::DeviceNotFound)?
                .device;
            if new.subject_id.is_some_and(|s| s != device.subject_id) {
                return Err(Error::invalid(
                    "certificate.subject_id",
                    "is not the device's subject",
                ));
            }
            if device.status != DeviceStatus::Active {
                return Err(Error::DeviceNotActive);
            }
            let certificate = Certificate {
                serial: new.serial,
                device_id: new.device_id,
                subject_id: device.subject_id,
                not_before: new.not_before,
                not_after: new.not_after,
            };
            match state.certificates.get(&new.serial) {
                Some(existing) if *existing == certificate => Ok(certificate),
                Some(_) => Err(Error::SerialConflict),
                None => {
                    let live = state
                        .certificates
                        .values()
                        .filter(|c| c.device_id == new.device_id && c.not_after > now)
                        .count();
                    if u32::try_from(live).unwrap_or(u32::MAX) >= max_live {
                        return Err(Error::CertificateLimit { limit: max_live });
                    }
                    state.certificates.insert(new.serial, certificate.clone());
                    Ok(certificate)
                }
            }
        })
    }

    fn list_certificates<'a>(
        &'a self,
        owner: CertificateOwner,
        valid_at: Option<Timestamp>,
        page: CertificatePage,
    ) -> BoxFuture<'a, Result<Vec<Certificate>, Error>> {
        Box::pin(async move {
            let state = self.lock()?;
            match owner {
                CertificateOwner::Device(id) if !state.devices.contains_key(&id) => {
                    return Err(Error::DeviceNotFound);
                }
                CertificateOwner::Subject(id) if !state.subjects.contains_key(&id) => {
                    return Err(Error::SubjectNotFound);
                }
                _ => {}
            }
            let mut certificates: Vec<Certificate> = state
                .certificates
                .values()
                .filter(|c| match owner {
                    CertificateOwner::Device(id) => c.device_id == id,
                    CertificateOwner::Subject(id) => c.subject_id == id,
                })
                .filter(|c| valid_at.is_none_or(|t| c.not_after > t))
                .filter(|c| {
                    page.after.is_none_or(|after| {
                        (c.not_before, c.serial) > (after.not_before, after.serial)
                    })
                })
                .cloned()
                .collect();
            certificates.sort_by(|a, b| {
                a.not_before
                    .cmp(&b.not_before)
                    .then_with(|| a.serial.cmp(&b.serial))
            });
            certificates.truncate(page.limit);
            Ok(certificates)
        })
    }
}
