//! The counters' 1:1 face check end to end (issue 14): a citizen consents and enrols a
//! face at a service counter (identity on PostgreSQL, a face counter's certificate over
//! mTLS); the stack's verifier follows identity's template feed, opens the sealed
//! template with the template key, and a hospital desk's scan with a live face is
//! answered MATCH; another face NO_MATCH; after the withdrawal the holder reads as not
//! enrolled, and the code works as before throughout (never a refusal).

use std::time::{Duration, Instant};

use citypass_e2e::{TestStack, decide, dev_ring, ids, online_code, scan};
use citypass_face::Embedding;
use citypass_proto::v1::{
    self as pb, EnrolFaceRequest, FacePurpose, FaceResult, LiveFace, RecordFaceConsentRequest,
    VerifyResponse, WithdrawFaceConsentRequest,
};

/// A hospital desk's scan of a fresh code of `app` with `live` before the camera.
async fn desk_scan(
    t: &TestStack,
    app: &mut citypass_app::App,
    scan_id: &str,
    live: &Embedding,
) -> VerifyResponse {
    let code = online_code(app).await;
    let request = pb::VerifyRequest {
        live_face: Some(LiveFace {
            embedding: live.values().to_vec(),
        }),
        ..scan("hospital-desk-1", pb::Scene::Hospital, scan_id, &code)
    };
    decide(t, "hospital-desk-1", request).await
}

fn result_of(answer: &VerifyResponse) -> FaceResult {
    assert_eq!(answer.decision, pb::Decision::Allow as i32, "{answer:?}");
    let check = answer.face_check.as_ref().expect("a face check");
    FaceResult::try_from(check.result).expect("a known result")
}

/// Scans until the face check reads `want` (the feed is polled every 2 s), with a
/// generous deadline for a busy machine.
async fn until(
    t: &TestStack,
    app: &mut citypass_app::App,
    live: &Embedding,
    want: FaceResult,
) -> VerifyResponse {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut n = 0;
    loop {
        n += 1;
        let answer = desk_scan(t, app, &format!("wait-{want:?}-{n}"), live).await;
        if result_of(&answer) == want {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "the face check never read {want:?}: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_enrolled_face_confirms_the_holder_at_a_hospital_desk_until_withdrawn() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let mut app = t.citizen("王芳").await;
    let (subject_id, _) = ids(&app);
    let own = Embedding::sample(7);

    // Before any consent: allowed, not enrolled.
    let answer = desk_scan(&t, &mut app, "before", &own).await;
    assert_eq!(result_of(&answer), FaceResult::NotEnrolled);

    // At a service counter: the separate consent, then the enrolment.
    let mut identity = t.face_counter("hospital-desk-1").await;
    identity
        .record_face_consent(RecordFaceConsentRequest {
            subject_id: subject_id.clone(),
            purpose: FacePurpose::CounterCheck as i32,
            text_version: "face-2026-06".to_owned(),
            ..RecordFaceConsentRequest::default()
        })
        .await
        .expect("consent recorded");
    identity
        .enrol_face(EnrolFaceRequest {
            subject_id: subject_id.clone(),
            embedding: own.values().to_vec(),
            ..EnrolFaceRequest::default()
        })
        .await
        .expect("face enrolled");

    let matched = until(&t, &mut app, &own, FaceResult::Match).await;
    assert_eq!(
        matched.face_check.as_ref().map(|c| c.band),
        Some(pb::FaceScoreBand::High as i32)
    );
    // Someone else holding this citizen's code.
    let other = desk_scan(&t, &mut app, "lent", &Embedding::sample(8)).await;
    assert_eq!(result_of(&other), FaceResult::NoMatch);

    // Withdrawn: the verifier stops using the template within a poll or two.
    identity
        .withdraw_face_consent(WithdrawFaceConsentRequest {
            subject_id: subject_id.clone(),
            ..WithdrawFaceConsentRequest::default()
        })
        .await
        .expect("withdrawn");
    until(&t, &mut app, &own, FaceResult::NotEnrolled).await;
    t.shutdown().await;
}
