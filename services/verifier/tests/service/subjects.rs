//! The holder step through the running service: the verifier opens a code's sealed
//! subject with its subject-key file, refuses a code whose subject does not open
//! (UNSEAL_FAILED, an answer, not an error), and refuses an online code whose subject
//! was revoked after its issue (SUBJECT_REVOKED, with the epoch used), which a gate
//! cannot do (SECURITY.md's former known limit).

use std::time::Duration;

use citypass_proto::v1 as pb;
use citypass_token::{Issuer, IssuerKey, Scopes, SubjectKey, unix_now};

use crate::support::{Harness, SUBJECT, allowed, denied, request, verify};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_revoked_after_a_codes_issue_refuses_that_online_code() {
    let mut h = Harness::start().await;
    let mut gate = h.gate("bus-12");
    let scene = pb::Scene::Bus;
    let issued_before = h.code(Scopes::all());
    let other_subject = h
        .issuer
        .issue_token(&[8; 16], Scopes::all(), unix_now(), 60)
        .unwrap();

    let epoch = h
        .revocation
        .revoke(pb::TargetKind::Subject, &hex::encode(SUBJECT))
        .await;
    tokio::time::timeout(Duration::from_secs(30), h.revocations.wait_for_epoch(epoch))
        .await
        .expect("the follower applies the revocation");

    let refused = verify(
        &mut gate,
        request("bus-12", scene, "s-1", &issued_before.text),
    )
    .await;
    assert_eq!(denied(&refused), pb::DenyReason::SubjectRevoked);
    assert!(
        refused.revocation_epoch >= epoch,
        "the answer names an epoch that includes the revocation: {refused:?}"
    );
    // Another subject's code still opens the gate.
    allowed(
        &verify(
            &mut gate,
            request("bus-12", scene, "s-2", &other_subject.text),
        )
        .await,
    );
    // A code issued after the revocation (a reinstated citizen's next code) passes:
    // the rule compares the code's issue time.
    let issued_after = h
        .issuer
        .issue_token(&SUBJECT, Scopes::all(), unix_now() + 2, 60)
        .unwrap();
    allowed(
        &verify(
            &mut gate,
            request("bus-12", scene, "s-3", &issued_after.text),
        )
        .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_whose_subject_does_not_open_is_refused_with_its_reason() {
    let h = Harness::start().await;
    let mut gate = h.gate("bus-12");
    let scene = pb::Scene::Bus;
    // The issuer's own signing key (the signature holds), sealing with a key id the
    // verifier's file does not hold, and with the right id but other bytes.
    let unknown_id = Issuer::new(
        "citypass-test",
        IssuerKey::from_seed(&[1; 32]).unwrap(),
        SubjectKey::with_id(7, &[101; 32]).unwrap(),
    );
    let forged = Issuer::new(
        "citypass-test",
        IssuerKey::from_seed(&[1; 32]).unwrap(),
        SubjectKey::with_id(0, &[55; 32]).unwrap(),
    );
    for (n, issuer) in [unknown_id, forged].iter().enumerate() {
        let code = issuer
            .issue_token(&SUBJECT, Scopes::all(), unix_now(), 60)
            .unwrap();
        let answer = verify(
            &mut gate,
            request("bus-12", scene, &format!("u-{n}"), &code.text),
        )
        .await;
        assert_eq!(denied(&answer), pb::DenyReason::UnsealFailed, "{n}");
    }
    // The harness's own codes open.
    allowed(
        &verify(
            &mut gate,
            request("bus-12", scene, "u-ok", &h.code(Scopes::all()).text),
        )
        .await,
    );
}
