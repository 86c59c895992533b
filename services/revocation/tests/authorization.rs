//! The revocation service's authorisation table, over real TLS, on the service as
//! `build` makes it: every RPC against every kind of caller, and the attack that
//! motivated the table (revoking the active signing key to stop every gate).

use std::net::SocketAddr;

use citypass_proto::v1::revocation_service_client::RevocationServiceClient;
use citypass_proto::v1::{ListRevocationsRequest, RevocationReason, RevokeRequest, TargetKind};
use citypass_revocation_service::{AUTHORIZATION, Config, build};
use citypass_runtime::Role;
use citypass_runtime::authz::REFUSED_BY;
use citypass_testkit::tls::{As, TestPki};
use citypass_testkit::{Served, serve};
use citypass_token::{Keyring, SnapshotKey, SystemRandom};
use tonic::Code;

struct Running {
    addr: SocketAddr,
    pki: TestPki,
    /// The issuer's ring, only to name its signing key: the service never sees it.
    ring: Keyring,
    _served: Served,
    _dir: tempfile::TempDir,
}

/// The service from a dev configuration with TLS files and a snapshot key file.
async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new("revocation");
    let rng = SystemRandom::new();
    let ring = Keyring::generate("citypass-test", true, &rng).unwrap();
    let snapshot_key_path = dir.path().join("snapshot-key.json");
    let snapshot_key = SnapshotKey::generate(true, &rng).unwrap();
    std::fs::write(&snapshot_key_path, snapshot_key.to_json()).unwrap();
    let mut config = Config::dev();
    config.server.tls = Some(pki.server_files(&dir.path().join("tls")));
    config.snapshot_key.path = snapshot_key_path;
    let served = serve(build(config).await.expect("the service builds").server).await;
    Running {
        addr: served.addr,
        pki,
        ring,
        _served: served,
        _dir: dir,
    }
}

impl Running {
    fn client(&self, who: &As) -> RevocationServiceClient<tonic::transport::Channel> {
        RevocationServiceClient::new(self.pki.channel(self.addr, who))
    }

    async fn head(&self) -> u64 {
        self.client(&As::Operator(&[Role::Auditor]))
            .list_revocations(ListRevocationsRequest::default())
            .await
            .expect("an auditor lists")
            .into_inner()
            .head_epoch
    }
}

#[tokio::test]
async fn every_rpc_answers_every_caller_as_the_table_says() {
    let running = start().await;
    citypass_testkit::authz::assert_table_holds(&running.pki, running.addr, &AUTHORIZATION).await;
    assert_eq!(running.head().await, 0, "no refused call wrote the log");
}

#[tokio::test]
async fn nobody_and_no_gate_can_revoke_the_signing_key() {
    let running = start().await;
    let kid = running.ring.signing_kid().to_hex();
    let request = || RevokeRequest {
        target_kind: TargetKind::Key as i32,
        target_id: kid.clone(),
        reason: RevocationReason::KeyCompromised as i32,
        ..RevokeRequest::default()
    };
    let refused = |who: As, code: Code| {
        let client = running.client(&who);
        let request = request();
        async move {
            let status = client.clone().revoke(request).await.expect_err("refused");
            assert_eq!(status.code(), code, "{who:?}: {status:?}");
        }
    };
    // No credential at all: the layer refuses before any handler or database work.
    refused(As::Nobody, Code::Unauthenticated).await;
    // A certificate from an impostor CA, and an expired operator certificate.
    refused(
        As::OtherCa(Box::new(As::Operator(&Role::ALL))),
        Code::Unauthenticated,
    )
    .await;
    refused(
        As::Expired(Box::new(As::Operator(&Role::ALL))),
        Code::Unauthenticated,
    )
    .await;
    // A gate, and the services that read the log: known, not allowed.
    refused(As::Gate("metro-entry-1"), Code::PermissionDenied).await;
    refused(As::Service("issuer"), Code::PermissionDenied).await;
    refused(As::Service("payments"), Code::PermissionDenied).await;
    // A revoker without key-admin: the layer admits revokers, the handler wants
    // key-admin for a key before doing anything.
    let status = running
        .client(&As::Operator(&[Role::Revoker]))
        .revoke(request())
        .await
        .expect_err("a key needs key-admin");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.metadata().get(REFUSED_BY).is_none(),
        "the handler refused"
    );
    assert_eq!(running.head().await, 0, "the log is unchanged");

    // A key administrator may, and is recorded as the actor.
    let entry = running
        .client(&As::Operator(&[Role::KeyAdmin]))
        .revoke(request())
        .await
        .expect("key-admin revokes a key")
        .into_inner()
        .entry
        .expect("an entry");
    assert_eq!(entry.actor, "operator:test-operator");
    assert_eq!(running.head().await, 1);
}
