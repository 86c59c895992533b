//! Security finding 8 (PIPL), identity's half: Enrol tells a caller who has not proven
//! an identity nothing about anyone (whether a document is enrolled, whether a name
//! matches it), enrolment attempts are rate-limited per caller and per document, and
//! the transit pseudonym goes only to the services that need it. And finding 9's key
//! ids for the document and pseudonym keys: a rotation keeps subjects found and their
//! pseudonyms unchanged.

use std::time::{Duration, Instant};

use citypass_identity::config::PreviousKey;
use citypass_identity::{IdentityConfig, Outcome, SandboxConfig, SandboxRule, Secret};
use citypass_proto::v1::{GetSubjectRequest, GetTransitAccountRequest, SubjectStatus};
use citypass_runtime::Role;
use citypass_testkit::tls::As;
use tonic::{Code, Status};

use crate::support::{digest, enrol, enrol_request, resident_id, start, start_on};

/// The sandbox: "Wrong Name" never matches, everything else does.
fn mismatching_wrong_name() -> IdentityConfig {
    let mut config = IdentityConfig::dev();
    config.real_name_sandbox = SandboxConfig {
        default_outcome: Outcome::Matched,
        rules: vec![SandboxRule {
            outcome: Outcome::Mismatched,
            document_number_suffix: None,
            name: Some("Wrong Name".to_owned()),
        }],
    };
    config
}

/// What a caller can see of a refusal: code, message, ErrorInfo reason.
fn seen(result: Result<tonic::Response<citypass_proto::v1::EnrolResponse>, Status>) -> String {
    match result {
        Ok(response) => format!("OK {:?}", response.into_inner().subject.map(|s| s.status())),
        Err(status) => format!(
            "{:?} {:?} {}",
            status.code(),
            citypass_runtime::reason_of(&status),
            status.message()
        ),
    }
}

#[tokio::test]
async fn finding_8_enrol_answers_do_not_tell_enrolled_from_mismatched() {
    let h = start(mismatching_wrong_name()).await;
    let mut operator = h.client.clone();
    let mut citizen = h.client_as(&As::Nobody);
    let enrolled = resident_id(40);
    let subject = enrol(&mut citizen, &enrolled, "Li Lei").await;
    assert_eq!(subject.status(), SubjectStatus::Active);
    let before = digest(&h.pool).await;

    // Someone who knows only a number, or a number and a wrong name, or a number and
    // the right name of someone already enrolled: one answer for all.
    let enrolled_wrong_name = seen(citizen.enrol(enrol_request(&enrolled, "Wrong Name")).await);
    let enrolled_right_name = seen(citizen.enrol(enrol_request(&enrolled, "Li Lei")).await);
    let unenrolled_wrong_name = seen(
        citizen
            .enrol(enrol_request(&resident_id(41), "Wrong Name"))
            .await,
    );
    assert_eq!(enrolled_wrong_name, unenrolled_wrong_name);
    assert_eq!(enrolled_right_name, unenrolled_wrong_name);
    assert!(
        unenrolled_wrong_name.starts_with("FailedPrecondition Some(\"ENROLMENT_NOT_ACCEPTED\")"),
        "{unenrolled_wrong_name}"
    );
    // The answer says what a citizen who is enrolled already does next.
    assert!(
        unenrolled_wrong_name.contains("IssueEnrolmentSecret")
            && unenrolled_wrong_name.contains("bound"),
        "{unenrolled_wrong_name}"
    );
    // Refusals store nothing (no REJECTED attempt naming anyone), even for an operator.
    assert_eq!(digest(&h.pool).await, before);
    assert_eq!(
        operator
            .get_subject(GetSubjectRequest {
                subject_id: subject.subject_id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .subject
            .unwrap()
            .status(),
        SubjectStatus::Active
    );
}

#[tokio::test]
async fn finding_8_refusals_take_the_same_floor_whatever_their_cause() {
    let mut config = mismatching_wrong_name();
    config.enrol_refusal_floor = Duration::from_millis(700);
    let h = start(config).await;
    let mut citizen = h.client_as(&As::Nobody);
    let enrolled = resident_id(43);
    enrol(&mut citizen, &enrolled, "Li Lei").await;
    for (number, name) in [
        (enrolled.as_str(), "Li Lei"),
        (enrolled.as_str(), "Wrong Name"),
        (resident_id(44).as_str(), "Wrong Name"),
    ] {
        let began = Instant::now();
        let refused = citizen.enrol(enrol_request(number, name)).await;
        assert_eq!(
            refused.expect_err("refused").code(),
            Code::FailedPrecondition
        );
        assert!(
            began.elapsed() >= Duration::from_millis(700),
            "answered after {:?}",
            began.elapsed()
        );
    }
}

#[tokio::test]
async fn finding_8_enrol_attempts_are_limited_per_address_and_per_document() {
    let mut config = mismatching_wrong_name();
    config.enrol_attempts_per_address = 4;
    config.enrol_attempts_per_document = 2;
    config.enrol_refusal_floor = Duration::ZERO;
    let h = start(config).await;
    let mut citizen = h.client_as(&As::Nobody);
    let limited = |result: Result<_, Status>| {
        let status: Status = result.expect_err("limited");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(
            citypass_runtime::reason_of(&status).as_deref(),
            Some("ENROL_RATE_LIMITED")
        );
    };
    // Names tried against one number: two attempts, then refused before any lookup.
    let target = resident_id(50);
    for _ in 0..2 {
        let refused = citizen.enrol(enrol_request(&target, "Wrong Name")).await;
        assert_eq!(
            refused.expect_err("mismatch").code(),
            Code::FailedPrecondition
        );
    }
    let before = digest(&h.pool).await;
    limited(citizen.enrol(enrol_request(&target, "Li Lei")).await);
    assert_eq!(
        digest(&h.pool).await,
        before,
        "the right name is not even tried"
    );
    // Per address: four attempts in all (three so far), whatever the documents.
    enrol(&mut citizen, &resident_id(51), "Li Lei").await;
    limited(
        citizen
            .enrol(enrol_request(&resident_id(52), "Li Lei"))
            .await,
    );
    // Malformed requests never reach the limits (nothing is looked up for them).
    assert_eq!(
        citizen
            .enrol(enrol_request("1101051990030", "Li Lei"))
            .await
            .expect_err("malformed")
            .code(),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn finding_8_only_payments_and_the_verifier_get_the_transit_pseudonym() {
    let h = start(IdentityConfig::dev()).await;
    let mut citizen = h.client_as(&As::Nobody);
    let subject = enrol(&mut citizen, &resident_id(42), "Li Lei").await;
    let ask = |who: As| {
        let mut client = h.client_as(&who);
        let subject_id = subject.subject_id.clone();
        async move {
            client
                .get_transit_account(GetTransitAccountRequest { subject_id })
                .await
                .map(|r| r.into_inner().transit_account)
        }
    };
    let for_payments = ask(As::Service("payments")).await.expect("payments");
    assert_eq!(for_payments.len(), 32);
    assert_eq!(
        ask(As::Service("verifier")).await.expect("verifier"),
        for_payments
    );
    for (who, code) in [
        (As::Nobody, Code::Unauthenticated),
        (As::Service("issuer"), Code::PermissionDenied),
        (As::Gate("metro-1"), Code::PermissionDenied),
        (
            As::Operator(&[Role::IdentityAdmin, Role::Auditor]),
            Code::PermissionDenied,
        ),
    ] {
        let refused = ask(who.clone()).await.expect_err("refused");
        assert_eq!(refused.code(), code, "{who:?}");
    }
    // No other answer carries it: the subject an operator reads has no such field,
    // and none of its fields holds the value.
    let read = h
        .client
        .clone()
        .get_subject(GetSubjectRequest {
            subject_id: subject.subject_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .subject
        .unwrap();
    assert!(!format!("{read:?} {subject:?}").contains(&for_payments));
}

/// Keys as the configuration holds them: `dev:` keys with distinct texts.
fn key(text: &str) -> Option<Secret> {
    Some(Secret::new(format!("dev:{text}")))
}

#[tokio::test]
async fn finding_9_a_key_rotation_keeps_subjects_found_and_their_pseudonyms() {
    // Enrolled under document key 1 and pseudonym key 1.
    let mut before = IdentityConfig::dev();
    before.document_key = key("document-one");
    before.pseudonym_key = key("pseudonym-one");
    let h = start(before).await;
    let mut citizen = h.client_as(&As::Nobody);
    let number = resident_id(60);
    let old = enrol(&mut citizen, &number, "Li Lei").await;
    let transit = |h: &crate::support::Harness, subject_id: &str| {
        let mut payments = h.client_as(&As::Service("payments"));
        let subject_id = subject_id.to_owned();
        async move {
            payments
                .get_transit_account(GetTransitAccountRequest { subject_id })
                .await
                .unwrap()
                .into_inner()
                .transit_account
        }
    };
    let old_transit = transit(&h, &old.subject_id).await;
    let pool = h.pool.clone();
    drop(h);

    // Rotated: key 2 is current for both, key 1 previous.
    let mut after = IdentityConfig::dev();
    after.document_key = key("document-two");
    after.document_key_id = 2;
    after.previous_document_keys = vec![PreviousKey {
        id: 1,
        key: key("document-one"),
        key_file: None,
    }];
    after.pseudonym_key = key("pseudonym-two");
    after.pseudonym_key_id = 2;
    after.previous_pseudonym_keys = vec![PreviousKey {
        id: 1,
        key: key("pseudonym-one"),
        key_file: None,
    }];
    after.enrol_refusal_floor = Duration::ZERO;
    let h = start_on(after.clone(), pool.clone()).await;
    let mut citizen = h.client_as(&As::Nobody);
    // The old subject is still found by its document (the same document does not
    // enrol twice) and keeps its pseudonym.
    assert_eq!(
        citizen
            .enrol(enrol_request(&number, "Li Lei"))
            .await
            .expect_err("enrolled already")
            .code(),
        Code::FailedPrecondition
    );
    assert_eq!(transit(&h, &old.subject_id).await, old_transit);
    // A new enrolment uses key 2 for both.
    let new = enrol(&mut citizen, &resident_id(61), "Han Meimei").await;
    let ids: Vec<(i16, i16)> = sqlx::query_as(
        "SELECT document_key_id, pseudonym_key_id FROM subjects ORDER BY created_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(ids, vec![(1, 1), (2, 2)]);
    assert_eq!(transit(&h, &new.subject_id).await.len(), 32);
    drop(h);

    // Without key 1 the old document is no longer recognised: previous keys are what
    // keeps it found (keys/README.md says when one may go).
    let mut dropped = after;
    dropped.previous_document_keys.clear();
    let h = start_on(dropped, pool).await;
    let mut citizen = h.client_as(&As::Nobody);
    let again = citizen
        .enrol(enrol_request(&number, "Li Lei"))
        .await
        .expect("without key 1 the document looks new");
    assert_ne!(
        again.into_inner().subject.unwrap().subject_id,
        old.subject_id
    );
    // The stored pseudonym survives even that.
    assert_eq!(transit(&h, &old.subject_id).await, old_transit);
}
