//! Security finding 8 (PIPL), the revocation service's half: why an entry was written
//! (fraud, arrears…), who wrote it and the operator's note are for the operators who
//! answer for the log; the services that follow it and the gates get the minimal view,
//! which says only whether the target was revoked as compromised.

use std::sync::Arc;

use citypass_proto::v1::{
    ListRevocationsRequest, RevocationReason, RevokeRequest, WatchRevocationsRequest,
};
use citypass_revocation::TargetKind;
use citypass_revocation_service::{LocalPublisher, MemoryLog};
use citypass_runtime::Role;
use citypass_testkit::tls::As;

use crate::support::{FakeDirectory, dev_snapshot_key, revoke, serve, test_settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_8_followers_and_gates_see_no_reason_actor_or_note() {
    let running = serve(
        Arc::new(MemoryLog::new()),
        Arc::new(LocalPublisher::new(64)),
        Arc::new(FakeDirectory::default()),
        &dev_snapshot_key(),
        test_settings(),
    )
    .await;
    let mut operator = running.client.clone();
    operator
        .revoke(RevokeRequest {
            note: "arrears beyond grace".to_owned(),
            reason: RevocationReason::Arrears as i32,
            ..revoke(TargetKind::Token, &"ab".repeat(16))
        })
        .await
        .expect("revoked");

    let list = ListRevocationsRequest {
        since_epoch: 0,
        page_size: 0,
        page_token: String::new(),
    };
    // Operators who answer for the log see everything.
    for who in [
        As::Operator(&[Role::Auditor]),
        As::Operator(&[Role::Revoker]),
    ] {
        let page = running
            .client_as(&who)
            .list_revocations(list.clone())
            .await
            .expect("listed")
            .into_inner();
        assert_eq!(page.entries.len(), 1);
        assert_eq!(page.entries[0].actor, "operator:test-operator", "{who:?}");
        assert_eq!(page.entries[0].note, "arrears beyond grace", "{who:?}");
        assert_eq!(
            page.entries[0].revocation_reason(),
            RevocationReason::Arrears,
            "{who:?}"
        );
    }
    // Followers and gates get the entry without its audit fields.
    for who in [As::Service("issuer"), As::Service("verifier")] {
        let page = running
            .client_as(&who)
            .list_revocations(list.clone())
            .await
            .expect("listed")
            .into_inner();
        assert_eq!(page.entries.len(), 1, "{who:?}");
        assert_eq!(page.entries[0].epoch, 1);
        assert!(page.entries[0].actor.is_empty(), "{who:?}");
        assert!(page.entries[0].note.is_empty(), "{who:?}");
        assert_eq!(
            page.entries[0].revocation_reason(),
            RevocationReason::Unspecified,
            "{who:?}"
        );
        assert!(!page.entries[0].compromised);
        assert!(!page.entries[0].chain.is_empty(), "the chain hash stays");
    }
    for who in [As::Gate("metro-entry-1"), As::Service("issuer")] {
        let mut stream = running
            .client_as(&who)
            .watch_revocations(WatchRevocationsRequest { since_epoch: 0 })
            .await
            .expect("watching")
            .into_inner();
        let message = loop {
            let message = stream.message().await.expect("a message").expect("open");
            if !message.entries.is_empty() {
                break message;
            }
        };
        assert_eq!(message.entries[0].epoch, 1, "{who:?}");
        assert!(message.entries[0].actor.is_empty(), "{who:?}");
        assert!(message.entries[0].note.is_empty(), "{who:?}");
        assert_eq!(
            message.entries[0].revocation_reason(),
            RevocationReason::Unspecified,
            "{who:?}"
        );
    }
}
