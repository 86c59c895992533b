//! The gate decision end to end: a citizen's app (enrol, bind, code, certificate,
//! offline code) against the stack, and the stack's verifier deciding at its gates
//! over mutual TLS; a device revocation reaches the verifier through its follower.
//! Identity and the revocation log on PostgreSQL, marks and the stream in Redis.

use citypass_e2e::{
    TestStack, decide, deny_reason, dev_ring, link_sandbox, online_code, scan, within,
};
use citypass_proto::v1::{self as pb, RevocationReason, RevokeRequest, TargetKind};

/// The holder end to end: the verifier reads an enrolled citizen's profile from the
/// stack's identity (its attributes and both stored pseudonyms), and a subject
/// revocation refuses the citizen's online code issued before it, which a gate could
/// not do (the code names no certificate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifier_reads_the_holder_and_a_revoked_subject_stops_online_codes() {
    use citypass_verifier::subjects::SubjectsError;
    use citypass_verifier::subjects::cache::ProfileCache;
    use citypass_verifier::subjects::identity::IdentityProfiles;
    use std::sync::Arc;
    use std::time::Duration;

    let t = TestStack::with_ring(&dev_ring()).await;
    let mut app = t.citizen("李小红").await;
    let (subject_id, _) = citypass_e2e::ids(&app);
    let subject = citypass_token::SubjectId::parse(&subject_id).unwrap();

    // The profile, as the verifier's cache gets it (over the verifier's certificate).
    let channel = t
        .identity_as(&citypass_pki::Subject::service("verifier"))
        .await;
    let cache = ProfileCache::new(
        Arc::new(IdentityProfiles::new(channel)),
        Duration::from_secs(60),
        100,
        Duration::from_secs(5),
    );
    let profile = within("profile", cache.get(subject, None))
        .await
        .expect("a profile");
    assert_eq!(profile.status, pb::SubjectStatus::Active);
    assert_eq!(profile.assurance, pb::AssuranceLevel::RealNameVerified);
    assert_eq!(profile.transit_account.len(), 32);
    let government = profile
        .government_pseudonym
        .clone()
        .expect("a resident ID's");
    assert_eq!(government.len(), 64);
    assert_eq!(profile.masked_name.chars().count(), 3);
    assert!(!profile.masked_name.contains("小红"));
    let unknown = citypass_token::SubjectId::from_bytes([0xee; 16]);
    assert_eq!(
        within("unknown", cache.get(unknown, None))
            .await
            .unwrap_err(),
        SubjectsError::UnknownSubject
    );

    // An online code, then the subject is revoked: the code is refused at once.
    let code = online_code(&mut app).await;
    let mut revocation = t.revocation().await;
    let epoch = within(
        "revoke the subject",
        revocation.revoke(RevokeRequest {
            target_kind: TargetKind::Subject.into(),
            target_id: subject_id,
            reason: RevocationReason::Fraud.into(),
            ..RevokeRequest::default()
        }),
    )
    .await
    .expect("acknowledged")
    .into_inner()
    .entry
    .expect("an entry")
    .epoch;
    within(
        "the verifier's follower applies the revocation",
        t.stack.verifier_revocations.wait_for_epoch(epoch),
    )
    .await;
    let m = pb::Scene::Metro;
    let refused = decide(&t, "metro-entry-1", scan("metro-entry-1", m, "r-1", &code)).await;
    assert_eq!(deny_reason(&refused), pb::DenyReason::SubjectRevoked);
    assert!(refused.revocation_epoch >= epoch, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizens_codes_open_the_stacks_gates_once_and_a_revoked_device_stops_them() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let mut app = t.citizen("王小明").await;
    let (_, device_id) = citypass_e2e::ids(&app);
    // Metro gates charge fares through payments: the rider links a payment account.
    link_sandbox(&mut app, "agr_sandbox_e2e_verify").await;

    // An online code at a metro entry: opens once; at the exit it is a replay.
    let code = online_code(&mut app).await;
    let m = pb::Scene::Metro;
    let opened = decide(&t, "metro-entry-1", scan("metro-entry-1", m, "e-1", &code)).await;
    assert_eq!(opened.decision(), pb::Decision::Allow, "{opened:?}");
    assert_eq!(opened.code_kind(), pb::CodeKind::Online);
    let retried = decide(&t, "metro-entry-1", scan("metro-entry-1", m, "e-1", &code)).await;
    assert_eq!(retried.decision(), pb::Decision::Allow);
    assert!(retried.idempotent_replay);
    let again = decide(&t, "metro-exit-1", scan("metro-exit-1", m, "x-1", &code)).await;
    assert_eq!(deny_reason(&again), pb::DenyReason::Replayed);

    // An offline code at a scenic gate.
    within("certificate", app.certificate())
        .await
        .expect("certified");
    let offline = app.offline_code(60).expect("an offline code");
    let s = pb::Scene::Scenic;
    let opened = decide(
        &t,
        "scenic-gate-1",
        scan("scenic-gate-1", s, "p-1", &offline),
    )
    .await;
    assert_eq!(opened.decision(), pb::Decision::Allow, "{opened:?}");
    assert_eq!(opened.code_kind(), pb::CodeKind::Offline);

    // The device is lost: its certificate is revoked with it, and once the verifier's
    // follower has the entries its next offline code is refused, naming the epoch.
    let mut revocation = t.revocation().await;
    let response = within(
        "revoke the device",
        revocation.revoke(RevokeRequest {
            target_kind: TargetKind::Device.into(),
            target_id: device_id,
            reason: RevocationReason::DeviceLost.into(),
            ..RevokeRequest::default()
        }),
    )
    .await
    .expect("acknowledged")
    .into_inner();
    let epoch = response
        .cascaded
        .iter()
        .map(|entry| entry.epoch)
        .max()
        .expect("the certificate was revoked with the device");
    within(
        "the verifier's follower applies the revocation",
        t.stack.verifier_revocations.wait_for_epoch(epoch),
    )
    .await;
    let after = app.offline_code(60).expect("an offline code");
    let refused = decide(&t, "scenic-gate-1", scan("scenic-gate-1", s, "p-2", &after)).await;
    assert_eq!(deny_reason(&refused), pb::DenyReason::CertificateRevoked);
    assert!(refused.revocation_epoch >= epoch, "{refused:?}");
}
