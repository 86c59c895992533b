//! IssueToken: an issued code verifies against the key set from GetKeySet, and the
//! requested scopes are cut down to what the policy allows.

use citypass_proto::v1::{AssuranceLevel, IssueTokenRequest, Scene};
use citypass_token::{Validation, verify_online};
use tonic::Code;

use crate::support::{Harness, expect_code, now, signed, token_request, unsigned_token_request};

#[tokio::test]
async fn an_issued_code_verifies_against_get_key_set() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    let request = IssueTokenRequest {
        want_svg: true,
        ..unsigned_token_request(&citizen, &[])
    };
    let answer = h
        .issue(signed(request, &citizen.key))
        .await
        .expect("IssueToken");

    assert!(answer.qr_text.starts_with("CP1:"));
    assert_eq!(
        answer.scopes,
        [Scene::Metro, Scene::Bus, Scene::Hospital, Scene::Scenic].map(|s| s as i32)
    );
    let (iat, exp) = (
        answer.issued_at.unwrap().seconds,
        answer.expires_at.unwrap().seconds,
    );
    assert_eq!(exp - iat, 60);
    assert!(
        answer
            .svg
            .as_deref()
            .is_some_and(|svg| svg.contains("<svg"))
    );

    let set = h.key_set().await;
    let verified = verify_online(&answer.qr_text, &set, &Validation::at(now())).expect("verifies");
    assert_eq!(verified.kid, h.keys.current().signing_kid());
    // Every scene but the government hall's, which is granted only when asked for.
    let default: citypass_token::Scopes = citypass_token::Scene::ALL
        .into_iter()
        .filter(|scene| *scene != citypass_token::Scene::Government)
        .collect();
    assert_eq!(verified.claims.scopes, default);
    let subject = verified
        .subject(&h.subject_key)
        .expect("the verifier can unseal");
    assert_eq!(hex::encode(&subject), citizen.subject_id);
}

#[tokio::test]
async fn requested_scopes_are_intersected_with_the_policy() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::DocumentChecked);
    let answer = h
        .issue(token_request(&citizen, &[Scene::Hospital, Scene::Metro]))
        .await
        .expect("IssueToken");
    assert_eq!(answer.scopes, [Scene::Metro as i32], "hospital dropped");
    assert!(answer.svg.is_none(), "no SVG unless asked");
    let status = expect_code(
        h.issue(token_request(&citizen, &[Scene::Hospital])).await,
        Code::PermissionDenied,
        "only a scene not allowed",
    );
    assert!(status.message().contains("scene"));
}
