//! The snapshot signer reads the issuer's key ring file: a dev ring is refused in
//! production, a rotation needs no restart, and a broken file is refused.

use std::time::Duration;

use citypass_revocation_service::KeyringSigner;
use citypass_token::SystemRandom;

use crate::support::{dev_ring, now};

#[test]
fn the_snapshot_signer_follows_the_key_ring_file() {
    let rng = SystemRandom::new();
    let mut ring = dev_ring();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), ring.to_json()).unwrap();
    assert!(
        KeyringSigner::from_file(file.path(), Duration::ZERO, true).is_err(),
        "production refuses a dev ring"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        use citypass_revocation_service::SnapshotSigner as _;
        let signer = KeyringSigner::from_file(file.path(), Duration::ZERO, false).unwrap();
        let first = ring.signing_kid();
        assert_eq!(signer.sign(vec![1]).unwrap().kid, first);
        let next = ring.rotate(now(), 3_600, &rng).unwrap();
        std::fs::write(file.path(), ring.to_json()).unwrap();
        let signed = signer.sign(vec![1]).unwrap();
        assert_eq!(signed.kid, next, "a rotation needs no restart");
        std::fs::write(file.path(), "{ half-written").unwrap();
        assert_eq!(
            signer.sign(vec![1]).unwrap().kid,
            next,
            "a broken file is refused"
        );
    });
}
