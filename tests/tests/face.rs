//! Face enrolment end to end (issue 14), over real gRPC with TLS and PostgreSQL:
//! a citizen's app (`citypass-app`) enrols and binds at identity as `build` makes it,
//! consents to both face purposes and enrols an embedding, each call signed by its
//! bound device; the verifier's feed carries the sealed template, which opens with the
//! template key (as the verifier's gallery will open it) and only for its subject; the
//! app withdraws, the feed reports the removal, and afterwards no table of the
//! database holds the sealed or the plain template. Codes keep working throughout
//! (declining face leaves every QR path as it was): the issuer is not needed for
//! that here, identity's GetDevice and GetSubjectProfile answer as before.

use citypass_app::{App, AppState, Endpoints};
use citypass_device_proof::{ENROL_FACE, RECORD_FACE_CONSENT, WITHDRAW_FACE_CONSENT, sign_request};
use citypass_face::TemplateChannel;
use citypass_face::{Embedding, SealedTemplate};
use citypass_identity::IdentityConfig;
use citypass_proto::v1::identity_service_client::IdentityServiceClient;
use citypass_proto::v1::{
    DocumentType, EnrolFaceRequest, FaceChannel, FacePurpose, GetDeviceRequest,
    GetSubjectProfileRequest, ListFaceTemplateChangesRequest, RecordFaceConsentRequest,
    SubjectStatus, WithdrawFaceConsentRequest,
};
use citypass_runtime::config::PostgresConfig;
use citypass_testkit::serve;
use citypass_testkit::tls::{As, TestPki};
use citypass_token::DeviceKey;

/// Every row of every table, as text (bytea as `\x…` hex).
async fn every_row(pool: &sqlx::PgPool) -> String {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(table_name) FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(pool)
    .await
    .expect("the tables");
    let mut all = String::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(pool)
            .await
            .expect("the rows");
        for row in rows {
            all.push_str(&row);
            all.push('\n');
        }
    }
    all
}

#[tokio::test]
async fn consent_enrol_feed_withdraw_and_the_feed_shows_the_deletion() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pki = TestPki::new("identity");
    let (pool, url) = citypass_testkit::fresh_database().await;
    let mut config = IdentityConfig::dev();
    config.server.tls = Some(pki.server_files(dir.path()));
    config.database = Some(PostgresConfig::new(url));
    let served = serve(
        citypass_identity::build(config.clone())
            .await
            .expect("identity builds")
            .server,
    )
    .await;
    let endpoint = format!("https://{}", served.addr);

    // The citizen's app: enrol and bind, as `citypass app` does.
    let mut app = App::new(
        &Endpoints {
            identity: endpoint.clone(),
            issuer: endpoint.clone(),
            payments: endpoint.clone(),
            tls: Some(pki.client(&As::Nobody)),
        },
        AppState::default(),
    )
    .expect("an app");
    let subject = app
        .enrol(DocumentType::ResidentIdCard, "11010519491231002X", "Li Lei")
        .await
        .expect("enrolled")
        .subject_id;
    let device = app.bind("my phone").await.expect("bound");
    let key = DeviceKey::from_pkcs8(
        &hex::decode(app.state.device_key_pkcs8.clone().expect("the device key")).expect("hex"),
        &citypass_token::SystemRandom::new(),
    )
    .expect("the device key");
    let mut citizen = IdentityServiceClient::new(pki.channel(served.addr, &As::Nobody));
    let mut verifier =
        IdentityServiceClient::new(pki.channel(served.addr, &As::Service("verifier")));

    // Two separate consents, then the embedding (never an image).
    for purpose in [FacePurpose::CounterCheck, FacePurpose::FacePass] {
        let mut request = RecordFaceConsentRequest {
            subject_id: subject.clone(),
            purpose: purpose.into(),
            text_version: "face-2026-06".to_owned(),
            places: match purpose {
                FacePurpose::FacePass => vec!["station:L1-S03".to_owned()],
                _ => Vec::new(),
            },
            device_id: device.clone(),
            ..Default::default()
        };
        request.proof = Some(sign_request(RECORD_FACE_CONSENT, &request, &key).expect("signed"));
        citizen
            .record_face_consent(request)
            .await
            .expect("a consent");
    }
    let face = Embedding::sample(0x9e37_79b9);
    let mut enrol = EnrolFaceRequest {
        subject_id: subject.clone(),
        embedding: face.values().to_vec(),
        device_id: device.clone(),
        proof: None,
    };
    enrol.proof = Some(sign_request(ENROL_FACE, &enrol, &key).expect("signed"));
    let enrolled = citizen
        .enrol_face(enrol)
        .await
        .expect("enrolled")
        .into_inner();
    assert_eq!(enrolled.channel(), FaceChannel::App);

    // The verifier's feed: the sealed template, opened with the template key.
    let feed = verifier
        .list_face_template_changes(ListFaceTemplateChangesRequest::default())
        .await
        .expect("the feed")
        .into_inner();
    assert_eq!(feed.changes.len(), 1);
    assert_eq!(feed.changes[0].subject_id, subject);
    let template = feed.changes[0].template.clone().expect("a template");
    assert_eq!(
        template.purposes().collect::<Vec<_>>(),
        [FacePurpose::CounterCheck, FacePurpose::FacePass]
    );
    assert_eq!(template.enrolled_by_device_id, device);
    let sealed = SealedTemplate {
        key_id: u16::try_from(template.key_id).expect("a key id"),
        bytes: template.sealed.clone(),
    };
    let keys = config.face_template_keys().expect("the template keys");
    assert_eq!(
        keys.open(&subject, TemplateChannel::App, &sealed)
            .expect("it opens"),
        face
    );
    let stranger = citypass_token::SubjectId::generate()
        .expect("an id")
        .to_string();
    assert!(
        keys.open(&stranger, TemplateChannel::App, &sealed).is_err(),
        "for its subject only"
    );
    let plain = hex::encode(face.to_le_bytes());
    let cipher = hex::encode(&template.sealed);
    let rows = every_row(&pool).await;
    assert!(rows.contains(&cipher) && !rows.contains(&plain[..64]));

    // Withdrawn from the app: the template goes, the feed says so.
    let mut withdraw = WithdrawFaceConsentRequest {
        subject_id: subject.clone(),
        purpose: FacePurpose::Unspecified.into(),
        device_id: device.clone(),
        proof: None,
    };
    withdraw.proof = Some(sign_request(WITHDRAW_FACE_CONSENT, &withdraw, &key).expect("signed"));
    let withdrawn = citizen
        .withdraw_face_consent(withdraw)
        .await
        .expect("withdrawn")
        .into_inner();
    assert!(withdrawn.template_deleted);
    let after = verifier
        .list_face_template_changes(ListFaceTemplateChangesRequest {
            after_sequence: feed.next_sequence,
            page_size: 0,
        })
        .await
        .expect("the feed")
        .into_inner();
    assert_eq!(after.changes.len(), 1);
    assert_eq!(after.changes[0].subject_id, subject);
    assert!(after.changes[0].template.is_none(), "removed");
    let rows = every_row(&pool).await;
    assert!(!rows.contains(&cipher), "no sealed template left");
    assert!(
        !rows.contains(&plain) && !rows.contains(&plain[..64]),
        "nor a plain one"
    );

    // The QR paths are as before for this citizen.
    let view = IdentityServiceClient::new(pki.channel(served.addr, &As::Service("issuer")))
        .get_device(GetDeviceRequest {
            device_id: device.clone(),
        })
        .await
        .expect("the issuer reads the device")
        .into_inner();
    assert_eq!(view.subject_status(), SubjectStatus::Active);
    let profile = verifier
        .get_subject_profile(GetSubjectProfileRequest {
            subject_id: subject.clone(),
        })
        .await
        .expect("the verifier reads the profile")
        .into_inner();
    assert_eq!(profile.status(), SubjectStatus::Active);
}
