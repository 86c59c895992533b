//! GetKeySet and key rotation: the published key info matches the JWKS, and codes made
//! before and after a rotation both verify.

use citypass_proto::v1::{AssuranceLevel, GetKeySetRequest};
use citypass_token::{KeyStatus, KeyUsage, Keyring, Kid, PublicKey, Validation, verify_online};

use crate::support::{Harness, now, token_request};

#[tokio::test]
async fn codes_from_before_and_after_a_rotation_both_verify() {
    let mut h = Harness::start().await;
    let citizen = h.citizen(AssuranceLevel::RealNameVerified);
    let before = h.issue(token_request(&citizen, &[])).await.unwrap();
    let kid1 = h.keys.current().signing_kid();

    // Rotate the in-memory ring (file rings: tests/keys.rs).
    let mut ring = Keyring::from_json(&h.ring_json).unwrap();
    let kid2 = ring.rotate(now(), 3_600, &h.rng).unwrap();
    assert_eq!(h.keys.replace(ring).unwrap(), kid2);

    let after = h.issue(token_request(&citizen, &[])).await.unwrap();
    let set = h.key_set().await;
    let v = Validation::at(now());
    assert_eq!(verify_online(&before.qr_text, &set, &v).unwrap().kid, kid1);
    assert_eq!(verify_online(&after.qr_text, &set, &v).unwrap().kid, kid2);
}

#[tokio::test]
async fn the_published_key_info_matches_the_jwks() {
    let mut h = Harness::start().await;
    let response = h
        .client
        .get_key_set(GetKeySetRequest {})
        .await
        .unwrap()
        .into_inner();
    let set = h.key_set().await;
    let info = &response.keys[0];
    let key = &set.keys()[0];
    assert_eq!(info.kid, key.kid().0.to_vec());
    assert_eq!(info.public_key, key.key.as_bytes());
    assert_eq!(info.status, citypass_proto::v1::KeyStatus::Active as i32);
    assert_eq!(
        info.algorithm,
        citypass_proto::v1::KeyAlgorithm::Ed25519 as i32
    );
    assert!(PublicKey::ed25519(&info.public_key).is_ok());
}

/// Security finding 4: the issuer publishes the revocation service's snapshot key
/// (from the public half its ring lists) with a usage of its own, beside the code
/// keys; the key set itself is signed by the code key.
#[tokio::test]
async fn finding_4_the_snapshot_key_is_published_with_its_own_usage() {
    let mut h = Harness::start().await;
    let response = h
        .client
        .get_key_set(GetKeySetRequest {})
        .await
        .unwrap()
        .into_inner();
    let set = h.key_set().await;
    let signing_kid = h.keys.current().signing_kid();
    assert_eq!(response.signing_kid, signing_kid.0.to_vec());
    assert_eq!(set.get(&signing_kid).unwrap().usage, KeyUsage::Code);
    let snapshot = set
        .get(&h.snapshot_kid)
        .expect("the snapshot key is published");
    assert_eq!(
        (snapshot.usage, snapshot.status),
        (KeyUsage::Snapshot, KeyStatus::Active)
    );
    let jwks = std::str::from_utf8(&response.jwks_json).unwrap();
    assert!(
        jwks.contains("\"usage\": \"revocation-snapshot\""),
        "{jwks}"
    );
    let usage_of = |kid: Kid| {
        response
            .keys
            .iter()
            .find(|k| k.kid == kid.0.to_vec())
            .expect("listed")
            .usage
    };
    assert_eq!(
        usage_of(h.snapshot_kid),
        citypass_proto::v1::KeyUsage::RevocationSnapshot as i32
    );
    assert_eq!(
        usage_of(signing_kid),
        citypass_proto::v1::KeyUsage::Code as i32
    );
}
