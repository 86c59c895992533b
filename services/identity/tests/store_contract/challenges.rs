//! Binding challenges: they need an active subject, belong to it, bind once (also
//! under concurrency), expire, and only the newest stay outstanding.

use std::sync::Arc;

use citypass_identity::error::Error;
use citypass_identity::ids::SubjectId;
use citypass_identity::model::DevicePage;
use citypass_identity::store::{MAX_OUTSTANDING_CHALLENGES, Store};
use citypass_proto::v1::{DeviceStatus, SubjectStatus};

use crate::support::{
    active_subject, at, challenge, challenge_for, new_device, new_subject, public_key, race,
    test_grant,
};

pub(crate) async fn challenges_need_an_active_subject(store: Arc<dyn Store>) {
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

pub(crate) async fn a_challenge_binds_once(store: Arc<dyn Store>) {
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

pub(crate) async fn concurrent_binds_with_one_challenge_have_one_winner(store: Arc<dyn Store>) {
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
    assert_eq!(
        store
            .list_devices(id, true, DevicePage::ALL)
            .await
            .unwrap()
            .len(),
        1
    );
}

pub(crate) async fn a_challenge_belongs_to_its_subject(store: Arc<dyn Store>) {
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

pub(crate) async fn expired_challenges_are_refused_and_change_nothing(store: Arc<dyn Store>) {
    let id = active_subject(&store, 1).await;
    let c = challenge(&store, id, 0).await; // valid until at(60)
    assert!(matches!(
        store
            .bind_device(new_device(id, c, public_key()), 3, at(60))
            .await,
        Err(Error::ChallengeExpired)
    ));
    assert!(
        store
            .list_devices(id, true, DevicePage::ALL)
            .await
            .unwrap()
            .is_empty()
    );
    // Expired stays expired (and may since have been cleaned up: unknown).
    assert!(matches!(
        store
            .bind_device(new_device(id, c, public_key()), 3, at(61))
            .await,
        Err(Error::ChallengeExpired | Error::ChallengeUnknown)
    ));
}

pub(crate) async fn only_the_newest_challenges_stay_outstanding(store: Arc<dyn Store>) {
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
        // Each binding consumes the enrolment secret: grant it again.
        store.grant_enrolment(id, test_grant(), now).await.unwrap();
        store
            .bind_device(new_device(id, *c, public_key()), 10, now)
            .await
            .unwrap();
    }
}
