//! GetSubjectProfile (issue 10): what the verifier's scene policies need about a
//! subject, with both stored pseudonyms, to the verifier alone.

use citypass_identity::IdentityConfig;
use citypass_identity::config::DEV_GOVERNMENT_KEY;
use citypass_proto::v1::{
    AssuranceLevel, DocumentType, EnrolRequest, FareClass, GetSubjectProfileRequest,
    GetTransitAccountRequest, SubjectStatus,
};
use citypass_pseudonym::{GovernmentPseudonyms, HmacKeys, Key};
use citypass_runtime::Role;
use citypass_testkit::tls::As;
use tonic::Code;

use crate::support::{enrol, resident_id, start};

#[tokio::test]
async fn the_verifier_gets_the_profile_with_both_pseudonyms() {
    let h = start(IdentityConfig::dev()).await;
    let mut citizen = h.client_as(&As::Nobody);
    let number = resident_id(77);
    let subject = enrol(&mut citizen, &number, "Li Lei").await;
    let mut verifier = h.client_as(&As::Service("verifier"));
    let profile = verifier
        .get_subject_profile(GetSubjectProfileRequest {
            subject_id: subject.subject_id.clone(),
        })
        .await
        .expect("the verifier reads the profile")
        .into_inner();
    assert_eq!(profile.status(), SubjectStatus::Active);
    let attributes = profile.attributes.expect("attributes");
    assert_eq!(attributes.fare_class(), FareClass::Adult);
    assert_eq!(
        attributes.assurance_level(),
        AssuranceLevel::RealNameVerified
    );
    assert_eq!(profile.masked_name, subject.masked_name);
    let transit = h
        .client_as(&As::Service("payments"))
        .get_transit_account(GetTransitAccountRequest {
            subject_id: subject.subject_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .transit_account;
    assert_eq!(profile.transit_account, transit);
    // The government systems compute the same value from the number in their files.
    let key = Key::parse(DEV_GOVERNMENT_KEY, "government_key").unwrap();
    let expected = GovernmentPseudonyms::new(HmacKeys::single(key.bytes())).derive(&number);
    assert_eq!(profile.government_pseudonym, expected.value);
    assert_eq!(profile.government_pseudonym.len(), 64);
    assert!(!profile.government_pseudonym.contains(&number));

    // A passport holder has no government pseudonym.
    let passport = citizen
        .enrol(EnrolRequest {
            document_type: DocumentType::Passport.into(),
            document_number: "E12345678".to_owned(),
            name: "Jane Smith".to_owned(),
            request_id: String::new(),
        })
        .await
        .expect("enrol a passport")
        .into_inner()
        .subject
        .unwrap();
    let profile = verifier
        .get_subject_profile(GetSubjectProfileRequest {
            subject_id: passport.subject_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(profile.government_pseudonym, "");
    assert_eq!(profile.transit_account.len(), 32);
}

#[tokio::test]
async fn an_unknown_subject_is_not_found_with_its_reason() {
    let h = start(IdentityConfig::dev()).await;
    let refused = h
        .client_as(&As::Service("verifier"))
        .get_subject_profile(GetSubjectProfileRequest {
            subject_id: "0123456789abcdef0123456789abcdef".to_owned(),
        })
        .await
        .expect_err("unknown subject");
    assert_eq!(refused.code(), Code::NotFound);
    assert_eq!(
        citypass_runtime::reason_of(&refused).as_deref(),
        Some("NOT_FOUND")
    );
    let malformed = h
        .client_as(&As::Service("verifier"))
        .get_subject_profile(GetSubjectProfileRequest {
            subject_id: "not-an-id".to_owned(),
        })
        .await
        .expect_err("malformed");
    assert_eq!(malformed.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn only_the_verifier_gets_a_profile() {
    let h = start(IdentityConfig::dev()).await;
    let mut citizen = h.client_as(&As::Nobody);
    let subject = enrol(&mut citizen, &resident_id(78), "Li Lei").await;
    for (who, code) in [
        (As::Nobody, Code::Unauthenticated),
        (As::Service("payments"), Code::PermissionDenied),
        (As::Service("issuer"), Code::PermissionDenied),
        (As::Gate("metro-1"), Code::PermissionDenied),
        (
            As::Operator(&[Role::IdentityAdmin, Role::Auditor]),
            Code::PermissionDenied,
        ),
    ] {
        let refused = h
            .client_as(&who)
            .get_subject_profile(GetSubjectProfileRequest {
                subject_id: subject.subject_id.clone(),
            })
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), code, "{who:?}");
    }
}
