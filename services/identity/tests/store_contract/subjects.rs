//! Subjects: stored and found, one enrolled subject per document (also under
//! concurrency), pending attempts closed by a verified enrolment, attribute updates,
//! status changes.

use std::sync::Arc;

use citypass_identity::error::Error;
use citypass_identity::ids::SubjectId;
use citypass_identity::model::AttributesUpdate;
use citypass_identity::store::Store;
use citypass_proto::v1::{AssuranceLevel, FareClass, SubjectStatus};

use crate::support::{active_subject, at, hash, new_subject, race};

pub(crate) async fn subjects_are_stored_and_found(store: Arc<dyn Store>) {
    let new = new_subject(1, SubjectStatus::Active);
    let stored = store.insert_subject(new.clone(), at(5)).await.unwrap();
    assert_eq!(stored, new.clone().into_subject(at(5)));
    assert_eq!(store.get_subject(stored.id).await.unwrap(), stored);
    assert_eq!(
        store.find_enrolled_subject(&[hash(1)]).await.unwrap(),
        Some(stored.clone())
    );
    assert_eq!(store.find_enrolled_subject(&[hash(2)]).await.unwrap(), None);
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
    assert_eq!(store.find_enrolled_subject(&[hash(3)]).await.unwrap(), None);
}

pub(crate) async fn one_enrolled_subject_per_document(store: Arc<dyn Store>) {
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
            .find_enrolled_subject(&[hash(1)])
            .await
            .unwrap()
            .map(|s| s.id),
        Some(first)
    );
}

pub(crate) async fn concurrent_enrolments_of_one_document_have_one_winner(store: Arc<dyn Store>) {
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

pub(crate) async fn a_verified_enrolment_closes_pending_attempts(store: Arc<dyn Store>) {
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

pub(crate) async fn attribute_updates_keep_unset_fields(store: Arc<dyn Store>) {
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

pub(crate) async fn status_moves_only_between_active_and_suspended(store: Arc<dyn Store>) {
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
