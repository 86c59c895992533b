//! The store contract: one suite, run against the in-memory store and PostgreSQL.
//!
//! Each property is one `async fn` over an `Arc<dyn PaymentsStore>`, in a module per
//! concern (links, trips, voids, exactly once, listing, the outbox worker, settlement,
//! late taps, providers' notifications); the `contract!` macro runs
//! every one against both backends (a fresh PostgreSQL database per test, from
//! `citypass_testkit`; without `CITYPASS_TEST_DATABASE_URL` the PostgreSQL half fails
//! rather than skips). Most properties drive the store through [`Payments`], the logic
//! that callers use, and end by checking the ledger's invariants.

mod exactly_once;
mod late;
mod links;
mod listing;
mod notifications;
mod outbox;
mod settlement;
mod support;
mod trips;
mod voids;

use std::sync::Arc;

use citypass_payments::{MemoryStore, PaymentsStore, PostgresStore};

fn memory_store() -> Arc<dyn PaymentsStore> {
    Arc::new(MemoryStore::new())
}

async fn postgres_store() -> Arc<dyn PaymentsStore> {
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
        links::links_are_made_read_and_unlinked_with_history,
        links::card_numbers_and_bad_input_store_nothing,
        links::concurrent_links_have_one_winner,
        trips::a_metro_trip_opens_at_entry_and_is_priced_at_exit,
        trips::a_bus_tap_is_priced_at_once_and_a_change_is_discounted,
        trips::the_daily_cap_counts_the_days_earlier_trips,
        trips::a_missing_tap_costs_the_maximum_fare,
        trips::an_expiry_pass_goes_on_past_a_failing_rider,
        trips::both_stores_write_and_refuse_alike,
        trips::the_state_holds_the_window_an_open_trip_widens,
        trips::refused_taps_change_nothing,
        trips::a_charge_without_a_link_is_arrears_and_blocks_entry,
        voids::a_voided_entry_cancels_its_trip,
        voids::a_voided_exit_reopens_the_trip_and_reverses_its_charge,
        voids::a_voided_bus_tap_reverses_its_charge,
        voids::a_late_or_foreign_void_is_refused,
        voids::a_void_after_a_repeat_at_another_gate_is_refused,
        voids::a_void_dated_before_its_tap_is_refused,
        voids::a_void_far_from_the_servers_clock_is_refused,
        exactly_once::a_gate_retry_charges_once,
        exactly_once::a_double_tap_charges_once,
        exactly_once::concurrent_tap_outs_of_one_scan_charge_once,
        exactly_once::concurrent_double_taps_charge_once,
        exactly_once::concurrent_bus_taps_of_one_scan_charge_once,
        exactly_once::concurrent_taps_of_one_rider_never_exceed_the_daily_cap,
        listing::trips_are_listed_newest_first_in_pages,
        outbox::the_worker_sends_each_charge_once,
        outbox::a_timeout_after_success_is_retried_with_the_same_key,
        outbox::a_worker_killed_mid_batch_is_resumed_without_a_double_charge,
        outbox::a_declined_charge_is_arrears_and_blocks_entry,
        outbox::a_sent_charge_cannot_be_voided,
        outbox::a_void_racing_dispatch_never_cancels_a_sent_charge,
        outbox::a_provider_that_never_answers_is_retried_and_the_pass_goes_on,
        outbox::one_failing_row_does_not_stop_the_pass,
        outbox::unanswered_rows_back_off_and_newer_rows_go_first,
        outbox::a_later_approval_overrides_a_decline,
        outbox::rows_are_claimed_by_one_worker_at_a_time,
        outbox::arrears_are_repaid_through_the_outbox,
        settlement::the_day_is_settled_per_operator,
        late::an_offline_entry_uploaded_before_the_exit_opens_the_trip,
        late::an_offline_entry_uploaded_after_the_exit_reprices_the_trip,
        late::an_offline_entry_racing_the_online_exit_makes_one_trip,
        late::a_repriced_trip_takes_the_transfer_and_the_daily_cap,
        late::an_offline_tap_of_a_trip_closed_by_the_expiry_pass,
        late::offline_bus_taps_are_flat_fares,
        late::a_voided_trip_does_not_stand_between_an_entry_and_its_exit,
        late::late_tap_finding_3_a_late_tap_without_a_link_is_owed_as_arrears,
        late::late_tap_finding_5_a_refund_never_takes_the_day_below_the_cap,
        late::late_tap_finding_6_late_taps_and_repriced_trips_are_not_voided,
        late::late_tap_finding_7_late_charges_are_stamped_when_they_arrive,
        notifications::a_notification_settles_the_charge_sent_under_its_key_once,
        notifications::a_notification_never_settles_a_charge_no_provider_was_sent,
    ]
);
