//! The outbox worker against the sandbox provider: each charge sent and captured once,
//! through a timeout after success, a worker killed between sending and recording,
//! declines (arrears), and a void racing the worker; the ledger's captures equal what
//! the provider charged.

use std::sync::Arc;

use citypass_payments::charge::{ChargeKey, ChargeStatus};
use citypass_payments::link::Provider;
use citypass_payments::outbox::{OutboxStatus, Settlement};
use citypass_payments::payments::{LinkRequest, Tapped};
use citypass_payments::provider::{
    ChargeRequest, Outcome, PaymentProvider, ProviderError, Sandbox, SandboxConfig,
};
use citypass_payments::tap::Refusal;
use citypass_payments::worker::{OutboxWorker, Pass};
use citypass_payments::{Error, Fen, Payments, PaymentsStore, TransitAccount};

use crate::support::{
    Faulty, T0, boarding, entry, exit, ledger_balances, linked, live_charges, payments, rider,
    tap_in, void,
};

/// The ledger balances, and its captures are exactly what the sandbox charged.
async fn ledger_matches(p: &Payments, sandbox: &Sandbox) {
    ledger_balances(p).await;
    let (report, _) = p.check_ledger().await.unwrap();
    let charged: i128 = sandbox
        .approved()
        .iter()
        .map(|(_, amount)| i128::from(amount.get()))
        .sum();
    assert_eq!(report.captured, charged);
    assert_eq!(-report.providers, charged);
    assert_eq!(report.succeeded_charges, sandbox.approved().len() as u64);
}

/// Three priced trips of rider 1: 5 yuan, a bus at 1 (a change: 1 yuan off the 2) and
/// 3 yuan (no second discount in the chain).
async fn three_trips(p: &Payments) -> TransitAccount {
    let a = linked(p, 1).await;
    tap_in(p, entry(a, "g-in", "s1", "pingguoyuan", T0)).await;
    p.tap_out(exit(a, "g-out", "s2", "xidan", T0 + 1800))
        .await
        .unwrap();
    tap_in(p, boarding(a, "bus", "s3", "52", T0 + 7200)).await;
    tap_in(p, entry(a, "g-in", "s4", "xidan", T0 + 12_000)).await;
    p.tap_out(exit(a, "g-out", "s5", "wangfujing", T0 + 13_000))
        .await
        .unwrap();
    a
}

pub(crate) async fn the_worker_sends_each_charge_once(store: Arc<dyn PaymentsStore>) {
    let p = payments(store.clone());
    let a = three_trips(&p).await;
    let sandbox = Arc::new(Sandbox::default());
    let worker = OutboxWorker::new(store.clone(), sandbox.clone());
    let pass = worker.run_once(T0 + 14_000).await.unwrap();
    assert_eq!(
        pass,
        Pass {
            approved: 3,
            declined: 0,
            retrying: 0,
            failed: 0,
        }
    );
    assert!(
        live_charges(&p, a)
            .await
            .iter()
            .all(|c| c.status == ChargeStatus::Succeeded)
    );
    assert!(
        store
            .outbox(10)
            .await
            .unwrap()
            .iter()
            .all(|m| m.status == OutboxStatus::Done)
    );
    // Nothing left to send: no more calls.
    assert_eq!(worker.run_once(T0 + 14_100).await.unwrap(), Pass::default());
    assert_eq!(sandbox.calls(), 3);
    ledger_matches(&p, &sandbox).await;
    assert_eq!(
        sandbox.approved().iter().map(|(_, f)| f.get()).sum::<u64>(),
        900
    );
}

pub(crate) async fn a_timeout_after_success_is_retried_with_the_same_key(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store.clone());
    let a = three_trips(&p).await;
    let sandbox = Arc::new(Sandbox::new(SandboxConfig {
        timeouts_after_success: 2,
        ..SandboxConfig::default()
    }));
    let worker = OutboxWorker::new(store.clone(), sandbox.clone());
    for round in 0..2 {
        // The second pass after the first one's backoff (2 s).
        let pass = worker.run_once(T0 + 14_000 + round * 10).await.unwrap();
        assert_eq!(pass.retrying, 3);
        assert!(
            live_charges(&p, a)
                .await
                .iter()
                .all(|c| c.status == ChargeStatus::Retrying)
        );
        // Not yet captured: the ledger still balances, without captures.
        let (report, verdict) = p.check_ledger().await.unwrap();
        assert_eq!((verdict, report.captured), (Ok(()), 0));
    }
    assert_eq!(worker.run_once(T0 + 14_200).await.unwrap().approved, 3);
    assert_eq!(
        sandbox.calls(),
        9,
        "three calls per key, all with the same key"
    );
    assert_eq!(sandbox.approved().len(), 3, "charged once each");
    ledger_matches(&p, &sandbox).await;
}

/// A provider that charges and then the worker "dies": the call never returns.
struct DiesAfterSending(Arc<Sandbox>);

impl PaymentProvider for DiesAfterSending {
    fn charge(
        &self,
        request: ChargeRequest,
    ) -> futures::future::BoxFuture<'_, Result<Outcome, ProviderError>> {
        Box::pin(async move {
            let _ = self.0.charge(request).await;
            std::future::pending().await
        })
    }
}

pub(crate) async fn a_worker_killed_mid_batch_is_resumed_without_a_double_charge(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store.clone());
    three_trips(&p).await;
    let sandbox = Arc::new(Sandbox::default());
    let dying = OutboxWorker::new(store.clone(), Arc::new(DiesAfterSending(sandbox.clone())));
    // The worker sends the first charge and is killed before recording the answer.
    let killed = tokio::spawn(async move { dying.run_once(T0 + 14_000).await });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while sandbox.calls() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first charge was never sent"
        );
        tokio::task::yield_now().await;
    }
    killed.abort();
    assert!(killed.await.unwrap_err().is_cancelled());
    let outbox = store.outbox(10).await.unwrap();
    assert_eq!(
        outbox[0].status,
        OutboxStatus::Dispatched,
        "sent, not recorded"
    );
    assert_eq!(outbox[1].status, OutboxStatus::Pending);

    // A new worker finishes the batch: the first key again (the provider answers what
    // it decided), the others for the first time.
    let fresh = OutboxWorker::new(store.clone(), sandbox.clone());
    // Once the dead worker's claim has lapsed.
    let after_lease = T0 + 14_000 + citypass_payments::outbox::CLAIM_LEASE_S;
    assert_eq!(fresh.run_once(after_lease).await.unwrap().approved, 3);
    assert_eq!(sandbox.calls(), 4);
    assert_eq!(sandbox.approved().len(), 3);
    ledger_matches(&p, &sandbox).await;
}

pub(crate) async fn a_declined_charge_is_arrears_and_blocks_entry(store: Arc<dyn PaymentsStore>) {
    let p = payments(store.clone());
    let a = rider(4);
    p.link(
        LinkRequest {
            account: a,
            provider: Provider::WechatPay,
            token: "decline-agreement-77",
            last4: "0007",
            consent_version: "2026-01",
            consented_at: T0 - 10,
        },
        T0 - 5,
    )
    .await
    .unwrap();
    tap_in(&p, boarding(a, "bus", "s1", "944", T0)).await;
    let sandbox = Arc::new(Sandbox::default());
    let pass = OutboxWorker::new(store.clone(), sandbox.clone())
        .run_once(T0 + 60)
        .await
        .unwrap();
    assert_eq!(pass.declined, 1);
    let arrears = p.arrears(a).await.unwrap();
    assert_eq!(arrears.total, Fen::new(300));
    assert_eq!(
        arrears.charges[0].decline_code.as_deref(),
        Some("INSUFFICIENT_FUNDS")
    );
    assert_eq!(
        p.tap_in(entry(a, "g-in", "s2", "xidan", T0 + 120))
            .await
            .unwrap(),
        Tapped::Refused(Refusal::Arrears)
    );
    ledger_matches(&p, &sandbox).await;
    assert_eq!(
        ledger_balances(&p).await,
        300,
        "the operator is still owed the fare"
    );
}

pub(crate) async fn a_sent_charge_cannot_be_voided(store: Arc<dyn PaymentsStore>) {
    let p = payments(store.clone());
    let a = linked(&p, 1).await;
    let bus = tap_in(&p, boarding(a, "bus", "s1", "944", T0)).await;
    let key = ChargeKey::of(&bus);
    assert!(store.dispatch(key).await.unwrap(), "the worker takes it");
    assert!(matches!(
        p.void(void(a, "bus", "s1", T0 + 2)).await,
        Err(Error::VoidTooLate(_))
    ));
    assert_eq!(live_charges(&p, a).await.len(), 1);
    // And a cancelled one is never sent.
    let other = tap_in(&p, boarding(a, "bus", "s2", "52", T0 + 600)).await;
    p.void(void(a, "bus", "s2", T0 + 603)).await.unwrap();
    assert!(!store.dispatch(ChargeKey::of(&other)).await.unwrap());
    let sandbox = Arc::new(Sandbox::default());
    OutboxWorker::new(store.clone(), sandbox.clone())
        .run_once(T0 + 700)
        .await
        .unwrap();
    assert_eq!(sandbox.approved(), vec![(key, Fen::new(300))]);
    ledger_matches(&p, &sandbox).await;
}

pub(crate) async fn arrears_are_repaid_through_the_outbox(store: Arc<dyn PaymentsStore>) {
    let p = payments(store.clone());
    let a = rider(5);
    let declining = |token| LinkRequest {
        account: a,
        provider: Provider::Alipay,
        token,
        last4: "0005",
        consent_version: "2026-01",
        consented_at: T0 - 10,
    };
    assert!(matches!(
        p.repay_arrears(a, "req-1", T0).await,
        Err(Error::NoPaymentLink)
    ));
    p.link(declining("decline-agreement-5"), T0 - 5)
        .await
        .unwrap();
    assert!(matches!(
        p.repay_arrears(a, "req-1", T0).await,
        Err(Error::NothingOwed)
    ));
    tap_in(&p, boarding(a, "bus", "s1", "944", T0)).await;
    let sandbox = Arc::new(Sandbox::default());
    let worker = OutboxWorker::new(store.clone(), sandbox.clone());
    assert_eq!(worker.run_once(T0 + 60).await.unwrap().declined, 1);
    assert_eq!(
        p.tap_in(entry(a, "g-in", "s2", "xidan", T0 + 120))
            .await
            .unwrap(),
        Tapped::Refused(Refusal::Arrears)
    );

    // The rider links another account and repays: the charge is sent again under a new
    // provider key, and the rider may ride at once.
    p.unlink(a, T0 + 200).await.unwrap();
    p.link(declining("agr_alipay_91c2e0"), T0 + 210)
        .await
        .unwrap();
    let repaid = p.repay_arrears(a, "req-2", T0 + 220).await.unwrap();
    assert_eq!(repaid.len(), 1);
    let charge = &repaid[0];
    assert_eq!(charge.status, ChargeStatus::Pending);
    assert_eq!(
        charge.provider_key,
        ChargeKey::repayment(charge.key, "req-2")
    );
    assert_ne!(charge.provider_key, charge.key);
    assert!(
        matches!(
            p.repay_arrears(a, "req-2", T0 + 221).await,
            Err(Error::NothingOwed)
        ),
        "a retry sends nothing more"
    );
    assert_eq!(p.arrears(a).await.unwrap().total, Fen::ZERO);
    assert!(matches!(
        p.tap_in(entry(a, "g-in", "s3", "xidan", T0 + 230))
            .await
            .unwrap(),
        Tapped::Trip(_)
    ));
    assert_eq!(worker.run_once(T0 + 240).await.unwrap().approved, 1);
    let charges = p.store().charges(a).await.unwrap();
    assert_eq!(charges.len(), 1, "one charge for the trip, sent twice");
    assert_eq!(charges[0].status, ChargeStatus::Succeeded);
    assert_eq!(
        sandbox.approved(),
        vec![(charge.provider_key, Fen::new(300))]
    );
    ledger_matches(&p, &sandbox).await;
    assert_eq!(ledger_balances(&p).await, 300);
}

/// A void racing the worker's dispatch, many rounds: either the void cancels first
/// (and dispatch then finds nothing to send) or the dispatch comes first (and the void
/// answers VOID_TOO_LATE); never a charge both sent and cancelled.
pub(crate) async fn a_void_racing_dispatch_never_cancels_a_sent_charge(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store.clone());
    let mut sent_and_cancelled = Vec::new();
    let (mut voided, mut dispatched) = (0usize, 0usize);
    for round in 0..120u8 {
        let a = linked(&p, round + 1).await;
        let scan = format!("s{round}");
        let bus = tap_in(&p, boarding(a, "bus", &scan, "944", T0)).await;
        let key = ChargeKey::of(&bus);
        let results = crate::support::race(2, |i| {
            let (store, p, scan) = (store.clone(), p.clone(), scan.clone());
            async move {
                if i == 0 {
                    // The worker: dispatch, then (if it got the row) the provider is called.
                    (Some(store.dispatch(key).await.unwrap()), None)
                } else {
                    (None, Some(p.void(void(a, "bus", &scan, T0 + 2)).await))
                }
            }
        })
        .await;
        let sent = results[0].0 == Some(true);
        let void_result = results[1].1.as_ref().expect("the void's result");
        match void_result {
            Ok(_) => voided += 1,
            Err(Error::VoidTooLate(_)) => {}
            Err(other) => panic!("round {round}: unexpected void error {other:?}"),
        }
        dispatched += usize::from(sent);
        let charge = store
            .charges(a)
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.key == key)
            .expect("the charge");
        if sent && charge.status == ChargeStatus::Cancelled {
            sent_and_cancelled.push(round);
        }
        // Exactly one of the two won.
        assert_eq!(
            sent,
            void_result.is_err(),
            "round {round}: dispatched {sent}, void {void_result:?}"
        );
    }
    assert!(
        sent_and_cancelled.is_empty(),
        "rounds where a sent charge was cancelled: {sent_and_cancelled:?} \
         ({voided} voids won, {dispatched} dispatches won)"
    );
    ledger_balances(&p).await;
}

/// A provider that never answers for one provider key (a hung connection) and
/// delegates the rest.
struct Hangs {
    key: ChargeKey,
    rest: Arc<Sandbox>,
}

impl PaymentProvider for Hangs {
    fn charge(
        &self,
        request: ChargeRequest,
    ) -> futures::future::BoxFuture<'_, Result<Outcome, ProviderError>> {
        if request.key == self.key {
            Box::pin(std::future::pending())
        } else {
            self.rest.charge(request)
        }
    }
}

/// A provider that does not answer in time is no answer: the charge is RETRYING and
/// the pass goes on to the other rows; the next pass sends it with the same key.
pub(crate) async fn a_provider_that_never_answers_is_retried_and_the_pass_goes_on(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store.clone());
    let a = three_trips(&p).await;
    let first = live_charges(&p, a).await;
    let hung = first.iter().map(|c| c.key).min().unwrap();
    let sandbox = Arc::new(Sandbox::default());
    let worker = OutboxWorker::new(
        store.clone(),
        Arc::new(Hangs {
            key: hung,
            rest: sandbox.clone(),
        }),
    )
    .with_call_timeout(std::time::Duration::from_millis(200));
    // A generous deadline so that the old worker (no timeout) fails instead of hanging.
    let pass = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        worker.run_once(T0 + 14_000),
    )
    .await
    .expect("the pass ends although the provider never answers")
    .unwrap();
    assert_eq!((pass.approved, pass.retrying, pass.failed), (2, 1, 0));
    let charges = live_charges(&p, a).await;
    let status = |key| charges.iter().find(|c| c.key == key).unwrap().status;
    assert_eq!(status(hung), ChargeStatus::Retrying);
    let pass = OutboxWorker::new(store.clone(), sandbox.clone())
        .run_once(T0 + 14_100)
        .await
        .unwrap();
    assert_eq!(pass.approved, 1);
    ledger_matches(&p, &sandbox).await;
}

/// One row whose settlement fails is skipped and counted; the rest of the batch is
/// sent, and the row is sent again (same key, one charge) once its store recovers.
pub(crate) async fn one_failing_row_does_not_stop_the_pass(store: Arc<dyn PaymentsStore>) {
    let p = payments(store.clone());
    let a = three_trips(&p).await;
    let bad = live_charges(&p, a)
        .await
        .iter()
        .map(|c| c.key)
        .min()
        .unwrap();
    let sandbox = Arc::new(Sandbox::default());
    let failing: Arc<dyn PaymentsStore> = Arc::new(Faulty {
        settle: Some(bad),
        rider: None,
        inner: store.clone(),
    });
    let pass = OutboxWorker::new(failing, sandbox.clone())
        .run_once(T0 + 14_000)
        .await
        .expect("a row's own error does not fail the pass");
    assert_eq!((pass.approved, pass.failed), (3, 1), "{pass:?}");
    let charges = live_charges(&p, a).await;
    assert_eq!(
        charges
            .iter()
            .filter(|c| c.status == ChargeStatus::Succeeded)
            .count(),
        2
    );
    let pass = OutboxWorker::new(store.clone(), sandbox.clone())
        // The failed row's claim lapses first.
        .run_once(T0 + 14_000 + citypass_payments::outbox::CLAIM_LEASE_S)
        .await
        .unwrap();
    assert_eq!((pass.approved, pass.failed), (1, 0));
    assert_eq!(sandbox.approved().len(), 3, "the bad row charged once");
    ledger_matches(&p, &sandbox).await;
}

/// A provider that is unavailable for some keys and delegates the rest.
struct FailsFor {
    keys: Vec<ChargeKey>,
    rest: Arc<Sandbox>,
}

impl PaymentProvider for FailsFor {
    fn charge(
        &self,
        request: ChargeRequest,
    ) -> futures::future::BoxFuture<'_, Result<Outcome, ProviderError>> {
        if self.keys.contains(&request.key) {
            Box::pin(async { Err(ProviderError::Unavailable) })
        } else {
            self.rest.charge(request)
        }
    }
}

/// A row sent without an answer waits a backoff that grows with its attempts (2 s,
/// 4 s, ...) before it is taken again, and rows are taken by when they are due, so
/// rows that keep failing do not hold back newer ones.
pub(crate) async fn unanswered_rows_back_off_and_newer_rows_go_first(
    store: Arc<dyn PaymentsStore>,
) {
    let p = payments(store.clone());
    let a = three_trips(&p).await;
    let mut keys: Vec<ChargeKey> = live_charges(&p, a).await.iter().map(|c| c.key).collect();
    keys.sort();
    let failing = keys[..2].to_vec();
    let sandbox = Arc::new(Sandbox::default());
    let worker = OutboxWorker::new(
        store.clone(),
        Arc::new(FailsFor {
            keys: failing.clone(),
            rest: sandbox.clone(),
        }),
    );
    let t = T0 + 14_000;
    let pass = worker.run_once(t).await.unwrap();
    assert_eq!((pass.approved, pass.retrying), (1, 2));
    let backoffs = |outbox: Vec<citypass_payments::outbox::OutboxMessage>| {
        let mut rows: Vec<_> = outbox
            .into_iter()
            .filter(|m| failing.contains(&m.charge))
            .map(|m| (m.attempts, m.next_attempt_at))
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(
        backoffs(store.outbox(10).await.unwrap()),
        vec![(1, t + 2), (1, t + 2)]
    );
    // Within the backoff: the failing rows are not taken, a new charge is.
    assert_eq!(worker.run_once(t + 1).await.unwrap(), Pass::default());
    tap_in(&p, boarding(a, "bus", "s9", "944", t + 1)).await;
    let pass = worker.run_once(t + 1).await.unwrap();
    assert_eq!((pass.approved, pass.retrying), (1, 0));
    // Due again: sent again, and the next wait is longer.
    let pass = worker.run_once(t + 2).await.unwrap();
    assert_eq!((pass.approved, pass.retrying), (0, 2));
    assert_eq!(
        backoffs(store.outbox(10).await.unwrap()),
        vec![(2, t + 6), (2, t + 6)]
    );
    ledger_matches(&p, &sandbox).await;
}

/// Two sends of one key answered differently (another worker's call approved after
/// this one's was declined): the approval wins, since the provider charged; the rider
/// owes nothing and the ledger captures it once. A decline after an approval changes
/// nothing.
pub(crate) async fn a_later_approval_overrides_a_decline(store: Arc<dyn PaymentsStore>) {
    let p = payments(store.clone());
    let a = linked(&p, 1).await;
    let bus = tap_in(&p, boarding(a, "bus", "s1", "944", T0)).await;
    let key = ChargeKey::of(&bus);
    assert!(store.dispatch(key).await.unwrap());
    let declined = store
        .settle(
            key,
            Settlement::Declined {
                code: "insufficient_funds".to_owned(),
            },
            T0 + 10,
        )
        .await
        .unwrap();
    assert_eq!(declined.status, ChargeStatus::Declined);
    assert_eq!(p.arrears(a).await.unwrap().total, Fen::new(300));
    let approved = store
        .settle(key, Settlement::Approved, T0 + 11)
        .await
        .unwrap();
    assert_eq!(
        (approved.status, approved.decline_code),
        (ChargeStatus::Succeeded, None)
    );
    assert_eq!(p.arrears(a).await.unwrap().total, Fen::ZERO);
    let again = store
        .settle(
            key,
            Settlement::Declined {
                code: "late".to_owned(),
            },
            T0 + 12,
        )
        .await
        .unwrap();
    assert_eq!(again.status, ChargeStatus::Succeeded);
    assert_eq!(
        store
            .settle(key, Settlement::Approved, T0 + 13)
            .await
            .unwrap()
            .status,
        ChargeStatus::Succeeded
    );
    ledger_balances(&p).await;
    let (report, _) = p.check_ledger().await.unwrap();
    assert_eq!((report.capture_postings, report.captured), (1, 300));
}

/// A worker claims the rows it takes for a lease: a second worker asking at the same
/// time, or before the lease ends, gets none of them (each row to one worker); a
/// settled row's claim is released; a dead worker's claim lapses.
pub(crate) async fn rows_are_claimed_by_one_worker_at_a_time(store: Arc<dyn PaymentsStore>) {
    let p = payments(store.clone());
    three_trips(&p).await;
    let now = T0 + 14_000;
    for round in 0..20u64 {
        let at = now + round * 10 * citypass_payments::outbox::CLAIM_LEASE_S;
        let taken = crate::support::race(2, |_| {
            let store = store.clone();
            async move { store.outbox_jobs(10, at).await.unwrap() }
        })
        .await;
        let mut keys: Vec<ChargeKey> = taken.iter().flatten().map(|j| j.charge.key).collect();
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(
            (n, keys.len()),
            (3, 3),
            "round {round}: each row to one worker"
        );
        assert!(
            store.outbox_jobs(10, at + 1).await.unwrap().is_empty(),
            "claimed"
        );
    }
    // Settled rows are released (and done); a lapsed claim is taken again.
    let at = now + 1000 * citypass_payments::outbox::CLAIM_LEASE_S;
    let jobs = store.outbox_jobs(10, at).await.unwrap();
    assert_eq!(jobs.len(), 3);
    let key = jobs[0].charge.key;
    assert!(store.dispatch(key).await.unwrap());
    store.settle(key, Settlement::Retry, at).await.unwrap();
    let released = store.outbox(10).await.unwrap();
    let row = released.iter().find(|m| m.charge == key).unwrap();
    assert_eq!(row.claimed_until, 0);
    let again = store.outbox_jobs(10, at + 2).await.unwrap();
    assert_eq!(
        again.iter().map(|j| j.charge.key).collect::<Vec<_>>(),
        vec![key]
    );
}
