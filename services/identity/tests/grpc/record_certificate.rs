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
