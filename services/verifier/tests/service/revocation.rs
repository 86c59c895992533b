//! Revocation through the running service: a code revoked at the revocation service is
//! refused once the verifier's follower has the entry, and the answer says which epoch
//! the decision used.

use std::time::Duration;

use citypass_proto::v1 as pb;
use citypass_token::Scopes;

use crate::support::{Harness, allowed, denied, request, verify};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_code_is_refused_once_the_follower_has_it_with_the_epoch_used() {
    let mut h = Harness::start().await;
    let mut hospital = h.gate("hospital-desk-1");
    let scene = pb::Scene::Hospital;
    let kept = h.code(Scopes::all());
    let revoked = h.code(Scopes::all());
    let before = h.revocations.epoch();

    let epoch = h
        .revocation
        .revoke(pb::TargetKind::Token, &hex::encode(revoked.cti))
        .await;
    assert!(epoch > before);
    tokio::time::timeout(Duration::from_secs(30), h.revocations.wait_for_epoch(epoch))
        .await
        .expect("the follower applies the revocation");

    let refused = verify(
        &mut hospital,
        request("hospital-desk-1", scene, "h-1", &revoked.text),
    )
    .await;
    assert_eq!(denied(&refused), pb::DenyReason::TokenRevoked);
    assert!(
        refused.revocation_epoch >= epoch,
        "the answer names an epoch that includes the revocation: {refused:?}"
    );
    let age = refused.revocation_age.expect("an age");
    assert!(age.seconds <= 2, "decided on fresh data: {age:?}");

    let opened = verify(
        &mut hospital,
        request("hospital-desk-1", scene, "h-2", &kept.text),
    )
    .await;
    allowed(&opened);
    assert!(opened.revocation_epoch >= epoch);
}
