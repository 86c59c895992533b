//! The 1:N face pass end to end (issue 14, 刷脸通行): a rider consents to face pass at
//! two stations and enrols a face (identity on PostgreSQL, over mTLS); the stack's
//! verifier follows identity's template feed into its per-station galleries; the
//! rider walks in at the stack's face-pass entry and out at its face-pass exit with
//! no phone, and payments prices one trip, as for a code. A rider who declined face
//! is not recognised by face and passes the same gate by QR code.

use std::time::{Duration, Instant};

use citypass_e2e::{
    TestStack, decide, dev_ring, ids, link_sandbox, online_code, scan, trips_until, within,
};
use citypass_face::Embedding;
use citypass_proto::v1::{
    self as pb, EnrolFaceRequest, FacePurpose, LiveFace, Liveness, RecordFaceConsentRequest,
    VerifyFaceRequest, VerifyResponse,
};

/// `live` before the camera of face-pass gate `gate`, with the gate's liveness check.
async fn face_scan(t: &TestStack, gate: &str, scan_id: &str, live: &Embedding) -> VerifyResponse {
    let mut client = t.verifier(gate).await;
    let request = VerifyFaceRequest {
        scan_id: scan_id.to_owned(),
        live_face: Some(LiveFace {
            embedding: live.values().to_vec(),
        }),
        liveness: Some(Liveness {
            checked: true,
            score: 0.95,
            model: "e2e".to_owned(),
        }),
        direction: pb::Direction::Unspecified as i32,
    };
    within("verify face", client.verify_face(request))
        .await
        .expect("an answer")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consenting_rider_rides_by_face_and_a_declining_one_by_code() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let mut rider = t.citizen("韩梅梅").await;
    link_sandbox(&mut rider, "agr_sandbox_e2e_face_pass").await;
    let (subject_id, _) = ids(&rider);
    let own = Embedding::sample(21);

    // The separate FACE_PASS consent, for the two stations, then the enrolment, in
    // person at a face counter (its own role: face review F8).
    let mut identity = t.face_counter("hospital-desk-1").await;
    identity
        .record_face_consent(RecordFaceConsentRequest {
            subject_id: subject_id.clone(),
            purpose: FacePurpose::FacePass as i32,
            text_version: "face-pass-2026-06".to_owned(),
            places: vec!["station:pingguoyuan".to_owned(), "station:xidan".to_owned()],
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

    // In by face once the feed has brought the template (not recognised until then:
    // a refusal leaves nothing behind, so each try is a new scan).
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut n = 0;
    let entry = loop {
        n += 1;
        let answer = face_scan(&t, "metro-face-in", &format!("in-{n}"), &own).await;
        if answer.decision() == pb::Decision::Allow {
            break answer;
        }
        assert_eq!(
            answer.deny_reason(),
            pb::DenyReason::FaceNotRecognised,
            "{answer:?}"
        );
        assert!(Instant::now() < deadline, "never recognised: {answer:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(entry.code_kind(), pb::CodeKind::Face);
    let Some(pb::verify_response::SceneResult::Transit(opened)) = &entry.scene_result else {
        panic!("a trip: {entry:?}");
    };

    // Out by face at the other station: the trip closes, priced.
    let exit = face_scan(&t, "metro-face-out", "out-1", &own).await;
    assert_eq!(exit.decision(), pb::Decision::Allow, "{exit:?}");
    let trips = trips_until(&mut rider, "the face-pass trip", |trips| {
        trips.len() == 1 && trips[0].status() == pb::TripStatus::Closed
    })
    .await;
    assert_eq!(trips[0].trip_id, opened.trip_id);
    assert_eq!(
        (
            trips[0].entry_station_id.as_str(),
            trips[0].exit_station_id.as_str()
        ),
        ("pingguoyuan", "xidan")
    );
    assert_eq!(trips[0].fare.as_ref().map(|f| f.minor_units), Some(500));

    // A rider who declined face: not recognised at the face-pass gate, and their code
    // opens the same gate.
    let mut declined = t.citizen("李雷").await;
    link_sandbox(&mut declined, "agr_sandbox_e2e_face_declined").await;
    let answer = face_scan(&t, "metro-face-in", "in-declined", &Embedding::sample(22)).await;
    assert_eq!(answer.deny_reason(), pb::DenyReason::FaceNotRecognised);
    let code = online_code(&mut declined).await;
    let by_code = decide(
        &t,
        "metro-face-in",
        scan("metro-face-in", pb::Scene::Metro, "qr-declined", &code),
    )
    .await;
    assert_eq!(by_code.decision(), pb::Decision::Allow, "{by_code:?}");
    t.shutdown().await;
}
