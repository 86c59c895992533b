//! The 1:N face pass (刷脸通行) through the running service: VerifyFace from gates the
//! registry marks `face_pass`, matched against the face-pass galleries (as identity's
//! feed fills them), then the same pipeline as a code: revocation, the scan id and the
//! face-pass window in Redis, the transit policy's taps.

use std::sync::Arc;
use std::time::Duration;

use citypass_face::Embedding;
use citypass_proto::v1::verifier_service_client::VerifierServiceClient;
use citypass_proto::v1::{self as pb, LiveFace, Liveness, VerifyFaceRequest, VerifyResponse};
use citypass_runtime::reason_of;
use citypass_token::{DeviceId, SubjectId};
use citypass_verifier::TapKind;
use citypass_verifier::face::FaceGalleries;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::{Harness, SUBJECT, allowed, denied};

/// `base` moved towards `toward` by `t`, normalised: another photo of the same face.
fn blend(base: &Embedding, toward: &Embedding, t: f32) -> Embedding {
    let raw: Vec<f32> = base
        .values()
        .iter()
        .zip(toward.values())
        .map(|(a, b)| a * (1.0 - t) + b * t)
        .collect();
    Embedding::normalise(&raw).unwrap()
}

fn rider() -> SubjectId {
    SubjectId::from_bytes(SUBJECT)
}

fn places(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// The rider's gallery face, other riders at the same places, and the rider's live
/// face (another photo of the same person).
fn enrol_crowd(faces: &FaceGalleries) -> Embedding {
    faces.enrol_face_pass(
        rider(),
        &places(&["station:L1-S03", "station:L2-S01", "venue:west-lake"]),
        &Embedding::sample(1),
        None,
    );
    for n in (2..40u8).filter(|n| [*n; 16] != SUBJECT) {
        faces.enrol_face_pass(
            SubjectId::from_bytes([n; 16]),
            &places(&["station:L1-S03", "station:L2-S01"]),
            &Embedding::sample(u32::from(n)),
            None,
        );
    }
    blend(&Embedding::sample(1), &Embedding::sample(5000), 0.2)
}

fn face_request(scan_id: &str, face: &Embedding, liveness: Option<f32>) -> VerifyFaceRequest {
    VerifyFaceRequest {
        scan_id: scan_id.to_owned(),
        live_face: Some(LiveFace {
            embedding: face.values().to_vec(),
        }),
        liveness: liveness.map(|score| Liveness {
            checked: true,
            score,
            model: "test-liveness".to_owned(),
        }),
        direction: pb::Direction::Unspecified as i32,
    }
}

async fn verify_face(
    client: &mut VerifierServiceClient<Channel>,
    request: VerifyFaceRequest,
) -> VerifyResponse {
    client
        .verify_face(request)
        .await
        .expect("an answer, not a status")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consenting_rider_walks_through_and_pays_as_with_a_code() {
    let h = Harness::start().await;
    let live = enrol_crowd(&h.faces);
    let mut entry = h.gate("metro-face-in");

    let first = verify_face(&mut entry, face_request("fp-1", &live, None)).await;
    allowed(&first);
    assert_eq!(first.code_kind, pb::CodeKind::Face as i32);
    assert!(!first.idempotent_replay);
    let Some(pb::verify_response::SceneResult::Transit(trip)) = &first.scene_result else {
        panic!("a metro entry's trip: {first:?}");
    };
    let taps = h.transit.taps();
    assert_eq!(taps.len(), 1, "{taps:?}");
    assert_eq!(taps[0].kind, TapKind::MetroEntry);
    assert_eq!(taps[0].station_id, "L1-S03");
    assert_eq!(taps[0].gate_id, "metro-face-in");
    assert_eq!(taps[0].scan_id, "fp-1");
    // The rider's transit account, exactly as a code's holder would be charged.
    assert_eq!(trip.transit_account, taps[0].transit_account);
    assert_eq!(
        trip.transit_account,
        format!("ta-{}", hex::encode(&SUBJECT[..4]))
    );

    // The gate's retry of the same scan: the first answer, no second tap.
    let retry = verify_face(&mut entry, face_request("fp-1", &live, None)).await;
    allowed(&retry);
    assert!(retry.idempotent_replay);
    assert_eq!(retry.scene_result, first.scene_result);
    assert_eq!(h.transit.taps().len(), 1);

    // The same rider matched again at this gate within the window: one passage. The
    // gate reads it as any refusal after a match does, "scan your code" (face review
    // G2: the reason would tell a probing gate that it matched someone).
    let again = verify_face(&mut entry, face_request("fp-2", &live, None)).await;
    assert_eq!(denied(&again), pb::DenyReason::FaceNotRecognised);
    assert_eq!(h.transit.taps().len(), 1);

    // Out through the face-pass exit: the trip closes, priced, as with a code.
    let mut exit = h.gate("metro-face-out");
    let out = verify_face(&mut exit, face_request("fp-3", &live, None)).await;
    allowed(&out);
    let taps = h.transit.taps();
    assert_eq!(taps.len(), 2);
    assert_eq!(taps[1].kind, TapKind::MetroExit);
    assert_eq!(taps[1].transit_account, taps[0].transit_account);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_look_alikes_and_other_places_are_not_recognised() {
    let h = Harness::start().await;
    let live = enrol_crowd(&h.faces);
    let mut gate = h.gate("metro-face-in");
    let not_recognised = |r: &VerifyResponse| {
        assert_eq!(denied(r), pb::DenyReason::FaceNotRecognised, "{r:?}");
        assert!(r.scene_result.is_none());
    };

    // Someone who never enrolled.
    let stranger = Embedding::sample(9999);
    not_recognised(&verify_face(&mut gate, face_request("n-1", &stranger, None)).await);

    // A rider who consented at another station only.
    let elsewhere = SubjectId::from_bytes([77; 16]);
    h.faces.enrol_face_pass(
        elsewhere,
        &places(&["station:L9-S09"]),
        &Embedding::sample(77),
        None,
    );
    not_recognised(
        &verify_face(&mut gate, face_request("n-2", &Embedding::sample(77), None)).await,
    );

    // Two enrolled faces nearly equal: the margin rule refuses rather than guess.
    let twin = blend(&Embedding::sample(3), &Embedding::sample(6000), 0.05);
    h.faces.enrol_face_pass(
        SubjectId::from_bytes([78; 16]),
        &places(&["station:L1-S03"]),
        &twin,
        None,
    );
    not_recognised(&verify_face(&mut gate, face_request("n-3", &Embedding::sample(3), None)).await);

    // A withdrawal removes the rider's rows at every place at once.
    assert!(h.faces.withdraw_face_pass(&rider()));
    assert_eq!(h.faces.face_pass_len("west-lake"), 0);
    not_recognised(&verify_face(&mut gate, face_request("n-4", &live, None)).await);
    assert!(h.transit.taps().is_empty(), "no refusal reached payments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unattended_gates_need_liveness_and_other_gates_take_no_faces() {
    let h = Harness::start().await;
    let live = enrol_crowd(&h.faces);
    // Unattended, both ways: the request says which.
    let mut far = h.gate("metro-face-far");
    let entry = |id: &str, liveness| VerifyFaceRequest {
        direction: pb::Direction::Entry as i32,
        ..face_request(id, &live, liveness)
    };
    let answer = verify_face(&mut far, entry("l-1", None)).await;
    assert_eq!(denied(&answer), pb::DenyReason::LivenessRequired);
    let unchecked = VerifyFaceRequest {
        liveness: Some(Liveness {
            checked: false,
            score: 0.99,
            model: String::new(),
        }),
        ..entry("l-2", None)
    };
    let answer = verify_face(&mut far, unchecked).await;
    assert_eq!(denied(&answer), pb::DenyReason::LivenessRequired);
    let answer = verify_face(&mut far, entry("l-3", Some(0.2))).await;
    assert_eq!(denied(&answer), pb::DenyReason::LivenessFailed);
    // A score outside [0, 1], or one naming no model, is no liveness (face review G9).
    let answer = verify_face(&mut far, entry("l-31", Some(5.0))).await;
    assert_eq!(denied(&answer), pb::DenyReason::LivenessRequired);
    let modelless = VerifyFaceRequest {
        liveness: Some(Liveness {
            checked: true,
            score: 0.99,
            model: " ".to_owned(),
        }),
        ..entry("l-32", None)
    };
    let answer = verify_face(&mut far, modelless).await;
    assert_eq!(denied(&answer), pb::DenyReason::LivenessRequired);
    allowed(&verify_face(&mut far, entry("l-4", Some(0.9))).await);

    // A both-ways gate needs the direction, as for a code.
    let status = far
        .verify_face(face_request("l-5", &live, Some(0.9)))
        .await
        .expect_err("no direction at a both-ways gate");
    assert_eq!(status.code(), Code::InvalidArgument);
    // The same for a face that matches nobody: the direction is checked before the
    // search, so its refusal tells a probing gate nothing (face review G2).
    let stranger = far
        .verify_face(face_request("l-6", &Embedding::sample(9_999), Some(0.9)))
        .await
        .expect_err("no direction at a both-ways gate");
    assert_eq!(
        (stranger.code(), reason_of(&stranger)),
        (status.code(), reason_of(&status))
    );

    // Gates that offer no face pass: a bus, a metro gate without it, a hospital desk.
    for gate in ["bus-12", "metro-entry-1", "hospital-desk-1"] {
        let mut client = h.gate(gate);
        let answer = verify_face(&mut client, face_request("x-1", &live, Some(0.9))).await;
        assert_eq!(denied(&answer), pb::DenyReason::FacePassNotHere, "{gate}");
    }
    // An unknown gate.
    let mut ghost = h.gate("ghost-gate");
    let answer = verify_face(&mut ghost, face_request("x-2", &live, Some(0.9))).await;
    assert_eq!(denied(&answer), pb::DenyReason::UnknownGate);

    // Requests that are not usable: a status, not an answer.
    let mut gate = h.gate("metro-face-in");
    let bad = VerifyFaceRequest {
        live_face: Some(LiveFace {
            embedding: vec![0.5; 3],
        }),
        ..face_request("b-1", &live, None)
    };
    let status = gate.verify_face(bad).await.expect_err("a bad embedding");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason_of(&status).as_deref(), Some("BAD_FACE_EMBEDDING"));
    let status = gate
        .verify_face(face_request("", &live, None))
        .await
        .expect_err("no scan id");
    assert_eq!(reason_of(&status).as_deref(), Some("BAD_SCAN_ID"));
    let status = gate
        .verify_face(VerifyFaceRequest {
            live_face: None,
            ..face_request("b-2", &live, None)
        })
        .await
        .expect_err("no face");
    assert_eq!(reason_of(&status).as_deref(), Some("MISSING_FACE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenic_face_pass_counts_the_visit_and_a_revoked_rider_is_refused() {
    let mut h = Harness::start().await;
    let live = enrol_crowd(&h.faces);
    let mut park = h.gate("scenic-face-1");
    let answer = verify_face(&mut park, face_request("v-1", &live, Some(0.9))).await;
    allowed(&answer);
    let Some(pb::verify_response::SceneResult::Scenic(visit)) = &answer.scene_result else {
        panic!("a scenic result: {answer:?}");
    };
    assert_eq!(visit.entries_today, 1);

    let epoch = h
        .revocation
        .revoke(pb::TargetKind::Subject, &hex::encode(SUBJECT))
        .await;
    tokio::time::timeout(Duration::from_secs(30), h.revocations.wait_for_epoch(epoch))
        .await
        .expect("the follower applies the revocation");
    let mut entry = h.gate("metro-face-in");
    let refused = verify_face(&mut entry, face_request("r-1", &live, None)).await;
    // Refused (no tap), and said to the gate as a face it does not know (face review G2).
    assert_eq!(denied(&refused), pb::DenyReason::FaceNotRecognised);
    assert!(refused.revocation_epoch >= epoch, "{refused:?}");
    assert!(h.transit.taps().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_galleries_answer_unavailable_never_open() {
    // Galleries fed by a feed that never completes a sync.
    let faces = Arc::new(FaceGalleries::fed(Duration::from_secs(30)));
    let h = Harness::start_with_faces(faces).await;
    let live = enrol_crowd(&h.faces);
    let mut gate = h.gate("metro-face-in");
    let answer = verify_face(&mut gate, face_request("u-1", &live, None)).await;
    assert_eq!(denied(&answer), pb::DenyReason::FacePassUnavailable);
    h.faces.mark_synced();
    allowed(&verify_face(&mut gate, face_request("u-2", &live, None)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_face_enrolled_from_a_phone_since_revoked_is_not_used() {
    let mut h = Harness::start().await;
    let live = enrol_crowd(&h.faces);
    // The rider's template came from the app on this phone.
    let phone = DeviceId::from_bytes([42; 16]);
    h.faces.enrol_face_pass(
        rider(),
        &places(&["station:L1-S03"]),
        &Embedding::sample(1),
        Some(phone),
    );
    let mut entry = h.gate("metro-face-in");
    allowed(&verify_face(&mut entry, face_request("d-1", &live, None)).await);

    // The phone is reported stolen: its enrolment is not the rider's word any more.
    let epoch = h
        .revocation
        .revoke(pb::TargetKind::Device, &hex::encode([42u8; 16]))
        .await;
    tokio::time::timeout(Duration::from_secs(30), h.revocations.wait_for_epoch(epoch))
        .await
        .expect("the follower applies the revocation");
    let mut exit = h.gate("metro-face-out");
    let answer = verify_face(&mut exit, face_request("d-2", &live, None)).await;
    assert_eq!(denied(&answer), pb::DenyReason::FaceNotRecognised);
    // Another rider, enrolled at a counter, still passes.
    let other = blend(&Embedding::sample(2), &Embedding::sample(5001), 0.2);
    allowed(&verify_face(&mut exit, face_request("d-3", &other, None)).await);
}
