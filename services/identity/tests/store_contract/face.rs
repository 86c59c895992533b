//! Face enrolment (issue 14): no template without a live consent, withdrawal deletes
//! the row at once, the processing record, the feed and request nonces.

use std::sync::Arc;

use citypass_face::TemplateChannel;
use citypass_face::{Embedding, SealedTemplate, TemplateKeys};
use citypass_identity::error::Error;
use citypass_identity::face::{Consent, NewTemplate};
use citypass_identity::ids::SubjectId;
use citypass_identity::store::{Store, UNBOUND_DEVICE_ACTOR};
use citypass_proto::v1::{FaceChannel, FacePurpose, SubjectStatus};

use crate::support::{active_subject, at, bound_device, new_subject};

const ACTOR: &str = "operator:counter-1";

pub(crate) fn sealed(subject: SubjectId, seed: u32) -> SealedTemplate {
    TemplateKeys::new((1, &[7; 32]), &[])
        .unwrap()
        .seal(
            &subject.to_string(),
            TemplateChannel::Counter,
            &Embedding::sample(seed),
        )
        .unwrap()
}

fn consent(subject: SubjectId, purpose: FacePurpose) -> Consent {
    Consent {
        subject_id: subject,
        purpose,
        text_version: "face-2026-06".to_owned(),
        places: match purpose {
            FacePurpose::FacePass => vec!["station:L1-S03".to_owned()],
            _ => Vec::new(),
        },
        guardian: None,
        channel: FaceChannel::Counter,
        granted_at: at(1),
    }
}

/// A template as a counter enrols it (no device; `ACTOR` is a counter).
fn template(subject: SubjectId, seed: u32) -> NewTemplate {
    NewTemplate {
        subject_id: subject,
        sealed: sealed(subject, seed),
        channel: FaceChannel::Counter,
        device: None,
    }
}

pub(crate) async fn no_template_without_a_live_consent(store: Arc<dyn Store>) {
    let subject = active_subject(&store, 1).await;
    assert!(matches!(
        store.enrol_face(template(subject, 1), ACTOR, at(2)).await,
        Err(Error::FaceConsentRequired)
    ));
    assert_eq!(store.face_template(subject).await.unwrap(), None);
    assert_eq!(store.face_stats().await.unwrap().enrolled_people, 0);
    // With a consent it is stored, sealed as given, and counted.
    store
        .record_face_consent(consent(subject, FacePurpose::CounterCheck), ACTOR, at(1))
        .await
        .unwrap();
    let t = template(subject, 1);
    let enrolment = store.enrol_face(t.clone(), ACTOR, at(2)).await.unwrap();
    assert_eq!(enrolment.purposes, vec![FacePurpose::CounterCheck]);
    assert_eq!(
        (enrolment.enrolled_before, enrolment.enrolled_after),
        (0, 1)
    );
    assert_eq!(store.face_template(subject).await.unwrap(), Some(t.sealed));
    // Enrolled again: the template is replaced and the person counted once.
    let again = store
        .enrol_face(template(subject, 3), ACTOR, at(2))
        .await
        .unwrap();
    assert_eq!((again.enrolled_before, again.enrolled_after), (1, 1));
    assert_eq!(store.face_stats().await.unwrap().enrolled_people, 1);
    // A consent withdrawn leaves nothing to enrol under.
    store
        .withdraw_face_consent(subject, None, FaceChannel::App, ACTOR, at(3))
        .await
        .unwrap();
    assert!(matches!(
        store.enrol_face(template(subject, 2), ACTOR, at(4)).await,
        Err(Error::FaceConsentRequired)
    ));
    // Unknown and suspended subjects neither consent nor enrol.
    let unknown = SubjectId::generate().unwrap();
    assert!(matches!(
        store
            .record_face_consent(consent(unknown, FacePurpose::CounterCheck), ACTOR, at(1))
            .await,
        Err(Error::SubjectNotFound)
    ));
    let suspended = store
        .insert_subject(new_subject(2, SubjectStatus::Active), at(0))
        .await
        .unwrap()
        .id;
    store
        .record_face_consent(consent(suspended, FacePurpose::CounterCheck), ACTOR, at(1))
        .await
        .unwrap();
    store
        .set_subject_status(suspended, SubjectStatus::Suspended, "test", at(1))
        .await
        .unwrap();
    assert!(matches!(
        store.enrol_face(template(suspended, 3), ACTOR, at(2)).await,
        Err(Error::SubjectNotActive { .. })
    ));
}

pub(crate) async fn withdrawing_the_last_consent_deletes_the_template_and_is_audited(
    store: Arc<dyn Store>,
) {
    let subject = active_subject(&store, 1).await;
    for purpose in [FacePurpose::CounterCheck, FacePurpose::FacePass] {
        store
            .record_face_consent(consent(subject, purpose), ACTOR, at(1))
            .await
            .unwrap();
    }
    let enrolment = store
        .enrol_face(template(subject, 1), ACTOR, at(2))
        .await
        .unwrap();
    assert_eq!(
        enrolment.purposes,
        vec![FacePurpose::CounterCheck, FacePurpose::FacePass]
    );
    // One purpose withdrawn: the template stays for the other.
    let w = store
        .withdraw_face_consent(
            subject,
            Some(FacePurpose::FacePass),
            FaceChannel::App,
            "device:d",
            at(3),
        )
        .await
        .unwrap();
    assert_eq!(w.withdrawn, vec![FacePurpose::FacePass]);
    assert!(!w.template_deleted);
    assert!(store.face_template(subject).await.unwrap().is_some());
    let consents = store.face_consents(subject).await.unwrap();
    assert_eq!(consents.len(), 1);
    assert_eq!(consents[0].purpose, FacePurpose::CounterCheck);
    // Withdrawing it again changes nothing.
    let again = store
        .withdraw_face_consent(
            subject,
            Some(FacePurpose::FacePass),
            FaceChannel::App,
            "device:d",
            at(3),
        )
        .await
        .unwrap();
    assert!(again.withdrawn.is_empty() && !again.template_deleted);
    // The last one: the template row goes at once.
    let w = store
        .withdraw_face_consent(subject, None, FaceChannel::Counter, ACTOR, at(4))
        .await
        .unwrap();
    assert_eq!(w.withdrawn, vec![FacePurpose::CounterCheck]);
    assert!(w.template_deleted);
    assert_eq!(store.face_template(subject).await.unwrap(), None);
    assert_eq!(store.face_stats().await.unwrap().enrolled_people, 0);
    // The processing record: who, what, when, which purpose.
    let audit: Vec<_> = store
        .face_audit(subject)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.action, a.purpose, a.channel, a.actor, a.at))
        .collect();
    assert_eq!(
        audit,
        vec![
            (
                "consent",
                Some(FacePurpose::CounterCheck),
                FaceChannel::Counter,
                ACTOR.to_owned(),
                at(1)
            ),
            (
                "consent",
                Some(FacePurpose::FacePass),
                FaceChannel::Counter,
                ACTOR.to_owned(),
                at(1)
            ),
            ("enrol", None, FaceChannel::Counter, ACTOR.to_owned(), at(2)),
            (
                "withdraw",
                Some(FacePurpose::FacePass),
                FaceChannel::App,
                "device:d".to_owned(),
                at(3)
            ),
            (
                "withdraw",
                Some(FacePurpose::CounterCheck),
                FaceChannel::Counter,
                ACTOR.to_owned(),
                at(4)
            ),
            (
                "delete",
                None,
                FaceChannel::Counter,
                ACTOR.to_owned(),
                at(4)
            ),
        ]
    );
}

pub(crate) async fn the_feed_gives_each_subject_at_its_latest_change(store: Arc<dyn Store>) {
    let a = active_subject(&store, 1).await;
    let b = active_subject(&store, 2).await;
    assert!(store.face_changes(0, 10).await.unwrap().is_empty());
    for s in [a, b] {
        store
            .record_face_consent(consent(s, FacePurpose::FacePass), ACTOR, at(1))
            .await
            .unwrap();
    }
    // A consent without a template is not in the feed.
    assert!(store.face_changes(0, 10).await.unwrap().is_empty());
    // a's from the app, through a bound phone.
    let phone = bound_device(&store, a, 0).await;
    let ta = NewTemplate {
        channel: FaceChannel::App,
        device: Some(phone),
        ..template(a, 1)
    };
    store
        .enrol_face(ta.clone(), "device:p", at(2))
        .await
        .unwrap();
    store
        .enrol_face(template(b, 2), ACTOR, at(2))
        .await
        .unwrap();
    let feed = store.face_changes(0, 10).await.unwrap();
    assert_eq!(
        feed.iter().map(|e| e.subject_id).collect::<Vec<_>>(),
        vec![a, b]
    );
    let first = feed[0].template.clone().expect("a's template");
    assert_eq!(first.sealed, ta.sealed);
    assert_eq!(first.purposes, vec![FacePurpose::FacePass]);
    assert_eq!(first.face_pass_places, vec!["station:L1-S03".to_owned()]);
    assert_eq!(first.enrolled_at, at(2));
    assert_eq!(first.channel, FaceChannel::App);
    assert_eq!(first.device, ta.device);
    assert!(feed[0].sequence < feed[1].sequence);
    // Paging: one at a time, then nothing after the last.
    let page = store.face_changes(0, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    let rest = store.face_changes(page[0].sequence, 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].subject_id, b);
    let cursor = rest[0].sequence;
    assert!(store.face_changes(cursor, 10).await.unwrap().is_empty());
    // The last sequence given out covers every change listed (a follower above it
    // has missed changes: F5).
    let last = store.face_last_sequence().await.unwrap();
    assert!(last >= cursor, "{last} < {cursor}");
    // A's withdrawal: after the cursor, a appears once, removed.
    store
        .withdraw_face_consent(a, None, FaceChannel::App, "device:d", at(3))
        .await
        .unwrap();
    let after = store.face_changes(cursor, 10).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].subject_id, a);
    assert_eq!(after[0].template, None);
    assert!(store.face_last_sequence().await.unwrap() >= after[0].sequence);
    // From the start: b, then a (at its latest change), removed.
    let all = store.face_changes(0, 10).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|e| (e.subject_id, e.template.is_some()))
            .collect::<Vec<_>>(),
        vec![(b, true), (a, false)]
    );
    let stats = store.face_stats().await.unwrap();
    assert_eq!(
        (
            stats.enrolled_people,
            stats.face_pass_consents,
            stats.counter_check_consents
        ),
        (1, 1, 0)
    );
}

pub(crate) async fn birth_dates_are_kept_for_the_guardian_rule(store: Arc<dyn Store>) {
    let mut child = new_subject(1, SubjectStatus::Active);
    child.born_on = citypass_identity::document::Date::from_number(20200229);
    let child = store.insert_subject(child, at(0)).await.unwrap().id;
    assert_eq!(
        store.get_birth_date(child).await.unwrap(),
        citypass_identity::document::Date::from_number(20200229)
    );
    let mut unknown = new_subject(2, SubjectStatus::Active);
    unknown.born_on = None;
    let unknown = store.insert_subject(unknown, at(0)).await.unwrap().id;
    assert_eq!(store.get_birth_date(unknown).await.unwrap(), None);
    assert!(matches!(
        store.get_birth_date(SubjectId::generate().unwrap()).await,
        Err(Error::SubjectNotFound)
    ));
    // A guardian is recorded with the consent.
    let guardian = active_subject(&store, 3).await;
    let mut c = consent(child, FacePurpose::CounterCheck);
    c.guardian = Some(guardian);
    store
        .record_face_consent(c.clone(), ACTOR, at(1))
        .await
        .unwrap();
    assert_eq!(store.face_consents(child).await.unwrap(), vec![c]);
}

pub(crate) async fn a_request_nonce_is_used_once(store: Arc<dyn Store>) {
    assert!(
        store
            .first_use_nonce("nonce:a", at(10), at(0))
            .await
            .unwrap()
    );
    assert!(
        !store
            .first_use_nonce("nonce:a", at(10), at(5))
            .await
            .unwrap()
    );
    assert!(
        store
            .first_use_nonce("nonce:b", at(10), at(5))
            .await
            .unwrap()
    );
    // After its mark expires the key may be marked again.
    assert!(
        store
            .first_use_nonce("nonce:a", at(30), at(11))
            .await
            .unwrap()
    );
    assert!(
        !store
            .first_use_nonce("nonce:a", at(40), at(12))
            .await
            .unwrap()
    );
}

/// A face enrolled from the app shows whatever face the phone's holder chose: once any
/// of the subject's phones is unbound (lost, replaced) that face goes, in the same step,
/// and the feed says so (a thief may have enrolled it from a second device the lost one
/// authorised); a counter's stays, and so do the consents. An enrolment from a device
/// no longer bound stores nothing.
pub(crate) async fn unbinding_a_device_deletes_the_subjects_app_enrolled_face(
    store: Arc<dyn Store>,
) {
    let subject = active_subject(&store, 1).await;
    let lost = bound_device(&store, subject, 1).await;
    let second = bound_device(&store, subject, 2).await;
    store
        .record_face_consent(consent(subject, FacePurpose::FacePass), "device:p", at(3))
        .await
        .unwrap();
    // Enrolled from the second device; the first is the one reported lost.
    let from_phone = NewTemplate {
        channel: FaceChannel::App,
        device: Some(second),
        ..template(subject, 1)
    };
    store
        .enrol_face(from_phone.clone(), "device:p", at(4))
        .await
        .unwrap();
    let cursor = store
        .face_changes(0, 100)
        .await
        .unwrap()
        .last()
        .unwrap()
        .sequence;
    store
        .unbind_device(subject, lost, "lost", at(6))
        .await
        .unwrap();
    assert_eq!(store.face_template(subject).await.unwrap(), None);
    assert_eq!(store.face_stats().await.unwrap().enrolled_people, 0);
    let changes = store.face_changes(cursor, 100).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].subject_id, subject);
    assert!(changes[0].template.is_none(), "the feed removes it");
    let last = store.face_audit(subject).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.action, last.actor.as_str(), last.at),
        ("delete", UNBOUND_DEVICE_ACTOR, at(6))
    );
    assert_eq!(
        store.face_consents(subject).await.unwrap().len(),
        1,
        "the consents stay"
    );
    // Unbinding it again changes nothing more.
    store
        .unbind_device(subject, lost, "lost", at(7))
        .await
        .unwrap();
    let again = store.face_changes(cursor, 100).await.unwrap();
    assert_eq!(
        again.iter().map(|c| c.sequence).collect::<Vec<_>>(),
        vec![changes[0].sequence],
        "no new change"
    );
    assert_eq!(store.face_audit(subject).await.unwrap().len(), 3);
    // An enrolment that was in flight from the unbound phone stores nothing.
    let late = NewTemplate {
        channel: FaceChannel::App,
        device: Some(lost),
        ..template(subject, 2)
    };
    assert!(matches!(
        store.enrol_face(late, "device:p", at(8)).await,
        Err(Error::SigningDeviceNotActive)
    ));
    assert_eq!(store.face_template(subject).await.unwrap(), None);
    // The remaining phone still enrols.
    store
        .enrol_face(from_phone.clone(), "device:p", at(8))
        .await
        .unwrap();

    // A counter's enrolment is no phone's: unbinding a phone leaves it.
    let counter_subject = active_subject(&store, 2).await;
    let counter_phone = bound_device(&store, counter_subject, 8).await;
    store
        .record_face_consent(
            consent(counter_subject, FacePurpose::CounterCheck),
            ACTOR,
            at(9),
        )
        .await
        .unwrap();
    let at_counter = NewTemplate {
        channel: FaceChannel::Counter,
        device: None,
        ..template(counter_subject, 2)
    };
    store
        .enrol_face(at_counter.clone(), ACTOR, at(10))
        .await
        .unwrap();
    store
        .unbind_device(counter_subject, counter_phone, "lost", at(11))
        .await
        .unwrap();
    assert_eq!(
        store.face_template(counter_subject).await.unwrap(),
        Some(at_counter.sealed)
    );
}

/// Face review finding F8: a template a counter enrolled (the document seen in person,
/// what the lending check trusts) is not replaced by an app enrolment; the citizen
/// withdraws (deleting it) and then enrols from the app. A counter replaces an app's.
pub(crate) async fn finding_f8_an_app_enrolment_does_not_replace_a_counter_template(
    store: Arc<dyn Store>,
) {
    let subject = active_subject(&store, 1).await;
    let phone = bound_device(&store, subject, 0).await;
    let from_app = |seed| NewTemplate {
        channel: FaceChannel::App,
        device: Some(phone),
        ..template(subject, seed)
    };
    store
        .record_face_consent(consent(subject, FacePurpose::CounterCheck), ACTOR, at(1))
        .await
        .unwrap();
    let counter = NewTemplate {
        channel: FaceChannel::Counter,
        device: None,
        ..template(subject, 1)
    };
    store
        .enrol_face(counter.clone(), "counter:desk-1", at(2))
        .await
        .unwrap();
    assert!(matches!(
        store.enrol_face(from_app(2), ACTOR, at(3)).await,
        Err(Error::CounterTemplateExists)
    ));
    assert_eq!(
        store.face_template(subject).await.unwrap(),
        Some(counter.sealed.clone()),
        "the counter's template stays"
    );
    // The citizen withdraws; after a new consent the app enrols.
    store
        .withdraw_face_consent(subject, None, FaceChannel::App, ACTOR, at(4))
        .await
        .unwrap();
    store
        .record_face_consent(consent(subject, FacePurpose::CounterCheck), ACTOR, at(5))
        .await
        .unwrap();
    let app = from_app(3);
    store.enrol_face(app.clone(), ACTOR, at(6)).await.unwrap();
    assert_eq!(
        store.face_template(subject).await.unwrap(),
        Some(app.sealed)
    );
    // A counter's enrolment replaces the app's.
    let again = NewTemplate {
        channel: FaceChannel::Counter,
        device: None,
        ..template(subject, 4)
    };
    store
        .enrol_face(again.clone(), "counter:desk-1", at(7))
        .await
        .unwrap();
    assert_eq!(
        store.face_template(subject).await.unwrap(),
        Some(again.sealed)
    );
}
