//! RecordCertificate: refusals are precise and change nothing.

use citypass_proto::v1::{DeviceCertificate, RecordCertificateRequest};
use tonic::Code;

use crate::support::{
    assert_code, bind_new_device, digest, enrol, now_plus, random_serial, resident_id,
    start_default,
};

#[tokio::test]
async fn certificate_refusals_are_precise_and_change_nothing() {
    let h = start_default().await;
    let mut client = h.client.clone();
    let mut issuer = h.issuer.clone();
    let subject = enrol(&mut client, &resident_id(10), "Jane Roe").await;
    let device_id = bind_new_device(&mut client, &subject.subject_id).await;
    let other = enrol(&mut client, &resident_id(11), "John Roe").await;
    let other_device = bind_new_device(&mut client, &other.subject_id).await;
    let good = DeviceCertificate {
        serial: random_serial(),
        device_id: device_id.clone(),
        subject_id: String::new(),
        not_before: Some(now_plus(0)),
        not_after: Some(now_plus(3600)),
    };
    issuer
        .record_certificate(RecordCertificateRequest {
            certificate: Some(good.clone()),
        })
        .await
        .unwrap();
    let before = digest(&h.pool).await;

    let record = |certificate: DeviceCertificate| RecordCertificateRequest {
        certificate: Some(certificate),
    };
    let cases = [
        (
            RecordCertificateRequest { certificate: None },
            Code::InvalidArgument,
            "certificate",
        ),
        (
            record(DeviceCertificate {
                serial: vec![1; 15],
                ..good.clone()
            }),
            Code::InvalidArgument,
            "serial",
        ),
        (
            record(DeviceCertificate {
                not_after: good.not_before,
                serial: random_serial(),
                ..good.clone()
            }),
            Code::InvalidArgument,
            "not_after",
        ),
        (
            record(DeviceCertificate {
                not_before: None,
                serial: random_serial(),
                ..good.clone()
            }),
            Code::InvalidArgument,
            "not_before",
        ),
        (
            record(DeviceCertificate {
                device_id: "0123456789abcdef0123456789abcdef".to_owned(),
                serial: random_serial(),
                ..good.clone()
            }),
            Code::NotFound,
            "device not found",
        ),
        (
            record(DeviceCertificate {
                subject_id: other.subject_id.clone(),
                serial: random_serial(),
                ..good.clone()
            }),
            Code::InvalidArgument,
            "subject_id",
        ),
        (
            record(DeviceCertificate {
                device_id: other_device.clone(),
                ..good.clone()
            }),
            Code::AlreadyExists,
            "serial",
        ),
        (
            record(DeviceCertificate {
                not_after: Some(now_plus(7200)),
                ..good.clone()
            }),
            Code::AlreadyExists,
            "serial",
        ),
    ];
    for (request, code, needle) in cases {
        assert_code(issuer.record_certificate(request).await, code, needle);
    }
    assert_eq!(digest(&h.pool).await, before);
}

/// Security finding 3: RecordCertificate took any `not_after` (year 9999) and any
/// number of certificates per device, and ListCertificates answered in one message, so
/// enough recorded certificates made a device's revocation fail for good. Now a
/// validity no gate accepts is refused, a device holds at most
/// `max_live_certificates_per_device` live ones, and the list comes in pages.
#[tokio::test]
async fn finding_3_certificates_are_bounded_and_listed_in_pages() {
    use citypass_proto::v1::ListCertificatesRequest;

    let mut config = citypass_identity::IdentityConfig::dev();
    config.max_live_certificates_per_device = 3;
    let h = crate::support::start(config).await;
    let mut client = h.client.clone();
    let mut issuer = h.issuer.clone();
    let subject = enrol(&mut client, &resident_id(12), "Jane Roe").await;
    let device_id = bind_new_device(&mut client, &subject.subject_id).await;
    let certificate = |not_after: i64| RecordCertificateRequest {
        certificate: Some(DeviceCertificate {
            serial: random_serial(),
            device_id: device_id.clone(),
            subject_id: String::new(),
            not_before: Some(now_plus(0)),
            not_after: Some(now_plus(not_after)),
        }),
    };
    let before = digest(&h.pool).await;
    assert_code(
        issuer
            .record_certificate(RecordCertificateRequest {
                certificate: Some(DeviceCertificate {
                    not_after: Some(citypass_proto::prost_types::Timestamp {
                        seconds: 253_402_300_799, // 9999-12-31
                        nanos: 0,
                    }),
                    ..certificate(0).certificate.unwrap()
                }),
            })
            .await,
        Code::InvalidArgument,
        "not_after",
    );
    assert_code(
        issuer.record_certificate(certificate(25 * 3600)).await,
        Code::InvalidArgument,
        "not_after",
    );
    assert_eq!(digest(&h.pool).await, before);

    for _ in 0..3 {
        issuer.record_certificate(certificate(3600)).await.unwrap();
    }
    let refused = issuer
        .record_certificate(certificate(3600))
        .await
        .expect_err("the fourth live certificate");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(
        citypass_runtime::reason_of(&refused).as_deref(),
        Some("CERTIFICATE_LIMIT")
    );

    // Pages of two: 2 + 1, then the end; a forged token is refused.
    let page = |token: String| ListCertificatesRequest {
        device_id: device_id.clone(),
        page_size: 2,
        page_token: token,
        ..Default::default()
    };
    let first = client
        .list_certificates(page(String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.certificates.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let second = client
        .list_certificates(page(first.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.certificates.len(), 1);
    assert!(second.next_page_token.is_empty());
    assert_code(
        client.list_certificates(page("c1:1:zz".to_owned())).await,
        Code::InvalidArgument,
        "page_token",
    );
}
