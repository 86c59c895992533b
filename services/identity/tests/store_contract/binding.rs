//! Binding devices: the device limit holds (also under concurrency), a key binds once
//! ever, and a subject that is not active cannot bind.

use std::sync::Arc;

use citypass_identity::enrolment::Authority;
use citypass_identity::error::Error;
use citypass_identity::ids::SubjectId;
use citypass_identity::model::DevicePage;
use citypass_identity::store::{MAX_OUTSTANDING_CHALLENGES, Store};
use citypass_proto::v1::SubjectStatus;

use crate::support::{active_subject, at, bound_device, challenge, new_device, public_key, race};

pub(crate) async fn the_device_limit_holds_and_a_refused_bind_keeps_its_challenge(
    store: Arc<dyn Store>,
) {
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
    assert_eq!(
        store
            .list_devices(id, true, DevicePage::ALL)
            .await
            .unwrap()
            .len(),
        2
    );
    // Unbinding frees a place; the refused challenge still works.
    store
        .unbind_device(id, devices[0].id, "lost", at(3))
        .await
        .unwrap();
    store
        .bind_device(new_device(id, c, key), 2, at(4))
        .await
        .unwrap();
    assert_eq!(
        store
            .list_devices(id, false, DevicePage::ALL)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store
            .list_devices(id, true, DevicePage::ALL)
            .await
            .unwrap()
            .len(),
        3
    );
}

pub(crate) async fn concurrent_binds_respect_the_device_limit(store: Arc<dyn Store>) {
    let id = active_subject(&store, 1).await;
    // The first device (by the enrolment secret) authorises the racing ones.
    let first = bound_device(&store, id, 0).await;
    let mut challenges = Vec::new();
    for i in 0..MAX_OUTSTANDING_CHALLENGES {
        challenges.push(challenge(&store, id, i64::try_from(i + 1).unwrap()).await);
    }
    let results = race(&store, challenges.len(), |store, i| {
        let c = challenges[i];
        async move {
            let mut device = new_device(id, c, public_key());
            device.authority = Authority::BoundDevice(first);
            store.bind_device(device, 3, at(10)).await
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
    assert_eq!(
        store
            .list_devices(id, false, DevicePage::ALL)
            .await
            .unwrap()
            .len(),
        3
    );
}

pub(crate) async fn a_key_binds_once_ever(store: Arc<dyn Store>) {
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

pub(crate) async fn a_subject_that_is_not_active_cannot_bind(store: Arc<dyn Store>) {
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
