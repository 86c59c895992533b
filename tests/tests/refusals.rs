//! Bad input gets a precise status and changes nothing.
//!
//! Each refusal is checked for its exact gRPC code and for leaving the system as it
//! was: a digest of every identity table (PostgreSQL) and the issuer's Redis keys are
//! taken before and after ([`TestStack::state`]), and a follow-up call shows that the
//! good path still works. Calls the app would never make go through the generated
//! clients, with requests signed by hand (`citypass_proto::signed`).
//!
//! Where the issuer refuses after the device signature and nonce passed (wrong subject,
//! unbound device, suspended subject), the nonce is spent by design (a signed request
//! is single-use whatever its outcome): there only the database must be unchanged.

use std::time::{Duration, SystemTime};

use citypass_device_proof::{
    ISSUE_DEVICE_CERTIFICATE, ISSUE_TOKEN, sign_request, sign_request_with,
};
use citypass_e2e::{
    TestStack, dev_ring, device_key, expect_code, ids, now, resident_id, signed_issue_token,
    status_of, within, wrong_check_digit,
};
use citypass_proto::v1::bind_device_request::Authority;
use citypass_proto::v1::{
    BindDeviceRequest, CreateBindingChallengeRequest, DocumentType, EnrolRequest,
    GetSubjectRequest, IssueDeviceCertificateRequest, IssueTokenRequest, ListDevicesRequest,
    SetSubjectStatusRequest, SubjectStatus, UnbindDeviceRequest,
};
use citypass_token::{DeviceKey, SystemRandom, Validation, binding_message, verify_online};
use tonic::Code;

fn rng() -> SystemRandom {
    SystemRandom::new()
}

fn enrol_request(number: &str) -> EnrolRequest {
    EnrolRequest {
        document_type: DocumentType::ResidentIdCard.into(),
        document_number: number.to_owned(),
        name: "李四".to_owned(),
        request_id: String::new(),
    }
}

/// A random id in the services' format (32 lowercase hex characters) that names nothing.
fn unknown_id() -> String {
    citypass_testkit::unique("")[..16].repeat(2)
}

#[tokio::test]
async fn wrong_check_digit_is_invalid_argument_and_stores_nothing() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let mut identity = t.identity().await;
    let number = resident_id();
    let before = t.state().await;

    let status = expect_code(
        within(
            "enrol",
            identity.enrol(enrol_request(&wrong_check_digit(&number))),
        )
        .await,
        Code::InvalidArgument,
    );
    assert!(status.message().contains("document_number"), "{status:?}");
    assert!(
        !status.message().contains(&number[..17]),
        "the refusal does not echo the number"
    );
    assert_eq!(
        t.state().await,
        before,
        "a refused enrolment stores nothing"
    );

    // The right number still enrols (the refusal reserved nothing).
    within("enrol", identity.enrol(enrol_request(&number)))
        .await
        .expect("the valid number enrols");
    assert_eq!(t.rows("subjects").await, 1);
    t.shutdown().await;
}

/// A duplicate enrolment gets the one refusal of Enrol, which does not say the
/// document is enrolled (security finding 8).
#[tokio::test]
async fn duplicate_enrolment_is_refused_and_changes_nothing() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let mut identity = t.identity().await;
    let number = resident_id();
    let first = within("enrol", identity.enrol(enrol_request(&number)))
        .await
        .expect("first enrolment")
        .into_inner()
        .subject
        .unwrap();
    let before = t.state().await;

    expect_code(
        within("enrol again", identity.enrol(enrol_request(&number))).await,
        Code::FailedPrecondition,
    );
    // The same document written in lower case is the same document.
    let lower_x = format!("{}x", &number[..17]);
    if number.ends_with('X') {
        expect_code(
            within("enrol again", identity.enrol(enrol_request(&lower_x))).await,
            Code::FailedPrecondition,
        );
    }
    assert_eq!(
        t.state().await,
        before,
        "a refused enrolment changes nothing"
    );
    let still = within(
        "get subject",
        identity.get_subject(GetSubjectRequest {
            subject_id: first.subject_id.clone(),
        }),
    )
    .await
    .expect("the first subject is still there")
    .into_inner()
    .subject
    .unwrap();
    assert_eq!(still, first);
    t.shutdown().await;
}

#[tokio::test]
async fn unknown_subject_is_not_found_and_changes_nothing() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let _someone = t.citizen("王五").await;
    let mut identity = t.identity().await;
    let nobody = unknown_id();
    let before = t.state().await;

    expect_code(
        within(
            "get subject",
            identity.get_subject(GetSubjectRequest {
                subject_id: nobody.clone(),
            }),
        )
        .await,
        Code::NotFound,
    );
    expect_code(
        within(
            "challenge",
            identity.create_binding_challenge(CreateBindingChallengeRequest {
                subject_id: nobody.clone(),
            }),
        )
        .await,
        Code::NotFound,
    );
    expect_code(
        within(
            "suspend",
            identity.set_subject_status(SetSubjectStatusRequest {
                subject_id: nobody.clone(),
                status: SubjectStatus::Suspended.into(),
                reason: "test".to_owned(),
            }),
        )
        .await,
        Code::NotFound,
    );
    expect_code(
        within(
            "list devices",
            identity.list_devices(ListDevicesRequest {
                subject_id: nobody.clone(),
                include_unbound: true,
                ..ListDevicesRequest::default()
            }),
        )
        .await,
        Code::NotFound,
    );
    assert_eq!(t.state().await, before);
    t.shutdown().await;
}

#[tokio::test]
async fn unknown_device_is_not_found_and_spends_no_nonce() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let app = t.citizen("赵六").await;
    let (subject_id, _) = ids(&app);
    let mut issuer = t.issuer().await;
    let key = device_key(&app);
    let before = t.state().await;

    let request = signed_issue_token(&subject_id, &unknown_id(), &key);
    expect_code(
        within("issue", issuer.issue_token(request)).await,
        Code::NotFound,
    );
    assert_eq!(t.state().await, before, "nothing written, no nonce spent");
    t.shutdown().await;
}

/// A device id that is not in identity's format is the caller's error
/// (INVALID_ARGUMENT), refused before identity is asked, never an internal error.
#[tokio::test]
async fn malformed_device_id_is_a_caller_error() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let app = t.citizen("钱七").await;
    let (subject_id, _) = ids(&app);
    let mut issuer = t.issuer().await;
    let before = t.state().await;

    let request = signed_issue_token(&subject_id, "not-a-device", &device_key(&app));
    let status = within("issue", issuer.issue_token(request))
        .await
        .expect_err("refused");
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "a malformed device id is the caller's error, got {status:?}"
    );
    assert_eq!(t.state().await, before);
    t.shutdown().await;
}

#[tokio::test]
async fn device_of_another_subject_or_unbound_is_permission_denied() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let mut alice = t.citizen("孙八").await;
    let bob = t.citizen("周九").await;
    let (alice_subject, alice_device) = ids(&alice);
    let (bob_subject, _) = ids(&bob);
    let mut issuer = t.issuer().await;
    let mut identity = t.identity().await;
    let key = device_key(&alice);

    // Alice's device, correctly signed, asking for a code for Bob; then for a subject
    // that does not exist.
    for subject in [bob_subject.clone(), unknown_id()] {
        let before = t.state().await;
        let request = signed_issue_token(&subject, &alice_device, &key);
        expect_code(
            within("issue", issuer.issue_token(request)).await,
            Code::PermissionDenied,
        );
        let after = t.state().await;
        assert_eq!(after.tables, before.tables, "nothing issued or recorded");
    }
    // A certificate for Bob from Alice's device: refused, nothing recorded.
    let offline = DeviceKey::generate(&rng()).unwrap();
    let mut request = IssueDeviceCertificateRequest {
        subject_id: bob_subject.clone(),
        device_id: alice_device.clone(),
        offline_public_key: offline.public_key().as_bytes().to_vec(),
        ..IssueDeviceCertificateRequest::default()
    };
    request.proof = Some(sign_request(ISSUE_DEVICE_CERTIFICATE, &request, &key).unwrap());
    expect_code(
        within("certificate", issuer.issue_device_certificate(request)).await,
        Code::PermissionDenied,
    );
    assert_eq!(t.rows("device_certificates").await, 0);

    // Alice's own request still works...
    within("issue", alice.code(false))
        .await
        .expect("the device still gets codes for its own subject");

    // ...until she unbinds the device (the issuer's identity cache is off here).
    within(
        "unbind",
        identity.unbind_device(UnbindDeviceRequest {
            subject_id: alice_subject.clone(),
            device_id: alice_device.clone(),
            reason: "lost".to_owned(),
        }),
    )
    .await
    .expect("unbind");
    let before = t.state().await;
    let status = status_of(
        within("issue", alice.code(false))
            .await
            .expect_err("an unbound device gets no code"),
    );
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(t.state().await.tables, before.tables);
    t.shutdown().await;
}

#[tokio::test]
async fn bad_device_signature_is_unauthenticated_and_spends_no_nonce() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let mut app = t.citizen("吴十").await;
    let (subject_id, device_id) = ids(&app);
    let mut issuer = t.issuer().await;
    let before = t.state().await;

    // Signed by a key that is not the device's bound key.
    let stranger = DeviceKey::generate(&rng()).unwrap();
    let request = signed_issue_token(&subject_id, &device_id, &stranger);
    let status = expect_code(
        within("issue", issuer.issue_token(request)).await,
        Code::Unauthenticated,
    );
    assert!(status.message().contains("signature"), "{status:?}");

    // Signed by the right key, then changed (the body hash no longer matches).
    let mut tampered = signed_issue_token(&subject_id, &device_id, &device_key(&app));
    tampered.want_svg = true;
    expect_code(
        within("issue", issuer.issue_token(tampered)).await,
        Code::Unauthenticated,
    );

    // A certificate request signed by the stranger.
    let offline = DeviceKey::generate(&rng()).unwrap();
    let mut request = IssueDeviceCertificateRequest {
        subject_id: subject_id.clone(),
        device_id: device_id.clone(),
        offline_public_key: offline.public_key().as_bytes().to_vec(),
        ..IssueDeviceCertificateRequest::default()
    };
    request.proof = Some(sign_request(ISSUE_DEVICE_CERTIFICATE, &request, &stranger).unwrap());
    expect_code(
        within("certificate", issuer.issue_device_certificate(request)).await,
        Code::Unauthenticated,
    );

    // A stale timestamp, correctly signed.
    let mut stale = IssueTokenRequest {
        subject_id: subject_id.clone(),
        device_id: device_id.clone(),
        ..IssueTokenRequest::default()
    };
    stale.proof = Some(
        sign_request_with(
            ISSUE_TOKEN,
            &stale,
            &device_key(&app),
            SystemTime::now() - Duration::from_secs(120),
            &[7u8; 16],
        )
        .unwrap(),
    );
    expect_code(
        within("issue", issuer.issue_token(stale)).await,
        Code::Unauthenticated,
    );

    assert_eq!(
        t.state().await,
        before,
        "no nonce spent, no offline key burnt, nothing recorded"
    );
    within("issue", app.code(false))
        .await
        .expect("the device's own signature still works");
    t.shutdown().await;
}

#[tokio::test]
async fn replayed_request_is_unauthenticated() {
    let ring = dev_ring();
    let t = TestStack::with_ring(&ring).await;
    let app = t.citizen("郑十一").await;
    let (subject_id, device_id) = ids(&app);
    let mut issuer = t.issuer().await;
    let key = device_key(&app);

    let request = signed_issue_token(&subject_id, &device_id, &key);
    let first = within("issue", issuer.issue_token(request.clone()))
        .await
        .expect("the first use of a signed request works")
        .into_inner();
    let (keyset, _) = within("key set", app_key_set(&t)).await;
    verify_online(&first.qr_text, &keyset, &Validation::at(now())).expect("verifies");
    let before = t.state().await;

    // The exact same bytes again: a captured request replayed.
    let status = expect_code(
        within("replay", issuer.issue_token(request.clone())).await,
        Code::Unauthenticated,
    );
    assert!(status.message().contains("nonce"), "{status:?}");
    // The same nonce under a fresh signature and timestamp is still a replay.
    let mut again = request.clone();
    again.proof = None;
    let nonce = request.proof.as_ref().unwrap().nonce.clone();
    again.proof =
        Some(sign_request_with(ISSUE_TOKEN, &again, &key, SystemTime::now(), &nonce).unwrap());
    expect_code(
        within("replay", issuer.issue_token(again)).await,
        Code::Unauthenticated,
    );
    assert_eq!(t.state().await, before, "a replay changes nothing");
    t.shutdown().await;
}

async fn app_key_set(
    t: &TestStack,
) -> (
    citypass_token::KeySet,
    citypass_proto::v1::GetKeySetResponse,
) {
    t.app().key_set().await.expect("key set")
}

#[tokio::test]
async fn suspended_subject_is_permission_denied_until_reactivated() {
    // The issuer's identity cache is off (TestStack::with_ring): a suspension is seen
    // by the very next call.
    let t = TestStack::with_ring(&dev_ring()).await;
    let mut app = t.citizen("冯十二").await;
    let (subject_id, _) = ids(&app);
    let mut identity = t.identity().await;
    within("issue", app.code(false))
        .await
        .expect("active: issued");

    let suspended = within(
        "suspend",
        identity.set_subject_status(SetSubjectStatusRequest {
            subject_id: subject_id.clone(),
            status: SubjectStatus::Suspended.into(),
            reason: "test".to_owned(),
        }),
    )
    .await
    .expect("suspend")
    .into_inner()
    .subject
    .unwrap();
    assert_eq!(suspended.status(), SubjectStatus::Suspended);

    let before = t.state().await;
    let status = status_of(within("issue", app.code(false)).await.expect_err("refused"));
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = status_of(
        within("certificate", app.certificate())
            .await
            .expect_err("refused"),
    );
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        t.state().await.tables,
        before.tables,
        "no certificate recorded, nothing changed"
    );

    within(
        "reactivate",
        identity.set_subject_status(SetSubjectStatusRequest {
            subject_id: subject_id.clone(),
            status: SubjectStatus::Active.into(),
            reason: "test".to_owned(),
        }),
    )
    .await
    .expect("reactivate");
    within("issue", app.code(false))
        .await
        .expect("active again: issued");
    t.shutdown().await;
}

#[tokio::test]
async fn malformed_public_key_on_bind_is_invalid_argument_and_changes_nothing() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let mut identity = t.identity().await;
    let enrolled = within("enrol", identity.enrol(enrol_request(&resident_id())))
        .await
        .expect("enrol")
        .into_inner();
    let subject = enrolled.subject.unwrap();
    let authority = Some(Authority::EnrolmentSecret(enrolled.enrolment_secret));
    let challenge = within(
        "challenge",
        identity.create_binding_challenge(CreateBindingChallengeRequest {
            subject_id: subject.subject_id.clone(),
        }),
    )
    .await
    .expect("challenge")
    .into_inner()
    .challenge;
    let good = DeviceKey::generate(&rng()).unwrap();
    let good_bytes = good.public_key().as_bytes().to_vec();
    let mut off_curve = good_bytes.clone();
    off_curve[64] ^= 1;
    let mut compressed = vec![0x02 | (good_bytes[64] & 1)];
    compressed.extend_from_slice(&good_bytes[1..33]);
    let before = t.state().await;

    for (what, public_key) in [
        ("empty", Vec::new()),
        ("truncated", good_bytes[..64].to_vec()),
        ("not on the curve", off_curve),
        ("compressed", compressed),
        ("garbage", vec![0x04; 65]),
    ] {
        // The signature is by the good key over the binding message for the bad bytes,
        // so only the key's form is wrong.
        let message = binding_message(&subject.subject_id, &challenge, good.public_key());
        let status = expect_code(
            within(
                "bind",
                identity.bind_device(BindDeviceRequest {
                    subject_id: subject.subject_id.clone(),
                    public_key,
                    challenge: challenge.clone(),
                    signature: good.sign(&rng(), &message).unwrap(),
                    label: "phone".to_owned(),
                    authority: authority.clone(),
                }),
            )
            .await,
            Code::InvalidArgument,
        );
        assert!(
            status.message().contains("public_key"),
            "{what}: {status:?}"
        );
        assert_eq!(
            t.state().await,
            before,
            "{what}: nothing bound, challenge kept"
        );
    }

    // The same challenge still binds a well-formed key.
    let message = binding_message(&subject.subject_id, &challenge, good.public_key());
    within(
        "bind",
        identity.bind_device(BindDeviceRequest {
            subject_id: subject.subject_id.clone(),
            public_key: good_bytes,
            challenge,
            signature: good.sign(&rng(), &message).unwrap(),
            label: "phone".to_owned(),
            authority,
        }),
    )
    .await
    .expect("a well-formed key binds with the same challenge");
    assert_eq!(t.rows("devices").await, 1);
    t.shutdown().await;
}

#[tokio::test]
async fn malformed_offline_key_is_invalid_argument_and_changes_nothing() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let mut app = t.citizen("陈十三").await;
    let (subject_id, device_id) = ids(&app);
    let mut issuer = t.issuer().await;
    let key = device_key(&app);
    let good = DeviceKey::generate(&rng()).unwrap();
    let mut off_curve = good.public_key().as_bytes().to_vec();
    off_curve[64] ^= 1;
    let before = t.state().await;

    for (what, offline_public_key) in [
        ("empty", Vec::new()),
        ("not on the curve", off_curve),
        ("truncated", good.public_key().as_bytes()[..33].to_vec()),
    ] {
        let mut request = IssueDeviceCertificateRequest {
            subject_id: subject_id.clone(),
            device_id: device_id.clone(),
            offline_public_key,
            ..IssueDeviceCertificateRequest::default()
        };
        request.proof = Some(sign_request(ISSUE_DEVICE_CERTIFICATE, &request, &key).unwrap());
        let status = expect_code(
            within("certificate", issuer.issue_device_certificate(request)).await,
            Code::InvalidArgument,
        );
        assert!(
            status.message().contains("offline_public_key"),
            "{what}: {status:?}"
        );
        assert_eq!(
            t.state().await,
            before,
            "{what}: nothing recorded, no nonce spent"
        );
    }

    // The bound device key itself is not a fresh offline key.
    let mut request = IssueDeviceCertificateRequest {
        subject_id: subject_id.clone(),
        device_id: device_id.clone(),
        offline_public_key: key.public_key().as_bytes().to_vec(),
        ..IssueDeviceCertificateRequest::default()
    };
    request.proof = Some(sign_request(ISSUE_DEVICE_CERTIFICATE, &request, &key).unwrap());
    expect_code(
        within("certificate", issuer.issue_device_certificate(request)).await,
        Code::InvalidArgument,
    );
    assert_eq!(t.rows("device_certificates").await, 0);

    within("certificate", app.certificate())
        .await
        .expect("a fresh, well-formed offline key is certified");
    assert_eq!(t.rows("device_certificates").await, 1);
    t.shutdown().await;
}
