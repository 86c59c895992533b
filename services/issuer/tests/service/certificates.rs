//! IssueDeviceCertificate: a certificate makes offline codes that verify offline, its
//! lifetime is capped and defaulted, and none is returned unless identity recorded it.

use std::sync::atomic::Ordering;

use citypass_proto::v1::AssuranceLevel;
use citypass_token::{DeviceKey, OfflineSigner, Validation, verify_offline};
use tonic::Code;

use crate::support::{Harness, certificate_request, expect_code, now};

#[tokio::test]
async fn a_certificate_makes_offline_codes_that_verify_offline() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    let offline = DeviceKey::generate(&h.rng).unwrap();
    let answer = h
        .certify(certificate_request(
            &citizen,
            offline.public_key().as_bytes(),
            Some(3_600),
        ))
        .await
        .expect("IssueDeviceCertificate");
    let (nbf, naf) = (
        answer.not_before.unwrap().seconds,
        answer.not_after.unwrap().seconds,
    );
    assert_eq!(naf - nbf, 3_600);
    assert_eq!(answer.server_time.unwrap().seconds, nbf);
    assert_eq!(answer.kid, h.keys.current().signing_kid().0.to_vec());
    assert_eq!(answer.scopes.len(), 4);

    // Recorded at identity, with the serial returned.
    let recorded = h.identity.recorded();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].serial.as_bytes().to_vec(), answer.serial);
    assert_eq!(recorded[0].device.to_string(), citizen.device_id);
    assert_eq!(recorded[0].subject.to_string(), citizen.subject_id);
    assert_eq!(
        (recorded[0].not_before, recorded[0].not_after),
        (nbf as u64, naf as u64)
    );

    let signer = OfflineSigner::new(offline, answer.certificate).expect("certificate for this key");
    assert_eq!(
        signer.certificate().serial.as_bytes().to_vec(),
        answer.serial
    );
    let t = now();
    let code = signer.make_code(t, 60, 1, &h.rng).expect("offline code");
    let set = h.key_set().await;
    let verified = verify_offline(&code, &set, &Validation::at(t)).expect("verifies offline");
    assert_eq!(
        verified.certificate.serial.as_bytes().to_vec(),
        answer.serial
    );
    assert_eq!(
        hex::encode(verified.subject(&h.subject_key).unwrap()),
        citizen.subject_id
    );
}

#[tokio::test]
async fn certificate_lifetimes_are_capped_and_defaulted() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    for (wanted, granted) in [
        (None, 86_400),
        (Some(10 * 86_400), 86_400),
        (Some(600), 600),
    ] {
        let offline = DeviceKey::generate(&h.rng).unwrap();
        let answer = h
            .certify(certificate_request(
                &citizen,
                offline.public_key().as_bytes(),
                wanted,
            ))
            .await
            .expect("certificate");
        let span = answer.not_after.unwrap().seconds - answer.not_before.unwrap().seconds;
        assert_eq!(span, granted, "{wanted:?}");
    }
    let offline = DeviceKey::generate(&h.rng).unwrap();
    expect_code(
        h.certify(certificate_request(
            &citizen,
            offline.public_key().as_bytes(),
            Some(0),
        ))
        .await,
        Code::InvalidArgument,
        "zero lifetime",
    );
}

#[tokio::test]
async fn no_certificate_is_returned_unless_recorded() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    h.identity.fail_recording.store(true, Ordering::SeqCst);
    let offline = DeviceKey::generate(&h.rng).unwrap();
    let status = expect_code(
        h.certify(certificate_request(
            &citizen,
            offline.public_key().as_bytes(),
            None,
        ))
        .await,
        Code::Unavailable,
        "recording failed",
    );
    assert!(!status.message().contains("down"), "internal detail hidden");
    assert!(h.identity.recorded().is_empty());

    h.identity.fail_recording.store(false, Ordering::SeqCst);
    let offline = DeviceKey::generate(&h.rng).unwrap();
    h.certify(certificate_request(
        &citizen,
        offline.public_key().as_bytes(),
        None,
    ))
    .await
    .expect("identity back");
    assert_eq!(h.identity.recorded().len(), 1);
}
