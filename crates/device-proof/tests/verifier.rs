//! Device proofs: every signed field matters, timestamps must be fresh, nonces single
//! use, and a request carrying fields the issuer does not know fails closed.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use citypass_device_proof::{
    ISSUE_DEVICE_CERTIFICATE, ISSUE_TOKEN, MemoryNonceStore, ProofError, body_sha256, sign_request,
    sign_request_with,
};
use citypass_device_proof::{PresentedProof, ProofVerifier};
use citypass_proto::time::system_timestamp as to_timestamp;
use citypass_proto::v1::{DeviceProof, IssueTokenRequest};
use citypass_token::{DeviceId, DeviceKey, RequestProof, SystemRandom, sha256};
use prost::Message;

const FRESHNESS: Duration = Duration::from_secs(30);
const DEVICE: DeviceId = DeviceId::from_bytes([0xd1; 16]);

fn verifier() -> ProofVerifier {
    ProofVerifier::new(FRESHNESS, Arc::new(MemoryNonceStore::new(1_000)))
}

fn device_key() -> DeviceKey {
    DeviceKey::generate(&SystemRandom::new()).expect("device key")
}

fn request() -> IssueTokenRequest {
    IssueTokenRequest {
        subject_id: "00112233445566778899aabbccddeeff".into(),
        device_id: DEVICE.to_string(),
        requested_scopes: vec![1, 2],
        want_svg: false,
        proof: None,
    }
}

fn present(verifier: &ProofVerifier, proof: DeviceProof) -> PresentedProof {
    verifier
        .presented(Some(proof.into()), SystemTime::now())
        .expect("well-formed and fresh")
}

async fn check(
    verifier: &ProofVerifier,
    proof: DeviceProof,
    method: &str,
    request: &IssueTokenRequest,
    key: &DeviceKey,
) -> Result<(), ProofError> {
    let presented = verifier.presented(Some(proof.into()), SystemTime::now())?;
    verifier
        .authenticate(
            &presented,
            method,
            &body_sha256(request),
            &DEVICE,
            key.public_key(),
        )
        .await
}

#[tokio::test]
async fn a_genuine_proof_passes_once() {
    let verifier = verifier();
    let key = device_key();
    let request = request();
    let proof = sign_request(ISSUE_TOKEN, &request, &key).unwrap();
    check(&verifier, proof.clone(), ISSUE_TOKEN, &request, &key)
        .await
        .expect("genuine");
    assert!(matches!(
        check(&verifier, proof, ISSUE_TOKEN, &request, &key).await,
        Err(ProofError::Reused)
    ));
}

#[tokio::test]
async fn every_signed_field_is_covered() {
    let verifier = verifier();
    let key = device_key();
    let request = request();
    let now = SystemTime::now();
    let nonce = [7u8; 16];
    let genuine = sign_request_with(ISSUE_TOKEN, &request, &key, now, &nonce).unwrap();

    // Another method path.
    assert!(matches!(
        check(
            &verifier,
            genuine.clone(),
            ISSUE_DEVICE_CERTIFICATE,
            &request,
            &key
        )
        .await,
        Err(ProofError::BadSignature)
    ));
    // Another timestamp (still fresh).
    let mut moved = genuine.clone();
    moved.timestamp = Some(to_timestamp(now + Duration::from_secs(1)));
    assert!(matches!(
        check(&verifier, moved, ISSUE_TOKEN, &request, &key).await,
        Err(ProofError::BadSignature)
    ));
    let mut moved = genuine.clone();
    if let Some(ts) = moved.timestamp.as_mut() {
        ts.nanos = (ts.nanos + 1) % 1_000_000_000;
    }
    assert!(matches!(
        check(&verifier, moved, ISSUE_TOKEN, &request, &key).await,
        Err(ProofError::BadSignature)
    ));
    // Another nonce.
    let mut renonced = genuine.clone();
    renonced.nonce = vec![8u8; 16];
    assert!(matches!(
        check(&verifier, renonced, ISSUE_TOKEN, &request, &key).await,
        Err(ProofError::BadSignature)
    ));
    // Another body: each field of the request.
    for changed in [
        IssueTokenRequest {
            subject_id: "ffeeddccbbaa99887766554433221100".into(),
            ..request.clone()
        },
        IssueTokenRequest {
            device_id: "device-2".into(),
            ..request.clone()
        },
        IssueTokenRequest {
            requested_scopes: vec![1, 2, 3],
            ..request.clone()
        },
        IssueTokenRequest {
            want_svg: true,
            ..request.clone()
        },
    ] {
        assert!(matches!(
            check(&verifier, genuine.clone(), ISSUE_TOKEN, &changed, &key).await,
            Err(ProofError::BadSignature)
        ));
    }
    // A flipped signature bit.
    let mut flipped = genuine.clone();
    flipped.signature[10] ^= 1;
    assert!(matches!(
        check(&verifier, flipped, ISSUE_TOKEN, &request, &key).await,
        Err(ProofError::BadSignature)
    ));
    // Another device's key.
    assert!(matches!(
        check(
            &verifier,
            genuine.clone(),
            ISSUE_TOKEN,
            &request,
            &device_key()
        )
        .await,
        Err(ProofError::BadSignature)
    ));
    // None of the failures used the nonce up: the genuine proof still passes.
    check(&verifier, genuine, ISSUE_TOKEN, &request, &key)
        .await
        .expect("genuine after the tampered ones");
}

#[tokio::test]
async fn timestamps_must_be_fresh_either_side() {
    let verifier = verifier();
    let key = device_key();
    let request = request();
    let now = SystemTime::now();
    for (at, fresh) in [
        (now - FRESHNESS - Duration::from_secs(1), false),
        (now + FRESHNESS + Duration::from_secs(1), false),
        (now - FRESHNESS + Duration::from_secs(2), true),
        (now + FRESHNESS - Duration::from_secs(2), true),
        (now - Duration::from_secs(3_600), false),
    ] {
        let nonce = sha256(format!("{at:?}").as_bytes());
        let proof = sign_request_with(ISSUE_TOKEN, &request, &key, at, &nonce[..16]).unwrap();
        let result = check(&verifier, proof, ISSUE_TOKEN, &request, &key).await;
        if fresh {
            result.expect("within the window");
        } else {
            assert!(matches!(result, Err(ProofError::Stale)), "{result:?}");
        }
    }
}

#[tokio::test]
async fn malformed_proofs_are_refused_before_any_lookup() {
    let verifier = verifier();
    let key = device_key();
    let request = request();
    let now = SystemTime::now();
    let genuine = sign_request(ISSUE_TOKEN, &request, &key).unwrap();
    assert!(matches!(
        verifier.presented(None, now),
        Err(ProofError::Missing)
    ));
    let mut no_time = genuine.clone();
    no_time.timestamp = None;
    assert!(matches!(
        verifier.presented(Some(no_time.into()), now),
        Err(ProofError::BadTimestamp)
    ));
    let mut bad_nanos = genuine.clone();
    if let Some(ts) = bad_nanos.timestamp.as_mut() {
        ts.nanos = 1_000_000_000;
    }
    assert!(matches!(
        verifier.presented(Some(bad_nanos.into()), now),
        Err(ProofError::BadTimestamp)
    ));
    for len in [0, 15, 65] {
        let nonce = vec![1u8; len];
        let proof = sign_request_with(ISSUE_TOKEN, &request, &key, now, &nonce).unwrap();
        assert!(
            matches!(
                verifier.presented(Some(proof.into()), now),
                Err(ProofError::BadNonce)
            ),
            "nonce of {len} bytes"
        );
    }
    let long = sign_request_with(ISSUE_TOKEN, &request, &key, now, &[1u8; 64]).unwrap();
    present(&verifier, long);
}

#[tokio::test]
async fn nonces_are_scoped_to_the_device() {
    let verifier = verifier();
    let key = device_key();
    let request = request();
    let nonce = [9u8; 16];
    let proof = sign_request_with(ISSUE_TOKEN, &request, &key, SystemTime::now(), &nonce).unwrap();
    let presented = present(&verifier, proof);
    let body = body_sha256(&request);
    verifier
        .authenticate(&presented, ISSUE_TOKEN, &body, &DEVICE, key.public_key())
        .await
        .expect("first use");
    // The same nonce from another device (with its own valid signature) is its own.
    let other = device_key();
    let proof =
        sign_request_with(ISSUE_TOKEN, &request, &other, SystemTime::now(), &nonce).unwrap();
    let presented = present(&verifier, proof);
    verifier
        .authenticate(
            &presented,
            ISSUE_TOKEN,
            &body,
            &DeviceId::from_bytes([0xd2; 16]),
            other.public_key(),
        )
        .await
        .expect("another device's nonce");
}

/// A field the issuer does not know is dropped when decoding, so the hash the issuer
/// computes differs from the one the sender signed: the request fails closed.
#[tokio::test]
async fn unknown_fields_fail_closed() {
    let verifier = verifier();
    let key = device_key();
    let request = request();
    let mut sent = request.encode_to_vec();
    sent.extend_from_slice(&[14 << 3, 1]); // field 14 (unknown), varint 1
    let sent_hash = sha256(&sent);
    let now = SystemTime::now();
    let ts = to_timestamp(now);
    let nonce = [3u8; 16];
    let signature = RequestProof {
        method: ISSUE_TOKEN,
        seconds: ts.seconds,
        nanos: ts.nanos,
        nonce: &nonce,
        body_sha256: &sent_hash,
    }
    .sign(&key, &SystemRandom::new())
    .unwrap();
    let decoded = IssueTokenRequest::decode(sent.as_slice()).expect("decodes, dropping field 14");
    let proof = DeviceProof {
        timestamp: Some(ts),
        nonce: nonce.to_vec(),
        signature,
    };
    assert!(matches!(
        check(&verifier, proof, ISSUE_TOKEN, &decoded, &key).await,
        Err(ProofError::BadSignature)
    ));
}
