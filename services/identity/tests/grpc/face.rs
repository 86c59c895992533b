//! Face enrolment with consent (issue 14) over gRPC, TLS and PostgreSQL: the app's
//! device-signed calls and a counter's, the guardian rule, the verifier's feed, the
//! filing count, and that a withdrawn face leaves no trace of the template anywhere in
//! the database.

use citypass_device_proof::{ENROL_FACE, RECORD_FACE_CONSENT, WITHDRAW_FACE_CONSENT, sign_request};
use citypass_face::TemplateChannel;
use citypass_face::{DIMENSION, Embedding, SealedTemplate};
use citypass_identity::IdentityConfig;
use citypass_identity::document::gb11643_check_char;
use citypass_proto::v1::{
    EnrolFaceRequest, FaceChannel, FacePurpose, GetDeviceRequest, GetFaceEnrolmentStatsRequest,
    GetSubjectProfileRequest, ListFaceTemplateChangesRequest, RecordFaceConsentRequest,
    WithdrawFaceConsentRequest,
};
use citypass_runtime::{Role, reason_of};
use citypass_testkit::tls::As;
use citypass_token::DeviceKey;
use tonic::{Code, Status};

use crate::support::*;
/// A resident ID number of someone born on `birth` (YYYYMMDD); `seq` makes it unique.
fn resident_id_born(birth: &str, seq: u32) -> String {
    let first17 = format!("110105{birth}{seq:03}");
    let check = gb11643_check_char(&first17).unwrap();
    format!("{first17}{check}")
}

/// A subject enrolled from the app, with a bound device and its key.
async fn citizen(h: &Harness, number: &str) -> (String, String, DeviceKey) {
    citizen_with(h, enrol_request(number, "Li Lei")).await
}

/// A subject enrolled with `request`, with a bound device and its key.
async fn citizen_with(
    h: &Harness,
    request: citypass_proto::v1::EnrolRequest,
) -> (String, String, DeviceKey) {
    let mut app = h.client_as(&As::Nobody);
    let response = app.enrol(request).await.expect("enrol").into_inner();
    let subject = response.subject.expect("a subject").subject_id;
    remember_secret(&subject, response.enrolment_secret);
    let mut operator = h.client.clone();
    let challenge = new_challenge(&mut operator, &subject).await;
    let key = DeviceKey::generate(&rng()).unwrap();
    let device = app
        .bind_device(bind_request(&subject, &challenge, &key))
        .await
        .expect("bind")
        .into_inner()
        .device
        .unwrap()
        .device_id;
    (subject, device, key)
}

fn consent_request(subject: &str, purpose: FacePurpose) -> RecordFaceConsentRequest {
    RecordFaceConsentRequest {
        subject_id: subject.to_owned(),
        purpose: purpose.into(),
        text_version: "face-2026-06".to_owned(),
        places: match purpose {
            FacePurpose::FacePass => {
                vec!["station:L1-S03".to_owned(), "venue:west-lake".to_owned()]
            }
            _ => Vec::new(),
        },
        ..Default::default()
    }
}

fn signed_consent(
    subject: &str,
    device: &str,
    key: &DeviceKey,
    purpose: FacePurpose,
) -> RecordFaceConsentRequest {
    let mut request = consent_request(subject, purpose);
    request.device_id = device.to_owned();
    request.proof = Some(sign_request(RECORD_FACE_CONSENT, &request, key).unwrap());
    request
}

fn signed_enrol(subject: &str, device: &str, key: &DeviceKey, e: &Embedding) -> EnrolFaceRequest {
    let mut request = EnrolFaceRequest {
        subject_id: subject.to_owned(),
        embedding: e.values().to_vec(),
        device_id: device.to_owned(),
        proof: None,
    };
    request.proof = Some(sign_request(ENROL_FACE, &request, key).unwrap());
    request
}

fn signed_withdraw(
    subject: &str,
    device: &str,
    key: &DeviceKey,
    purpose: FacePurpose,
) -> WithdrawFaceConsentRequest {
    let mut request = WithdrawFaceConsentRequest {
        subject_id: subject.to_owned(),
        purpose: purpose.into(),
        device_id: device.to_owned(),
        proof: None,
    };
    request.proof = Some(sign_request(WITHDRAW_FACE_CONSENT, &request, key).unwrap());
    request
}

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, reason: &str) {
    let status = result.expect_err("the call must be refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason_of(&status).as_deref(), Some(reason), "{status:?}");
}

/// Every row of every table of the database, as text (bytea as `\x…` hex).
async fn every_row(pool: &sqlx::PgPool) -> String {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(table_name) FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(tables.iter().any(|t| t == "face_templates"), "{tables:?}");
    let mut all = String::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(pool)
            .await
            .unwrap();
        for row in rows {
            all.push_str(&row);
            all.push('\n');
        }
    }
    all
}

#[tokio::test]
async fn a_citizen_consents_enrols_and_withdraws_and_no_trace_of_the_face_stays() {
    let h = start_default().await;
    let (subject, device, key) = citizen(&h, &resident_id(700)).await;
    let mut app = h.client_as(&As::Nobody);
    let mut verifier = h.client_as(&As::Service("verifier"));
    let face = Embedding::sample(1);

    // No template without a consent.
    assert_refused(
        app.enrol_face(signed_enrol(&subject, &device, &key, &face))
            .await,
        Code::FailedPrecondition,
        "FACE_CONSENT_REQUIRED",
    );
    // Two separate consents, each its own call.
    for purpose in [FacePurpose::CounterCheck, FacePurpose::FacePass] {
        let consent = app
            .record_face_consent(signed_consent(&subject, &device, &key, purpose))
            .await
            .expect("a consent from the app")
            .into_inner()
            .consent
            .unwrap();
        assert_eq!(consent.purpose(), purpose);
        assert_eq!(consent.channel(), FaceChannel::App);
        assert_eq!(consent.text_version, "face-2026-06");
    }
    let before = every_row(&h.pool).await;
    let enrol = signed_enrol(&subject, &device, &key, &face);
    let enrolled = app
        .enrol_face(enrol.clone())
        .await
        .expect("enrol")
        .into_inner();
    assert_eq!(
        enrolled.purposes().collect::<Vec<_>>(),
        [FacePurpose::CounterCheck, FacePurpose::FacePass]
    );
    // A replayed request, an unsigned one and a signature from another subject's
    // device are all refused.
    assert_refused(
        app.enrol_face(enrol.clone()).await,
        Code::Unauthenticated,
        "NONCE_REUSED",
    );
    let mut unsigned = enrol.clone();
    unsigned.device_id.clear();
    unsigned.proof = None;
    assert_refused(
        app.enrol_face(unsigned).await,
        Code::Unauthenticated,
        "PROOF_MISSING",
    );
    let (_other, other_device, other_key) = citizen(&h, &resident_id(701)).await;
    assert_refused(
        app.enrol_face(signed_enrol(
            &subject,
            &other_device,
            &other_key,
            &Embedding::sample(9),
        ))
        .await,
        Code::PermissionDenied,
        "NOT_YOUR_SUBJECT",
    );
    // A tampered embedding no longer matches its signature.
    let mut tampered = enrol.clone();
    tampered.embedding = Embedding::sample(2).values().to_vec();
    assert_refused(
        app.enrol_face(tampered).await,
        Code::Unauthenticated,
        "BAD_SIGNATURE",
    );

    // The verifier's feed: the sealed template, its purposes and places.
    let feed = verifier
        .list_face_template_changes(ListFaceTemplateChangesRequest::default())
        .await
        .expect("the verifier reads the feed")
        .into_inner();
    assert_eq!(feed.changes.len(), 1);
    assert!(!feed.more);
    let change = &feed.changes[0];
    assert_eq!(change.subject_id, subject);
    let template = change.template.clone().expect("a template");
    assert_eq!(
        template.purposes().collect::<Vec<_>>(),
        [FacePurpose::CounterCheck, FacePurpose::FacePass]
    );
    assert_eq!(
        template.face_pass_places,
        vec!["station:L1-S03", "venue:west-lake"]
    );
    assert_eq!(template.channel(), FaceChannel::App);
    assert_eq!(template.enrolled_by_device_id, device);
    let sealed = SealedTemplate {
        key_id: u16::try_from(template.key_id).unwrap(),
        bytes: template.sealed.clone(),
    };
    let keys = IdentityConfig::dev().face_template_keys().unwrap();
    assert_eq!(
        keys.open(&subject, TemplateChannel::App, &sealed).unwrap(),
        face,
        "the verifier opens it"
    );
    assert!(
        keys.open(&_other, TemplateChannel::App, &sealed).is_err(),
        "bound to its subject"
    );
    assert!(
        keys.open(&subject, TemplateChannel::Counter, &sealed)
            .is_err(),
        "bound to its channel: relabelled as a counter's, it does not open (finding F4)"
    );

    // In the database: the sealed bytes, never the embedding.
    let plain = hex::encode(face.to_le_bytes());
    let cipher = hex::encode(&template.sealed);
    let rows = every_row(&h.pool).await;
    assert!(rows.contains(&cipher), "the sealed template is stored");
    assert!(
        !rows.contains(&plain),
        "the embedding is not stored in clear"
    );
    assert!(!rows.contains(&plain[..64]), "not even its first 32 bytes");
    assert!(!before.contains(&cipher));

    // Withdrawal of every purpose from the app: the template row goes at once.
    let withdrawn = app
        .withdraw_face_consent(signed_withdraw(
            &subject,
            &device,
            &key,
            FacePurpose::Unspecified,
        ))
        .await
        .expect("withdraw")
        .into_inner();
    assert!(withdrawn.template_deleted);
    assert_eq!(
        withdrawn.withdrawn().collect::<Vec<_>>(),
        [FacePurpose::CounterCheck, FacePurpose::FacePass]
    );
    let after = verifier
        .list_face_template_changes(ListFaceTemplateChangesRequest {
            after_sequence: feed.next_sequence,
            page_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.changes.len(), 1);
    assert_eq!(after.changes[0].subject_id, subject);
    assert!(after.changes[0].template.is_none(), "the feed says removed");

    // Searched after the test: neither the sealed nor the plain bytes anywhere.
    let rows = every_row(&h.pool).await;
    assert!(!rows.contains(&cipher), "the sealed template is gone");
    assert!(!rows.contains(&plain) && !rows.contains(&plain[..64]));
    for half in [&cipher[..cipher.len() / 2], &cipher[cipher.len() / 2..]] {
        assert!(!rows.contains(half));
    }
    // The processing record remains: who, what, when, which purpose.
    let actions: Vec<(String, Option<i16>, String)> =
        sqlx::query_as("SELECT action, purpose, actor FROM face_audit ORDER BY id")
            .fetch_all(&h.pool)
            .await
            .unwrap();
    let device_actor = format!("device:{device}");
    assert_eq!(
        actions,
        vec![
            ("consent".to_owned(), Some(1), device_actor.clone()),
            ("consent".to_owned(), Some(2), device_actor.clone()),
            ("enrol".to_owned(), None, device_actor.clone()),
            ("withdraw".to_owned(), Some(1), device_actor.clone()),
            ("withdraw".to_owned(), Some(2), device_actor.clone()),
            ("delete".to_owned(), None, device_actor),
        ]
    );
    let stats = h
        .client
        .clone()
        .get_face_enrolment_stats(GetFaceEnrolmentStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.enrolled_people, 0);
}

#[tokio::test]
async fn a_child_under_14_consents_through_a_guardian_at_a_counter() {
    let h = start_default().await;
    let this_year = 1970 + citypass_identity::model::Timestamp::now().unix_seconds() / 31_556_952;
    let child_birth = format!("{}0307", this_year - 10);
    let teen_birth = format!("{}0307", this_year - 16);
    let (child, device, key) = citizen(&h, &resident_id_born(&child_birth, 1)).await;
    let (teen, _, _) = citizen(&h, &resident_id_born(&teen_birth, 2)).await;
    let (parent, _, _) = citizen(&h, &resident_id(702)).await;
    let mut app = h.client_as(&As::Nobody);
    let mut counter = h.client.clone();

    // The app cannot consent for a child.
    assert_refused(
        app.record_face_consent(signed_consent(
            &child,
            &device,
            &key,
            FacePurpose::CounterCheck,
        ))
        .await,
        Code::FailedPrecondition,
        "GUARDIAN_CONSENT_REQUIRED",
    );
    // Nor a counter without a guardian, nor with one who cannot be.
    assert_refused(
        counter
            .record_face_consent(consent_request(&child, FacePurpose::CounterCheck))
            .await,
        Code::FailedPrecondition,
        "GUARDIAN_CONSENT_REQUIRED",
    );
    for guardian in [&child, &teen] {
        let mut request = consent_request(&child, FacePurpose::CounterCheck);
        request.guardian_subject_id = guardian.clone();
        assert_refused(
            counter.record_face_consent(request).await,
            Code::FailedPrecondition,
            "GUARDIAN_NOT_ELIGIBLE",
        );
    }
    // An adult guardian, in person: recorded with the guardian.
    let mut request = consent_request(&child, FacePurpose::CounterCheck);
    request.guardian_subject_id = parent.clone();
    let consent = counter
        .record_face_consent(request)
        .await
        .expect("a guardian's consent at a counter")
        .into_inner()
        .consent
        .unwrap();
    assert_eq!(consent.guardian_subject_id, parent);
    assert_eq!(consent.channel(), FaceChannel::Counter);
    // The face counter enrols the child's face (from the counter's device).
    let enrolled = h
        .client_as(&As::Operator(&[Role::FaceCounter]))
        .enrol_face(EnrolFaceRequest {
            subject_id: child.clone(),
            embedding: Embedding::sample(3).values().to_vec(),
            ..Default::default()
        })
        .await
        .expect("a counter enrols")
        .into_inner();
    assert_eq!(enrolled.channel(), FaceChannel::Counter);
    let feed = h
        .client_as(&As::Service("verifier"))
        .list_face_template_changes(ListFaceTemplateChangesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let template = feed.changes[0].template.clone().unwrap();
    assert_eq!(template.channel(), FaceChannel::Counter);
    assert_eq!(template.enrolled_by_device_id, "", "no device enrolled it");
    // An adult's guardian field is refused; an auditor cannot record at a counter.
    let mut request = consent_request(&parent, FacePurpose::CounterCheck);
    request.guardian_subject_id = teen.clone();
    assert_refused(
        counter.record_face_consent(request).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_refused(
        h.client_as(&As::Operator(&[Role::Auditor]))
            .record_face_consent(consent_request(&parent, FacePurpose::CounterCheck))
            .await,
        Code::Unauthenticated,
        "PROOF_MISSING",
    );
}

#[tokio::test]
async fn requests_are_checked_before_anything_is_stored() {
    let h = start_default().await;
    let (subject, _, _) = citizen(&h, &resident_id(703)).await;
    let mut counter = h.client_as(&As::Operator(&[Role::FaceCounter, Role::Auditor]));
    let before = digest(&h.pool).await;
    let mut places = consent_request(&subject, FacePurpose::CounterCheck);
    places.places = vec!["venue:west-lake".to_owned()];
    let mut no_places = consent_request(&subject, FacePurpose::FacePass);
    no_places.places.clear();
    let mut bad_place = consent_request(&subject, FacePurpose::FacePass);
    bad_place.places = vec!["West Lake".to_owned()];
    let mut kindless_place = consent_request(&subject, FacePurpose::FacePass);
    kindless_place.places = vec!["L1-S03".to_owned()];
    let mut no_version = consent_request(&subject, FacePurpose::CounterCheck);
    no_version.text_version.clear();
    let no_purpose = consent_request(&subject, FacePurpose::Unspecified);
    for request in [
        places,
        no_places,
        bad_place,
        kindless_place,
        no_version,
        no_purpose,
    ] {
        assert_refused(
            counter.record_face_consent(request).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
    }
    for values in [vec![0.1; 3], vec![0.0; DIMENSION], vec![1.0; DIMENSION]] {
        assert_refused(
            counter
                .enrol_face(EnrolFaceRequest {
                    subject_id: subject.clone(),
                    embedding: values,
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
    }
    assert_refused(
        h.client_as(&As::Service("verifier"))
            .list_face_template_changes(ListFaceTemplateChangesRequest {
                after_sequence: -1,
                page_size: 0,
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(digest(&h.pool).await, before, "nothing changed");
}

#[tokio::test]
async fn the_filing_threshold_is_counted_and_reported() {
    let mut config = IdentityConfig::dev();
    config.face_filing_threshold = 2;
    let h = start(config).await;
    let mut counter = h.client_as(&As::Operator(&[Role::FaceCounter, Role::Auditor]));
    let stats = |c: &mut Client| {
        let mut c = c.clone();
        async move {
            c.get_face_enrolment_stats(GetFaceEnrolmentStatsRequest {})
                .await
                .unwrap()
                .into_inner()
        }
    };
    for (i, seq) in [704, 705].into_iter().enumerate() {
        let (subject, _, _) = citizen(&h, &resident_id(seq)).await;
        counter
            .record_face_consent(consent_request(&subject, FacePurpose::FacePass))
            .await
            .unwrap();
        counter
            .enrol_face(EnrolFaceRequest {
                subject_id: subject,
                embedding: Embedding::sample(10 + u32::try_from(i).unwrap())
                    .values()
                    .to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
        let s = stats(&mut counter).await;
        assert_eq!(s.enrolled_people, i64::try_from(i).unwrap() + 1);
        assert_eq!(s.filing_threshold, 2);
        assert_eq!(s.filing_threshold_reached, i == 1);
        assert_eq!(s.face_pass_consents, s.enrolled_people);
    }
    // The feed in pages of one: `more` until the last.
    let mut verifier = h.client_as(&As::Service("verifier"));
    let page = |after_sequence| ListFaceTemplateChangesRequest {
        after_sequence,
        page_size: 1,
    };
    let first = verifier
        .list_face_template_changes(page(0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((first.changes.len(), first.more), (1, true));
    let second = verifier
        .list_face_template_changes(page(first.next_sequence))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((second.changes.len(), second.more), (1, false));
    assert_ne!(first.changes[0].subject_id, second.changes[0].subject_id);
    let none = verifier
        .list_face_template_changes(page(second.next_sequence))
        .await
        .unwrap()
        .into_inner();
    assert!(none.changes.is_empty() && !none.more);
    assert_eq!(none.next_sequence, second.next_sequence);
}

type Client =
    citypass_proto::v1::identity_service_client::IdentityServiceClient<tonic::transport::Channel>;

#[tokio::test]
async fn declining_face_leaves_every_qr_path_working() {
    let h = start_default().await;
    // One citizen never consents; another consents, enrols and withdraws.
    let (declined, declined_device, _) = citizen(&h, &resident_id(706)).await;
    let (withdrew, withdrew_device, key) = citizen(&h, &resident_id(707)).await;
    let mut app = h.client_as(&As::Nobody);
    app.record_face_consent(signed_consent(
        &withdrew,
        &withdrew_device,
        &key,
        FacePurpose::FacePass,
    ))
    .await
    .unwrap();
    app.enrol_face(signed_enrol(
        &withdrew,
        &withdrew_device,
        &key,
        &Embedding::sample(4),
    ))
    .await
    .unwrap();
    app.withdraw_face_consent(signed_withdraw(
        &withdrew,
        &withdrew_device,
        &key,
        FacePurpose::FacePass,
    ))
    .await
    .unwrap();
    // What the issuer and the verifier need for a code is unchanged for both.
    let mut issuer = h.issuer.clone();
    let mut verifier = h.client_as(&As::Service("verifier"));
    for (subject, device) in [(&declined, &declined_device), (&withdrew, &withdrew_device)] {
        let view = issuer
            .get_device(GetDeviceRequest {
                device_id: device.clone(),
            })
            .await
            .expect("the issuer reads the device")
            .into_inner();
        assert_eq!(
            view.subject_status(),
            citypass_proto::v1::SubjectStatus::Active
        );
        let profile = verifier
            .get_subject_profile(GetSubjectProfileRequest {
                subject_id: subject.clone(),
            })
            .await
            .expect("the verifier reads the profile")
            .into_inner();
        assert_eq!(profile.status(), citypass_proto::v1::SubjectStatus::Active);
    }
}

#[tokio::test]
async fn without_a_birth_date_the_counter_checks_the_age() {
    let h = start_default().await;
    let mut passport = enrol_request("E12345678", "John Smith");
    passport.document_type = citypass_proto::v1::DocumentType::Passport.into();
    let (visitor, device, key) = citizen_with(&h, passport).await;
    let mut app = h.client_as(&As::Nobody);
    assert_refused(
        app.record_face_consent(signed_consent(
            &visitor,
            &device,
            &key,
            FacePurpose::FacePass,
        ))
        .await,
        Code::FailedPrecondition,
        "AGE_UNKNOWN",
    );
    // At a counter the document is seen: an adult consents, or a guardian for a child.
    let (parent, _, _) = citizen(&h, &resident_id(708)).await;
    let mut counter = h.client.clone();
    let mut request = consent_request(&visitor, FacePurpose::CounterCheck);
    request.guardian_subject_id = parent.clone();
    let consent = counter
        .record_face_consent(request)
        .await
        .expect("a guardian's consent for a child without a birth date on file")
        .into_inner()
        .consent
        .unwrap();
    assert_eq!(consent.guardian_subject_id, parent);
    counter
        .record_face_consent(consent_request(&visitor, FacePurpose::FacePass))
        .await
        .expect("an adult's consent at a counter");
}

/// SECURITY.md, face finding F2: every face write takes its turn behind one lock, so
/// one phone looping on its face calls must not hold everyone's up. A device has its
/// own allowance, spent only by calls it really signed.
#[tokio::test]
async fn finding_f2_a_device_has_its_own_allowance_of_face_calls() {
    let mut config = IdentityConfig::dev();
    config.face_calls_per_device = 2;
    let h = start(config).await;
    let (subject, device, key) = citizen(&h, &resident_id(760)).await;
    let (other, other_device, other_key) = citizen(&h, &resident_id(761)).await;
    let mut app = h.client_as(&As::Nobody);

    // Forged in this device's name: refused at the signature, nothing spent.
    let thief = DeviceKey::generate(&rng()).unwrap();
    for _ in 0..3 {
        assert_refused(
            app.record_face_consent(signed_consent(
                &subject,
                &device,
                &thief,
                FacePurpose::CounterCheck,
            ))
            .await,
            Code::Unauthenticated,
            "BAD_SIGNATURE",
        );
    }
    app.record_face_consent(signed_consent(
        &subject,
        &device,
        &key,
        FacePurpose::CounterCheck,
    ))
    .await
    .expect("the first call");
    app.enrol_face(signed_enrol(
        &subject,
        &device,
        &key,
        &Embedding::sample(70),
    ))
    .await
    .expect("the second call");
    assert_refused(
        app.enrol_face(signed_enrol(
            &subject,
            &device,
            &key,
            &Embedding::sample(71),
        ))
        .await,
        Code::ResourceExhausted,
        "FACE_CALLS_RATE_LIMITED",
    );
    // Another citizen's phone is not held up.
    app.record_face_consent(signed_consent(
        &other,
        &other_device,
        &other_key,
        FacePurpose::CounterCheck,
    ))
    .await
    .expect("another device's allowance is its own");
}

/// Face review finding F8: an identity-admin is not "the counter". Only a face counter
/// (its own role) enrols in person, the audit names the counter, and the citizen's app
/// cannot replace the template a counter enrolled (withdraw first, then enrol).
#[tokio::test]
async fn finding_f8_only_a_face_counter_enrols_in_person_and_the_app_does_not_replace_it() {
    let h = start_default().await;
    let (subject, device, key) = citizen(&h, &resident_id(720)).await;
    let mut admin = h.client_as(&As::Operator(&[Role::IdentityAdmin]));
    // A face counter's certificate names the counter (the test PKI's operator name).
    let desk = "test-operator";
    let mut counter = h.client_as(&As::Operator(&[Role::FaceCounter]));
    let mut app = h.client_as(&As::Nobody);
    let enrol_at_counter = |seed: u32| EnrolFaceRequest {
        subject_id: subject.clone(),
        embedding: Embedding::sample(seed).values().to_vec(),
        ..Default::default()
    };

    // The identity-admin records the consent (a service desk may), but enrols nothing.
    admin
        .record_face_consent(consent_request(&subject, FacePurpose::CounterCheck))
        .await
        .expect("an identity-admin records a consent");
    let before = digest(&h.pool).await;
    assert_refused(
        admin.enrol_face(enrol_at_counter(1)).await,
        Code::PermissionDenied,
        "FACE_COUNTER_REQUIRED",
    );
    assert_eq!(digest(&h.pool).await, before, "nothing stored");

    // The face counter enrols; the processing record names the counter.
    let enrolled = counter
        .enrol_face(enrol_at_counter(1))
        .await
        .expect("a face counter enrols")
        .into_inner();
    assert_eq!(enrolled.channel(), FaceChannel::Counter);
    let actors: Vec<(String, String)> =
        sqlx::query_as("SELECT action, actor FROM face_audit ORDER BY id")
            .fetch_all(&h.pool)
            .await
            .unwrap();
    assert_eq!(
        actors,
        vec![
            ("consent".to_owned(), "operator:test-operator".to_owned()),
            ("enrol".to_owned(), format!("counter:{desk}")),
        ]
    );

    // The app cannot put another face over the counter's.
    let sealed_before: Vec<u8> = sqlx::query_scalar("SELECT sealed FROM face_templates")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_refused(
        app.enrol_face(signed_enrol(&subject, &device, &key, &Embedding::sample(2)))
            .await,
        Code::FailedPrecondition,
        "COUNTER_TEMPLATE_EXISTS",
    );
    let sealed_after: Vec<u8> = sqlx::query_scalar("SELECT sealed FROM face_templates")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(sealed_after, sealed_before, "the counter's template stays");

    // The citizen withdraws (the template goes), consents again and enrols from the app.
    app.withdraw_face_consent(signed_withdraw(
        &subject,
        &device,
        &key,
        FacePurpose::Unspecified,
    ))
    .await
    .expect("withdrawn from the app");
    app.record_face_consent(signed_consent(
        &subject,
        &device,
        &key,
        FacePurpose::CounterCheck,
    ))
    .await
    .expect("consent again");
    let again = app
        .enrol_face(signed_enrol(&subject, &device, &key, &Embedding::sample(2)))
        .await
        .expect("the app enrols once the counter's template is gone")
        .into_inner();
    assert_eq!(again.channel(), FaceChannel::App);
}
