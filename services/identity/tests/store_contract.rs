//! The store contract: one suite, run against the in-memory store and PostgreSQL.
//!
//! Each property is one generic `async fn` over `S: Store`; the `contract!` macro at
//! the bottom runs every one of them against both backends (a fresh PostgreSQL
//! database per test, from `citypass_testkit`; without `CITYPASS_TEST_DATABASE_URL`
//! the PostgreSQL half fails rather than skips). If the backends ever disagree, one of
//! these fails.

use citypass_identity::document::DocumentHash;
use citypass_identity::error::Error;
use citypass_identity::ids::{DeviceId, SubjectId};
use citypass_identity::model::{
    Attributes, AttributesUpdate, CertificateOwner, Challenge, NewCertificate, NewDevice,
    NewSubject, Timestamp,
};
use citypass_identity::store::{MAX_OUTSTANDING_CHALLENGES, Store};
use citypass_identity::{MemoryStore, PostgresStore};
use citypass_proto::v1::{
    AssuranceLevel, DeviceStatus, DocumentType, FareClass, RealNameCheckOutcome, SubjectStatus,
};
use citypass_token::{DeviceKey, SystemRandom};

// --- fixtures ---------------------------------------------------------------------------

/// A fixed clock origin; tests move it forward explicitly.
const T0: i64 = 1_800_000_000_000_000;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_micros(T0 + seconds * 1_000_000)
}

fn hash(n: u8) -> DocumentHash {
    DocumentHash([n; 32])
}

fn new_subject(document: u8, status: SubjectStatus) -> NewSubject {
    NewSubject {
        id: SubjectId::generate().unwrap(),
        document_hash: hash(document),
        document_type: DocumentType::ResidentIdCard,
        masked_name: "张**".to_owned(),
        status,
        real_name_check: match status {
            SubjectStatus::Pending => RealNameCheckOutcome::Unavailable,
            SubjectStatus::Rejected => RealNameCheckOutcome::Mismatched,
            _ => RealNameCheckOutcome::Matched,
        },
        attributes: Attributes {
            fare_class: FareClass::Adult,
            medical_insurance_linked: false,
            assurance_level: AssuranceLevel::RealNameVerified,
        },
    }
}

async fn active_subject<S: Store>(store: &S, document: u8) -> SubjectId {
    store
        .insert_subject(new_subject(document, SubjectStatus::Active), at(0))
        .await
        .unwrap()
        .id
}

fn public_key() -> Vec<u8> {
    DeviceKey::generate(&SystemRandom::new())
        .unwrap()
        .public_key()
        .as_bytes()
        .to_vec()
}

fn challenge_for(subject_id: SubjectId, expires_at: Timestamp) -> Challenge {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(SubjectId::generate().unwrap().as_bytes());
    bytes[16..].copy_from_slice(SubjectId::generate().unwrap().as_bytes());
    Challenge {
        bytes,
        subject_id,
        expires_at,
    }
}

/// A challenge stored at `at(now)` and valid for a minute.
async fn challenge<S: Store>(store: &S, subject_id: SubjectId, now: i64) -> [u8; 32] {
    let challenge = challenge_for(subject_id, at(now + 60));
    store
        .create_challenge(challenge.clone(), at(now))
        .await
        .unwrap();
    challenge.bytes
}

fn new_device(subject_id: SubjectId, challenge: [u8; 32], key: Vec<u8>) -> NewDevice {
    NewDevice {
        id: DeviceId::generate().unwrap(),
        subject_id,
        public_key: key,
        label: "phone".to_owned(),
        challenge,
    }
}

/// Binds a fresh key to `subject_id` at `at(now)` with limit 10.
async fn bound_device<S: Store>(store: &S, subject_id: SubjectId, now: i64) -> DeviceId {
    let c = challenge(store, subject_id, now).await;
    store
        .bind_device(new_device(subject_id, c, public_key()), 10, at(now))
        .await
        .unwrap()
        .id
}

fn certificate(serial: u8, device_id: DeviceId, from: i64, to: i64) -> NewCertificate {
    NewCertificate {
        serial: [serial; 16],
        device_id,
        subject_id: None,
        not_before: at(from),
        not_after: at(to),
    }
}

/// Runs `attempt(store, i)` for `i in 0..n` truly at once: the backend is warmed up with
/// `n` concurrent calls first (so a pool has a connection for each attempt), and every
/// attempt waits at a barrier until all are ready.
async fn race<S, F, Fut, T>(store: &S, n: usize, attempt: F) -> Vec<Result<T, Error>>
where
    S: Store,
    F: Fn(S, usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>> + Send + 'static,
    T: Send + 'static,
{
    let warm_up: Vec<_> = (0..n)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.get_subject(SubjectId::from_bytes([0; 16])).await })
        })
        .collect();
    for task in warm_up {
        let _ = task.await.unwrap();
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            let work = attempt(store.clone(), i);
            tokio::spawn(async move {
                barrier.wait().await;
                work.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

// --- subjects ---------------------------------------------------------------------------

async fn subjects_are_stored_and_found<S: Store>(store: S) {
    let new = new_subject(1, SubjectStatus::Active);
    let stored = store.insert_subject(new.clone(), at(5)).await.unwrap();
    assert_eq!(stored, new.clone().into_subject(at(5)));
    assert_eq!(store.get_subject(stored.id).await.unwrap(), stored);
    assert_eq!(
        store.find_enrolled_subject(&hash(1)).await.unwrap(),
        Some(stored.clone())
    );
    assert_eq!(store.find_enrolled_subject(&hash(2)).await.unwrap(), None);
    let unknown = SubjectId::generate().unwrap();
    assert!(matches!(
        store.get_subject(unknown).await,
        Err(Error::SubjectNotFound)
    ));
    // Pending and rejected subjects are attempts, not enrolments.
    let pending = store
        .insert_subject(new_subject(3, SubjectStatus::Pending), at(5))
        .await
        .unwrap();
    assert_eq!(pending.status, SubjectStatus::Pending);
    assert_eq!(store.find_enrolled_subject(&hash(3)).await.unwrap(), None);
}

async fn one_enrolled_subject_per_document<S: Store>(store: S) {
    let first = active_subject(&store, 1).await;
    assert!(matches!(
        store
            .insert_subject(new_subject(1, SubjectStatus::Active), at(1))
            .await,
        Err(Error::AlreadyEnrolled)
    ));
    // A suspended subject is still enrolled.
    store
        .set_subject_status(first, SubjectStatus::Suspended, "review", at(2))
        .await
        .unwrap();
    assert!(matches!(
        store
            .insert_subject(new_subject(1, SubjectStatus::Active), at(3))
            .await,
        Err(Error::AlreadyEnrolled)
    ));
    // Attempts that failed the real-name check never conflict.
    for status in [SubjectStatus::Rejected, SubjectStatus::Pending] {
        store
            .insert_subject(new_subject(1, status), at(4))
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .find_enrolled_subject(&hash(1))
            .await
            .unwrap()
            .map(|s| s.id),
        Some(first)
    );
}

async fn concurrent_enrolments_of_one_document_have_one_winner<S: Store>(store: S) {
    let results = race(&store, 8, |store, _| async move {
        store
            .insert_subject(new_subject(7, SubjectStatus::Active), at(0))
            .await
    })
    .await;
    let mut won = 0;
    for result in results {
        match result {
            Ok(_) => won += 1,
            Err(Error::AlreadyEnrolled) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(won, 1);
}

async fn a_verified_enrolment_closes_pending_attempts<S: Store>(store: S) {
    let pending = store
        .insert_subject(new_subject(1, SubjectStatus::Pending), at(0))
        .await
        .unwrap();
    let other = store
        .insert_subject(new_subject(2, SubjectStatus::Pending), at(0))
        .await
        .unwrap();
    let active = active_subject(&store, 1).await;
    let closed = store.get_subject(pending.id).await.unwrap();
    assert_eq!(closed.status, SubjectStatus::Rejected);
    assert_eq!(closed.updated_at, at(0));
    assert_eq!(
        store.get_subject(other.id).await.unwrap().status,
        SubjectStatus::Pending
    );
    assert_eq!(
        store.get_subject(active).await.unwrap().status,
        SubjectStatus::Active
    );
}

async fn attribute_updates_keep_unset_fields<S: Store>(store: S) {
    let id = active_subject(&store, 1).await;
    let updated = store
        .update_attributes(
            id,
            AttributesUpdate {
                fare_class: Some(FareClass::Student),
                ..AttributesUpdate::default()
            },
            at(10),
        )
        .await
        .unwrap();
    assert_eq!(updated.attributes.fare_class, FareClass::Student);
    assert_eq!(
        updated.attributes.assurance_level,
        AssuranceLevel::RealNameVerified
    );
    assert!(!updated.attributes.medical_insurance_linked);
    assert_eq!(updated.updated_at, at(10));
    assert_eq!(updated.created_at, at(0));
    let updated = store
        .update_attributes(
            id,
            AttributesUpdate {
                fare_class: None,
                medical_insurance_linked: Some(true),
                assurance_level: Some(AssuranceLevel::InPerson),
            },
            at(11),
        )
        .await
        .unwrap();
    assert_eq!(updated.attributes.fare_class, FareClass::Student);
    assert!(updated.attributes.medical_insurance_linked);
    assert_eq!(updated.attributes.assurance_level, AssuranceLevel::InPerson);
    assert_eq!(store.get_subject(id).await.unwrap(), updated);
    assert!(matches!(
        store
            .update_attributes(
                SubjectId::generate().unwrap(),
                AttributesUpdate::default(),
                at(12)
            )
            .await,
        Err(Error::SubjectNotFound)
    ));
}

async fn status_moves_only_between_active_and_suspended<S: Store>(store: S) {
    let id = active_subject(&store, 1).await;
    let suspended = store
        .set_subject_status(id, SubjectStatus::Suspended, "fraud review", at(1))
        .await
        .unwrap();
    assert_eq!(suspended.status, SubjectStatus::Suspended);
    assert_eq!(suspended.updated_at, at(1));
    // Setting the same status again changes nothing.
    let again = store
        .set_subject_status(id, SubjectStatus::Suspended, "again", at(2))
        .await
        .unwrap();
    assert_eq!(again, suspended);
    let active = store
        .set_subject_status(id, SubjectStatus::Active, "cleared", at(3))
        .await
        .unwrap();
    assert_eq!(active.status, SubjectStatus::Active);
    for status in [SubjectStatus::Pending, SubjectStatus::Rejected] {
        let attempt = store
            .insert_subject(new_subject(9, status), at(0))
            .await
            .unwrap();
        assert!(matches!(
            store
                .set_subject_status(attempt.id, SubjectStatus::Active, "", at(4))
                .await,
            Err(Error::StatusFrozen(_))
        ));
        assert_eq!(store.get_subject(attempt.id).await.unwrap(), attempt);
    }
    assert!(matches!(
        store
            .set_subject_status(
                SubjectId::generate().unwrap(),
                SubjectStatus::Active,
                "",
                at(5)
            )
            .await,
        Err(Error::SubjectNotFound)
    ));
}

// --- challenges and binding -------------------------------------------------------------

async fn challenges_need_an_active_subject<S: Store>(store: S) {
    let unknown = SubjectId::generate().unwrap();
    assert!(matches!(
        store
            .create_challenge(challenge_for(unknown, at(60)), at(0))
            .await,
        Err(Error::SubjectNotFound)
    ));
    let pending = store
        .insert_subject(new_subject(1, SubjectStatus::Pending), at(0))
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_challenge(challenge_for(pending.id, at(60)), at(0))
            .await,
        Err(Error::SubjectNotActive { .. })
    ));
    let id = active_subject(&store, 2).await;
    store
        .set_subject_status(id, SubjectStatus::Suspended, "", at(1))
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_challenge(challenge_for(id, at(60)), at(1))
            .await,
        Err(Error::SubjectNotActive { .. })
    ));
}

async fn a_challenge_binds_once<S: Store>(store: S) {
    let id = active_subject(&store, 1).await;
    let c = challenge(&store, id, 0).await;
    let key = public_key();
    let device = store
        .bind_device(new_device(id, c, key.clone()), 3, at(1))
        .await
        .unwrap();
    assert_eq!(device.subject_id, id);
    assert_eq!(device.public_key, key);
    assert_eq!(device.status, DeviceStatus::Active);
    assert_eq!(device.label, "phone");
    assert_eq!(device.bound_at, at(1));
    assert_eq!(device.unbound_at, None);
    assert!(matches!(
        store
            .bind_device(new_device(id, c, public_key()), 3, at(2))
            .await,
        Err(Error::ChallengeUnknown)
    ));
    let never_issued = challenge_for(id, at(60)).bytes;
    assert!(matches!(
        store
            .bind_device(new_device(id, never_issued, public_key()), 3, at(2))
            .await,
        Err(Error::ChallengeUnknown)
    ));
}

async fn concurrent_binds_with_one_challenge_have_one_winner<S: Store>(store: S) {
    let id = active_subject(&store, 1).await;
    let c = challenge(&store, id, 0).await;
    let results = race(&store, 6, |store, _| async move {
        store
            .bind_device(new_device(id, c, public_key()), 10, at(1))
            .await
    })
    .await;
    let mut won = 0;
    for result in results {
        match result {
            Ok(_) => won += 1,
            Err(Error::ChallengeUnknown) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(store.list_devices(id, true).await.unwrap().len(), 1);
}

async fn a_challenge_belongs_to_its_subject<S: Store>(store: S) {
    let alice = active_subject(&store, 1).await;
    let bob = active_subject(&store, 2).await;
    let c = challenge(&store, alice, 0).await;
    assert!(matches!(
        store
            .bind_device(new_device(bob, c, public_key()), 3, at(1))
            .await,
        Err(Error::ChallengeUnknown)
    ));
    // The failed attempt did not consume it.
    store
        .bind_device(new_device(alice, c, public_key()), 3, at(1))
        .await
        .unwrap();
}

async fn expired_challenges_are_refused_and_change_nothing<S: Store>(store: S) {
    let id = active_subject(&store, 1).await;
    let c = challenge(&store, id, 0).await; // valid until at(60)
    assert!(matches!(
        store
            .bind_device(new_device(id, c, public_key()), 3, at(60))
            .await,
        Err(Error::ChallengeExpired)
    ));
    assert!(store.list_devices(id, true).await.unwrap().is_empty());
    // Expired stays expired (and may since have been cleaned up: unknown).
    assert!(matches!(
        store
            .bind_device(new_device(id, c, public_key()), 3, at(61))
            .await,
        Err(Error::ChallengeExpired | Error::ChallengeUnknown)
    ));
}

async fn only_the_newest_challenges_stay_outstanding<S: Store>(store: S) {
    let id = active_subject(&store, 1).await;
    let mut challenges = Vec::new();
    for i in 0..=MAX_OUTSTANDING_CHALLENGES {
        challenges.push(challenge(&store, id, i64::try_from(i).unwrap()).await);
    }
    let now = at(10);
    assert!(matches!(
        store
            .bind_device(new_device(id, challenges[0], public_key()), 10, now)
            .await,
        Err(Error::ChallengeUnknown)
    ));
    for c in &challenges[1..] {
        store
            .bind_device(new_device(id, *c, public_key()), 10, now)
            .await
            .unwrap();
    }
}

async fn the_device_limit_holds_and_a_refused_bind_keeps_its_challenge<S: Store>(store: S) {
    let id = active_subject(&store, 1).await;
    let mut devices = Vec::new();
    for now in 0..2 {
        let c = challenge(&store, id, now).await;
        devices.push(
            store
                .bind_device(new_device(id, c, public_key()), 2, at(now))
                .await
                .unwrap(),
        );
    }
    let c = challenge(&store, id, 2).await;
    let key = public_key();
    assert!(matches!(
        store
            .bind_device(new_device(id, c, key.clone()), 2, at(2))
            .await,
        Err(Error::DeviceLimit { limit: 2 })
    ));
    assert_eq!(store.list_devices(id, true).await.unwrap().len(), 2);
    // Unbinding frees a place; the refused challenge still works.
    store
        .unbind_device(id, devices[0].id, "lost", at(3))
        .await
        .unwrap();
    store
        .bind_device(new_device(id, c, key), 2, at(4))
        .await
        .unwrap();
    assert_eq!(store.list_devices(id, false).await.unwrap().len(), 2);
    assert_eq!(store.list_devices(id, true).await.unwrap().len(), 3);
}

async fn concurrent_binds_respect_the_device_limit<S: Store>(store: S) {
    let id = active_subject(&store, 1).await;
    let mut challenges = Vec::new();
    for i in 0..MAX_OUTSTANDING_CHALLENGES {
        challenges.push(challenge(&store, id, i64::try_from(i).unwrap()).await);
    }
    let results = race(&store, challenges.len(), |store, i| {
        let c = challenges[i];
        async move {
            store
                .bind_device(new_device(id, c, public_key()), 2, at(10))
                .await
        }
    })
    .await;
    let mut won = 0;
    for result in results {
        match result {
            Ok(_) => won += 1,
            Err(Error::DeviceLimit { .. }) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(won, 2);
    assert_eq!(store.list_devices(id, false).await.unwrap().len(), 2);
}

async fn a_key_binds_once_ever<S: Store>(store: S) {
    let alice = active_subject(&store, 1).await;
    let bob = active_subject(&store, 2).await;
    let key = public_key();
    let c = challenge(&store, alice, 0).await;
    let device = store
        .bind_device(new_device(alice, c, key.clone()), 3, at(0))
        .await
        .unwrap();
    let c = challenge(&store, bob, 1).await;
    assert!(matches!(
        store
            .bind_device(new_device(bob, c, key.clone()), 3, at(1))
            .await,
        Err(Error::KeyAlreadyBound)
    ));
    store
        .unbind_device(alice, device.id, "", at(2))
        .await
        .unwrap();
    let c2 = challenge(&store, alice, 3).await;
    assert!(matches!(
        store
            .bind_device(new_device(alice, c2, key), 3, at(3))
            .await,
        Err(Error::KeyAlreadyBound)
    ));
    // Bob's challenge was not consumed by the refusal.
    store
        .bind_device(new_device(bob, c, public_key()), 3, at(4))
        .await
        .unwrap();
}

async fn a_subject_that_is_not_active_cannot_bind<S: Store>(store: S) {
    let id = active_subject(&store, 1).await;
    let c = challenge(&store, id, 0).await;
    store
        .set_subject_status(id, SubjectStatus::Suspended, "", at(1))
        .await
        .unwrap();
    assert!(matches!(
        store
            .bind_device(new_device(id, c, public_key()), 3, at(2))
            .await,
        Err(Error::SubjectNotActive { .. })
    ));
    store
        .set_subject_status(id, SubjectStatus::Active, "", at(3))
        .await
        .unwrap();
    store
        .bind_device(new_device(id, c, public_key()), 3, at(4))
        .await
        .unwrap();
    assert!(matches!(
        store
            .bind_device(
                new_device(SubjectId::generate().unwrap(), c, public_key()),
                3,
                at(5)
            )
            .await,
        Err(Error::SubjectNotFound)
    ));
}

// --- devices ----------------------------------------------------------------------------

async fn devices_are_listed_unbound_and_viewed<S: Store>(store: S) {
    let id = active_subject(&store, 1).await;
    let first = bound_device(&store, id, 0).await;
    let second = bound_device(&store, id, 1).await;
    let listed: Vec<_> = store
        .list_devices(id, false)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(listed, vec![first, second]);

    let view = store.get_device(first).await.unwrap();
    assert_eq!(view.device.id, first);
    assert_eq!(view.subject_status, SubjectStatus::Active);
    assert_eq!(view.subject_attributes.fare_class, FareClass::Adult);

    // Unbinding needs the right subject, and is terminal and repeatable.
    let other = active_subject(&store, 2).await;
    assert!(matches!(
        store.unbind_device(other, first, "", at(2)).await,
        Err(Error::DeviceNotFound)
    ));
    let unbound = store.unbind_device(id, first, "lost", at(3)).await.unwrap();
    assert_eq!(unbound.status, DeviceStatus::Unbound);
    assert_eq!(unbound.unbound_at, Some(at(3)));
    assert_eq!(
        store
            .unbind_device(id, first, "again", at(4))
            .await
            .unwrap(),
        unbound
    );
    assert_eq!(store.get_device(first).await.unwrap().device, unbound);
    let active: Vec<_> = store
        .list_devices(id, false)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(active, vec![second]);
    assert_eq!(store.list_devices(id, true).await.unwrap().len(), 2);

    // The view follows the subject.
    store
        .set_subject_status(id, SubjectStatus::Suspended, "", at(5))
        .await
        .unwrap();
    assert_eq!(
        store.get_device(second).await.unwrap().subject_status,
        SubjectStatus::Suspended
    );
    let unknown = DeviceId::generate().unwrap();
    assert!(matches!(
        store.get_device(unknown).await,
        Err(Error::DeviceNotFound)
    ));
    assert!(matches!(
        store.unbind_device(id, unknown, "", at(6)).await,
        Err(Error::DeviceNotFound)
    ));
    assert!(matches!(
        store
            .list_devices(SubjectId::generate().unwrap(), true)
            .await,
        Err(Error::SubjectNotFound)
    ));
}

// --- certificates -----------------------------------------------------------------------

async fn certificates_are_recorded_once_per_serial<S: Store>(store: S) {
    let id = active_subject(&store, 1).await;
    let device = bound_device(&store, id, 0).await;
    let other_device = bound_device(&store, id, 1).await;
    let recorded = store
        .record_certificate(certificate(1, device, 0, 3600), at(0))
        .await
        .unwrap();
    assert_eq!(recorded.subject_id, id);
    assert_eq!(recorded.device_id, device);
    assert_eq!(recorded.not_after, at(3600));
    // A retry returns the same record.
    let mut retry = certificate(1, device, 0, 3600);
    retry.subject_id = Some(id);
    assert_eq!(
        store.record_certificate(retry, at(1)).await.unwrap(),
        recorded
    );
    // The same serial elsewhere, or with another validity, is a conflict.
    assert!(matches!(
        store
            .record_certificate(certificate(1, other_device, 0, 3600), at(1))
            .await,
        Err(Error::SerialConflict)
    ));
    assert!(matches!(
        store
            .record_certificate(certificate(1, device, 0, 7200), at(1))
            .await,
        Err(Error::SerialConflict)
    ));
    let mut wrong_subject = certificate(2, device, 0, 3600);
    wrong_subject.subject_id = Some(SubjectId::generate().unwrap());
    assert!(matches!(
        store.record_certificate(wrong_subject, at(1)).await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        store
            .record_certificate(
                certificate(3, DeviceId::generate().unwrap(), 0, 3600),
                at(1)
            )
            .await,
        Err(Error::DeviceNotFound)
    ));
    store.unbind_device(id, device, "", at(2)).await.unwrap();
    assert!(matches!(
        store
            .record_certificate(certificate(4, device, 0, 3600), at(3))
            .await,
        Err(Error::DeviceNotActive)
    ));
    // Nothing but the first certificate was recorded.
    let all = store
        .list_certificates(CertificateOwner::Subject(id), None)
        .await
        .unwrap();
    assert_eq!(all, vec![recorded]);
}

async fn certificates_are_listed_by_device_and_subject<S: Store>(store: S) {
    let id = active_subject(&store, 1).await;
    let a = bound_device(&store, id, 0).await;
    let b = bound_device(&store, id, 1).await;
    let someone_else = active_subject(&store, 2).await;
    let c = bound_device(&store, someone_else, 2).await;
    for (serial, device, from, to) in [
        (5, a, 100, 200),
        (1, a, 0, 100),
        (2, b, 50, 150),
        (3, c, 0, 1000),
    ] {
        store
            .record_certificate(certificate(serial, device, from, to), at(0))
            .await
            .unwrap();
    }
    let serials = |list: Vec<citypass_identity::model::Certificate>| {
        list.into_iter().map(|c| c.serial[0]).collect::<Vec<_>>()
    };
    let by_device = store
        .list_certificates(CertificateOwner::Device(a), None)
        .await
        .unwrap();
    assert_eq!(serials(by_device), vec![1, 5]);
    let by_subject = store
        .list_certificates(CertificateOwner::Subject(id), None)
        .await
        .unwrap();
    assert_eq!(serials(by_subject), vec![1, 2, 5]);
    // Only those still valid: not_after later than the given time.
    let valid = store
        .list_certificates(CertificateOwner::Subject(id), Some(at(100)))
        .await
        .unwrap();
    assert_eq!(serials(valid), vec![2, 5]);
    // Certificates of unbound devices are still listed (revocation needs them).
    store.unbind_device(id, b, "", at(3)).await.unwrap();
    let after_unbind = store
        .list_certificates(CertificateOwner::Device(b), None)
        .await
        .unwrap();
    assert_eq!(serials(after_unbind), vec![2]);
    assert!(matches!(
        store
            .list_certificates(
                CertificateOwner::Device(DeviceId::generate().unwrap()),
                None
            )
            .await,
        Err(Error::DeviceNotFound)
    ));
    assert!(matches!(
        store
            .list_certificates(
                CertificateOwner::Subject(SubjectId::generate().unwrap()),
                None
            )
            .await,
        Err(Error::SubjectNotFound)
    ));
}

// --- both backends ----------------------------------------------------------------------

async fn postgres_store() -> PostgresStore {
    let (pool, _url) = citypass_testkit::fresh_database().await;
    PostgresStore::new(pool)
        .await
        .expect("migrations apply to a fresh database")
}

macro_rules! contract {
    ($($property:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $property() {
                    super::$property(citypass_identity::MemoryStore::new()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $property() {
                    super::$property(super::postgres_store().await).await;
                }
            )*
        }
    };
}

contract!(
    subjects_are_stored_and_found,
    one_enrolled_subject_per_document,
    concurrent_enrolments_of_one_document_have_one_winner,
    a_verified_enrolment_closes_pending_attempts,
    attribute_updates_keep_unset_fields,
    status_moves_only_between_active_and_suspended,
    challenges_need_an_active_subject,
    a_challenge_binds_once,
    concurrent_binds_with_one_challenge_have_one_winner,
    a_challenge_belongs_to_its_subject,
    expired_challenges_are_refused_and_change_nothing,
    only_the_newest_challenges_stay_outstanding,
    the_device_limit_holds_and_a_refused_bind_keeps_its_challenge,
    concurrent_binds_respect_the_device_limit,
    a_key_binds_once_ever,
    a_subject_that_is_not_active_cannot_bind,
    devices_are_listed_unbound_and_viewed,
    certificates_are_recorded_once_per_serial,
    certificates_are_listed_by_device_and_subject,
);

#[test]
fn the_memory_store_is_a_store() {
    fn assert_store<S: Store>() {}
    assert_store::<MemoryStore>();
    assert_store::<PostgresStore>();
}
