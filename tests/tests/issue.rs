//! The citizen's happy path, end to end: enrol → bind → IssueToken, and the code
//! verifies as a gate would check it, against the key set from GetKeySet (signature
//! checked); the sealed subject opens to the enrolled subject id; a certificate lets
//! the phone make an offline code that verifies offline. Identity on PostgreSQL, issuer
//! nonces in Redis, real gRPC between app, issuer and identity.

use citypass_e2e::{TestStack, dev_ring, now, resident_id, within};
use citypass_proto::v1::{DocumentType, KeyStatus, KeyUsage, SubjectStatus};
use citypass_token::{Kid, Scopes, Validation, verify_offline, verify_online};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_bind_issue_and_verify_online_and_offline() {
    let ring = dev_ring();
    let signing_kid = ring.signing_kid();
    let subject_key = ring.subject_key().unwrap();
    let t = TestStack::with_ring(&ring).await;

    // Enrol: the real-name sandbox matches, so the subject is ACTIVE.
    let mut app = t.app();
    let number = resident_id();
    let subject = within(
        "enrol",
        app.enrol(DocumentType::ResidentIdCard, &number, "张三丰"),
    )
    .await
    .expect("enrol");
    assert_eq!(subject.status(), SubjectStatus::Active);
    assert_eq!(subject.subject_id.len(), 32);
    assert_eq!(t.rows("subjects").await, 1);
    let clear: i64 = sqlx::query_scalar("SELECT count(*) FROM subjects t WHERE t::text LIKE $1")
        .bind(format!("%{number}%"))
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(clear, 0, "the document number is never stored in clear");

    // Bind: proof of possession of a fresh device key.
    let device_id = within("bind", app.bind("my phone")).await.expect("bind");
    assert_eq!(t.rows("devices").await, 1);

    // The published key set, signature checked by App::key_set.
    let (keyset, published) = within("key set", app.key_set()).await.expect("key set");
    assert_eq!(
        Kid::from_slice(&published.signing_kid).unwrap(),
        signing_kid
    );
    // The code key, and the revocation service's snapshot key with its own usage.
    assert_eq!(published.keys.len(), 2);
    assert!(
        published
            .keys
            .iter()
            .all(|k| k.status() == KeyStatus::Active)
    );
    assert_eq!(published.keys[0].usage(), KeyUsage::Code);
    assert_eq!(published.keys[1].usage(), KeyUsage::RevocationSnapshot);
    assert_eq!(published.keys[1].kid, t.snapshot_kid.0);
    assert_eq!(
        keyset.get(&t.snapshot_kid).map(|k| k.usage),
        Some(citypass_token::KeyUsage::Snapshot)
    );

    // Issue: a CP1 code that verifies against the published set, with the subject
    // sealed inside.
    let first = within("issue", app.code(false)).await.expect("issue");
    assert!(first.qr_text.starts_with("CP1:"), "{}", first.qr_text);
    assert_eq!(first.svg, None, "no SVG unless asked");
    let verified = verify_online(&first.qr_text, &keyset, &Validation::at(now()))
        .expect("the code verifies against GetKeySet's keys");
    assert_eq!(verified.kid, signing_kid);
    assert_eq!(verified.claims.iss, "citypass-e2e");
    assert_eq!(
        verified.claims.scopes,
        // Every scene but the government hall's, granted only when asked for.
        citypass_token::Scene::ALL
            .into_iter()
            .filter(|scene| *scene != citypass_token::Scene::Government)
            .collect::<Scopes>(),
        "real-name verified: every scene"
    );
    assert_eq!(first.scopes.len(), 4);
    assert_eq!(verified.claims.exp - verified.claims.iat, 60);
    assert_eq!(
        first.expires_at.as_ref().map(|t| t.seconds),
        Some(i64::try_from(verified.claims.exp).unwrap())
    );
    assert_eq!(
        verified.subject(&subject_key).expect("the subject opens"),
        hex::decode(&subject.subject_id).unwrap(),
        "the sealed subject is the enrolled subject id"
    );

    // A second request from the same device (fresh nonce) gets a new, unlinkable code,
    // and an SVG because it asks for one.
    let second = within("issue again", app.code(true))
        .await
        .expect("a second IssueToken for the same device works");
    let svg = second.svg.as_deref().expect("SVG when asked");
    assert!(svg.contains("<svg"), "an SVG document");
    let verified2 = verify_online(&second.qr_text, &keyset, &Validation::at(now()))
        .expect("the second code verifies");
    assert_ne!(verified2.claims.cti, verified.claims.cti);
    assert_ne!(
        verified2.claims.sealed_sub, verified.claims.sealed_sub,
        "two codes of one subject cannot be linked"
    );
    assert_eq!(
        verified2.subject(&subject_key).unwrap(),
        hex::decode(&subject.subject_id).unwrap()
    );

    // Offline: a device certificate for a fresh key, recorded at identity before it is
    // returned, then a CP2 code made on the phone that verifies offline.
    let certificate = within("certificate", app.certificate())
        .await
        .expect("certificate")
        .clone();
    assert_eq!(
        t.rows("device_certificates").await,
        1,
        "recorded at identity"
    );
    let offline = app.offline_code(60).expect("offline code");
    assert!(offline.starts_with("CP2:"), "{offline}");
    let verified_offline = verify_offline(&offline, &keyset, &Validation::at(now()))
        .expect("the offline code verifies with the issuer's public keys only");
    assert_eq!(verified_offline.issuer_kid, signing_kid);
    assert_eq!(verified_offline.counter, certificate.counter + 1);
    assert_eq!(
        verified_offline.subject(&subject_key).unwrap(),
        hex::decode(&subject.subject_id).unwrap()
    );
    let recorded_serial: Vec<u8> = sqlx::query_scalar("SELECT serial FROM device_certificates")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(
        recorded_serial,
        verified_offline.certificate.serial.as_bytes()
    );
    let recorded_device: Vec<u8> = sqlx::query_scalar("SELECT device_id FROM device_certificates")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(hex::encode(recorded_device), device_id);

    // The issuer's single-use marks went to Redis: three request nonces (two codes, one
    // certificate) and the certified offline key.
    let keys = t.redis_keys().await;
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert_eq!(keys.iter().filter(|k| k.contains("nonce:")).count(), 3);
    assert_eq!(
        keys.iter().filter(|k| k.contains("offline-key:")).count(),
        1
    );

    t.shutdown().await;
}
