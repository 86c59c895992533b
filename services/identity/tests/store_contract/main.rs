//! The store contract: one suite, run against the in-memory store and PostgreSQL.
//!
//! Each property is one `async fn` over an `Arc<dyn Store>`, in a module per concern
//! (subjects, challenges, binding, devices, enrolment, certificates, key ids, face); the `contract!` macro below
//! runs every one of them against both backends (a fresh PostgreSQL database per test,
//! from `citypass_testkit`; without `CITYPASS_TEST_DATABASE_URL` the PostgreSQL half
//! fails rather than skips). If the backends ever disagree, one of these fails. A
//! property left out of the list is dead code, which the lints refuse.

mod binding;
mod certificates;
mod challenges;
mod devices;
mod enrolment;
mod face;
mod keys;
mod subjects;
mod support;

use std::sync::Arc;

use citypass_identity::store::Store;
use citypass_identity::{MemoryStore, PostgresStore};

// --- both backends ----------------------------------------------------------------------

fn memory_store() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

async fn postgres_store() -> Arc<dyn Store> {
    let (pool, _url) = citypass_testkit::fresh_database().await;
    Arc::new(
        PostgresStore::new(pool)
            .await
            .expect("migrations apply to a fresh database"),
    )
}

citypass_testkit::contract_suite!(
    memory => super::memory_store(),
    postgres => super::postgres_store().await;
    [
        subjects::subjects_are_stored_and_found,
        keys::government_pseudonyms_are_stored_with_their_key_id,
        subjects::one_enrolled_subject_per_document,
        subjects::concurrent_enrolments_of_one_document_have_one_winner,
        subjects::a_verified_enrolment_closes_pending_attempts,
        subjects::attribute_updates_keep_unset_fields,
        subjects::status_moves_only_between_active_and_suspended,
        challenges::challenges_need_an_active_subject,
        challenges::a_challenge_binds_once,
        challenges::concurrent_binds_with_one_challenge_have_one_winner,
        challenges::a_challenge_belongs_to_its_subject,
        challenges::expired_challenges_are_refused_and_change_nothing,
        challenges::only_the_newest_challenges_stay_outstanding,
        binding::the_device_limit_holds_and_a_refused_bind_keeps_its_challenge,
        binding::concurrent_binds_respect_the_device_limit,
        binding::a_key_binds_once_ever,
        binding::a_subject_that_is_not_active_cannot_bind,
        devices::devices_are_listed_unbound_and_viewed,
        devices::devices_are_listed_in_pages,
        enrolment::finding_1_an_enrolment_secret_binds_once_and_only_its_subject,
        enrolment::finding_1_an_expired_enrolment_secret_binds_nothing,
        enrolment::finding_1_only_an_active_device_of_the_subject_authorises_another,
        certificates::certificates_are_recorded_once_per_serial,
        certificates::certificates_are_listed_by_device_and_subject,
        certificates::finding_3_live_certificates_are_capped_and_listed_in_pages,
        keys::finding_9_rows_keep_their_key_ids_and_are_found_under_any_key,
        keys::finding_9_one_document_enrols_once_across_keys,
        face::no_template_without_a_live_consent,
        face::withdrawing_the_last_consent_deletes_the_template_and_is_audited,
        face::the_feed_gives_each_subject_at_its_latest_change,
        face::birth_dates_are_kept_for_the_guardian_rule,
        face::a_request_nonce_is_used_once,
        face::unbinding_a_device_deletes_the_subjects_app_enrolled_face,
        face::finding_f8_an_app_enrolment_does_not_replace_a_counter_template,
    ]
);

#[test]
fn the_memory_store_is_a_store() {
    fn assert_store<S: Store>() {}
    assert_store::<MemoryStore>();
    assert_store::<PostgresStore>();
}
