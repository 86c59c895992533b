//! Revocation end to end: an operator revokes through the RevocationService (log in
//! PostgreSQL, fan-out through the Redis stream); the issuer, following the stream,
//! stops issuing; a device revocation reaches offline gates as its certificate's serial
//! in a signed snapshot; a reinstatement lets the issuer issue again while what was
//! issued before stays dead.

use citypass_e2e::{TestStack, dev_ring, expect_code, ids, now, status_of, within};
use citypass_gate::{Decision, DenyReason, Gate, GateConfig};
use citypass_proto::v1::{
    GetRevocationSnapshotRequest, ReinstateReason, ReinstateRequest, RevocationReason,
    RevokeRequest, TargetKind,
};
use citypass_revocation::SignedSnapshot;
use citypass_token::{Kid, Scene, SubjectId};
use tonic::Code;

/// Waits until the issuer's follower has applied `epoch`.
async fn issuer_sees(t: &TestStack, epoch: u64) {
    within("the issuer follows the log", async {
        while t.stack.issuer_revocations.epoch() < epoch {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_subject_gets_no_codes_until_reinstated() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let mut app = t.citizen("赵六").await;
    let (subject_id, _) = ids(&app);
    within("a code before", app.code(false))
        .await
        .expect("issued");
    let mut revocation = t.revocation().await;

    let revoked = within(
        "revoke",
        revocation.revoke(RevokeRequest {
            target_kind: TargetKind::Subject.into(),
            target_id: subject_id.clone(),
            reason: RevocationReason::Fraud.into(),
            ..RevokeRequest::default()
        }),
    )
    .await
    .expect("acknowledged")
    .into_inner()
    .entry
    .expect("entry");
    issuer_sees(&t, revoked.epoch).await;
    let refused = within("a code after", app.code(false))
        .await
        .map_err(status_of);
    expect_code(refused, Code::PermissionDenied);
    assert!(
        t.stack
            .issuer_revocations
            .subject_revoked(&SubjectId::parse(&subject_id).unwrap(), now() - 1),
        "codes issued before the revocation are dead"
    );

    let reinstated = within(
        "reinstate",
        revocation.reinstate(ReinstateRequest {
            target_kind: TargetKind::Subject.into(),
            target_id: subject_id.clone(),
            reason: ReinstateReason::ErrorCorrected.into(),
            note: String::new(),
        }),
    )
    .await
    .expect("acknowledged")
    .into_inner()
    .entry
    .expect("entry");
    issuer_sees(&t, reinstated.epoch).await;
    within("a code after reinstatement", app.code(false))
        .await
        .expect("issued again");
    assert!(
        t.stack
            .issuer_revocations
            .subject_revoked(&SubjectId::parse(&subject_id).unwrap(), now() - 2),
        "reinstating never resurrects what was issued before the revocation"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_reaches_offline_gates_through_a_signed_snapshot() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let mut app = t.citizen("钱七").await;
    let (_, device_id) = ids(&app);
    within("certificate", app.certificate())
        .await
        .expect("certified");
    let offline = app.offline_code(60).expect("offline code");
    let (keys, _) = within("key set", app.key_set()).await.expect("key set");

    // Before: the gate accepts the offline code.
    let mut gate = Gate::new(keys.clone(), GateConfig::new(Scene::Metro));
    let mut revocation = t.revocation().await;
    load_snapshot(&mut gate, &mut revocation).await;
    let second = app.offline_code(60).expect("offline code");
    assert!(matches!(gate.check(&offline, now()), Decision::Allow(_)));

    // The device is revoked: the response lists its certificate's serial.
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
    assert_eq!(
        response.cascaded.len(),
        1,
        "the live certificate is revoked with it"
    );
    assert_eq!(response.cascaded[0].target_kind(), TargetKind::Certificate);

    // After the next snapshot, the gate (which cannot unseal subjects) refuses the
    // device's offline codes by their certificate serial.
    load_snapshot(&mut gate, &mut revocation).await;
    match gate.check(&second, now()) {
        Decision::Deny(DenyReason::CertificateRevoked) => {}
        other => panic!("expected certificate_revoked, got {other:?}"),
    }
    // And the issuer stops issuing for the device.
    issuer_sees(&t, response.entry.expect("entry").epoch).await;
    expect_code(
        within("a code", app.code(false)).await.map_err(status_of),
        Code::PermissionDenied,
    );
    t.shutdown().await;
}

/// Fetches a snapshot and loads it into the gate (which checks it with its key set).
async fn load_snapshot(
    gate: &mut Gate,
    revocation: &mut citypass_proto::v1::revocation_service_client::RevocationServiceClient<
        tonic::transport::Channel,
    >,
) {
    let response = within(
        "snapshot",
        revocation.get_revocation_snapshot(GetRevocationSnapshotRequest { kinds: vec![] }),
    )
    .await
    .expect("snapshot")
    .into_inner();
    assert!(Kid::from_slice(&response.kid).is_ok());
    let signed = SignedSnapshot {
        bytes: response.snapshot,
        signature: response.signature,
        kid: Kid::from_slice(&response.kid).expect("kid"),
    };
    let epoch = gate
        .load_snapshot(&signed, now())
        .expect("the gate loads the snapshot");
    assert_eq!(epoch, response.epoch);
    assert_eq!(gate.revocation_epoch(), Some(response.epoch));
}

/// Security finding 5: the cascade skipped certificates issued at or after
/// `revoked_before`, and the issuer certifies until its follower hears of a revocation,
/// so a thief requesting certificates in a loop could end with one that offline gates
/// accept for a day. Now every live certificate of a revoked device is revoked, by the
/// revocation and by the sweeps after it: none of those requested across the revocation
/// survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_5_certificates_requested_across_a_revocation_do_not_survive_it() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    let t = TestStack::with_ring(&dev_ring()).await;
    let mut app = t.citizen("孙八").await;
    let (_, device_id) = ids(&app);
    within("a first certificate", app.certificate())
        .await
        .expect("certified");

    // The thief asks for certificates as fast as the issuer answers.
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicUsize::new(1));
    let thief = {
        let (stop, issued) = (stop.clone(), issued.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if app.certificate().await.is_ok() {
                    issued.fetch_add(1, Ordering::SeqCst);
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };
    within("a second certificate", async {
        while issued.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    let mut revocation = t.revocation().await;
    let response = within(
        "revoke the device",
        revocation.revoke(RevokeRequest {
            target_kind: TargetKind::Device.into(),
            target_id: device_id.clone(),
            reason: RevocationReason::DeviceLost.into(),
            ..RevokeRequest::default()
        }),
    )
    .await
    .expect("acknowledged")
    .into_inner();
    issuer_sees(&t, response.entry.expect("entry").epoch).await;
    // The loop goes on a moment after the issuer has heard, then stops.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    thief.await.expect("the thief's loop ends");

    // Every certificate identity recorded for the device ends up revoked.
    let mut identity = t.identity().await;
    let recorded: Vec<String> = within(
        "the device's certificates",
        identity.list_certificates(citypass_proto::v1::ListCertificatesRequest {
            device_id: device_id.clone(),
            page_size: 500,
            ..Default::default()
        }),
    )
    .await
    .expect("listed")
    .into_inner()
    .certificates
    .iter()
    .map(|c| hex::encode(&c.serial))
    .collect();
    assert!(recorded.len() >= 2, "{recorded:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let revoked = revoked_certificates(&mut revocation).await;
        let missing: Vec<_> = recorded.iter().filter(|s| !revoked.contains(*s)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "certificates survived the revocation: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    t.shutdown().await;
}

/// The serials of every certificate revocation in the log.
async fn revoked_certificates(
    revocation: &mut citypass_proto::v1::revocation_service_client::RevocationServiceClient<
        tonic::transport::Channel,
    >,
) -> std::collections::HashSet<String> {
    let mut serials = std::collections::HashSet::new();
    let mut page_token = String::new();
    loop {
        let page = within(
            "list the log",
            revocation.list_revocations(citypass_proto::v1::ListRevocationsRequest {
                page_token: page_token.clone(),
                ..Default::default()
            }),
        )
        .await
        .expect("listed")
        .into_inner();
        serials.extend(
            page.entries
                .iter()
                .filter(|e| e.target_kind() == TargetKind::Certificate)
                .map(|e| e.target_id.clone()),
        );
        if page.next_page_token.is_empty() {
            return serials;
        }
        page_token = page.next_page_token;
    }
}
