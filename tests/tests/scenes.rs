//! The scene policies end to end: a citizen's app (enrol, bind, codes) against the
//! stack, whose verifier opens each code's subject with the stack's subject keys, reads
//! the citizen's profile from the stack's identity (over its own certificate, through
//! its cache) and decides at a hospital desk, a scenic gate and a government service
//! counter over mutual TLS. Identity on PostgreSQL; marks and venue counts in Redis.

use citypass_e2e::{TestStack, decide, deny_reason, dev_ring, ids, online_code, scan, within};
use citypass_proto::v1::verify_response::SceneResult;
use citypass_proto::v1::{self as pb, SetAttributesRequest, VerifyResponse};
use citypass_token::{Scene, Scopes};

/// A museum of the test's own, one visitor a day (`StackConfig::scenic_venues`).
const MUSEUM: &str = "e2e-museum";

/// Hospital desk, park, museum and service hall, one citizen's codes (and a second
/// citizen at the full museum): each scene's result and refusals as its policy gives
/// them, from the stack's real identity and Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_at_the_hospital_the_park_and_the_service_hall() {
    use citypass_verifier::subjects::cache::ProfileCache;
    use citypass_verifier::subjects::identity::IdentityProfiles;
    use std::sync::Arc;
    use std::time::Duration;

    let t = TestStack::with_ring_and(&dev_ring(), |config| {
        config.scenic_venues.push((
            MUSEUM.to_owned(),
            citypass_verifier::VenueSettings {
                capacity: 1,
                ..citypass_verifier::VenueSettings::default()
            },
        ));
    })
    .await;
    let mut app = t.citizen("李小红").await;
    let (subject_id, _) = ids(&app);

    // Identity links the citizen's medical insurance (an identity admin's call), before
    // the verifier has read the profile.
    within(
        "set attributes",
        t.identity().await.set_attributes(SetAttributesRequest {
            subject_id: subject_id.clone(),
            medical_insurance_linked: Some(true),
            ..SetAttributesRequest::default()
        }),
    )
    .await
    .expect("attributes set");
    // The profile as the verifier's cache reads it, to compare the counter's answer
    // with.
    let profile = within(
        "profile",
        ProfileCache::new(
            Arc::new(IdentityProfiles::new(
                t.identity_as(&citypass_pki::Subject::service("verifier"))
                    .await,
            )),
            Duration::from_secs(60),
            10,
            Duration::from_secs(5),
        )
        .get(citypass_token::SubjectId::parse(&subject_id).unwrap(), None),
    )
    .await
    .expect("a profile");

    // Hospital desk: ALLOW with the hospital pseudonym and the insurance fact, nothing
    // else; the gate's retry gets the same result (derived again from the subject the
    // holder step opened), and the citizen's next code the same pseudonym.
    let h = pb::Scene::Hospital;
    let code = online_code(&mut app).await;
    let first = decide(
        &t,
        "hospital-desk-1",
        scan("hospital-desk-1", h, "h-1", &code),
    )
    .await;
    let patient = hospital(&first);
    assert!(patient.medical_insurance_linked, "{first:?}");
    assert!(is_pseudonym(&patient.patient_pseudonym), "{first:?}");
    let retried = decide(
        &t,
        "hospital-desk-1",
        scan("hospital-desk-1", h, "h-1", &code),
    )
    .await;
    assert!(retried.idempotent_replay, "{retried:?}");
    assert_eq!(hospital(&retried), patient);
    let code = online_code(&mut app).await;
    let next = decide(
        &t,
        "hospital-desk-1",
        scan("hospital-desk-1", h, "h-2", &code),
    )
    .await;
    assert_eq!(hospital(&next), patient, "one patient, one pseudonym");

    // Scenic gate (the dev park: once a day): the first code enters, with the venue
    // pseudonym (not the hospital's); another code of the same citizen the same day is
    // refused with the policy's reason.
    let s = pb::Scene::Scenic;
    let code = online_code(&mut app).await;
    let entered = decide(&t, "scenic-gate-1", scan("scenic-gate-1", s, "p-1", &code)).await;
    let visit = scenic(&entered);
    assert!(is_pseudonym(&visit.venue_pseudonym), "{entered:?}");
    assert_ne!(visit.venue_pseudonym, patient.patient_pseudonym);
    assert_eq!((visit.entries_today, visit.remaining_capacity), (1, 999));
    let code = online_code(&mut app).await;
    let again = decide(&t, "scenic-gate-1", scan("scenic-gate-1", s, "p-2", &code)).await;
    assert_eq!(deny_reason(&again), pb::DenyReason::AlreadyEnteredToday);

    // The museum (capacity 1): the citizen enters, the next visitor is refused.
    let museum_gate = citypass_stack::venue_gate_id(MUSEUM);
    let code = online_code(&mut app).await;
    let entered = decide(&t, &museum_gate, scan(&museum_gate, s, "m-1", &code)).await;
    let museum_visit = scenic(&entered);
    assert_eq!(
        (museum_visit.entries_today, museum_visit.remaining_capacity),
        (1, 0)
    );
    assert_ne!(
        museum_visit.venue_pseudonym, visit.venue_pseudonym,
        "one pseudonym per venue"
    );
    let mut other = t.citizen("王小明").await;
    let code = online_code(&mut other).await;
    let full = decide(&t, &museum_gate, scan(&museum_gate, s, "m-2", &code)).await;
    assert_eq!(deny_reason(&full), pb::DenyReason::CapacityReached);

    // Government counter: a code without the government scope (the issuer's default)
    // is refused at the scope step; asked for (`--scope government`), ALLOW with the
    // masked name and the government pseudonym identity holds.
    let g = pb::Scene::Government;
    let code = online_code(&mut app).await;
    let refused = decide(
        &t,
        "hall-counter-1",
        scan("hall-counter-1", g, "g-1", &code),
    )
    .await;
    assert_eq!(deny_reason(&refused), pb::DenyReason::ScopeNotAllowed);
    app.set_scopes(Some([Scene::Government].into_iter().collect::<Scopes>()));
    let code = online_code(&mut app).await;
    let served = decide(
        &t,
        "hall-counter-1",
        scan("hall-counter-1", g, "g-2", &code),
    )
    .await;
    assert_eq!(served.decision(), pb::Decision::Allow, "{served:?}");
    let Some(SceneResult::Government(citizen)) = &served.scene_result else {
        panic!("a government result: {served:?}");
    };
    assert_eq!(citizen.masked_name, profile.masked_name);
    assert!(!citizen.masked_name.contains("小红"));
    assert_eq!(
        citizen.assurance_level(),
        pb::AssuranceLevel::RealNameVerified
    );
    assert_eq!(
        Some(&citizen.government_pseudonym),
        profile.government_pseudonym.as_ref()
    );
}

/// The hospital result of an ALLOW decided by the policy (not failed open).
fn hospital(response: &VerifyResponse) -> pb::HospitalResult {
    assert_eq!(response.decision(), pb::Decision::Allow, "{response:?}");
    assert!(!response.fail_open, "{response:?}");
    match &response.scene_result {
        Some(SceneResult::Hospital(result)) => result.clone(),
        _ => panic!("a hospital result: {response:?}"),
    }
}

/// The scenic result of an ALLOW decided by the policy (scenic gates fail open in the
/// stack: a failed-open ALLOW has no result and fails here).
fn scenic(response: &VerifyResponse) -> pb::ScenicResult {
    assert_eq!(response.decision(), pb::Decision::Allow, "{response:?}");
    assert!(!response.fail_open, "{response:?}");
    match &response.scene_result {
        Some(SceneResult::Scenic(result)) => result.clone(),
        _ => panic!("a scenic result: {response:?}"),
    }
}

/// 32 lower-case hex characters.
fn is_pseudonym(text: &str) -> bool {
    text.len() == 32
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
