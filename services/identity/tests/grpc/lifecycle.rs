//! The whole path, over every RPC: enrol, bind a device with proof of possession, serve
//! the issuer (GetDevice, RecordCertificate, ListCertificates), unbind.

use citypass_proto::v1::{
    AssuranceLevel, CreateBindingChallengeRequest, DeviceCertificate, DeviceStatus, DocumentType,
    FareClass, GetDeviceRequest, GetSubjectRequest, GetTransitAccountRequest,
    ListCertificatesRequest, ListDevicesRequest, RealNameCheckOutcome, RecordCertificateRequest,
    SetAttributesRequest, SubjectStatus, UnbindDeviceRequest,
};
use citypass_testkit::tls::As;
use citypass_token::DeviceKey;
use tonic::Code;

use crate::support::{
    assert_code, bind_new_device, bind_request, enrol, now_plus, random_serial, resident_id, rng,
    start_default,
};

fn is_lower_hex_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tokio::test]
async fn enrol_bind_and_serve_the_issuer() {
    let h = start_default().await;
    let mut client = h.client.clone();
    let mut issuer = h.issuer.clone();

    let subject = enrol(&mut client, &resident_id(1), "张三丰").await;
    assert!(
        is_lower_hex_id(&subject.subject_id),
        "{}",
        subject.subject_id
    );
    // The transit account goes to the services keyed by it, and only there.
    let transit = h
        .client_as(&As::Service("payments"))
        .get_transit_account(GetTransitAccountRequest {
            subject_id: subject.subject_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .transit_account;
    assert!(is_lower_hex_id(&transit));
    assert_ne!(transit, subject.subject_id);
    assert_eq!(subject.masked_name, "张**");
    assert_eq!(subject.status(), SubjectStatus::Active);
    assert_eq!(subject.real_name_check(), RealNameCheckOutcome::Matched);
    assert_eq!(subject.document_type(), DocumentType::ResidentIdCard);
    let attributes = subject.attributes.unwrap();
    assert_eq!(
        attributes.assurance_level(),
        AssuranceLevel::RealNameVerified
    );
    assert_eq!(attributes.fare_class(), FareClass::Adult);
    // Nothing personal is stored in clear.
    let stored: String = sqlx::query_scalar("SELECT string_agg(t::text, '|') FROM subjects t")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert!(!stored.contains(&resident_id(1)) && !stored.contains("张三丰"));

    let fetched = client
        .get_subject(GetSubjectRequest {
            subject_id: subject.subject_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .subject
        .unwrap();
    assert_eq!(fetched, subject);

    // Bind a device key, with proof of possession.
    let challenge = client
        .create_binding_challenge(CreateBindingChallengeRequest {
            subject_id: subject.subject_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(challenge.challenge.len(), 32);
    assert!(challenge.expires_at.unwrap().seconds > now_plus(0).seconds);
    let key = DeviceKey::generate(&rng()).unwrap();
    let device = client
        .bind_device(bind_request(
            &subject.subject_id,
            &challenge.challenge,
            &key,
        ))
        .await
        .unwrap()
        .into_inner()
        .device
        .unwrap();
    assert!(is_lower_hex_id(&device.device_id));
    assert_eq!(device.subject_id, subject.subject_id);
    assert_eq!(device.public_key, key.public_key().as_bytes());
    assert_eq!(device.status(), DeviceStatus::Active);
    assert_eq!(device.label, "my phone");
    assert!(device.unbound_at.is_none());

    // What the issuer asks: device, subject status, attributes (after an update).
    client
        .set_attributes(SetAttributesRequest {
            subject_id: subject.subject_id.clone(),
            fare_class: FareClass::Student.into(),
            medical_insurance_linked: Some(true),
            assurance_level: 0,
        })
        .await
        .unwrap();
    let view = issuer
        .get_device(GetDeviceRequest {
            device_id: device.device_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.device.as_ref(), Some(&device));
    assert_eq!(view.subject_status(), SubjectStatus::Active);
    let attrs = view.subject_attributes.unwrap();
    assert_eq!(attrs.fare_class(), FareClass::Student);
    assert!(attrs.medical_insurance_linked);
    assert_eq!(attrs.assurance_level(), AssuranceLevel::RealNameVerified);

    // The issuer records a certificate; a retry is safe; both lists show it.
    let cert = DeviceCertificate {
        serial: random_serial(),
        device_id: device.device_id.clone(),
        subject_id: String::new(),
        not_before: Some(now_plus(0)),
        not_after: Some(now_plus(3600)),
    };
    let recorded = issuer
        .record_certificate(RecordCertificateRequest {
            certificate: Some(cert.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .certificate
        .unwrap();
    assert_eq!(recorded.subject_id, subject.subject_id);
    assert_eq!(recorded.serial, cert.serial);
    let retried = issuer
        .record_certificate(RecordCertificateRequest {
            certificate: Some(cert.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .certificate
        .unwrap();
    assert_eq!(retried, recorded);
    for (device_id, subject_id) in [
        (device.device_id.clone(), String::new()),
        (String::new(), subject.subject_id.clone()),
    ] {
        let list = client
            .list_certificates(ListCertificatesRequest {
                device_id,
                subject_id,
                include_expired: false,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .certificates;
        assert_eq!(list, vec![recorded.clone()]);
    }

    let devices = client
        .list_devices(ListDevicesRequest {
            subject_id: subject.subject_id.clone(),
            include_unbound: false,
            ..ListDevicesRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .devices;
    assert_eq!(devices.len(), 1);

    // Unbinding stops the device; no more certificates for it.
    let unbound = client
        .unbind_device(UnbindDeviceRequest {
            subject_id: subject.subject_id.clone(),
            device_id: device.device_id.clone(),
            reason: "phone lost".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .device
        .unwrap();
    assert_eq!(unbound.status(), DeviceStatus::Unbound);
    assert!(unbound.unbound_at.is_some());
    let mut another = cert.clone();
    another.serial = random_serial();
    assert_code(
        issuer
            .record_certificate(RecordCertificateRequest {
                certificate: Some(another),
            })
            .await,
        Code::FailedPrecondition,
        "UNBOUND",
    );
    let view = issuer
        .get_device(GetDeviceRequest {
            device_id: device.device_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.device.unwrap().status(), DeviceStatus::Unbound);
}

#[tokio::test]
async fn devices_are_listed_in_pages() {
    let h = start_default().await;
    let mut client = h.client.clone();
    let subject = enrol(&mut client, &resident_id(30), "张三丰").await;
    let mut bound = Vec::new();
    for _ in 0..3 {
        bound.push(bind_new_device(&mut client, &subject.subject_id).await);
    }
    let page = |token: String| ListDevicesRequest {
        subject_id: subject.subject_id.clone(),
        include_unbound: false,
        page_size: 2,
        page_token: token,
    };
    let first = client
        .list_devices(page(String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.devices.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let second = client
        .list_devices(page(first.next_page_token.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.next_page_token, "", "the last page");
    let listed: Vec<String> = first
        .devices
        .iter()
        .chain(&second.devices)
        .map(|d| d.device_id.clone())
        .collect();
    assert_eq!(listed, bound);
    assert_code(
        client.list_devices(page("c1:1:00".to_owned())).await,
        Code::InvalidArgument,
        "page_token",
    );
}
