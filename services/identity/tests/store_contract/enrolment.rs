//! The subject's authority to bind (security finding 1): an enrolment secret binds
//! once, before it expires, and only its own subject; a bound device authorises
//! further devices only while it is an ACTIVE device of the same subject.

use std::sync::Arc;

use citypass_identity::enrolment::{Authority, EnrolmentGrant, SecretHash};
use citypass_identity::error::Error;
use citypass_identity::store::Store;

use crate::support::{
    SECRET, active_subject, at, bound_device, challenge_for, new_device, public_key,
};

async fn fresh_challenge(
    store: &Arc<dyn Store>,
    id: citypass_identity::ids::SubjectId,
    now: i64,
) -> [u8; 32] {
    let c = challenge_for(id, at(now + 60));
    store.create_challenge(c.clone(), at(now)).await.unwrap();
    c.bytes
}

pub async fn finding_1_an_enrolment_secret_binds_once_and_only_its_subject(store: Arc<dyn Store>) {
    let alice = active_subject(&store, 1).await;
    let bob = active_subject(&store, 2).await;

    // A wrong secret binds nothing and leaves the right one usable.
    let c = fresh_challenge(&store, alice, 0).await;
    let mut wrong = new_device(alice, c, public_key());
    wrong.authority = Authority::EnrolmentSecret(SecretHash([0x01; 32]));
    assert!(matches!(
        store.bind_device(wrong, 3, at(1)).await,
        Err(Error::BindingNotAuthorized)
    ));
    // Bob's secret is his alone (both were granted the same fixture secret, so give
    // Bob another and try it on Alice).
    let other = SecretHash([0x02; 32]);
    store
        .grant_enrolment(
            bob,
            EnrolmentGrant {
                secret_hash: other,
                expires_at: at(10_000),
            },
            at(1),
        )
        .await
        .unwrap();
    let mut foreign = new_device(alice, c, public_key());
    foreign.authority = Authority::EnrolmentSecret(other);
    assert!(matches!(
        store.bind_device(foreign, 3, at(2)).await,
        Err(Error::BindingNotAuthorized)
    ));

    // The right secret binds, once.
    let first = store
        .bind_device(new_device(alice, c, public_key()), 3, at(3))
        .await
        .expect("the enrolment secret binds the first device");
    assert_eq!(first.subject_id, alice);
    let c2 = fresh_challenge(&store, alice, 4).await;
    assert!(matches!(
        store
            .bind_device(new_device(alice, c2, public_key()), 3, at(5))
            .await,
        Err(Error::BindingNotAuthorized)
    ));
}

pub async fn finding_1_an_expired_enrolment_secret_binds_nothing(store: Arc<dyn Store>) {
    let id = active_subject(&store, 1).await;
    store
        .grant_enrolment(
            id,
            EnrolmentGrant {
                secret_hash: SECRET,
                expires_at: at(100),
            },
            at(0),
        )
        .await
        .unwrap();
    let c = fresh_challenge(&store, id, 99).await;
    assert!(matches!(
        store
            .bind_device(new_device(id, c, public_key()), 3, at(100))
            .await,
        Err(Error::BindingNotAuthorized)
    ));
    // A reset (IssueEnrolmentSecret) makes a new one.
    store
        .grant_enrolment(
            id,
            EnrolmentGrant {
                secret_hash: SECRET,
                expires_at: at(200),
            },
            at(100),
        )
        .await
        .unwrap();
    store
        .bind_device(new_device(id, c, public_key()), 3, at(101))
        .await
        .expect("a fresh grant binds");
    assert!(matches!(
        store
            .grant_enrolment(
                citypass_identity::ids::SubjectId::from_bytes([0xee; 16]),
                EnrolmentGrant {
                    secret_hash: SECRET,
                    expires_at: at(200),
                },
                at(100),
            )
            .await,
        Err(Error::SubjectNotFound)
    ));
}

pub async fn finding_1_only_an_active_device_of_the_subject_authorises_another(
    store: Arc<dyn Store>,
) {
    let alice = active_subject(&store, 1).await;
    let bob = active_subject(&store, 2).await;
    let alices_phone = bound_device(&store, alice, 0).await;
    let bobs_phone = bound_device(&store, bob, 0).await;

    // Bob's device cannot authorise a binding to Alice.
    let c = fresh_challenge(&store, alice, 1).await;
    let mut via_bob = new_device(alice, c, public_key());
    via_bob.authority = Authority::BoundDevice(bobs_phone);
    assert!(matches!(
        store.bind_device(via_bob, 3, at(2)).await,
        Err(Error::BindingNotAuthorized)
    ));

    // Alice's own device can.
    let mut via_alice = new_device(alice, c, public_key());
    via_alice.authority = Authority::BoundDevice(alices_phone);
    store
        .bind_device(via_alice, 3, at(3))
        .await
        .expect("a bound device authorises another");

    // Once unbound, it no longer can.
    store
        .unbind_device(alice, alices_phone, "lost", at(4))
        .await
        .unwrap();
    let c = fresh_challenge(&store, alice, 5).await;
    let mut via_unbound = new_device(alice, c, public_key());
    via_unbound.authority = Authority::BoundDevice(alices_phone);
    assert!(matches!(
        store.bind_device(via_unbound, 3, at(6)).await,
        Err(Error::BindingNotAuthorized)
    ));
}
