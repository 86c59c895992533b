//! Enrol: malformed enrolments are refused precisely and change nothing; only a
//! matching real-name check enrols, and a refused or unanswered check stores nothing.

use citypass_identity::{IdentityConfig, SandboxConfig, SandboxRule};
use citypass_proto::v1::{
    AssuranceLevel, EnrolRequest, GetSubjectRequest, RealNameCheckOutcome, SubjectStatus,
};
use tonic::Code;

use crate::support::{
    assert_code, digest, enrol, enrol_request, resident_id, start, start_default,
};

#[tokio::test]
async fn malformed_enrolments_are_refused_precisely_and_change_nothing() {
    let h = start_default().await;
    let mut client = h.client.clone();
    enrol(&mut client, &resident_id(2), "John Smith").await;
    let before = digest(&h.pool).await;

    let good = resident_id(3);
    let mut wrong_digit = good.clone();
    let last = if good.ends_with('0') { "1" } else { "0" };
    wrong_digit.replace_range(17.., last);
    let result = client.enrol(enrol_request(&wrong_digit, "李四")).await;
    let status = result.as_ref().unwrap_err().clone();
    assert_code(result, Code::InvalidArgument, "check digit");
    assert!(
        !status.message().contains(&wrong_digit[..17]),
        "never echo the number"
    );

    let refusals = [
        (enrol_request("1101051990030", "李四"), "18 characters"),
        (
            enrol_request(&format!("{}19901301001X", &good[..6]), "李四"),
            "not a real date",
        ),
        (enrol_request(&good, ""), "name"),
        (
            EnrolRequest {
                document_type: 0,
                ..enrol_request(&good, "李四")
            },
            "document_type",
        ),
        (
            EnrolRequest {
                document_type: 42,
                ..enrol_request(&good, "李四")
            },
            "document_type",
        ),
    ];
    for (request, needle) in refusals {
        assert_code(client.enrol(request).await, Code::InvalidArgument, needle);
    }

    // Duplicate enrolment: same document, any spelling of the name: the one refusal
    // (security finding 8: it does not say the document is enrolled).
    assert_code(
        client
            .enrol(enrol_request(&resident_id(2), "Someone Else"))
            .await,
        Code::FailedPrecondition,
        "enrolment not accepted",
    );
    assert_eq!(digest(&h.pool).await, before);
}

#[tokio::test]
async fn real_name_outcomes_decide_enrolment_and_refusals_store_nothing() {
    let mut config = IdentityConfig::dev();
    let unavailable = resident_id(8);
    config.real_name_sandbox = SandboxConfig {
        default_outcome: citypass_identity::Outcome::Matched,
        rules: vec![
            SandboxRule {
                outcome: citypass_identity::Outcome::Mismatched,
                document_number_suffix: None,
                name: Some("Wrong Name".to_owned()),
            },
            SandboxRule {
                outcome: citypass_identity::Outcome::NotFound,
                document_number_suffix: None,
                name: Some("Nobody Known".to_owned()),
            },
            SandboxRule {
                outcome: citypass_identity::Outcome::Unavailable,
                document_number_suffix: Some(unavailable[10..].to_owned()),
                name: Some("Jane Roe".to_owned()),
            },
        ],
    };
    let h = start(config).await;
    let mut client = h.client.clone();
    let before = digest(&h.pool).await;

    // A mismatched name or an unknown document: refused, nothing stored.
    for name in ["Wrong Name", "Nobody Known"] {
        assert_code(
            client.enrol(enrol_request(&resident_id(9), name)).await,
            Code::FailedPrecondition,
            "enrolment not accepted",
        );
    }
    // The real-name system down: UNAVAILABLE, nothing stored; the app retries.
    let down = client
        .enrol(enrol_request(&unavailable, "Jane Roe"))
        .await
        .expect_err("unavailable");
    assert_eq!(down.code(), Code::Unavailable);
    assert_eq!(
        citypass_runtime::reason_of(&down).as_deref(),
        Some("REAL_NAME_UNAVAILABLE")
    );
    assert_eq!(digest(&h.pool).await, before, "refusals store nothing");

    // A retry the real-name system confirms: a verified, ACTIVE subject.
    let verified = enrol(&mut client, &unavailable, "Jane  ROE Smith").await;
    assert_eq!(verified.status(), SubjectStatus::Active);
    assert_eq!(verified.real_name_check(), RealNameCheckOutcome::Matched);
    assert_eq!(
        verified.attributes.unwrap().assurance_level(),
        AssuranceLevel::RealNameVerified
    );
    let read = client
        .get_subject(GetSubjectRequest {
            subject_id: verified.subject_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .subject
        .unwrap();
    assert_eq!(read.status(), SubjectStatus::Active);
    assert_code(
        client.enrol(enrol_request(&unavailable, "Jane Roe")).await,
        Code::Unavailable,
        "",
    );
    assert_code(
        client
            .enrol(enrol_request(&unavailable, "Jane Smith"))
            .await,
        Code::FailedPrecondition,
        "enrolment not accepted",
    );
}

#[tokio::test]
async fn a_retry_with_the_same_request_id_gets_the_first_answer() {
    let h = start_default().await;
    let mut client = h.client.clone();
    let number = resident_id(70);
    let request = |name: &str, request_id: &str| EnrolRequest {
        request_id: request_id.to_owned(),
        ..enrol_request(&number, name)
    };
    let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let first = client
        .enrol(request("Li Lei", id))
        .await
        .unwrap()
        .into_inner();
    // The answer was lost; the app retries with the same id: the same subject and
    // secret, not a refusal.
    let retry = client
        .enrol(request("Li Lei", &id.to_ascii_uppercase()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry, first);
    let before = digest(&h.pool).await;
    // The same id for another name (or document) is a caller error.
    assert_code(
        client.enrol(request("Han Meimei", id)).await,
        Code::InvalidArgument,
        "request_id",
    );
    // Without the id (or with another) it is an enrolment of an enrolled document.
    assert_code(
        client
            .enrol(request("Li Lei", "1b4e28ba-2fa1-11d2-883f-0016d3cca427"))
            .await,
        Code::FailedPrecondition,
        "enrolment not accepted",
    );
    assert_code(
        client.enrol(request("Li Lei", "not-a-uuid")).await,
        Code::InvalidArgument,
        "request_id",
    );
    assert_eq!(digest(&h.pool).await, before, "retries store nothing");
}
