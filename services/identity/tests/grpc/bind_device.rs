//! CreateBindingChallenge and BindDevice: refusals are precise and change nothing;
//! challenges expire and bind once; the device limit holds; a suspended subject cannot
//! bind.

use std::time::Duration;

use citypass_identity::IdentityConfig;
use citypass_proto::v1::{
    CreateBindingChallengeRequest, SetSubjectStatusRequest, SubjectStatus, UnbindDeviceRequest,
};
use citypass_token::DeviceKey;
use tonic::Code;

use crate::support::{
    assert_code, bind_new_device, bind_request, digest, enrol, new_challenge, resident_id, rng,
    start, start_default,
};

#[tokio::test]
async fn binding_refusals_are_precise_and_change_nothing() {
    let h = start_default().await;
    let mut client = h.client.clone();
    let subject = enrol(&mut client, &resident_id(4), "Jane Roe").await;
    let id = subject.subject_id.clone();
    let challenge = new_challenge(&mut client, &id).await;
    let key = DeviceKey::generate(&rng()).unwrap();
    let before = digest(&h.pool).await;

    // Malformed public key: wrong length, and a point not on the curve.
    let mut request = bind_request(&id, &challenge, &key);
    request.public_key.truncate(33);
    assert_code(
        client.bind_device(request).await,
        Code::InvalidArgument,
        "public_key",
    );
    let mut request = bind_request(&id, &challenge, &key);
    request.public_key[64] ^= 1;
    assert_code(
        client.bind_device(request).await,
        Code::InvalidArgument,
        "public_key",
    );

    // Bad signatures: another key's, one over another subject, a flipped bit.
    let other = DeviceKey::generate(&rng()).unwrap();
    let mut request = bind_request(&id, &challenge, &key);
    request.signature = bind_request(&id, &challenge, &other).signature;
    assert_code(
        client.bind_device(request).await,
        Code::Unauthenticated,
        "signature",
    );
    let mut request = bind_request(&id, &challenge, &key);
    request.signature =
        bind_request("ffffffffffffffffffffffffffffffff", &challenge, &key).signature;
    assert_code(
        client.bind_device(request).await,
        Code::Unauthenticated,
        "signature",
    );
    let mut request = bind_request(&id, &challenge, &key);
    request.signature[10] ^= 1;
    assert_code(
        client.bind_device(request).await,
        Code::Unauthenticated,
        "signature",
    );
    let mut request = bind_request(&id, &challenge, &key);
    request.signature.pop();
    assert_code(
        client.bind_device(request).await,
        Code::InvalidArgument,
        "signature",
    );
    // A challenge that was never issued (correctly signed).
    assert_code(
        client.bind_device(bind_request(&id, &[9; 32], &key)).await,
        Code::FailedPrecondition,
        "challenge",
    );
    assert_eq!(digest(&h.pool).await, before);

    // The challenge survived all that; it binds once, and only once.
    client
        .bind_device(bind_request(&id, &challenge, &key))
        .await
        .unwrap();
    let after_bind = digest(&h.pool).await;
    let fresh_key = DeviceKey::generate(&rng()).unwrap();
    assert_code(
        client
            .bind_device(bind_request(&id, &challenge, &fresh_key))
            .await,
        Code::FailedPrecondition,
        "already used",
    );
    // A key already bound is refused, even with a fresh challenge.
    let challenge = new_challenge(&mut client, &id).await;
    let after_challenge = digest(&h.pool).await;
    assert_code(
        client
            .bind_device(bind_request(&id, &challenge, &key))
            .await,
        Code::AlreadyExists,
        "public_key",
    );
    assert_eq!(digest(&h.pool).await, after_challenge);
    assert_ne!(after_bind, after_challenge);
}

#[tokio::test]
async fn expired_challenges_are_refused() {
    let mut config = IdentityConfig::dev();
    config.challenge_ttl = Duration::from_millis(300);
    let h = start(config).await;
    let mut client = h.client.clone();
    let subject = enrol(&mut client, &resident_id(5), "Jane Roe").await;
    let challenge = new_challenge(&mut client, &subject.subject_id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = digest(&h.pool).await;
    let key = DeviceKey::generate(&rng()).unwrap();
    assert_code(
        client
            .bind_device(bind_request(&subject.subject_id, &challenge, &key))
            .await,
        Code::FailedPrecondition,
        "expired",
    );
    assert_eq!(digest(&h.pool).await, before);
}

#[tokio::test]
async fn the_device_limit_is_enforced() {
    let mut config = IdentityConfig::dev();
    config.max_devices_per_subject = 2;
    let h = start(config).await;
    let mut client = h.client.clone();
    let subject = enrol(&mut client, &resident_id(6), "Jane Roe").await;
    let id = subject.subject_id.clone();
    let first = bind_new_device(&mut client, &id).await;
    bind_new_device(&mut client, &id).await;
    let challenge = new_challenge(&mut client, &id).await;
    let key = DeviceKey::generate(&rng()).unwrap();
    let before = digest(&h.pool).await;
    assert_code(
        client
            .bind_device(bind_request(&id, &challenge, &key))
            .await,
        Code::FailedPrecondition,
        "limit",
    );
    assert_eq!(digest(&h.pool).await, before);
    client
        .unbind_device(UnbindDeviceRequest {
            subject_id: id.clone(),
            device_id: first,
            reason: String::new(),
        })
        .await
        .unwrap();
    client
        .bind_device(bind_request(&id, &challenge, &key))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_suspended_subject_cannot_bind() {
    let h = start_default().await;
    let mut client = h.client.clone();
    let subject = enrol(&mut client, &resident_id(7), "Jane Roe").await;
    let id = subject.subject_id.clone();
    let challenge = new_challenge(&mut client, &id).await;
    let suspended = client
        .set_subject_status(SetSubjectStatusRequest {
            subject_id: id.clone(),
            status: SubjectStatus::Suspended.into(),
            reason: "fraud review".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .subject
        .unwrap();
    assert_eq!(suspended.status(), SubjectStatus::Suspended);
    let before = digest(&h.pool).await;
    let key = DeviceKey::generate(&rng()).unwrap();
    assert_code(
        client
            .bind_device(bind_request(&id, &challenge, &key))
            .await,
        Code::FailedPrecondition,
        "SUSPENDED",
    );
    assert_code(
        client
            .create_binding_challenge(CreateBindingChallengeRequest {
                subject_id: id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "SUSPENDED",
    );
    assert_code(
        client
            .set_subject_status(SetSubjectStatusRequest {
                subject_id: id.clone(),
                status: SubjectStatus::Rejected.into(),
                reason: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "ACTIVE or SUSPENDED",
    );
    assert_eq!(digest(&h.pool).await, before);
    // Re-activated, the same challenge binds.
    client
        .set_subject_status(SetSubjectStatusRequest {
            subject_id: id.clone(),
            status: SubjectStatus::Active.into(),
            reason: "cleared".to_owned(),
        })
        .await
        .unwrap();
    client
        .bind_device(bind_request(&id, &challenge, &key))
        .await
        .unwrap();
}
