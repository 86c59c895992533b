//! Devices: listed, unbound (by their own subject only, terminal and repeatable), and
//! viewed with their subject's status and attributes.

use std::sync::Arc;

use citypass_identity::error::Error;
use citypass_identity::ids::{DeviceId, SubjectId};
use citypass_identity::model::DevicePage;
use citypass_identity::store::Store;
use citypass_proto::v1::{DeviceStatus, FareClass, SubjectStatus};

use crate::support::{active_subject, at, bound_device};

pub(crate) async fn devices_are_listed_unbound_and_viewed(store: Arc<dyn Store>) {
    let id = active_subject(&store, 1).await;
    let first = bound_device(&store, id, 0).await;
    let second = bound_device(&store, id, 1).await;
    let listed: Vec<_> = store
        .list_devices(id, false, DevicePage::ALL)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(listed, vec![first, second]);

    let view = store.get_device(first).await.unwrap();
    assert_eq!(view.device.id, first);
    assert_eq!(view.subject_status, SubjectStatus::Active);
    assert_eq!(view.subject_attributes.fare_class, FareClass::Adult);

    // Unbinding needs the right subject, and is terminal and repeatable.
    let other = active_subject(&store, 2).await;
    assert!(matches!(
        store.unbind_device(other, first, "", at(2)).await,
        Err(Error::DeviceNotFound)
    ));
    let unbound = store.unbind_device(id, first, "lost", at(3)).await.unwrap();
    assert_eq!(unbound.status, DeviceStatus::Unbound);
    assert_eq!(unbound.unbound_at, Some(at(3)));
    assert_eq!(
        store
            .unbind_device(id, first, "again", at(4))
            .await
            .unwrap(),
        unbound
    );
    assert_eq!(store.get_device(first).await.unwrap().device, unbound);
    let active: Vec<_> = store
        .list_devices(id, false, DevicePage::ALL)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(active, vec![second]);
    assert_eq!(
        store
            .list_devices(id, true, DevicePage::ALL)
            .await
            .unwrap()
            .len(),
        2
    );

    // The view follows the subject.
    store
        .set_subject_status(id, SubjectStatus::Suspended, "", at(5))
        .await
        .unwrap();
    assert_eq!(
        store.get_device(second).await.unwrap().subject_status,
        SubjectStatus::Suspended
    );
    let unknown = DeviceId::generate().unwrap();
    assert!(matches!(
        store.get_device(unknown).await,
        Err(Error::DeviceNotFound)
    ));
    assert!(matches!(
        store.unbind_device(id, unknown, "", at(6)).await,
        Err(Error::DeviceNotFound)
    ));
    assert!(matches!(
        store
            .list_devices(SubjectId::generate().unwrap(), true, DevicePage::ALL)
            .await,
        Err(Error::SubjectNotFound)
    ));
}

/// Pages of a subject's devices (issue 8): in binding order, ties broken by id, each
/// device once, unbound ones only when asked.
pub(crate) async fn devices_are_listed_in_pages(store: Arc<dyn Store>) {
    let id = active_subject(&store, 1).await;
    let mut bound = Vec::new();
    for now in [0, 0, 0, 1, 1] {
        bound.push(bound_device(&store, id, now).await);
    }
    store
        .unbind_device(id, bound[1], "lost", at(2))
        .await
        .unwrap();
    for include_unbound in [true, false] {
        let all: Vec<DeviceId> = store
            .list_devices(id, include_unbound, DevicePage::ALL)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(all.len(), if include_unbound { 5 } else { 4 });
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .list_devices(id, include_unbound, DevicePage { after, limit: 2 })
                .await
                .unwrap();
            assert!(page.len() <= 2);
            let Some(last) = page.last() else { break };
            after = Some(citypass_identity::model::DeviceCursor::after(last));
            paged.extend(page.iter().map(|d| d.id));
        }
        assert_eq!(paged, all, "include_unbound {include_unbound}");
    }
}
