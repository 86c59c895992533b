//! Fixtures every concern of the contract shares: a fixed clock, subjects, challenges,
//! devices and certificates to store, and `race` for truly concurrent attempts.

use std::sync::Arc;

use citypass_identity::document::{DocumentHash, KeyedDocumentHash};
use citypass_identity::enrolment::{Authority, EnrolmentGrant, SecretHash};
use citypass_identity::error::Error;
use citypass_identity::ids::{DeviceId, SubjectId};
use citypass_identity::model::{
    Attributes, Challenge, NewCertificate, NewDevice, NewSubject, Timestamp,
};
use citypass_identity::store::Store;
use citypass_proto::v1::{
    AssuranceLevel, DocumentType, FareClass, RealNameCheckOutcome, SubjectStatus,
};
use citypass_pseudonym::{KeyId, Pseudonym};
use citypass_token::{DeviceKey, SystemRandom};

/// A fixed clock origin; tests move it forward explicitly.
const T0: i64 = 1_800_000_000_000_000;

pub(crate) fn at(seconds: i64) -> Timestamp {
    Timestamp::from_micros(T0 + seconds * 1_000_000)
}

/// The hash of the enrolment secret every fixture subject is granted.
pub(crate) const SECRET: SecretHash = SecretHash([0x5e; 32]);

/// [`SECRET`], valid until `at(10_000)`.
pub(crate) fn test_grant() -> EnrolmentGrant {
    EnrolmentGrant {
        secret_hash: SECRET,
        expires_at: at(10_000),
    }
}

pub(crate) fn hash(n: u8) -> DocumentHash {
    DocumentHash([n; 32])
}

pub(crate) fn new_subject(document: u8, status: SubjectStatus) -> NewSubject {
    let id = SubjectId::generate().unwrap();
    NewSubject {
        id,
        document_hash: KeyedDocumentHash {
            key_id: KeyId::FIRST,
            hash: hash(document),
        },
        other_document_hashes: Vec::new(),
        transit_account: Pseudonym {
            key_id: KeyId::FIRST,
            value: hex::encode(&id.as_bytes()[..]),
        },
        government_pseudonym: None,
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
        enrolment: test_grant(),
        born_on: citypass_identity::document::Date::from_number(19900101),
    }
}

pub(crate) async fn active_subject(store: &Arc<dyn Store>, document: u8) -> SubjectId {
    store
        .insert_subject(new_subject(document, SubjectStatus::Active), at(0))
        .await
        .unwrap()
        .id
}

pub(crate) fn public_key() -> Vec<u8> {
    DeviceKey::generate(&SystemRandom::new())
        .unwrap()
        .public_key()
        .as_bytes()
        .to_vec()
}

pub(crate) fn challenge_for(subject_id: SubjectId, expires_at: Timestamp) -> Challenge {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(SubjectId::generate().unwrap().as_bytes());
    bytes[16..].copy_from_slice(SubjectId::generate().unwrap().as_bytes());
    Challenge {
        bytes,
        subject_id,
        expires_at,
    }
}

/// A challenge stored at `at(now)` and valid for a minute; the subject is granted
/// [`SECRET`] again (a binding consumes it), so that the next binding is authorised.
pub(crate) async fn challenge(store: &Arc<dyn Store>, subject_id: SubjectId, now: i64) -> [u8; 32] {
    store
        .grant_enrolment(subject_id, test_grant(), at(now))
        .await
        .unwrap();
    let challenge = challenge_for(subject_id, at(now + 60));
    store
        .create_challenge(challenge.clone(), at(now))
        .await
        .unwrap();
    challenge.bytes
}

pub(crate) fn new_device(subject_id: SubjectId, challenge: [u8; 32], key: Vec<u8>) -> NewDevice {
    NewDevice {
        id: DeviceId::generate().unwrap(),
        subject_id,
        public_key: key,
        label: "phone".to_owned(),
        challenge,
        authority: Authority::EnrolmentSecret(SECRET),
    }
}

/// Binds a fresh key to `subject_id` at `at(now)` with limit 10.
pub(crate) async fn bound_device(
    store: &Arc<dyn Store>,
    subject_id: SubjectId,
    now: i64,
) -> DeviceId {
    let c = challenge(store, subject_id, now).await;
    store
        .bind_device(new_device(subject_id, c, public_key()), 10, at(now))
        .await
        .unwrap()
        .id
}

pub(crate) fn certificate(serial: u8, device_id: DeviceId, from: i64, to: i64) -> NewCertificate {
    NewCertificate {
        serial: citypass_token::CertSerial::from_bytes([serial; 16]),
        device_id,
        subject_id: None,
        not_before: at(from),
        not_after: at(to),
    }
}

/// Runs `attempt(store, i)` for `i in 0..n` truly at once: the backend is warmed up with
/// `n` concurrent calls first (so a pool has a connection for each attempt), and every
/// attempt waits at a barrier until all are ready.
pub(crate) async fn race<F, Fut, T>(
    store: &Arc<dyn Store>,
    n: usize,
    attempt: F,
) -> Vec<Result<T, Error>>
where
    F: Fn(Arc<dyn Store>, usize) -> Fut,
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
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
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
