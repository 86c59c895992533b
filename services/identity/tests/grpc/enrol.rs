//! Enrol: malformed enrolments are refused precisely and change nothing, and real-name
//! check outcomes show in status and assurance.

use citypass_identity::{IdentityConfig, SandboxConfig, SandboxRule};
use citypass_proto::v1::{
    AssuranceLevel, CreateBindingChallengeRequest, EnrolRequest, GetSubjectRequest,
    RealNameCheckOutcome, SetSubjectStatusRequest, SubjectStatus,
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

    // Duplicate enrolment: same document, any spelling of the name.
    assert_code(
        client
            .enrol(enrol_request(&resident_id(2), "Someone Else"))
            .await,
        Code::AlreadyExists,
        "already enrolled",
    );
    assert_eq!(digest(&h.pool).await, before);
}

#[tokio::test]
async fn real_name_outcomes_show_in_status_and_assurance() {
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
                outcome: citypass_identity::Outcome::Unavailable,
                document_number_suffix: Some(unavailable[10..].to_owned()),
                name: Some("Jane Roe".to_owned()),
            },
        ],
    };
    let h = start(config).await;
    let mut client = h.client.clone();

    let rejected = enrol(&mut client, &resident_id(9), "Wrong Name").await;
    assert_eq!(rejected.status(), SubjectStatus::Rejected);
    assert_eq!(rejected.real_name_check(), RealNameCheckOutcome::Mismatched);
    assert_eq!(
        rejected.attributes.unwrap().assurance_level(),
        AssuranceLevel::DocumentChecked
    );

    let pending = enrol(&mut client, &unavailable, "Jane Roe").await;
    assert_eq!(pending.status(), SubjectStatus::Pending);
    assert_eq!(pending.real_name_check(), RealNameCheckOutcome::Unavailable);
    assert_code(
        client
            .set_subject_status(SetSubjectStatusRequest {
                subject_id: pending.subject_id.clone(),
                status: SubjectStatus::Active.into(),
                reason: String::new(),
            })
            .await,
        Code::FailedPrecondition,
        "PENDING",
    );
    assert_code(
        client
            .create_binding_challenge(CreateBindingChallengeRequest {
                subject_id: pending.subject_id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "PENDING",
    );

    // The app retries (here the sandbox rule no longer matches the name): a new,
    // verified subject; the pending attempt is closed.
    let verified = enrol(&mut client, &unavailable, "Jane  ROE Smith").await;
    assert_eq!(verified.status(), SubjectStatus::Active);
    assert_ne!(verified.subject_id, pending.subject_id);
    let closed = client
        .get_subject(GetSubjectRequest {
            subject_id: pending.subject_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .subject
        .unwrap();
    assert_eq!(closed.status(), SubjectStatus::Rejected);
    assert_code(
        client.enrol(enrol_request(&unavailable, "Jane Roe")).await,
        Code::AlreadyExists,
        "already enrolled",
    );
}
