//! Every deny reason the verifier produces today, reached through the running service;
//! retries, streams, the gate's identity, the registry's reload, the table.

use std::collections::BTreeSet;
use std::time::Duration;

use citypass_proto::v1::{self as pb, VerifyStreamRequest};
use citypass_runtime::reason_of;
use citypass_token::{Scene, Scopes, unix_now};
use tonic::Code;

use crate::support::{Harness, allowed, denied, holder, request, verify};

/// The deny reasons the service can produce so far (transit, unsealing and offline
/// uploads add theirs later).
const REACHABLE: &[pb::DenyReason] = &[
    pb::DenyReason::TooLarge,
    pb::DenyReason::BadPrefix,
    pb::DenyReason::BadBase45,
    pb::DenyReason::Truncated,
    pb::DenyReason::UnknownKid,
    pb::DenyReason::KeyRevoked,
    pb::DenyReason::BadSignature,
    pb::DenyReason::Expired,
    pb::DenyReason::NotYetValid,
    pb::DenyReason::ScopeNotAllowed,
    pb::DenyReason::TokenRevoked,
    pb::DenyReason::CertificateRevoked,
    pb::DenyReason::Replayed,
    pb::DenyReason::CounterReplay,
    pb::DenyReason::UnknownGate,
    pb::DenyReason::SceneMismatch,
    pb::DenyReason::ScanIdConflict,
    pb::DenyReason::ServiceUnavailable,
    pb::DenyReason::RevocationDataStale,
    pb::DenyReason::RealNameRequired,
    pb::DenyReason::SubjectInactive,
    pb::DenyReason::UnknownSubject,
    pb::DenyReason::NoGovernmentPseudonym,
    pb::DenyReason::AlreadyEnteredToday,
    pb::DenyReason::CapacityReached,
];

/// A copy of `code` with the last byte of its COSE structure (the signature's)
/// changed.
fn tampered(code: &str) -> String {
    let (prefix, body) = code.split_at(4);
    let mut bytes = base45::decode(body).expect("Base45");
    *bytes.last_mut().unwrap() ^= 1;
    format!("{prefix}{}", base45::encode(&bytes))
}

/// A copy of `code` with its COSE structure cut short.
fn truncated(code: &str) -> String {
    let (prefix, body) = code.split_at(4);
    let bytes = base45::decode(body).expect("Base45");
    format!("{prefix}{}", base45::encode(&bytes[..bytes.len() - 10]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decision_table_reaches_every_reason_through_the_service() {
    let mut h = Harness::start().await;
    let mut metro = h.gate("metro-entry-1");
    let mut reached = BTreeSet::new();
    let mut deny = |response: &pb::VerifyResponse, want: pb::DenyReason| {
        assert_eq!(denied(response), want, "{response:?}");
        reached.insert(want as i32);
    };
    let m = pb::Scene::Metro;
    let now = unix_now();

    // An accepted code, with what the decision used.
    let code = h.code(Scopes::all());
    let first = verify(&mut metro, request("metro-entry-1", m, "s-1", &code.text)).await;
    allowed(&first);
    assert_eq!(first.scan_id, "s-1");
    assert_eq!(first.code_kind, pb::CodeKind::Online as i32);
    assert!(first.revocation_age.is_some() && first.key_set_age.is_some());
    assert!(!first.idempotent_replay);

    // Single use, across gates; scan ids.
    let mut exit = h.gate("metro-exit-1");
    let again = verify(&mut exit, request("metro-exit-1", m, "x-1", &code.text)).await;
    deny(&again, pb::DenyReason::Replayed);
    let other = h.code(Scopes::all());
    let conflict = verify(&mut metro, request("metro-entry-1", m, "s-1", &other.text)).await;
    deny(&conflict, pb::DenyReason::ScanIdConflict);

    // The code itself.
    let cases = [
        (
            format!("CP1:{}", "A".repeat(1300)),
            pb::DenyReason::TooLarge,
        ),
        ("hello".to_owned(), pb::DenyReason::BadPrefix),
        ("CP1:!!!".to_owned(), pb::DenyReason::BadBase45),
        (truncated(&other.text), pb::DenyReason::Truncated),
        (tampered(&other.text), pb::DenyReason::BadSignature),
        (
            h.stranger
                .issue_token(&[9; 16], Scopes::all(), now, 60)
                .unwrap()
                .text,
            pb::DenyReason::UnknownKid,
        ),
        (
            h.revoked_key
                .issue_token(&[9; 16], Scopes::all(), now, 60)
                .unwrap()
                .text,
            pb::DenyReason::KeyRevoked,
        ),
        (
            h.issuer
                .issue_token(&[9; 16], Scopes::all(), now - 600, 60)
                .unwrap()
                .text,
            pb::DenyReason::Expired,
        ),
        (
            h.issuer
                .issue_token(&[9; 16], Scopes::all(), now + 600, 60)
                .unwrap()
                .text,
            pb::DenyReason::NotYetValid,
        ),
        (
            h.code(Scopes::NONE.with(Scene::Hospital)).text,
            pb::DenyReason::ScopeNotAllowed,
        ),
    ];
    for (n, (text, want)) in cases.iter().enumerate() {
        let response = verify(
            &mut metro,
            request("metro-entry-1", m, &format!("c-{n}"), text),
        )
        .await;
        deny(&response, *want);
    }
    // A refused code was not burned: `other` still opens (under a new scan id).
    allowed(&verify(&mut metro, request("metro-entry-1", m, "s-2", &other.text)).await);

    // The gate: not in the registry; another scene than its own.
    let mut ghost = h.gate("ghost-gate");
    let fresh = h.code(Scopes::all());
    deny(
        &verify(&mut ghost, request("ghost-gate", m, "g-1", &fresh.text)).await,
        pb::DenyReason::UnknownGate,
    );
    deny(
        &verify(
            &mut metro,
            request("metro-entry-1", pb::Scene::Bus, "g-2", &fresh.text),
        )
        .await,
        pb::DenyReason::SceneMismatch,
    );

    // Offline codes: counters only go up.
    let (signer, _) = h.offline_signer(Scopes::all());
    let older = signer.make_code(now, 60, 1, &h.rng).unwrap();
    let newer = signer.make_code(now, 60, 2, &h.rng).unwrap();
    let mut scenic = h.gate("scenic-1");
    let s = pb::Scene::Scenic;
    let offline = verify(&mut scenic, request("scenic-1", s, "o-1", &newer)).await;
    allowed(&offline);
    assert_eq!(offline.code_kind, pb::CodeKind::Offline as i32);
    deny(
        &verify(&mut scenic, request("scenic-1", s, "o-2", &older)).await,
        pb::DenyReason::CounterReplay,
    );

    // Revocations: a code by cti, an offline code by its certificate's serial.
    let revoked = h.code(Scopes::all());
    let (revoked_signer, serial) = h.offline_signer(Scopes::all());
    let epoch = h
        .revocation
        .revoke(pb::TargetKind::Token, &hex::encode(revoked.cti))
        .await;
    let epoch = epoch.max(
        h.revocation
            .revoke(pb::TargetKind::Certificate, &hex::encode(serial))
            .await,
    );
    tokio::time::timeout(Duration::from_secs(30), h.revocations.wait_for_epoch(epoch))
        .await
        .expect("the follower applies the revocations");
    let response = verify(
        &mut metro,
        request("metro-entry-1", m, "r-1", &revoked.text),
    )
    .await;
    deny(&response, pb::DenyReason::TokenRevoked);
    assert!(response.revocation_epoch >= epoch);
    let revoked_offline = revoked_signer.make_code(unix_now(), 60, 1, &h.rng).unwrap();
    deny(
        &verify(&mut scenic, request("scenic-1", s, "r-2", &revoked_offline)).await,
        pb::DenyReason::CertificateRevoked,
    );

    // Scene policies: the holder's standing, the venue's limits.
    let mut desk = h.gate("hospital-desk-1");
    let hs = pb::Scene::Hospital;
    let cases = [
        (
            holder(2, |p| p.assurance = pb::AssuranceLevel::DocumentChecked),
            pb::DenyReason::RealNameRequired,
        ),
        (
            holder(3, |p| p.status = pb::SubjectStatus::Pending),
            pb::DenyReason::SubjectInactive,
        ),
        (
            citypass_verifier::FixedHolder {
                subject: citypass_token::SubjectId::from_bytes([4; 16]),
                profile: Err(citypass_verifier::SubjectsError::UnknownSubject),
            },
            pb::DenyReason::UnknownSubject,
        ),
    ];
    for (n, (who, want)) in cases.into_iter().enumerate() {
        let code = h.code_of(who);
        let scan = format!("pol-{n}");
        deny(
            &verify(&mut desk, request("hospital-desk-1", hs, &scan, &code.text)).await,
            want,
        );
    }
    let mut counter = h.gate("hall-counter-1");
    let foreigner = h.code_of(holder(5, |p| p.government_pseudonym = None));
    deny(
        &verify(
            &mut counter,
            request(
                "hall-counter-1",
                pb::Scene::Government,
                "pol-g",
                &foreigner.text,
            ),
        )
        .await,
        pb::DenyReason::NoGovernmentPseudonym,
    );
    let second_visit = h.code(Scopes::all());
    deny(
        &verify(
            &mut scenic,
            request("scenic-1", s, "pol-s", &second_visit.text),
        )
        .await,
        pb::DenyReason::AlreadyEnteredToday,
    );
    let mut museum = h.gate("museum-1");
    let first_in = h.code_of(holder(6, |_| {}));
    allowed(
        &verify(
            &mut museum,
            request("museum-1", s, "pol-m1", &first_in.text),
        )
        .await,
    );
    let too_late = h.code_of(holder(7, |_| {}));
    deny(
        &verify(
            &mut museum,
            request("museum-1", s, "pol-m2", &too_late.text),
        )
        .await,
        pb::DenyReason::CapacityReached,
    );

    // Redis stopped: the replay step fails closed, within the gate's deadline.
    h.redis.stop();
    let unmarked = h.code(Scopes::all());
    let mut call = tonic::Request::new(request("metro-entry-1", m, "u-1", &unmarked.text));
    call.set_timeout(Duration::from_secs(5));
    let response = metro.verify(call).await.expect("an answer").into_inner();
    deny(&response, pb::DenyReason::ServiceUnavailable);

    // The revocation service gone: once the data is older than max_age (2 s), every
    // code is refused.
    h.revocation.stop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let fresh = h.code(Scopes::all());
        let response = verify(&mut metro, request("metro-entry-1", m, "t-1", &fresh.text)).await;
        if denied(&response) == pb::DenyReason::RevocationDataStale {
            deny(&response, pb::DenyReason::RevocationDataStale);
            assert!(response.revocation_age.expect("an age").seconds >= 2);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "revocation data never went stale: {response:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let want: BTreeSet<i32> = REACHABLE.iter().map(|r| *r as i32).collect();
    assert_eq!(reached, want, "every reachable reason was reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_get_the_first_answer_and_streams_answer_each_scan() {
    let h = Harness::start().await;
    let mut metro = h.gate("metro-entry-1");
    let m = pb::Scene::Metro;
    let code = h.code(Scopes::all());
    let first = verify(&mut metro, request("metro-entry-1", m, "s-1", &code.text)).await;
    allowed(&first);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let retry = verify(&mut metro, request("metro-entry-1", m, "s-1", &code.text)).await;
    allowed(&retry);
    assert!(retry.idempotent_replay);
    assert_eq!(
        retry.decided_at, first.decided_at,
        "the first answer, stored"
    );
    assert_eq!(retry.revocation_epoch, first.revocation_epoch);

    // A stream: one answer per scan, matched by scan id.
    let codes: Vec<_> = (0..5).map(|_| h.code(Scopes::all())).collect();
    let mut scans: Vec<VerifyStreamRequest> = codes
        .iter()
        .enumerate()
        .map(|(n, code)| VerifyStreamRequest {
            request: Some(request("metro-entry-1", m, &format!("st-{n}"), &code.text)),
        })
        .collect();
    scans.push(VerifyStreamRequest {
        request: Some(request("metro-entry-1", m, "st-again", &codes[0].text)),
    });
    let mut responses = metro
        .verify_stream(futures::stream::iter(scans))
        .await
        .expect("the stream opens")
        .into_inner();
    let mut answers = std::collections::HashMap::new();
    while let Some(message) = responses.message().await.expect("a message") {
        let response = message.response.expect("a response");
        answers.insert(response.scan_id.clone(), response);
    }
    assert_eq!(answers.len(), 6);
    let allows = answers
        .values()
        .filter(|r| r.decision == pb::Decision::Allow as i32)
        .count();
    assert_eq!(allows, 5, "codes[0] opens once: {answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_scan_on_a_stream_is_answered_with_its_error_and_the_stream_goes_on() {
    let h = Harness::start().await;
    let mut metro = h.gate("metro-entry-1");
    let m = pb::Scene::Metro;
    let (before, after) = (h.code(Scopes::all()), h.code(Scopes::all()));
    let mut no_scene = request("metro-entry-1", m, "st-no-scene", &before.text);
    no_scene.scene = pb::Scene::Unspecified as i32;
    let mut huge_scan_id = request("metro-entry-1", m, "", &before.text);
    huge_scan_id.scan_id = "x".repeat(200);
    let scans = vec![
        VerifyStreamRequest {
            request: Some(request("metro-entry-1", m, "st-before", &before.text)),
        },
        VerifyStreamRequest { request: None },
        VerifyStreamRequest {
            request: Some(no_scene),
        },
        VerifyStreamRequest {
            request: Some(request("metro-exit-1", m, "st-other-gate", &after.text)),
        },
        VerifyStreamRequest {
            request: Some(huge_scan_id),
        },
        VerifyStreamRequest {
            request: Some(request("metro-entry-1", m, "st-after", &after.text)),
        },
    ];
    let mut responses = metro
        .verify_stream(futures::stream::iter(scans))
        .await
        .expect("the stream opens")
        .into_inner();
    let (mut decided, mut errors) = (BTreeSet::new(), Vec::new());
    while let Some(message) = responses.message().await.expect("the stream goes on") {
        match (message.response, message.error) {
            (Some(response), None) => {
                allowed(&response);
                decided.insert(response.scan_id);
            }
            (None, Some(error)) => errors.push(error),
            other => panic!("exactly one of response and error: {other:?}"),
        }
    }
    assert_eq!(
        decided,
        BTreeSet::from(["st-before".to_owned(), "st-after".to_owned()]),
        "the scans around the bad ones are decided"
    );
    errors.sort_by(|a, b| a.reason.cmp(&b.reason));
    let seen: Vec<(&str, &str, i32)> = errors
        .iter()
        .map(|e| (e.reason.as_str(), e.scan_id.as_str(), e.code))
        .collect();
    let invalid = Code::InvalidArgument as i32;
    assert_eq!(
        seen,
        vec![
            ("BAD_SCAN_ID", "", invalid),
            (
                "GATE_MISMATCH",
                "st-other-gate",
                Code::PermissionDenied as i32
            ),
            ("MISSING_REQUEST", "", invalid),
            ("MISSING_SCENE", "st-no-scene", invalid),
        ]
    );
    assert!(errors.iter().all(|e| !e.message.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_across_a_verifier_restart_gets_the_first_answer() {
    let mut h = Harness::start().await;
    let m = pb::Scene::Metro;
    let code = h.code(Scopes::all());
    let first = verify(
        &mut h.gate("metro-entry-1"),
        request("metro-entry-1", m, "s-1", &code.text),
    )
    .await;
    allowed(&first);

    h.restart_verifier().await;
    let mut metro = h.gate("metro-entry-1");
    let retry = verify(&mut metro, request("metro-entry-1", m, "s-1", &code.text)).await;
    allowed(&retry);
    assert!(retry.idempotent_replay, "{retry:?}");
    assert_eq!(retry.decided_at, first.decided_at);
    let mut exit = h.gate("metro-exit-1");
    assert_eq!(
        denied(&verify(&mut exit, request("metro-exit-1", m, "x-1", &code.text)).await),
        pb::DenyReason::Replayed,
        "the restarted verifier still knows the code was used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_is_the_certificate_not_the_request() {
    let h = Harness::start().await;
    let mut metro = h.gate("metro-entry-1");
    let code = h.code(Scopes::all());
    let status = metro
        .verify(request("metro-exit-1", pb::Scene::Metro, "s-1", &code.text))
        .await
        .expect_err("another gate's request is refused");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(reason_of(&status).as_deref(), Some("GATE_MISMATCH"));
    let status = metro
        .verify(request("metro-entry-1", pb::Scene::Metro, "", &code.text))
        .await
        .expect_err("a scan without an id is refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut exit = request("metro-entry-1", pb::Scene::Metro, "s-3", &code.text);
    exit.direction = pb::Direction::Exit as i32;
    let status = metro
        .verify(exit)
        .await
        .expect_err("an exit at an entry gate is refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason_of(&status).as_deref(), Some("DIRECTION_MISMATCH"));
    // The code was not used by either refusal.
    allowed(
        &verify(
            &mut metro,
            request("metro-entry-1", pb::Scene::Metro, "s-2", &code.text),
        )
        .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_registry_is_reloaded_when_its_file_changes() {
    let h = Harness::start().await;
    let mut bus = h.gate("bus-99");
    let b = pb::Scene::Bus;
    let code = h.code(Scopes::all());
    assert_eq!(
        denied(&verify(&mut bus, request("bus-99", b, "s-1", &code.text)).await),
        pb::DenyReason::UnknownGate
    );
    let grown = format!(
        "{}  bus-99: {{scene: bus, stop: route-99}}\n",
        crate::support::GATES
    );
    std::fs::write(&h.gates_file, grown).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        n += 1;
        let response = verify(
            &mut bus,
            request("bus-99", b, &format!("s-{n}"), &code.text),
        )
        .await;
        if response.decision == pb::Decision::Allow as i32 {
            break;
        }
        assert_eq!(denied(&response), pb::DenyReason::UnknownGate);
        assert!(tokio::time::Instant::now() < deadline, "reload not seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A file that does not load keeps the registry in force.
    std::fs::write(&h.gates_file, "gates: {bus-99: {scene: tram}}").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let next = h.code(Scopes::all());
    allowed(&verify(&mut bus, request("bus-99", b, "after", &next.text)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_table_holds() {
    let h = Harness::start().await;
    citypass_testkit::authz::assert_table_holds(&h.pki, h.addr, &citypass_verifier::AUTHORIZATION)
        .await;
}

/// A busy gate's stream: sixty scans sent at once (CP1 codes and two CP2 codes, whose
/// certificates' signatures join the batch), one of them forged. The scans that wait
/// together have their issuer signatures decided as one batch; the forged code's
/// batch falls back to single checks. Exactly one answer per scan, matched by scan id
/// (the API lets answers come out of order): the forged code is refused
/// BAD_SIGNATURE, every other scan is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_code_among_many_on_a_stream_denies_only_itself() {
    let h = Harness::start().await;
    let mut metro = h.gate("metro-entry-1");
    let m = pb::Scene::Metro;
    let forged_at = 23;
    let mut texts: Vec<String> = (0..58)
        .map(|n| {
            let text = h.code(Scopes::all()).text;
            if n == forged_at {
                tampered(&text)
            } else {
                text
            }
        })
        .collect();
    // Two phones' offline codes (two certificates): the scans of one stream are decided
    // together, in no promised order, so one phone's counters 1 and 2 could meet here
    // as 2 then 1 (COUNTER_REPLAY), which no pair of turnstiles sees in the field.
    for _ in 0..2 {
        let (signer, _) = h.offline_signer(Scopes::all());
        texts.push(signer.make_code(unix_now(), 60, 1, &h.rng).unwrap());
    }
    let scans: Vec<VerifyStreamRequest> = texts
        .iter()
        .enumerate()
        .map(|(n, text)| VerifyStreamRequest {
            request: Some(request("metro-entry-1", m, &format!("busy-{n}"), text)),
        })
        .collect();
    let mut responses = metro
        .verify_stream(futures::stream::iter(scans))
        .await
        .expect("the stream opens")
        .into_inner();
    let mut answers = std::collections::HashMap::new();
    while let Some(message) = responses.message().await.expect("a message") {
        let response = message.response.expect("a decision");
        let scan_id = response.scan_id.clone();
        assert!(
            answers.insert(scan_id.clone(), response).is_none(),
            "one answer per scan: {scan_id} twice"
        );
    }
    assert_eq!(answers.len(), texts.len());
    for n in 0..texts.len() {
        let answer = &answers[&format!("busy-{n}")];
        if n == forged_at {
            assert_eq!(denied(answer), pb::DenyReason::BadSignature);
        } else {
            allowed(answer);
        }
    }
}
