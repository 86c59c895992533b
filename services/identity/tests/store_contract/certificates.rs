//! Device certificates: recorded once per serial, and listed by device and by subject.

use std::sync::Arc;

use citypass_identity::error::Error;
use citypass_identity::ids::{DeviceId, SubjectId};
use citypass_identity::model::{CertificateCursor, CertificateOwner, CertificatePage};
use citypass_identity::store::Store;

use crate::support::{active_subject, at, bound_device, certificate};

/// Live certificates per device, more than any test here records.
const LIMIT: u32 = 100;
/// One page holding everything.
const ALL: CertificatePage = CertificatePage {
    after: None,
    limit: 1000,
};

pub(crate) async fn certificates_are_recorded_once_per_serial(store: Arc<dyn Store>) {
    let id = active_subject(&store, 1).await;
    let device = bound_device(&store, id, 0).await;
    let other_device = bound_device(&store, id, 1).await;
    let recorded = store
        .record_certificate(certificate(1, device, 0, 3600), LIMIT, at(0))
        .await
        .unwrap();
    assert_eq!(recorded.subject_id, id);
    assert_eq!(recorded.device_id, device);
    assert_eq!(recorded.not_after, at(3600));
    // A retry returns the same record.
    let mut retry = certificate(1, device, 0, 3600);
    retry.subject_id = Some(id);
    assert_eq!(
        store.record_certificate(retry, LIMIT, at(1)).await.unwrap(),
        recorded
    );
    // The same serial elsewhere, or with another validity, is a conflict.
    assert!(matches!(
        store
            .record_certificate(certificate(1, other_device, 0, 3600), LIMIT, at(1))
            .await,
        Err(Error::SerialConflict)
    ));
    assert!(matches!(
        store
            .record_certificate(certificate(1, device, 0, 7200), LIMIT, at(1))
            .await,
        Err(Error::SerialConflict)
    ));
    let mut wrong_subject = certificate(2, device, 0, 3600);
    wrong_subject.subject_id = Some(SubjectId::generate().unwrap());
    assert!(matches!(
        store.record_certificate(wrong_subject, LIMIT, at(1)).await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        store
            .record_certificate(
                certificate(3, DeviceId::generate().unwrap(), 0, 3600),
                LIMIT,
                at(1)
            )
            .await,
        Err(Error::DeviceNotFound)
    ));
    store.unbind_device(id, device, "", at(2)).await.unwrap();
    assert!(matches!(
        store
            .record_certificate(certificate(4, device, 0, 3600), LIMIT, at(3))
            .await,
        Err(Error::DeviceNotActive)
    ));
    // Nothing but the first certificate was recorded.
    let all = store
        .list_certificates(CertificateOwner::Subject(id), None, ALL)
        .await
        .unwrap();
    assert_eq!(all, vec![recorded]);
}

pub(crate) async fn certificates_are_listed_by_device_and_subject(store: Arc<dyn Store>) {
    let id = active_subject(&store, 1).await;
    let a = bound_device(&store, id, 0).await;
    let b = bound_device(&store, id, 1).await;
    let someone_else = active_subject(&store, 2).await;
    let c = bound_device(&store, someone_else, 2).await;
    for (serial, device, from, to) in [
        (5, a, 100, 200),
        (1, a, 0, 100),
        (2, b, 50, 150),
        (3, c, 0, 1000),
    ] {
        store
            .record_certificate(certificate(serial, device, from, to), LIMIT, at(0))
            .await
            .unwrap();
    }
    let by_device = store
        .list_certificates(CertificateOwner::Device(a), None, ALL)
        .await
        .unwrap();
    assert_eq!(serials(by_device), vec![1, 5]);
    let by_subject = store
        .list_certificates(CertificateOwner::Subject(id), None, ALL)
        .await
        .unwrap();
    assert_eq!(serials(by_subject), vec![1, 2, 5]);
    // Only those still valid: not_after later than the given time.
    let valid = store
        .list_certificates(CertificateOwner::Subject(id), Some(at(100)), ALL)
        .await
        .unwrap();
    assert_eq!(serials(valid), vec![2, 5]);
    // Certificates of unbound devices are still listed (revocation needs them).
    store.unbind_device(id, b, "", at(3)).await.unwrap();
    let after_unbind = store
        .list_certificates(CertificateOwner::Device(b), None, ALL)
        .await
        .unwrap();
    assert_eq!(serials(after_unbind), vec![2]);
    assert!(matches!(
        store
            .list_certificates(
                CertificateOwner::Device(DeviceId::generate().unwrap()),
                None,
                ALL
            )
            .await,
        Err(Error::DeviceNotFound)
    ));
    assert!(matches!(
        store
            .list_certificates(
                CertificateOwner::Subject(SubjectId::generate().unwrap()),
                None,
                ALL
            )
            .await,
        Err(Error::SubjectNotFound)
    ));
}

/// Security finding 3: a device could collect certificates without bound until
/// revoking it meant listing more than one message holds. Now a device holds at most
/// `max_live` live certificates (a retry of one still answers), expired ones free
/// their place, and listings come in pages that follow each other exactly.
pub(crate) async fn finding_3_live_certificates_are_capped_and_listed_in_pages(
    store: Arc<dyn Store>,
) {
    let id = active_subject(&store, 1).await;
    let device = bound_device(&store, id, 0).await;
    for serial in 1..=3 {
        store
            .record_certificate(certificate(serial, device, 0, 100), 3, at(0))
            .await
            .unwrap();
    }
    assert!(matches!(
        store
            .record_certificate(certificate(4, device, 0, 100), 3, at(1))
            .await,
        Err(Error::CertificateLimit { limit: 3 })
    ));
    // A retry of a recorded one is not a new certificate.
    store
        .record_certificate(certificate(2, device, 0, 100), 3, at(1))
        .await
        .expect("a retry answers at the limit");
    // Once they expire, the device may have new ones.
    store
        .record_certificate(certificate(4, device, 100, 200), 3, at(100))
        .await
        .expect("expired certificates free their place");

    // Pages of two, following each other: 1, 2 | 3, 4.
    let first = store
        .list_certificates(
            CertificateOwner::Device(device),
            None,
            CertificatePage {
                after: None,
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(serials(first.clone()), vec![1, 2]);
    let rest = store
        .list_certificates(
            CertificateOwner::Subject(id),
            None,
            CertificatePage {
                after: first.last().map(CertificateCursor::after),
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(serials(rest), vec![3, 4]);
}

/// The first byte of each serial (the fixtures' serials are one byte repeated).
fn serials(list: Vec<citypass_identity::model::Certificate>) -> Vec<u8> {
    list.iter().map(|c| c.serial.as_bytes()[0]).collect()
}
