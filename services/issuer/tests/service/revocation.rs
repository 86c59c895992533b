//! The real revocation check: a follower of a real revocation service (PostgreSQL log,
//! Redis stream) on loopback. Revoked subjects and devices get nothing until
//! reinstated, and issuance fails closed on stale revocation data.

use std::sync::Arc;
use std::time::Duration;

use citypass_proto::v1::AssuranceLevel;
use citypass_token::DeviceKey;
use tonic::Code;

use crate::support::{Harness, certificate_request, expect_code, token_request};

mod revocation_service {
    use std::sync::Arc;
    use std::time::Duration;

    use citypass_proto::v1::revocation_service_client::RevocationServiceClient;
    use citypass_proto::v1::{self as pb, ReinstateRequest, RevokeRequest};
    use citypass_revocation_service::{
        Certificate, CertificateDirectory, DirectoryError, PostgresLog, RedisPublisher, Registry,
        RevocationApi, Settings, SnapshotKeySigner,
    };
    use citypass_runtime::{Deadline, Server, ServerConfig};
    use citypass_testkit::tls::{As, TestPki};
    use citypass_token::{SnapshotKey, SystemRandom};
    use futures::future::BoxFuture;
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;
    use tonic::transport::Channel;

    struct NoCertificates;

    impl CertificateDirectory for NoCertificates {
        fn live_certificates<'a>(
            &'a self,
            _owner: citypass_revocation_service::Owner<'a>,
            _deadline: Option<Deadline>,
        ) -> BoxFuture<'a, Result<Vec<Certificate>, DirectoryError>> {
            Box::pin(std::future::ready(Ok(Vec::new())))
        }
    }

    /// The revocation service over TLS with its real table: `client` is an operator
    /// (revoker), `issuer_tls` the issuer's identity for following it.
    pub struct Running {
        pub url: String,
        pub stream_key: String,
        pub database_url: String,
        pub client: RevocationServiceClient<Channel>,
        pub issuer_tls: Arc<citypass_runtime::Tls>,
        _stop: oneshot::Sender<()>,
    }

    pub async fn start() -> Running {
        let (pool, database_url) = citypass_testkit::fresh_database().await;
        pool.close().await;
        let log = Arc::new(PostgresLog::connect(&database_url, 4).await.unwrap());
        let stream_key = citypass_testkit::unique("citypass:test:issuer-revocation:");
        let publisher = RedisPublisher::connect(
            &citypass_testkit::redis_url(),
            stream_key.clone(),
            10_000,
            Duration::from_millis(500),
        )
        .await
        .expect("the test Redis answers");
        let snapshot_key = SnapshotKey::generate(true, &SystemRandom::new()).unwrap();
        let settings = Settings {
            poll_interval: Duration::from_millis(50),
            heartbeat_interval: Duration::from_millis(200),
            stale_after: Duration::from_secs(1),
            cascade_sweep_delay: Duration::ZERO,
            ..Settings::default()
        };
        let revocations = Registry::new(
            settings,
            log,
            Arc::new(publisher),
            Arc::new(NoCertificates),
            Arc::new(SnapshotKeySigner::from_key(snapshot_key)),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let pki = TestPki::new("revocation");
        tokio::spawn(
            Server::new(ServerConfig::new("revocation-test"))
                .tls(pki.server.clone())
                .add_service(
                    RevocationApi::new(Arc::new(revocations)).into_server(),
                    &citypass_revocation_service::AUTHORIZATION,
                )
                .serve(listener, async {
                    let _ = stopped.await;
                }),
        );
        let url = format!("https://{addr}");
        let client = RevocationServiceClient::new(
            pki.channel(addr, &As::Operator(&[citypass_runtime::Role::Revoker])),
        );
        Running {
            url,
            stream_key,
            database_url,
            client,
            issuer_tls: pki.client(&As::Service("issuer")),
            _stop: stop,
        }
    }

    impl Running {
        /// Revokes (kind 2: device, 3: subject); returns the epoch.
        pub async fn revoke(&mut self, kind: pb::TargetKind, id: &str) -> u64 {
            self.client
                .revoke(RevokeRequest {
                    target_kind: kind as i32,
                    target_id: id.to_owned(),
                    reason: pb::RevocationReason::Fraud as i32,
                    ..Default::default()
                })
                .await
                .expect("Revoke")
                .into_inner()
                .entry
                .unwrap()
                .epoch
        }

        pub async fn reinstate(&mut self, kind: pb::TargetKind, id: &str) -> u64 {
            self.client
                .reinstate(ReinstateRequest {
                    target_kind: kind as i32,
                    target_id: id.to_owned(),
                    reason: pb::ReinstateReason::ErrorCorrected as i32,
                    note: String::new(),
                })
                .await
                .expect("Reinstate")
                .into_inner()
                .entry
                .unwrap()
                .epoch
        }

        /// Takes the log's database away (`false`: connections ended, database renamed,
        /// so reconnecting fails as for a dropped one) or brings it back (`true`).
        pub async fn set_database_available(&self, available: bool) {
            citypass_testkit::set_database_available(&self.database_url, available).await;
        }
    }
}

/// Waits until the view has applied `epoch`.
async fn follower_reaches(view: &citypass_issuer::RevocationView, epoch: u64) {
    tokio::time::timeout(Duration::from_secs(10), view.wait_for_epoch(epoch))
        .await
        .unwrap_or_else(|_| panic!("the follower did not reach epoch {epoch}: {view:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_subjects_and_devices_get_nothing_until_reinstated() {
    use citypass_proto::v1::TargetKind;
    let mut revocation = revocation_service::start().await;
    let settings = citypass_issuer::RevocationSettings {
        service: citypass_runtime::UpstreamConfig::new(revocation.url.clone()),
        follow: citypass_issuer::FollowMode::Redis,
        redis: Some(citypass_runtime::config::RedisConfig::new(
            citypass_testkit::redis_url(),
        )),
        stream_key: revocation.stream_key.clone(),
        ..citypass_issuer::RevocationSettings::default()
    };
    let check =
        citypass_issuer::FollowerCheck::start(&settings, None, Some(&revocation.issuer_tls), None)
            .expect("follower");
    let view = check.view().clone();
    let mut h = Harness::start_with(Arc::new(check)).await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    let other = h.citizen(AssuranceLevel::RealNameVerified);
    tokio::time::timeout(Duration::from_secs(10), view.wait_synced())
        .await
        .expect("the follower syncs");
    h.issue(token_request(&citizen, &[]))
        .await
        .expect("not revoked: issued");

    let epoch = revocation
        .revoke(TargetKind::Subject, &citizen.subject_id)
        .await;
    follower_reaches(&view, epoch).await;
    let status = expect_code(
        h.issue(token_request(&citizen, &[])).await,
        Code::PermissionDenied,
        "revoked subject",
    );
    assert_eq!(status.message(), "subject is revoked");
    let offline = DeviceKey::generate(&h.rng).unwrap();
    expect_code(
        h.certify(certificate_request(
            &citizen,
            offline.public_key().as_bytes(),
            None,
        ))
        .await,
        Code::PermissionDenied,
        "certificate for a revoked subject",
    );
    h.issue(token_request(&other, &[]))
        .await
        .expect("others still get codes");

    let epoch = revocation
        .reinstate(TargetKind::Subject, &citizen.subject_id)
        .await;
    follower_reaches(&view, epoch).await;
    h.issue(token_request(&citizen, &[]))
        .await
        .expect("reinstated: issued again");

    let epoch = revocation
        .revoke(TargetKind::Device, &citizen.device_id)
        .await;
    follower_reaches(&view, epoch).await;
    let status = expect_code(
        h.issue(token_request(&citizen, &[])).await,
        Code::PermissionDenied,
        "revoked device",
    );
    assert_eq!(status.message(), "device is revoked");
    let epoch = revocation
        .reinstate(TargetKind::Device, &citizen.device_id)
        .await;
    follower_reaches(&view, epoch).await;
    h.issue(token_request(&citizen, &[]))
        .await
        .expect("device reinstated: issued again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_fails_closed_on_stale_revocation_data() {
    use citypass_proto::v1::TargetKind;

    // Never synced (nothing answers there): UNAVAILABLE, not "not revoked".
    let unreachable =
        citypass_issuer::FollowerCheck::watch("http://127.0.0.1:9", None, Duration::from_secs(2))
            .expect("follower");
    let mut h = Harness::start_with(Arc::new(unreachable)).await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    let status = expect_code(
        h.issue(token_request(&citizen, &[])).await,
        Code::Unavailable,
        "never synced",
    );
    assert!(!status.message().contains("revocation data"), "{status:?}");

    // A follower of Watch whose log goes away: once its data is older than max_age,
    // issuance stops; a subject it already knows revoked stays PERMISSION_DENIED.
    let mut revocation = revocation_service::start().await;
    let check = citypass_issuer::FollowerCheck::watch(
        &revocation.url,
        Some(&revocation.issuer_tls),
        Duration::from_secs(2),
    )
    .unwrap();
    let view = check.view().clone();
    let mut h = Harness::start_with(Arc::new(check)).await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    let revoked = h.citizen(AssuranceLevel::RealNameVerified);
    let epoch = revocation
        .revoke(TargetKind::Subject, &revoked.subject_id)
        .await;
    follower_reaches(&view, epoch).await;
    h.issue(token_request(&citizen, &[]))
        .await
        .expect("fresh data: issued");

    revocation.set_database_available(false).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match h.issue(token_request(&citizen, &[])).await {
            Ok(_) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "still issuing on data {:?} old",
                    view.age()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                break;
            }
        }
    }
    assert!(view.age().unwrap() > Duration::from_secs(2));
    expect_code(
        h.issue(token_request(&revoked, &[])).await,
        Code::PermissionDenied,
        "known revoked, even on stale data",
    );

    revocation.set_database_available(true).await;
    tokio::time::timeout(
        Duration::from_secs(15),
        view.wait_fresh(Duration::from_millis(500)),
    )
    .await
    .expect("the follower is fresh again");
    h.issue(token_request(&citizen, &[]))
        .await
        .expect("fresh again: issued");
}
