//! The counter's face check through the running service: a hospital desk that requires
//! the holder confirmed and a government counter that offers it, with templates in the
//! verifier's galleries (as identity's feed puts them there).

use citypass_face::{DIMENSION, Embedding};
use citypass_proto::v1::{self as pb, FaceCheck, LiveFace};
use citypass_runtime::reason_of;
use citypass_token::{Scopes, SubjectId};
use tonic::Code;

use crate::support::{Harness, SUBJECT, allowed, denied, request, verify};

/// A unit embedding along `axis`, tilted towards axis 0 by `tilt` (a second photo of
/// the same face is a small tilt).
fn face(axis: usize, tilt: f32) -> Embedding {
    let mut raw = vec![0.0f32; DIMENSION];
    raw[axis] = 1.0;
    raw[0] += tilt;
    Embedding::normalise(&raw).unwrap()
}

fn live(face: &Embedding) -> Option<LiveFace> {
    Some(LiveFace {
        embedding: face.values().to_vec(),
    })
}

fn check(result: pb::FaceResult, band: pb::FaceScoreBand, id_card: bool) -> Option<FaceCheck> {
    Some(FaceCheck {
        result: result as i32,
        band: band as i32,
        id_card_required: id_card,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desk_confirms_the_holder_by_face_or_asks_for_the_id_card() {
    let h = Harness::start().await;
    let mut desk = h.gate("hospital-desk-1");
    let s = pb::Scene::Hospital;
    // A code is single use: each scan shows a fresh one (a retry repeats its own).
    let codes: Vec<_> = (0..5).map(|_| h.code(Scopes::all()).text).collect();
    let scan = |id: &str, face: Option<LiveFace>| {
        let n: usize = id[2..].parse().unwrap();
        pb::VerifyRequest {
            live_face: face,
            ..request("hospital-desk-1", s, id, &codes[n - 1])
        }
    };

    // Not enrolled: allowed, the desk checks the ID card (never a refusal).
    let answer = verify(&mut desk, scan("f-1", live(&face(1, 0.2)))).await;
    allowed(&answer);
    assert_eq!(
        answer.face_check,
        check(
            pb::FaceResult::NotEnrolled,
            pb::FaceScoreBand::Unspecified,
            true
        )
    );

    h.faces
        .enrol_counter(SubjectId::from_bytes(SUBJECT), &face(1, 0.0));
    let answer = verify(&mut desk, scan("f-2", live(&face(1, 0.2)))).await;
    allowed(&answer);
    assert_eq!(
        answer.face_check,
        check(pb::FaceResult::Match, pb::FaceScoreBand::High, false)
    );
    // A retry gets the first check back, whatever face it carries: one comparison per
    // scan, so a counter cannot probe the holder's template by retrying (review
    // finding 1).
    let retry = verify(&mut desk, scan("f-2", live(&face(7, 0.0)))).await;
    assert!(retry.idempotent_replay);
    assert_eq!(retry.face_check, answer.face_check);

    // Someone else's face with this code: the ID card, not a refusal.
    let answer = verify(&mut desk, scan("f-3", live(&face(7, 0.0)))).await;
    allowed(&answer);
    assert_eq!(
        answer.face_check,
        check(pb::FaceResult::NoMatch, pb::FaceScoreBand::None, true)
    );
    // No face sent at a desk that requires the holder confirmed.
    let answer = verify(&mut desk, scan("f-4", None)).await;
    allowed(&answer);
    assert_eq!(
        answer.face_check,
        check(
            pb::FaceResult::NotPresented,
            pb::FaceScoreBand::Unspecified,
            true
        )
    );

    // Withdrawn: gone at once.
    assert!(h.faces.withdraw_counter(&SubjectId::from_bytes(SUBJECT)));
    let answer = verify(&mut desk, scan("f-5", live(&face(1, 0.0)))).await;
    assert_eq!(
        answer.face_check.map(|c| c.result),
        Some(pb::FaceResult::NotEnrolled as i32)
    );

    // A refused code carries no face check.
    let stranger = h
        .stranger
        .issue_token(&SUBJECT, Scopes::all(), citypass_token::unix_now(), 60);
    let stranger = stranger.unwrap();
    let answer = verify(
        &mut desk,
        pb::VerifyRequest {
            live_face: live(&face(1, 0.0)),
            ..request("hospital-desk-1", s, "f-6", &stranger.text)
        },
    )
    .await;
    denied(&answer);
    assert_eq!(answer.face_check, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offered_check_requires_nothing_and_other_scenes_take_no_face() {
    let h = Harness::start().await;
    h.faces
        .enrol_counter(SubjectId::from_bytes(SUBJECT), &face(1, 0.0));
    let code = h.code(Scopes::all());
    let mut counter = h.gate("hall-counter-1");
    let answer = verify(
        &mut counter,
        pb::VerifyRequest {
            live_face: live(&face(9, 0.0)),
            ..request("hall-counter-1", pb::Scene::Government, "g-1", &code.text)
        },
    )
    .await;
    allowed(&answer);
    assert_eq!(
        answer.face_check,
        check(pb::FaceResult::NoMatch, pb::FaceScoreBand::None, false)
    );

    // A scenic gate (face policy off) is refused a face: no biometric data where unused.
    let mut gate = h.gate("scenic-1");
    let status = gate
        .verify(pb::VerifyRequest {
            live_face: live(&face(1, 0.0)),
            ..request("scenic-1", pb::Scene::Scenic, "s-1", &code.text)
        })
        .await
        .expect_err("a status");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason_of(&status).as_deref(), Some("FACE_NOT_USED_HERE"));

    // An embedding that is not one: refused before any decision.
    let mut desk = h.gate("hospital-desk-1");
    for embedding in [vec![0.5f32; 3], vec![0.0; DIMENSION], vec![1.0; DIMENSION]] {
        let status = desk
            .verify(pb::VerifyRequest {
                live_face: Some(LiveFace { embedding }),
                ..request("hospital-desk-1", pb::Scene::Hospital, "h-x", &code.text)
            })
            .await
            .expect_err("a status");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(reason_of(&status).as_deref(), Some("BAD_FACE_EMBEDDING"));
    }
}
