//! Links: one active per rider, unlinking keeps history, bad input stores nothing.

use std::sync::Arc;

use citypass_payments::link::Provider;
use citypass_payments::payments::LinkRequest;
use citypass_payments::{Error, PaymentsStore};

use crate::support::{T0, link_request, payments, race, rider};

pub(crate) async fn links_are_made_read_and_unlinked_with_history(store: Arc<dyn PaymentsStore>) {
    let p = payments(store);
    let account = rider(1);
    assert!(matches!(p.get_link(account).await, Err(Error::NotLinked)));
    let link = p.link(link_request(account), T0).await.unwrap();
    assert_eq!(link.account, account);
    assert_eq!(link.provider, Provider::Sandbox);
    assert_eq!(link.last4.as_str(), "0042");
    assert_eq!(link.consent.text_version, "2026-01");
    assert_eq!(link.consent.consented_at, T0 - 100);
    assert_eq!(link.linked_at, T0, "the server's own time is recorded");
    assert_eq!(p.get_link(account).await.unwrap(), link);

    assert!(matches!(
        p.link(link_request(account), T0 + 1).await,
        Err(Error::AlreadyLinked)
    ));
    // Another rider is unaffected.
    assert!(matches!(p.get_link(rider(2)).await, Err(Error::NotLinked)));

    let unlinked = p.unlink(account, T0 + 10).await.unwrap();
    assert_eq!(unlinked.id, link.id);
    assert_eq!(unlinked.unlinked_at, Some(T0 + 10));
    assert!(matches!(p.get_link(account).await, Err(Error::NotLinked)));
    assert!(matches!(
        p.unlink(account, T0 + 11).await,
        Err(Error::NotLinked)
    ));

    let again = p
        .link(
            LinkRequest {
                provider: Provider::Alipay,
                last4: "9876",
                ..link_request(account)
            },
            T0 + 20,
        )
        .await
        .unwrap();
    assert_ne!(again.id, link.id);
    assert_eq!(
        p.get_link(account).await.unwrap().provider,
        Provider::Alipay
    );
}

pub(crate) async fn card_numbers_and_bad_input_store_nothing(store: Arc<dyn PaymentsStore>) {
    let p = payments(store);
    let account = rider(1);
    let bad = [
        (
            LinkRequest {
                token: "4111111111111111",
                ..link_request(account)
            },
            "provider_token",
        ),
        (
            LinkRequest {
                token: "agr-4111 1111 1111 1111",
                ..link_request(account)
            },
            "provider_token",
        ),
        (
            LinkRequest {
                token: "agr.4111.1111.1111.1111",
                ..link_request(account)
            },
            "provider_token",
        ),
        (
            LinkRequest {
                token: "agr_4111/1111/1111/1111",
                ..link_request(account)
            },
            "provider_token",
        ),
        (
            LinkRequest {
                token: "agr_41111111111111110",
                ..link_request(account)
            },
            "provider_token",
        ),
        (
            LinkRequest {
                consent_version: "4111_1111_1111_1111",
                ..link_request(account)
            },
            "consent.text_version",
        ),
        (
            LinkRequest {
                token: "",
                ..link_request(account)
            },
            "provider_token",
        ),
        (
            LinkRequest {
                last4: "123",
                ..link_request(account)
            },
            "last4",
        ),
        (
            LinkRequest {
                last4: "12ab",
                ..link_request(account)
            },
            "last4",
        ),
        (
            LinkRequest {
                consent_version: "",
                ..link_request(account)
            },
            "consent.text_version",
        ),
        (
            LinkRequest {
                consented_at: 0,
                ..link_request(account)
            },
            "consent.consented_at",
        ),
    ];
    for (request, field) in bad {
        match p.link(request, T0).await {
            Err(Error::InvalidArgument { field: f, reason }) => {
                assert_eq!(f, field);
                assert!(
                    !reason.contains("4111"),
                    "the message never repeats the value"
                );
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    assert!(matches!(p.get_link(account).await, Err(Error::NotLinked)));
}

pub(crate) async fn concurrent_links_have_one_winner(store: Arc<dyn PaymentsStore>) {
    let p = payments(store);
    let account = rider(7);
    let results = race(8, |_| {
        let p = p.clone();
        async move { p.link(link_request(account), T0).await }
    })
    .await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, Error::AlreadyLinked)),
        "{results:?}"
    );
}
