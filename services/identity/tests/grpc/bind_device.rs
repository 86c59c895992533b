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

/// Security finding 1: BindDevice used to need only a proof of possession of the key
/// being bound, so whoever learnt a subject id bound their own key and got that
/// citizen's codes. Now the subject's authority is needed too: the enrolment secret
/// that only the enrolling app received, or a signature by a device already bound.
#[tokio::test]
async fn finding_1_a_subject_id_alone_binds_nothing() {
    use citypass_proto::v1::BindingAuthorization;
    use citypass_proto::v1::bind_device_request::Authority;
    use citypass_token::binding_authorization_message;

    let h = start_default().await;
    // The citizen's app enrols (and keeps the secret Enrol returned).
    let mut app = h.client.clone();
    let subject = enrol(&mut app, &resident_id(40), "Jane Roe").await;
    let id = subject.subject_id.clone();
    let secret = crate::support::secret_of(&id);

    // The attacker knows the id, asks for a challenge and signs it with their own key.
    let mut attacker = h.client.clone();
    let challenge = attacker
        .create_binding_challenge(CreateBindingChallengeRequest {
            subject_id: id.clone(),
        })
        .await
        .expect("challenges are open to anyone")
        .into_inner()
        .challenge;
    let thief_key = DeviceKey::generate(&rng()).unwrap();
    let before = digest(&h.pool).await;

    let mut no_authority = bind_request(&id, &challenge, &thief_key);
    no_authority.authority = None;
    assert_code(
        attacker.bind_device(no_authority).await,
        Code::InvalidArgument,
        "authority",
    );
    let mut guessed = bind_request(&id, &challenge, &thief_key);
    guessed.authority = Some(Authority::EnrolmentSecret(vec![0x42; 32]));
    let refused = attacker.bind_device(guessed).await.expect_err("refused");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(
        citypass_runtime::reason_of(&refused).as_deref(),
        Some("BINDING_NOT_AUTHORIZED")
    );
    assert_eq!(
        digest(&h.pool).await,
        before,
        "a refused binding changes nothing"
    );

    // The citizen binds with the secret; it is then used up.
    let phone = DeviceKey::generate(&rng()).unwrap();
    let mut genuine = bind_request(&id, &challenge, &phone);
    genuine.authority = Some(Authority::EnrolmentSecret(secret.clone()));
    let bound = app
        .bind_device(genuine)
        .await
        .expect("the enrolment secret binds the first device")
        .into_inner()
        .device
        .expect("device");
    let second = attacker
        .create_binding_challenge(CreateBindingChallengeRequest {
            subject_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .challenge;
    let mut replayed = bind_request(&id, &second, &thief_key);
    replayed.authority = Some(Authority::EnrolmentSecret(secret));
    let refused = attacker
        .bind_device(replayed)
        .await
        .expect_err("used secret");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // Naming the citizen's device without its key authorises nothing.
    let forged = thief_key
        .sign(
            &rng(),
            &binding_authorization_message(&id, &second, thief_key.public_key()),
        )
        .unwrap();
    let mut impersonating = bind_request(&id, &second, &thief_key);
    impersonating.authority = Some(Authority::BoundDevice(BindingAuthorization {
        device_id: bound.device_id.clone(),
        signature: forged,
    }));
    let refused = attacker
        .bind_device(impersonating)
        .await
        .expect_err("not the device's signature");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // The citizen's phone authorises a second phone of theirs.
    let tablet = DeviceKey::generate(&rng()).unwrap();
    let authorised = phone
        .sign(
            &rng(),
            &binding_authorization_message(&id, &second, tablet.public_key()),
        )
        .unwrap();
    let mut added = bind_request(&id, &second, &tablet);
    added.authority = Some(Authority::BoundDevice(BindingAuthorization {
        device_id: bound.device_id,
        signature: authorised,
    }));
    app.bind_device(added)
        .await
        .expect("a bound device authorises another");
}
