//! Providers' notifications (NotifyCharge's logic): a charge is found by the key it was
//! sent under, the first send's or a repayment's, and takes the provider's outcome once,
//! through the worker's own transition; a wrong amount or an unknown key changes nothing.

use std::sync::Arc;

use citypass_payments::charge::{ChargeKey, ChargeStatus};
use citypass_payments::link::Provider;
use citypass_payments::notification::{Applied, Notification, apply};
use citypass_payments::payments::LinkRequest;
use citypass_payments::provider::{Outcome, Sandbox, SandboxConfig};
use citypass_payments::worker::OutboxWorker;
use citypass_payments::{Error, Fen, PaymentsStore};

use crate::support::{T0, boarding, entry, ledger_balances, link_request, payments, rider, tap_in};

pub(crate) async fn a_notification_settles_the_charge_sent_under_its_key_once(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store.clone());
    let a = rider(6);
    let link = |token| LinkRequest {
        token,
        ..link_request(a)
    };
    p.link(link("decline-agreement-6"), T0 - 5).await.unwrap();
    tap_in(&p, boarding(a, "bus", "s1", "944", T0)).await;
    let worker = OutboxWorker::new(store.clone(), Arc::new(Sandbox::default()));
    assert_eq!(worker.run_once(T0 + 60).await.unwrap().declined, 1);
    let declined = store.charges(a).await.unwrap()[0].clone();
    assert_eq!(
        store
            .charge_by_provider_key(declined.key)
            .await
            .unwrap()
            .map(|row| row.charge),
        Some(declined.clone()),
        "first sent under its own key"
    );

    // Repaid through another account; this provider charges and then times out, so
    // only its notification tells.
    p.unlink(a, T0 + 100).await.unwrap();
    p.link(link("agr_sandbox_6a1f0c9e"), T0 + 110)
        .await
        .unwrap();
    p.repay_arrears(a, "req-1", T0 + 120).await.unwrap();
    let silent = Arc::new(Sandbox::new(SandboxConfig {
        timeouts_after_success: u32::MAX,
        ..SandboxConfig::default()
    }));
    // Not sent yet under the repayment's key: the provider cannot have answered it.
    let early = Notification {
        provider_key: ChargeKey::repayment(declined.key, "req-1"),
        outcome: Outcome::Approved,
        amount: declined.amount,
        notified_at: T0 + 125,
    };
    assert!(matches!(
        apply(store.as_ref(), Provider::Sandbox, &early, T0 + 125).await,
        Err(Error::ChargeNotFound)
    ));
    let worker = OutboxWorker::new(store.clone(), silent.clone());
    assert_eq!(worker.run_once(T0 + 130).await.unwrap().retrying, 1);
    let repay_key = ChargeKey::repayment(declined.key, "req-1");
    let sent = store
        .charge_by_provider_key(repay_key)
        .await
        .unwrap()
        .expect("found by the repayment's key")
        .charge;
    assert_eq!(
        (sent.key, sent.status),
        (declined.key, ChargeStatus::Retrying)
    );
    assert_eq!(
        store.charge_by_provider_key(declined.key).await.unwrap(),
        None,
        "the key it is sent under now is the repayment's"
    );

    let approval = Notification {
        provider_key: repay_key,
        outcome: Outcome::Approved,
        amount: declined.amount,
        notified_at: T0 + 140,
    };
    let wrong_amount = Notification {
        amount: Fen::new(declined.amount.get() + 1),
        ..approval.clone()
    };
    assert!(matches!(
        apply(store.as_ref(), Provider::Sandbox, &wrong_amount, T0 + 140).await,
        Err(Error::AmountMismatch)
    ));
    // Sent to the sandbox: another provider's key does not speak for it.
    assert!(matches!(
        apply(store.as_ref(), Provider::Alipay, &approval, T0 + 140).await,
        Err(Error::ChargeNotFound)
    ));
    let unknown = Notification {
        provider_key: ChargeKey([0x77; 16]),
        ..approval.clone()
    };
    assert!(matches!(
        apply(store.as_ref(), Provider::Sandbox, &unknown, T0 + 140).await,
        Err(Error::ChargeNotFound)
    ));
    assert_eq!(
        store.charges(a).await.unwrap()[0].status,
        ChargeStatus::Retrying
    );

    let (applied, charge) = apply(store.as_ref(), Provider::Sandbox, &approval, T0 + 150)
        .await
        .unwrap();
    assert_eq!(
        (applied, charge.status),
        (Applied::Now, ChargeStatus::Succeeded)
    );
    let (again, _) = apply(store.as_ref(), Provider::Sandbox, &approval, T0 + 160)
        .await
        .unwrap();
    assert_eq!(again, Applied::Already);
    // The worker's late answer (another timeout) and a stale decline change nothing.
    assert_eq!(worker.run_once(T0 + 10_000).await.unwrap().retrying, 0);
    let decline = Notification {
        outcome: Outcome::Declined {
            code: "INSUFFICIENT_FUNDS".to_owned(),
        },
        ..approval
    };
    let (stale, charge) = apply(store.as_ref(), Provider::Sandbox, &decline, T0 + 170)
        .await
        .unwrap();
    assert_eq!(
        (stale, charge.status),
        (Applied::Superseded, ChargeStatus::Succeeded)
    );
    assert_eq!(p.arrears(a).await.unwrap().total, Fen::ZERO);
    assert_eq!(ledger_balances(&p).await, i128::from(declined.amount.get()));
    assert_eq!(silent.approved(), vec![(repay_key, declined.amount)]);
}

/// A charge made while no link was active (`NO_PAYMENT_LINK`, owed at once) was never
/// sent: no provider's notification settles it (it would clear the rider's debt).
pub(crate) async fn a_notification_never_settles_a_charge_no_provider_was_sent(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store.clone());
    let a = rider(7);
    p.link(link_request(a), T0 - 5).await.unwrap();
    tap_in(&p, entry(a, "g-in", "s1", "pingguoyuan", T0)).await;
    p.unlink(a, T0 + 10).await.unwrap();
    // Left open past the longest trip: closed at the maximum fare, with no link.
    let expired = p.expire_open_trips(T0 + 48 * 3600).await.unwrap();
    assert_eq!(expired.closed.len(), 1);
    let owed = store.charges(a).await.unwrap()[0].clone();
    assert_eq!(
        (owed.status, owed.link, owed.decline_code.as_deref()),
        (ChargeStatus::Declined, None, Some("NO_PAYMENT_LINK"))
    );
    let paid = Notification {
        provider_key: owed.provider_key,
        outcome: Outcome::Approved,
        amount: owed.amount,
        notified_at: T0 + 48 * 3600,
    };
    for provider in Provider::ALL {
        assert!(matches!(
            apply(store.as_ref(), provider, &paid, T0 + 48 * 3600).await,
            Err(Error::ChargeNotFound)
        ));
    }
    assert_eq!(p.arrears(a).await.unwrap().total, owed.amount);
    ledger_balances(&p).await;
}
