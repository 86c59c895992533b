//! The snapshot signer reads the snapshot key file, and nothing else: a dev key is
//! refused in production, a rotation needs no restart, a broken file is refused, and
//! the service runs without any code-signing or sealing key (security finding 4).

use std::time::Duration;

use citypass_proto::v1::GetRevocationSnapshotRequest;
use citypass_proto::v1::revocation_service_client::RevocationServiceClient;
use citypass_revocation::SignedSnapshot;
use citypass_revocation_service::{
    Config, SignerError, SnapshotKeySigner, SnapshotSigner as _, build,
};
use citypass_runtime::Environment;
use citypass_testkit::tls::{As, TestPki};
use citypass_token::{Kid, SnapshotKey, SystemRandom};

use crate::support::{dev_ring, dev_snapshot_key, now, published_keys};

#[test]
fn the_snapshot_signer_follows_the_snapshot_key_file() {
    let rng = SystemRandom::new();
    let first = dev_snapshot_key();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), first.to_json()).unwrap();
    assert!(
        matches!(
            SnapshotKeySigner::from_file(file.path(), Duration::ZERO, Environment::Production),
            Err(SignerError::DevKeysInProduction)
        ),
        "production refuses a dev key"
    );
    let ring = dev_ring();
    std::fs::write(file.path(), ring.to_json()).unwrap();
    assert!(
        matches!(
            SnapshotKeySigner::from_file(file.path(), Duration::ZERO, Environment::Dev),
            Err(SignerError::Invalid { .. })
        ),
        "a key ring is not a snapshot key"
    );
    std::fs::write(file.path(), first.to_json()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let signer =
            SnapshotKeySigner::from_file(file.path(), Duration::from_millis(20), Environment::Dev)
                .unwrap();
        assert_eq!(signer.sign(vec![1]).unwrap().kid, first.kid());
        let next = SnapshotKey::generate(true, &rng).unwrap();
        std::fs::write(file.path(), next.to_json()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while signer.sign(vec![1]).unwrap().kid != next.kid() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a rotation needs no restart: the reloader picks it up"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        std::fs::write(file.path(), "{ half-written").unwrap();
        assert_eq!(signer.reload_now().await, next.kid());
        assert_eq!(
            signer.sign(vec![1]).unwrap().kid,
            next.kid(),
            "a broken file is refused"
        );
    });
}

/// Security finding 9 (smaller findings): the signing path re-read the key file under
/// a std Mutex. Now a background task reads it on a blocking thread and publishes the
/// key; signing only takes the current key: it never sees the file, even a missing
/// one, and a rotation is picked up by the reloader alone.
#[test]
fn finding_9_the_snapshot_key_is_reloaded_off_the_signing_path() {
    let rng = SystemRandom::new();
    let first = dev_snapshot_key();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snapshot-key.json");
    std::fs::write(&path, first.to_json()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        // A reload interval of an hour: only `reload_now` reads the file here.
        let signer =
            SnapshotKeySigner::from_file(&path, Duration::from_secs(3600), Environment::Dev)
                .unwrap();
        let next = SnapshotKey::generate(true, &rng).unwrap();
        std::fs::write(&path, next.to_json()).unwrap();
        assert_eq!(
            signer.sign(vec![1]).unwrap().kid,
            first.kid(),
            "signing does not read the file"
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(signer.sign(vec![1]).unwrap().kid, first.kid());
        assert_eq!(
            signer.reload_now().await,
            first.kid(),
            "a missing file is refused; the key in service stays"
        );
        std::fs::write(&path, next.to_json()).unwrap();
        assert_eq!(
            signer.reload_now().await,
            next.kid(),
            "the rotation is picked up"
        );
        assert_eq!(signer.sign(vec![1]).unwrap().kid, next.kid());

        // The background reloader alone picks up the next rotation, with no signing in
        // between.
        let quick =
            SnapshotKeySigner::from_file(&path, Duration::from_millis(20), Environment::Dev)
                .unwrap();
        let third = SnapshotKey::generate(true, &rng).unwrap();
        std::fs::write(&path, third.to_json()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while quick.kid() != third.kid() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the reloader picks the rotation up"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(quick.sign(vec![1]).unwrap().kid, third.kid());
    });
}

/// Security finding 4: the revocation service read the issuer's whole key ring (every
/// code-signing seed and the subject-sealing key) only to sign snapshots. Now its
/// configuration has no key ring at all: it starts with nothing but a snapshot key
/// file, and the snapshots it signs verify with the issuer's published key set.
#[tokio::test]
async fn finding_4_the_revocation_service_runs_without_code_or_sealing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new("revocation");
    let tls = pki.server_files(&dir.path().join("tls"));
    let snapshot_key = dev_snapshot_key();
    let snapshot_key_path = dir.path().join("snapshot-key.json");
    std::fs::write(&snapshot_key_path, snapshot_key.to_json()).unwrap();

    // The whole configuration: no key ring is named, and none exists to be found.
    let yaml = format!(
        "environment: dev\nserver:\n  service_name: citypass-revocation\n  listen: 127.0.0.1:0\n  tls:\n    ca_file: {}\n    cert_file: {}\n    key_file: {}\nsnapshot_key:\n  path: {}\n",
        tls.ca_file.display(),
        tls.cert_file.display(),
        tls.key_file.display(),
        snapshot_key_path.display(),
    );
    let config_path = dir.path().join("revocation.yaml");
    std::fs::write(&config_path, &yaml).unwrap();
    let config: Config =
        citypass_runtime::config::load_file(&config_path).expect("the configuration loads");
    assert!(
        !std::path::Path::new("keys/dev/keyring.json").exists(),
        "no key ring where the old default looked"
    );
    // A key ring cannot even be configured.
    std::fs::write(
        &config_path,
        format!("{yaml}keyring:\n  path: /etc/citypass/keys/keyring.json\n"),
    )
    .unwrap();
    assert!(
        citypass_runtime::config::load_file::<Config>(&config_path).is_err(),
        "the service has no key ring setting"
    );

    let served =
        citypass_testkit::serve(build(config).await.expect("the service builds").server).await;
    let mut gate = RevocationServiceClient::new(pki.channel(served.addr, &As::Gate("metro-1")));
    let answer = gate
        .get_revocation_snapshot(GetRevocationSnapshotRequest { kinds: vec![] })
        .await
        .expect("a gate gets a snapshot")
        .into_inner();
    let signed = SignedSnapshot {
        bytes: answer.snapshot,
        signature: answer.signature,
        kid: Kid::from_slice(&answer.kid).unwrap(),
    };
    assert_eq!(signed.kid, snapshot_key.kid(), "signed by the snapshot key");
    let ring = dev_ring();
    assert_ne!(signed.kid, ring.signing_kid());
    let keys = published_keys(&ring, &snapshot_key);
    let snapshot = signed
        .verify(&keys, now())
        .expect("the snapshot verifies with the published key set");
    assert_eq!(snapshot.epoch, 0);
    drop(served);
}
