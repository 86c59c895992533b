//! The key set refreshed from the issuer's GetKeySet, as a gate takes it: a set signed
//! by a code key of the set in force is taken (a rotation reaches the verifier without
//! touching its file); a set signed by any other key, or older than the one in force,
//! is refused and the set in force stays.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use citypass_proto::v1::issuer_service_server::{IssuerService, IssuerServiceServer};
use citypass_proto::v1::{
    self as pb, GetKeySetRequest, GetKeySetResponse, IssueDeviceCertificateRequest,
    IssueDeviceCertificateResponse, IssueTokenRequest, IssueTokenResponse,
};
use citypass_runtime::{Server, ServerConfig};
use citypass_token::{
    Issuer, IssuerKey, KeySet, KeyStatus, KeyUsage, PublishedKey, Scopes, SubjectKey, sign_key_set,
    unix_now,
};
use tonic::{Request, Response, Status};

use crate::support::{Harness, request, verify};

/// An issuer that answers GetKeySet with whatever the test put there, and counts the
/// answers it has given.
#[derive(Clone, Default)]
struct FakeIssuer(Arc<Mutex<GetKeySetResponse>>, Arc<AtomicU64>);

impl FakeIssuer {
    /// Publishes `set`, then waits until the verifier has surely fetched it and acted on
    /// it: the verifier fetches one at a time, so of the fetches counted after this
    /// publication the first may have read the old set, the second read this one, and
    /// the third began after the second was handled.
    async fn publish_and_wait_for_the_verifier(&self, set: GetKeySetResponse) {
        *self.0.lock().unwrap() = set;
        let published_at = self.1.load(Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.1.load(Ordering::SeqCst) < published_at + 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the verifier stopped fetching the key set"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tonic::async_trait]
impl IssuerService for FakeIssuer {
    async fn issue_token(
        &self,
        _: Request<IssueTokenRequest>,
    ) -> Result<Response<IssueTokenResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn issue_device_certificate(
        &self,
        _: Request<IssueDeviceCertificateRequest>,
    ) -> Result<Response<IssueDeviceCertificateResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_key_set(
        &self,
        _: Request<GetKeySetRequest>,
    ) -> Result<Response<GetKeySetResponse>, Status> {
        let answer = self.0.lock().unwrap().clone();
        self.1.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(answer))
    }
}

fn code_key(issuer: &Issuer) -> PublishedKey {
    PublishedKey {
        key: issuer.key().public_key().clone(),
        status: KeyStatus::Active,
        usage: KeyUsage::Code,
    }
}

/// `keys` as GetKeySet publishes them (`issued_at` added), signed by `signer`.
fn published(keys: Vec<PublishedKey>, issued_at: u64, signer: &Issuer) -> GetKeySetResponse {
    let jwks = KeySet::new(keys).unwrap().to_jwks();
    let mut doc: serde_json::Value = serde_json::from_str(&jwks).unwrap();
    doc["issued_at"] = issued_at.into();
    let jwks_json = serde_json::to_vec(&doc).unwrap();
    GetKeySetResponse {
        signature: sign_key_set(signer.key(), &jwks_json),
        signing_kid: signer.key().kid().0.to_vec(),
        jwks_json,
        keys: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_set_is_refreshed_only_when_the_set_in_force_vouches_for_it() {
    let issuer = FakeIssuer::default();
    let served =
        citypass_testkit::serve(Server::new(ServerConfig::new("issuer-fake")).add_service(
            IssuerServiceServer::new(issuer.clone()),
            citypass_testkit::authz::open_to_anyone("citypass.v1.IssuerService"),
        ))
        .await;
    let next = Issuer::new(
        "citypass-test",
        IssuerKey::from_seed(&[7; 32]).unwrap(),
        // A signing-key rotation keeps the subject key: the verifier opens its codes.
        SubjectKey::from_bytes(&crate::support::ISSUER_SUBJECT_KEY).unwrap(),
    );
    // Until the test publishes, the issuer has nothing usable to say.
    *issuer.0.lock().unwrap() = GetKeySetResponse::default();
    let h = Harness::start_with(Some(format!("http://{}", served.addr))).await;
    let mut metro = h.gate("metro-entry-1");
    let m = pb::Scene::Metro;
    let t0 = unix_now();
    let by_next = |n: u64| {
        next.issue_token(&[9; 16], Scopes::all(), unix_now(), 60)
            .map(|code| (format!("n-{n}"), code.text))
            .unwrap()
    };

    // A rotation: the set in force's code key vouches for a set adding the next key.
    *issuer.0.lock().unwrap() = published(
        vec![code_key(&h.issuer), code_key(&next)],
        t0 + 2,
        &h.issuer,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        n += 1;
        let (scan, text) = by_next(n);
        let response = verify(&mut metro, request("metro-entry-1", m, &scan, &text)).await;
        if response.decision == pb::Decision::Allow as i32 {
            break;
        }
        assert_eq!(response.deny_reason, pb::DenyReason::UnknownKid as i32);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotation never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A set signed by a key the set in force does not hold: refused.
    issuer
        .publish_and_wait_for_the_verifier(published(
            vec![code_key(&h.stranger)],
            t0 + 3,
            &h.stranger,
        ))
        .await;
    let stranger_code = |scan: &str| {
        let code = h
            .stranger
            .issue_token(&[9; 16], Scopes::all(), unix_now(), 60)
            .unwrap();
        request("metro-entry-1", m, scan, &code.text)
    };
    let refused = verify(&mut metro, stranger_code("s-0")).await;
    assert_eq!(refused.deny_reason, pb::DenyReason::UnknownKid as i32);
    // A rollback to a set without the next key, correctly signed but older: refused.
    issuer
        .publish_and_wait_for_the_verifier(published(vec![code_key(&h.issuer)], t0 + 1, &h.issuer))
        .await;

    let refused = verify(&mut metro, stranger_code("s-1")).await;
    assert_eq!(refused.deny_reason, pb::DenyReason::UnknownKid as i32);
    let (scan, text) = by_next(1000);
    let kept = verify(&mut metro, request("metro-entry-1", m, &scan, &text)).await;
    assert_eq!(
        kept.decision,
        pb::Decision::Allow as i32,
        "the rolled-back set was not taken: {kept:?}"
    );
    assert!(kept.key_set_age.is_some());
}
