//! The scene policies through the running service: hospital, scenic, government; their
//! fail modes with a dependency stopped; retries across the reserve/settle protocol.

use std::time::{Duration, Instant};

use citypass_proto::v1::verify_response::SceneResult;
use citypass_proto::v1::{self as pb, AssuranceLevel, SubjectStatus, VerifyResponse};
use citypass_token::{Scene, Scopes, SubjectId};
use citypass_verifier::{FixedHolder, Mark, RedisReplayStore, SubjectsError};

use crate::support::{Harness, allowed, denied, holder, request, verify};

fn hospital(response: &VerifyResponse) -> &pb::HospitalResult {
    match &response.scene_result {
        Some(SceneResult::Hospital(result)) => result,
        other => panic!("a hospital result: {other:?}"),
    }
}

fn scenic(response: &VerifyResponse) -> &pb::ScenicResult {
    match &response.scene_result {
        Some(SceneResult::Scenic(result)) => result,
        other => panic!("a scenic result: {other:?}"),
    }
}

fn government(response: &VerifyResponse) -> &pb::GovernmentResult {
    match &response.scene_result {
        Some(SceneResult::Government(result)) => result,
        other => panic!("a government result: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hospital_desks_learn_the_pseudonym_and_insurance_and_nothing_else() {
    let h = Harness::start().await;
    let mut desk = h.gate("hospital-desk-1");
    let s = pb::Scene::Hospital;
    let code = h.code(Scopes::all());
    let first = verify(&mut desk, request("hospital-desk-1", s, "h-1", &code.text)).await;
    allowed(&first);
    let result = hospital(&first);
    assert_eq!(result.patient_pseudonym.len(), 32);
    assert!(result.medical_insurance_linked);
    let retry = verify(&mut desk, request("hospital-desk-1", s, "h-1", &code.text)).await;
    assert!(retry.idempotent_replay);
    assert_eq!(
        retry.scene_result, first.scene_result,
        "the retry gets the first answer with its scene result"
    );

    // Another patient gets another pseudonym.
    let other = h.code_of(holder(2, |_| {}));
    let answer = verify(&mut desk, request("hospital-desk-1", s, "h-2", &other.text)).await;
    assert_ne!(
        hospital(&answer).patient_pseudonym,
        result.patient_pseudonym
    );

    // Not real-name verified; not active.
    let weak = h.code_of(holder(3, |p| p.assurance = AssuranceLevel::DocumentChecked));
    let refused = verify(&mut desk, request("hospital-desk-1", s, "h-3", &weak.text)).await;
    assert_eq!(denied(&refused), pb::DenyReason::RealNameRequired);
    assert!(refused.scene_result.is_none());
    let again = verify(&mut desk, request("hospital-desk-1", s, "h-3", &weak.text)).await;
    assert_eq!(denied(&again), pb::DenyReason::RealNameRequired);
    assert!(again.idempotent_replay, "a policy refusal is settled");
    let suspended = h.code_of(holder(4, |p| p.status = SubjectStatus::Suspended));
    assert_eq!(
        denied(
            &verify(
                &mut desk,
                request("hospital-desk-1", s, "h-4", &suspended.text)
            )
            .await
        ),
        pb::DenyReason::SubjectInactive
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenic_gates_count_capacity_and_once_a_day_and_a_replay_counts_nothing() {
    let h = Harness::start().await;
    let (mut gate, mut other_gate) = (h.gate("scenic-1"), h.gate("scenic-2"));
    let s = pb::Scene::Scenic;
    let code = h.code(Scopes::all());
    let first = verify(&mut gate, request("scenic-1", s, "p-1", &code.text)).await;
    allowed(&first);
    let result = scenic(&first).clone();
    assert_eq!(
        (result.entries_today, result.remaining_capacity),
        (1, 9_999)
    );
    assert_eq!(result.venue_pseudonym.len(), 32);

    // The same scan again: the same answer, nothing counted.
    let retry = verify(&mut gate, request("scenic-1", s, "p-1", &code.text)).await;
    assert!(retry.idempotent_replay);
    assert_eq!(scenic(&retry), &result);
    // The same code at another gate: a replay, nothing counted.
    assert_eq!(
        denied(&verify(&mut other_gate, request("scenic-2", s, "p-2", &code.text)).await),
        pb::DenyReason::Replayed
    );
    // The same person with a new code: once a day.
    let second = h.code(Scopes::all());
    assert_eq!(
        denied(&verify(&mut other_gate, request("scenic-2", s, "p-3", &second.text)).await),
        pb::DenyReason::AlreadyEnteredToday
    );
    // Another visitor: one place fewer, exactly (the retry and the replay took none).
    let visitor = h.code_of(holder(2, |_| {}));
    let next = verify(
        &mut other_gate,
        request("scenic-2", s, "p-4", &visitor.text),
    )
    .await;
    assert_eq!(
        (
            scenic(&next).entries_today,
            scenic(&next).remaining_capacity
        ),
        (1, 9_998)
    );
    assert_ne!(scenic(&next).venue_pseudonym, result.venue_pseudonym);

    // A venue of one place a day.
    let mut museum = h.gate("museum-1");
    let entered = verify(&mut museum, request("museum-1", s, "m-1", &visitor.text)).await;
    assert_eq!(
        denied(&entered),
        pb::DenyReason::Replayed,
        "the code was used at the park"
    );
    let fresh = h.code_of(holder(2, |_| {}));
    let entered = verify(&mut museum, request("museum-1", s, "m-2", &fresh.text)).await;
    assert_eq!(scenic(&entered).remaining_capacity, 0);
    let late = h.code_of(holder(3, |_| {}));
    assert_eq!(
        denied(&verify(&mut museum, request("museum-1", s, "m-3", &late.text)).await),
        pb::DenyReason::CapacityReached
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn government_counters_need_the_scope_real_name_and_a_government_pseudonym() {
    let h = Harness::start().await;
    let mut counter = h.gate("hall-counter-1");
    let g = pb::Scene::Government;
    let without = h.code(
        [Scene::Metro, Scene::Bus, Scene::Hospital, Scene::Scenic]
            .into_iter()
            .collect(),
    );
    assert_eq!(
        denied(
            &verify(
                &mut counter,
                request("hall-counter-1", g, "g-1", &without.text)
            )
            .await
        ),
        pb::DenyReason::ScopeNotAllowed,
        "only codes asked for with the counter scope"
    );
    let code = h.code(Scopes::NONE.with(Scene::Government));
    let answer = verify(
        &mut counter,
        request("hall-counter-1", g, "g-2", &code.text),
    )
    .await;
    allowed(&answer);
    let result = government(&answer).clone();
    assert_eq!(result.masked_name, "L* M*");
    assert_eq!(
        result.assurance_level,
        AssuranceLevel::RealNameVerified as i32
    );
    assert_eq!(
        result.government_pseudonym,
        hex::encode(crate::support::SUBJECT)
    );
    let retry = verify(
        &mut counter,
        request("hall-counter-1", g, "g-2", &code.text),
    )
    .await;
    assert!(retry.idempotent_replay);
    assert_eq!(
        government(&retry),
        &result,
        "the name and pseudonym derived again"
    );

    let foreigner = h.code_of(holder(2, |p| p.government_pseudonym = None));
    assert_eq!(
        denied(
            &verify(
                &mut counter,
                request("hall-counter-1", g, "g-3", &foreigner.text)
            )
            .await
        ),
        pb::DenyReason::NoGovernmentPseudonym
    );
    let weak = h.code_of(holder(3, |p| p.assurance = AssuranceLevel::SelfAsserted));
    assert_eq!(
        denied(
            &verify(
                &mut counter,
                request("hall-counter-1", g, "g-4", &weak.text)
            )
            .await
        ),
        pb::DenyReason::RealNameRequired
    );
}

/// Calls Verify with a gate deadline of 2 s; returns the answer and how long it took.
async fn within_gate_deadline(
    h: &Harness,
    gate: &'static str,
    scene: pb::Scene,
    scan: &str,
    code: &str,
) -> (VerifyResponse, Duration) {
    let mut call = tonic::Request::new(request(gate, scene, scan, code));
    call.set_timeout(Duration::from_secs(2));
    let started = Instant::now();
    let response = h
        .gate(gate)
        .verify(call)
        .await
        .expect("an answer within the gate's deadline")
        .into_inner();
    (response, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_dependency_stopped_each_scene_follows_its_fail_mode_within_the_deadline() {
    let mut h = Harness::start().await;

    // Identity silent: hospital and government fail closed within the deadline, and
    // the refusal is not settled: the same scan, once identity answers, is decided.
    h.subjects.set_silent(true);
    let code = h.code(Scopes::all());
    let (refused, took) = within_gate_deadline(
        &h,
        "hospital-desk-1",
        pb::Scene::Hospital,
        "h-1",
        &code.text,
    )
    .await;
    assert_eq!(denied(&refused), pb::DenyReason::ServiceUnavailable);
    assert!(!refused.fail_open);
    assert!(took < Duration::from_secs(2), "{took:?}");
    let hall_code = h.code(Scopes::all());
    let (refused, _) = within_gate_deadline(
        &h,
        "hall-counter-1",
        pb::Scene::Government,
        "g-1",
        &hall_code.text,
    )
    .await;
    assert_eq!(denied(&refused), pb::DenyReason::ServiceUnavailable);
    h.subjects.set_silent(false);
    let (retry, _) = within_gate_deadline(
        &h,
        "hospital-desk-1",
        pb::Scene::Hospital,
        "h-1",
        &code.text,
    )
    .await;
    allowed(&retry);
    assert!(hospital(&retry).medical_insurance_linked);
    assert!(!retry.idempotent_replay, "decided now, not a stored answer");
    let other = h.code(Scopes::all());
    assert_eq!(
        denied(
            &within_gate_deadline(
                &h,
                "hospital-desk-1",
                pb::Scene::Hospital,
                "h-2",
                &code.text
            )
            .await
            .0
        ),
        pb::DenyReason::Replayed,
        "the code is used once decided"
    );

    // Identity failing outright is the same as silent.
    h.subjects.set_default(FixedHolder {
        subject: SubjectId::from_bytes(crate::support::SUBJECT),
        profile: Err(SubjectsError::Unavailable),
    });
    let (refused, _) = within_gate_deadline(
        &h,
        "hall-counter-1",
        pb::Scene::Government,
        "g-2",
        &other.text,
    )
    .await;
    assert_eq!(denied(&refused), pb::DenyReason::ServiceUnavailable);

    // Redis stopped: the scenic gate (fail open) lets the visitor in, marked; the
    // metro gate (fail closed) refuses.
    h.redis.stop();
    let visitor = h.code(Scopes::all());
    let (opened, took) =
        within_gate_deadline(&h, "scenic-1", pb::Scene::Scenic, "p-1", &visitor.text).await;
    allowed(&opened);
    assert!(opened.fail_open, "{opened:?}");
    assert!(opened.scene_result.is_none());
    assert!(took < Duration::from_secs(2), "{took:?}");
    let rider = h.code(Scopes::all());
    let (refused, _) =
        within_gate_deadline(&h, "metro-entry-1", pb::Scene::Metro, "m-1", &rider.text).await;
    assert_eq!(denied(&refused), pb::DenyReason::ServiceUnavailable);
    assert!(!refused.fail_open);
}

/// A verifier that crashed (or whose reply was lost) after the venue counted the entry
/// but before the answer was settled: the gate's retry finds the mark PENDING, runs the
/// policy again (which counts nothing twice) and gets the first answer with its scene
/// result; never a false REPLAYED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_crash_between_reserve_and_settle_gets_the_first_answer() {
    let mut h = Harness::start().await;
    let s = pb::Scene::Scenic;
    let code = h.code(Scopes::all());
    let first = verify(
        &mut h.gate("scenic-1"),
        request("scenic-1", s, "p-1", &code.text),
    )
    .await;
    allowed(&first);

    // Undo the settlement, as if the verifier had died before it.
    let client = redis::Client::open(h.redis.url.as_str()).unwrap();
    let store = RedisReplayStore::connect(
        client.clone(),
        h.config.redis_key_prefix.clone(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let key = store.key(citypass_verifier::replay::Key::Mark(Mark::Token {
        cti: code.cti,
    }));
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let settled: String = redis::cmd("HGET")
        .arg(&key)
        .arg("answer")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(settled.starts_with("2 cp1 "), "{settled}");
    assert!(
        !settled.contains(&scenic(&first).venue_pseudonym),
        "the store keeps no pseudonym: {settled}"
    );
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("answer")
        .arg("p")
        .query_async(&mut connection)
        .await
        .unwrap();

    h.restart_verifier().await;
    let mut gate = h.gate("scenic-1");
    let retry = verify(&mut gate, request("scenic-1", s, "p-1", &code.text)).await;
    allowed(&retry);
    assert_eq!(
        retry.scene_result, first.scene_result,
        "the first answer: the entry was not counted again"
    );
    let again = verify(&mut gate, request("scenic-1", s, "p-1", &code.text)).await;
    assert!(again.idempotent_replay, "settled by the retry");
    assert_eq!(again.scene_result, first.scene_result);
    assert_eq!(
        denied(
            &verify(
                &mut h.gate("scenic-2"),
                request("scenic-2", s, "p-2", &code.text)
            )
            .await
        ),
        pb::DenyReason::Replayed
    );
    let visitor = h.code_of(holder(2, |_| {}));
    let next = verify(&mut gate, request("scenic-1", s, "p-3", &visitor.text)).await;
    assert_eq!(
        scenic(&next).remaining_capacity,
        scenic(&first).remaining_capacity - 1,
        "one entry counted for the first visitor, whatever the retries"
    );
}
