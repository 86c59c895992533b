//! Key ids of the document and pseudonym keys (security finding 9): rows keep the id
//! of the key that made their hash and pseudonym; a document is found under any
//! configured key's hash, and enrolled once whichever key each enrolment hashes under
//! (two replicas may have different current keys while a rotation rolls out).

use std::sync::Arc;

use citypass_identity::document::KeyedDocumentHash;
use citypass_identity::error::Error;
use citypass_identity::model::StoredPseudonym;
use citypass_identity::store::Store;
use citypass_proto::v1::SubjectStatus;
use citypass_pseudonym::{KeyId, Pseudonym};

use crate::support::{at, hash, new_subject, race};

fn two() -> KeyId {
    KeyId::new(2).unwrap()
}

/// Document 1 under key 2 (its hash under key 1 is `hash(101)`).
fn under_key_2(status: SubjectStatus) -> citypass_identity::model::NewSubject {
    let mut new = new_subject(201, status);
    new.document_hash = KeyedDocumentHash {
        key_id: two(),
        hash: hash(201),
    };
    new.other_document_hashes = vec![hash(101)];
    new.transit_account.key_id = two();
    new
}

/// Document 1 under key 1, with key 2 also configured.
fn under_key_1(status: SubjectStatus) -> citypass_identity::model::NewSubject {
    let mut new = new_subject(101, status);
    new.other_document_hashes = vec![hash(201)];
    new
}

pub(crate) async fn finding_9_rows_keep_their_key_ids_and_are_found_under_any_key(
    store: Arc<dyn Store>,
) {
    // Enrolled under key 1, before key 2 existed.
    let old = new_subject(101, SubjectStatus::Active);
    let pseudonym = old.transit_account.value.clone();
    let old = store.insert_subject(old, at(0)).await.unwrap();
    // After the rotation a lookup hashes under key 2 first, then key 1.
    assert_eq!(
        store
            .find_enrolled_subject(&[hash(201), hash(101)])
            .await
            .unwrap()
            .map(|s| s.id),
        Some(old.id)
    );
    // Enrolling the same document under key 2 conflicts with the row under key 1.
    assert!(matches!(
        store
            .insert_subject(under_key_2(SubjectStatus::Active), at(1))
            .await,
        Err(Error::AlreadyEnrolled)
    ));
    // The old subject keeps the pseudonym it was enrolled with, and its key id.
    assert_eq!(
        store.get_transit_account(old.id).await.unwrap(),
        StoredPseudonym {
            key_id: KeyId::FIRST,
            value: Some(pseudonym),
        }
    );
    // A new enrolment stores key 2's id with its pseudonym.
    let mut fresh = new_subject(55, SubjectStatus::Active);
    fresh.document_hash.key_id = two();
    fresh.transit_account.key_id = two();
    let value = fresh.transit_account.value.clone();
    let fresh = store.insert_subject(fresh, at(2)).await.unwrap();
    assert_eq!(
        store.get_transit_account(fresh.id).await.unwrap(),
        StoredPseudonym {
            key_id: two(),
            value: Some(value),
        }
    );
    assert!(matches!(
        store
            .get_transit_account(citypass_identity::ids::SubjectId::from_bytes([0xee; 16]))
            .await,
        Err(Error::SubjectNotFound)
    ));
}

/// The government-service pseudonym (issue 10): stored with its key id at enrolment
/// of a resident ID, read back as stored; none for other subjects.
pub(crate) async fn government_pseudonyms_are_stored_with_their_key_id(store: Arc<dyn Store>) {
    let mut resident = new_subject(60, SubjectStatus::Active);
    let stored = Pseudonym {
        key_id: two(),
        value: "ab".repeat(32),
    };
    resident.government_pseudonym = Some(stored.clone());
    let resident = store.insert_subject(resident, at(0)).await.unwrap();
    assert_eq!(
        store.get_government_pseudonym(resident.id).await.unwrap(),
        Some(stored)
    );
    let other = store
        .insert_subject(new_subject(61, SubjectStatus::Active), at(0))
        .await
        .unwrap();
    assert_eq!(
        store.get_government_pseudonym(other.id).await.unwrap(),
        None
    );
    assert!(matches!(
        store
            .get_government_pseudonym(citypass_identity::ids::SubjectId::from_bytes([0xee; 16]))
            .await,
        Err(Error::SubjectNotFound)
    ));
}

pub(crate) async fn finding_9_one_document_enrols_once_across_keys(store: Arc<dyn Store>) {
    // Half the enrolments hash under key 1, half under key 2, all at once.
    let results = race(&store, 8, |store, i| async move {
        let new = if i % 2 == 0 {
            under_key_1(SubjectStatus::Active)
        } else {
            under_key_2(SubjectStatus::Active)
        };
        store.insert_subject(new, at(0)).await
    })
    .await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(Error::AlreadyEnrolled)))
    );
}
