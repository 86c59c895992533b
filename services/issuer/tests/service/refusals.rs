//! Bad input: a precise status with its ErrorInfo reason, and nothing issued or
//! recorded. Unknown and unbound devices, bad signatures, replays, subjects that are
//! not active or are revoked, malformed subject ids and offline keys.

use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use citypass_issuer::{
    DeviceRecord, RevocationCheck, RevocationError, RevocationStatus, sign_request,
    sign_request_with,
};
use citypass_proto::v1::{
    AssuranceLevel, Attributes, DeviceStatus, IssueTokenRequest, Scene, SubjectStatus,
};
use citypass_token::{DeviceId, DeviceKey, SubjectId};
use tonic::Code;

use crate::support::{
    Citizen, Harness, certificate_request, expect_code, id, signed, token_request,
    unsigned_token_request,
};

const ISSUE_TOKEN: &str = citypass_issuer::ISSUE_TOKEN;
const ISSUE_CERTIFICATE: &str = citypass_issuer::ISSUE_DEVICE_CERTIFICATE;

/// Revokes one subject (to show the check is asked).
struct RevokedSubject(SubjectId);

impl RevocationCheck for RevokedSubject {
    fn check<'a>(
        &'a self,
        subject: &'a SubjectId,
        _device: &'a DeviceId,
    ) -> BoxFuture<'a, Result<RevocationStatus, RevocationError>> {
        let status = if *subject == self.0 {
            RevocationStatus::SubjectRevoked
        } else {
            RevocationStatus::NotRevoked
        };
        Box::pin(std::future::ready(Ok(status)))
    }
}

#[tokio::test]
async fn unknown_and_unbound_devices_are_refused() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    let stranger = Citizen {
        subject_id: citizen.subject_id.clone(),
        device_id: "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0".into(),
        key: DeviceKey::generate(&h.rng).unwrap(),
    };
    expect_code(
        h.issue(token_request(&stranger, &[])).await,
        Code::NotFound,
        "unknown device",
    );

    // A device bound to another subject, signing for this one.
    let other = h.citizen(AssuranceLevel::RealNameVerified);
    let borrowed = Citizen {
        subject_id: citizen.subject_id.clone(),
        device_id: other.device_id.clone(),
        key: other.key,
    };
    expect_code(
        h.issue(token_request(&borrowed, &[])).await,
        Code::PermissionDenied,
        "another subject's device",
    );

    h.identity.update(&citizen.device_id, |d| {
        d.device_status = DeviceStatus::Unbound
    });
    expect_code(
        h.issue(token_request(&citizen, &[])).await,
        Code::PermissionDenied,
        "unbound device",
    );
    let offline = DeviceKey::generate(&h.rng).unwrap();
    expect_code(
        h.certify(certificate_request(
            &citizen,
            offline.public_key().as_bytes(),
            None,
        ))
        .await,
        Code::PermissionDenied,
        "certificate for an unbound device",
    );
    assert!(h.identity.recorded().is_empty());
}

#[tokio::test]
async fn a_bad_device_signature_is_unauthenticated() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    let impostor = DeviceKey::generate(&h.rng).unwrap();
    let status = expect_code(
        h.issue(signed(unsigned_token_request(&citizen, &[]), &impostor))
            .await,
        Code::Unauthenticated,
        "signed by another key",
    );
    assert_eq!(status.message(), "bad device signature");

    // Changed after signing.
    let mut changed = token_request(&citizen, &[Scene::Metro]);
    changed.requested_scopes.push(Scene::Hospital as i32);
    expect_code(
        h.issue(changed).await,
        Code::Unauthenticated,
        "changed after signing",
    );

    // Signed for the other method.
    let mut cross = unsigned_token_request(&citizen, &[]);
    cross.proof = Some(sign_request(ISSUE_CERTIFICATE, &cross, &citizen.key).unwrap());
    expect_code(
        h.issue(cross).await,
        Code::Unauthenticated,
        "signed for another RPC",
    );

    expect_code(
        h.issue(unsigned_token_request(&citizen, &[])).await,
        Code::Unauthenticated,
        "no proof",
    );
    let stale = unsigned_token_request(&citizen, &[]);
    let proof = sign_request_with(
        ISSUE_TOKEN,
        &stale,
        &citizen.key,
        SystemTime::now() - Duration::from_secs(120),
        &[5u8; 16],
    )
    .unwrap();
    let status = expect_code(
        h.issue(IssueTokenRequest {
            proof: Some(proof),
            ..stale
        })
        .await,
        Code::Unauthenticated,
        "stale timestamp",
    );
    assert!(status.message().contains("freshness"));
}

#[tokio::test]
async fn a_replayed_request_is_unauthenticated() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    let request = token_request(&citizen, &[]);
    h.issue(request.clone()).await.expect("first time");
    let status = expect_code(h.issue(request).await, Code::Unauthenticated, "replay");
    assert!(status.message().contains("nonce"));

    let offline = DeviceKey::generate(&h.rng).unwrap();
    let request = certificate_request(&citizen, offline.public_key().as_bytes(), None);
    h.certify(request.clone()).await.expect("first time");
    expect_code(
        h.certify(request).await,
        Code::Unauthenticated,
        "certificate replay",
    );
    assert_eq!(h.identity.recorded().len(), 1);
}

#[tokio::test]
async fn suspended_and_revoked_subjects_get_nothing() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    for status in [
        SubjectStatus::Suspended,
        SubjectStatus::Pending,
        SubjectStatus::Rejected,
    ] {
        h.identity
            .update(&citizen.device_id, |d| d.subject_status = status);
        let answer = expect_code(
            h.issue(token_request(&citizen, &[])).await,
            Code::PermissionDenied,
            "inactive subject",
        );
        assert_eq!(answer.message(), "subject is not active");
    }
    let offline = DeviceKey::generate(&h.rng).unwrap();
    expect_code(
        h.certify(certificate_request(
            &citizen,
            offline.public_key().as_bytes(),
            None,
        ))
        .await,
        Code::PermissionDenied,
        "certificate for a suspended subject",
    );

    // The revocation check is asked.
    let revoked_subject = "00000000000000000000000000000001".to_owned();
    let mut h = Harness::start_with(Arc::new(RevokedSubject(id(&revoked_subject)))).await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    let key = DeviceKey::generate(&h.rng).unwrap();
    h.identity.put(DeviceRecord {
        device: id("dededededededededededededededede"),
        subject: id(&revoked_subject),
        public_key: key.public_key().clone(),
        device_status: DeviceStatus::Active,
        subject_status: SubjectStatus::Active,
        attributes: Attributes::default(),
    });
    let revoked = Citizen {
        subject_id: revoked_subject,
        device_id: "dededededededededededededededede".into(),
        key,
    };
    expect_code(
        h.issue(token_request(&revoked, &[])).await,
        Code::PermissionDenied,
        "revoked subject",
    );
    h.issue(token_request(&citizen, &[]))
        .await
        .expect("others still get codes");
}

#[tokio::test]
async fn malformed_subject_ids_and_keys_are_invalid_arguments() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    for bad in [
        "",
        "not-a-subject",
        &citizen.subject_id.to_uppercase(),
        &citizen.subject_id[..30],
    ] {
        let request = IssueTokenRequest {
            subject_id: bad.to_owned(),
            ..unsigned_token_request(&citizen, &[])
        };
        expect_code(
            h.issue(signed(request, &citizen.key)).await,
            Code::InvalidArgument,
            "malformed subject id",
        );
    }

    let offline = DeviceKey::generate(&h.rng).unwrap();
    let mut off_curve = offline.public_key().as_bytes().to_vec();
    off_curve[64] ^= 1;
    let mut compressed = offline.public_key().as_bytes()[..33].to_vec();
    compressed[0] = 0x02;
    for (bad, what) in [
        (off_curve, "point off the curve"),
        (compressed, "compressed point"),
        (vec![0x04; 10], "too short"),
        (vec![], "empty"),
    ] {
        expect_code(
            h.certify(certificate_request(&citizen, &bad, None)).await,
            Code::InvalidArgument,
            what,
        );
    }
    let device_key = citizen.key.public_key().as_bytes().to_vec();
    let status = expect_code(
        h.certify(certificate_request(&citizen, &device_key, None))
            .await,
        Code::InvalidArgument,
        "the bound device key as offline key",
    );
    assert!(status.message().contains("bound device key"));
    // One certificate per offline key.
    let offline_bytes = offline.public_key().as_bytes().to_vec();
    h.certify(certificate_request(&citizen, &offline_bytes, None))
        .await
        .expect("fresh offline key");
    let status = expect_code(
        h.certify(certificate_request(&citizen, &offline_bytes, None))
            .await,
        Code::InvalidArgument,
        "offline key certified before",
    );
    assert!(status.message().contains("certified before"));
    assert_eq!(h.identity.recorded().len(), 1);
}
