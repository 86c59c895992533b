//! The log contract: one suite, run against the in-memory log and PostgreSQL.
//!
//! Each property is one `async fn` over an `Arc<dyn Log>`; the `contract!` macro at the
//! bottom runs every one of them against both backends (a fresh PostgreSQL database per
//! test from `citypass_testkit`; without `CITYPASS_TEST_DATABASE_URL` the PostgreSQL
//! half fails rather than skips). If the backends ever disagree, one of these fails.

use std::sync::Arc;

use citypass_revocation::{
    Action, ChainHash, Entry, Reason, ReinstateReason, RevocationReason, RevocationSet, Target,
    TargetKind,
};
use citypass_revocation_service::model::{Cascade, RevokeCommand};
use citypass_revocation_service::{Audit, Certificate, Error, Log, MemoryLog, PostgresLog, Record};
use citypass_token::Kid;

// --- fixtures ---------------------------------------------------------------------------

const NOW: u64 = 1_800_000_000;
const MARGIN: u64 = 30;

fn hex_id(n: u32) -> String {
    format!("{n:032x}")
}

fn serial(n: u8) -> citypass_token::CertSerial {
    citypass_token::CertSerial::from_bytes([n; 16])
}

fn audit() -> Audit {
    Audit {
        actor: "ops@test".to_owned(),
        note: "contract".to_owned(),
    }
}

/// A revocation with the server-chosen times of a request that left them unset.
fn command(target: Target) -> RevokeCommand {
    let expires_at =
        matches!(target.kind(), TargetKind::Token | TargetKind::Certificate).then_some(NOW + 360);
    RevokeCommand {
        target,
        reason: RevocationReason::Fraud,
        revoked_before: NOW + 1,
        revoked_before_given: false,
        expires_at,
        expires_at_given: false,
        audit: audit(),
    }
}

fn with_revoked_before(mut command: RevokeCommand, revoked_before: u64) -> RevokeCommand {
    command.revoked_before = revoked_before;
    command.revoked_before_given = true;
    command
}

fn with_expires_at(mut command: RevokeCommand, expires_at: u64) -> RevokeCommand {
    command.expires_at = Some(expires_at);
    command.expires_at_given = true;
    command
}

fn token(n: u32) -> Target {
    Target::parse(TargetKind::Token, &hex_id(n)).unwrap()
}

fn device(n: u32) -> Target {
    Target::parse(TargetKind::Device, &hex_id(n)).unwrap()
}

fn subject(n: u32) -> Target {
    Target::parse(TargetKind::Subject, &hex_id(n)).unwrap()
}

fn certificate(serial: citypass_token::CertSerial, not_before: u64, not_after: u64) -> Certificate {
    Certificate {
        serial,
        not_before,
        not_after,
    }
}

fn none() -> Cascade<'static> {
    Cascade {
        certificates: &[],
        expiry_margin: MARGIN,
    }
}

fn cascade(certificates: &[Certificate]) -> Cascade<'_> {
    Cascade {
        certificates,
        expiry_margin: MARGIN,
    }
}

async fn all(log: &Arc<dyn Log>) -> Vec<Record> {
    let mut out = Vec::new();
    loop {
        let page = log.list(out.len() as u64, 1000).await.unwrap();
        if page.records.is_empty() {
            return out;
        }
        out.extend(page.records);
    }
}

/// Every record's chain hash is the one before it followed by its entry, from the
/// genesis; returns the chain hash through the last one.
fn assert_chained(records: &[Record]) -> ChainHash {
    let mut chain = ChainHash::GENESIS;
    for record in records {
        chain = chain.next(&record.entry);
        assert_eq!(
            record.chain, chain,
            "epoch {}: the chain hash through it",
            record.entry.epoch
        );
    }
    chain
}

fn assert_gapless(records: &[Record], from: u64) {
    for (i, record) in records.iter().enumerate() {
        assert_eq!(
            record.entry.epoch,
            from + 1 + i as u64,
            "epochs are gapless"
        );
    }
}

// --- the contract -----------------------------------------------------------------------

mod contract {
    use super::*;

    pub async fn epochs_start_at_one_and_pages_follow_them(log: Arc<dyn Log>) {
        assert_eq!(log.head().await.unwrap(), 0);
        let page = log.list(0, 10).await.unwrap();
        assert!(page.records.is_empty());
        assert_eq!(page.head, 0);
        assert!(matches!(
            log.list(1, 10).await,
            Err(Error::EpochBeyondHead { epoch: 1, head: 0 })
        ));
        for n in 1..=5 {
            let revoked = log.revoke(&command(token(n)), none(), NOW).await.unwrap();
            assert!(revoked.created);
            assert_eq!(revoked.entry.entry.epoch, u64::from(n));
        }
        assert_eq!(log.head().await.unwrap(), 5);
        let first = log.list(0, 2).await.unwrap();
        assert_eq!(first.head, 5);
        assert_gapless(&first.records, 0);
        assert_eq!(first.records.len(), 2);
        let second = log.list(2, 2).await.unwrap();
        assert_gapless(&second.records, 2);
        assert_eq!(second.records.len(), 2);
        let last = log.list(4, 100).await.unwrap();
        assert_eq!(last.records.len(), 1);
        assert_eq!(last.records[0].entry.target, token(5));
        assert!(log.list(5, 100).await.unwrap().records.is_empty());
        assert!(matches!(
            log.list(6, 100).await,
            Err(Error::EpochBeyondHead { epoch: 6, head: 5 })
        ));
    }

    pub async fn records_round_trip_exactly(log: Arc<dyn Log>) {
        let key = Target::Key(Kid([0xab; 8]));
        let mut expected = Vec::new();
        let revoked = log
            .revoke(&with_revoked_before(command(key), 1_234), none(), NOW)
            .await
            .unwrap();
        expected.push(revoked.entry);
        let revoked = log
            .revoke(&command(Target::Certificate(serial(7))), none(), NOW)
            .await
            .unwrap();
        expected.push(revoked.entry);
        let revoked = log.revoke(&command(subject(1)), none(), NOW).await.unwrap();
        expected.push(revoked.entry);
        let reinstated = log
            .reinstate(
                &subject(1),
                ReinstateReason::ArrearsRepaid,
                &audit(),
                NOW + 5,
            )
            .await
            .unwrap();
        expected.push(reinstated);
        assert_eq!(all(&log).await, expected);
        assert_eq!(
            expected[0].entry,
            Entry {
                epoch: 1,
                target: Target::Key(Kid([0xab; 8])),
                action: Action::Revoke {
                    compromised: false,
                    revoked_before: 1_234
                },
                expires_at: None,
                created_at: NOW,
            }
        );
        assert_eq!(expected[0].reason, Reason::Revoke(RevocationReason::Fraud));
        assert_eq!(expected[1].entry.expires_at, Some(NOW + 360));
        assert_eq!(expected[3].entry.action, Action::Reinstate);
        assert_eq!(
            expected[3].reason,
            Reason::Reinstate(ReinstateReason::ArrearsRepaid)
        );
        assert_eq!(expected[3].actor, "ops@test");
        assert_eq!(expected[3].note, "contract");
    }

    pub async fn concurrent_writers_get_strictly_increasing_gapless_epochs(log: Arc<dyn Log>) {
        const WRITERS: u32 = 6;
        const EACH: u32 = 10;
        const CERTS: u8 = 3;
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..EACH {
                    let n = w * 1000 + i;
                    if i % 3 == 0 {
                        // A device revocation with its certificates: 1 + CERTS epochs.
                        let certs: Vec<Certificate> = (0..CERTS)
                            .map(|c| {
                                let mut s = [0u8; 16];
                                s[..4].copy_from_slice(&n.to_be_bytes());
                                s[15] = c;
                                certificate(
                                    citypass_token::CertSerial::from_bytes(s),
                                    NOW - 100,
                                    NOW + 3_600,
                                )
                            })
                            .collect();
                        let revoked = log
                            .revoke(&command(device(n)), cascade(&certs), NOW)
                            .await
                            .unwrap();
                        assert_eq!(revoked.cascaded.len(), usize::from(CERTS));
                        let parent = revoked.entry.entry.epoch;
                        for (k, c) in revoked.cascaded.iter().enumerate() {
                            assert_eq!(
                                c.entry.epoch,
                                parent + 1 + k as u64,
                                "a cascade is contiguous"
                            );
                        }
                    } else {
                        log.revoke(&command(token(n)), none(), NOW).await.unwrap();
                    }
                }
            }));
        }
        // A reader following the log while it is written never sees a hole.
        let reader = {
            let log = log.clone();
            tokio::spawn(async move {
                let mut cursor = 0;
                let mut rounds = 0;
                let total = u64::from(WRITERS)
                    * (u64::from(EACH) + u64::from(EACH.div_ceil(3)) * u64::from(CERTS));
                while cursor < total {
                    let page = log.list(cursor, 7).await.unwrap();
                    assert_gapless(&page.records, cursor);
                    assert!(page.head >= cursor + page.records.len() as u64);
                    cursor += page.records.len() as u64;
                    rounds += 1;
                    tokio::task::yield_now().await;
                }
                rounds
            })
        };
        for task in tasks {
            task.await.unwrap();
        }
        assert!(reader.await.unwrap() > 0);
        let records = all(&log).await;
        let expected = WRITERS * (EACH + EACH.div_ceil(3) * u32::from(CERTS));
        assert_eq!(records.len(), expected as usize);
        assert_gapless(&records, 0);
        assert_eq!(log.head().await.unwrap(), u64::from(expected));
        // The log applies to a set in order, with no gap.
        let mut set = RevocationSet::new();
        set.apply_all(records.into_iter().map(|r| r.entry)).unwrap();
        assert_eq!(set.epoch(), u64::from(expected));
    }

    pub async fn token_and_certificate_revocations_are_idempotent(log: Arc<dyn Log>) {
        let first = log.revoke(&command(token(1)), none(), NOW).await.unwrap();
        assert!(first.created);
        // A retry (server-derived expiry) a few seconds later writes nothing.
        let mut retry = command(token(1));
        retry.expires_at = Some(NOW + 365);
        let again = log.revoke(&retry, none(), NOW + 5).await.unwrap();
        assert!(!again.created);
        assert_eq!(again.entry, first.entry);
        // An explicit earlier expiry is covered; a later one is not.
        let earlier = log
            .revoke(
                &with_expires_at(command(token(1)), NOW + 100),
                none(),
                NOW + 5,
            )
            .await
            .unwrap();
        assert!(!earlier.created);
        let later = log
            .revoke(
                &with_expires_at(command(token(1)), NOW + 1_000),
                none(),
                NOW + 5,
            )
            .await
            .unwrap();
        assert!(later.created);
        assert_eq!(later.entry.entry.epoch, 2);
        // An expired entry covers nothing.
        let after_expiry = log
            .revoke(&command(token(1)), none(), NOW + 2_000)
            .await
            .unwrap();
        assert!(after_expiry.created);
        assert_eq!(log.head().await.unwrap(), 3);
    }

    pub async fn device_subject_and_key_revocations_are_idempotent(log: Arc<dyn Log>) {
        let first = log.revoke(&command(subject(1)), none(), NOW).await.unwrap();
        assert!(first.created);
        // A retry with the server's clock, later: covered while the subject is revoked.
        let mut retry = command(subject(1));
        retry.revoked_before = NOW + 60;
        assert!(!log.revoke(&retry, none(), NOW + 59).await.unwrap().created);
        // An explicit bound at or before the existing one is covered; a later one is not.
        let same = with_revoked_before(command(subject(1)), NOW + 1);
        assert!(!log.revoke(&same, none(), NOW).await.unwrap().created);
        let later = with_revoked_before(command(subject(1)), NOW + 30);
        let later = log.revoke(&later, none(), NOW + 30).await.unwrap();
        assert!(later.created);
        // After a reinstatement, a revocation is new again.
        log.reinstate(
            &subject(1),
            ReinstateReason::ErrorCorrected,
            &audit(),
            NOW + 40,
        )
        .await
        .unwrap();
        let mut again = command(subject(1));
        again.revoked_before = NOW + 41;
        let again = log.revoke(&again, none(), NOW + 40).await.unwrap();
        assert!(again.created);

        // Keys are never blocked, so a later instant is always more.
        let kid = Target::Key(Kid([1; 8]));
        assert!(
            log.revoke(&command(kid), none(), NOW)
                .await
                .unwrap()
                .created
        );
        assert!(
            !log.revoke(&with_revoked_before(command(kid), NOW), none(), NOW)
                .await
                .unwrap()
                .created
        );
        let mut later_key = command(kid);
        later_key.revoked_before = NOW + 11;
        assert!(
            log.revoke(&later_key, none(), NOW + 10)
                .await
                .unwrap()
                .created
        );
        assert_eq!(log.head().await.unwrap(), 6);
    }

    /// Security finding 8 (the reason leaves the entry): once entries carry only the
    /// `compromised` bit, an orderly withdrawal must not "cover" a later compromise
    /// report of the same target with an equal or later `revoked_before`: the report
    /// is written (the key's codes all die), and a compromise covers a withdrawal.
    pub async fn finding_8_a_withdrawal_does_not_cover_a_compromise(log: Arc<dyn Log>) {
        let kid = Target::Key(Kid([2; 8]));
        let mut withdrawal = with_revoked_before(command(kid), NOW + 100);
        withdrawal.reason = RevocationReason::KeyWithdrawn;
        assert!(log.revoke(&withdrawal, none(), NOW).await.unwrap().created);
        let mut compromise = with_revoked_before(command(kid), NOW);
        compromise.reason = RevocationReason::KeyCompromised;
        let written = log.revoke(&compromise, none(), NOW).await.unwrap();
        assert!(written.created, "the compromise is written");
        assert_eq!(
            written.entry.entry.kill_bound(),
            Some(u64::MAX),
            "and kills every code the key signed"
        );
        assert!(
            !log.revoke(&withdrawal, none(), NOW).await.unwrap().created,
            "a compromise covers a withdrawal"
        );
        assert!(!log.revoke(&compromise, none(), NOW).await.unwrap().created);

        // Likewise for a device already revoked as lost, then reported compromised.
        let lost = command(device(3));
        assert!(log.revoke(&lost, none(), NOW).await.unwrap().created);
        let mut stolen_key = command(device(3));
        stolen_key.reason = RevocationReason::DeviceCompromised;
        let written = log.revoke(&stolen_key, none(), NOW).await.unwrap();
        assert!(written.created);
        assert_eq!(
            written.entry.reason,
            Reason::Revoke(RevocationReason::DeviceCompromised)
        );
    }

    pub async fn reinstating_needs_a_revoked_device_or_subject(log: Arc<dyn Log>) {
        assert!(matches!(
            log.reinstate(&device(1), ReinstateReason::DeviceRecovered, &audit(), NOW)
                .await,
            Err(Error::NotRevoked)
        ));
        log.revoke(&command(device(1)), none(), NOW).await.unwrap();
        let reinstated = log
            .reinstate(
                &device(1),
                ReinstateReason::DeviceRecovered,
                &audit(),
                NOW + 1,
            )
            .await
            .unwrap();
        assert_eq!(reinstated.entry.epoch, 2);
        assert!(matches!(
            log.reinstate(
                &device(1),
                ReinstateReason::DeviceRecovered,
                &audit(),
                NOW + 2
            )
            .await,
            Err(Error::NotRevoked)
        ));
        log.revoke(&command(token(9)), none(), NOW).await.unwrap();
        assert!(matches!(
            log.reinstate(&token(9), ReinstateReason::Administrative, &audit(), NOW)
                .await,
            Err(Error::InvalidArgument { .. })
        ));
        assert_eq!(log.head().await.unwrap(), 3, "refused writes write nothing");
    }

    /// Security finding 5: the cascade used to skip certificates whose `not_before` was
    /// at or after `revoked_before`, so a certificate the issuer made while it had not
    /// yet heard of the revocation survived it. Now every live certificate of the
    /// device is revoked, by the revocation and by the later sweep, until the device is
    /// reinstated.
    pub async fn finding_5_cascades_take_every_live_certificate(log: Arc<dyn Log>) {
        // A certificate already revoked on its own is not revoked twice.
        log.revoke(&command(Target::Certificate(serial(5))), none(), NOW)
            .await
            .unwrap();
        let certs = [
            certificate(serial(1), NOW - 100, NOW + 3_600), // live, before: revoked
            certificate(serial(2), NOW + 1, NOW + 3_600),   // issued at the bound: revoked too
            certificate(serial(3), NOW - 90_000, NOW - 3_600), // long expired: skipped
            certificate(serial(1), NOW - 100, NOW + 3_600), // listed twice: once
            certificate(serial(5), NOW - 100, NOW + 300),   // already covered: skipped
            certificate(serial(6), NOW - 50, NOW - 10),     // ended, within the margin: revoked
        ];
        let revoked = log
            .revoke(&command(device(1)), cascade(&certs), NOW)
            .await
            .unwrap();
        assert!(revoked.created);
        assert_eq!(revoked.entry.entry.epoch, 2);
        let cascaded: Vec<_> = revoked.cascaded.iter().map(|r| r.entry.clone()).collect();
        let revocation = |epoch, serial_byte, expires_at| Entry {
            epoch,
            target: Target::Certificate(serial(serial_byte)),
            action: Action::Revoke {
                compromised: false,
                revoked_before: NOW + 1,
            },
            expires_at: Some(expires_at),
            created_at: NOW,
        };
        assert_eq!(
            cascaded,
            vec![
                revocation(3, 1, NOW + 3_600 + MARGIN),
                revocation(4, 2, NOW + 3_600 + MARGIN),
                revocation(5, 6, NOW - 10 + MARGIN),
            ]
        );
        assert!(revoked.cascaded[0].note.contains("epoch 2"));
        assert_eq!(revoked.cascaded[0].actor, "ops@test");
        assert_eq!(all(&log).await.len(), 5);

        // A retry finds the device covered but cascades to a certificate seen only now.
        let more = [certs[0], certificate(serial(7), NOW - 5, NOW + 3_600)];
        let retry = log
            .revoke(&command(device(1)), cascade(&more), NOW + 2)
            .await
            .unwrap();
        assert!(!retry.created);
        assert_eq!(retry.entry, revoked.entry);
        assert_eq!(retry.cascaded.len(), 1);
        assert_eq!(retry.cascaded[0].entry.epoch, 6);
        assert_eq!(
            retry.cascaded[0].entry.target,
            Target::Certificate(serial(7))
        );

        // The later sweep writes only what is still missing, however late issued.
        let sweep = [
            certs[0],
            certificate(serial(8), NOW, NOW + 3_600),
            certificate(serial(9), NOW + 5, NOW + 3_600), // issued after the bound
        ];
        let written = log
            .cascade(&revoked.entry, cascade(&sweep), NOW + 6)
            .await
            .unwrap();
        let targets: Vec<_> = written.iter().map(|r| r.entry.target).collect();
        assert_eq!(
            targets,
            vec![
                Target::Certificate(serial(8)),
                Target::Certificate(serial(9))
            ]
        );
        assert_eq!(written[0].entry.epoch, 7);
        assert!(
            log.cascade(&revoked.entry, cascade(&sweep), NOW + 7)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(log.head().await.unwrap(), 8);

        // Once the device is reinstated, a late sweep of the old revocation takes
        // nothing: the certificates issued since are the citizen's.
        log.reinstate(
            &device(1),
            ReinstateReason::ErrorCorrected,
            &audit(),
            NOW + 8,
        )
        .await
        .unwrap();
        let after = [certificate(serial(10), NOW + 9, NOW + 3_600)];
        assert!(
            log.cascade(&revoked.entry, cascade(&after), NOW + 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(log.head().await.unwrap(), 9);

        // Token and key revocations never cascade.
        let key = log
            .revoke(&command(Target::Key(Kid([2; 8]))), cascade(&more), NOW)
            .await
            .unwrap();
        assert!(key.cascaded.is_empty());
    }

    /// Security finding 6: every record carries the log's chain hash through it, a page
    /// the chain hash through its head, and a covered Revoke returns the stored record
    /// with its chain hash.
    pub async fn every_record_carries_the_chain_through_it(log: Arc<dyn Log>) {
        let empty = log.list(0, 10).await.unwrap();
        assert_eq!(empty.head_chain, ChainHash::GENESIS);
        let certs = [
            certificate(serial(1), NOW - 10, NOW + 600),
            certificate(serial(2), NOW - 10, NOW + 600),
        ];
        log.revoke(&command(token(1)), none(), NOW).await.unwrap();
        let revoked = log
            .revoke(&command(device(1)), cascade(&certs), NOW)
            .await
            .unwrap();
        assert_eq!(revoked.cascaded.len(), 2);
        let late = [certificate(serial(3), NOW, NOW + 600)];
        log.cascade(&revoked.entry, cascade(&late), NOW + 1)
            .await
            .unwrap();
        log.reinstate(
            &device(1),
            ReinstateReason::DeviceRecovered,
            &audit(),
            NOW + 2,
        )
        .await
        .unwrap();
        log.revoke(&command(Target::Key(Kid([5; 8]))), none(), NOW + 3)
            .await
            .unwrap();
        let records = all(&log).await;
        assert_eq!(records.len(), 7);
        let head = assert_chained(&records);
        for since in 0..=7 {
            let page = log.list(since, 2).await.unwrap();
            assert_eq!(page.head, 7);
            assert_eq!(page.head_chain, head, "the chain hash through the head");
        }
        // A set applying the log with the chain check reaches the same head.
        let mut set = RevocationSet::new();
        for record in &records {
            set.apply_chained(record.chained()).unwrap();
        }
        assert_eq!(set.chain(), head);
        // A covered request returns the stored record, chain hash included.
        let again = log.revoke(&command(token(1)), none(), NOW).await.unwrap();
        assert!(!again.created);
        assert_eq!(again.entry, records[0]);
    }

    pub async fn readers_see_a_cascade_whole_or_not_at_all(log: Arc<dyn Log>) {
        const CERTS: u8 = 12;
        const REVOCATIONS: u32 = 8;
        let writer = {
            let log = log.clone();
            tokio::spawn(async move {
                for n in 0..REVOCATIONS {
                    let certs: Vec<Certificate> = (0..CERTS)
                        .map(|c| {
                            let mut s = [0u8; 16];
                            s[..4].copy_from_slice(&n.to_be_bytes());
                            s[15] = c;
                            certificate(
                                citypass_token::CertSerial::from_bytes(s),
                                NOW - 100,
                                NOW + 3_600,
                            )
                        })
                        .collect();
                    log.revoke(&command(subject(n)), cascade(&certs), NOW)
                        .await
                        .unwrap();
                    tokio::task::yield_now().await;
                }
            })
        };
        let group = u64::from(CERTS) + 1;
        let mut observations = 0;
        loop {
            let page = log.list(0, 10_000).await.unwrap();
            let len = page.records.len() as u64;
            assert_eq!(len % group, 0, "a reader saw part of a cascade");
            // The head is read after the rows: it may be further on, never in a cascade.
            assert!(page.head >= len);
            assert_eq!(page.head % group, 0, "a head in the middle of a cascade");
            observations += 1;
            if len == group * u64::from(REVOCATIONS) {
                break;
            }
            tokio::task::yield_now().await;
        }
        writer.await.unwrap();
        assert!(observations >= 1);
    }
}

// --- backends ---------------------------------------------------------------------------

fn memory() -> Arc<dyn Log> {
    Arc::new(MemoryLog::new())
}

async fn postgres() -> Arc<dyn Log> {
    let (pool, _url) = citypass_testkit::fresh_database().await;
    Arc::new(PostgresLog::new(pool).await.expect("migrations apply"))
}

citypass_testkit::contract_suite!(
    memory_log => super::memory(),
    postgres_log => super::postgres().await;
    [
        contract::epochs_start_at_one_and_pages_follow_them,
        contract::records_round_trip_exactly,
        contract::concurrent_writers_get_strictly_increasing_gapless_epochs,
        contract::token_and_certificate_revocations_are_idempotent,
        contract::device_subject_and_key_revocations_are_idempotent,
        contract::reinstating_needs_a_revoked_device_or_subject,
        contract::finding_8_a_withdrawal_does_not_cover_a_compromise,
        contract::finding_5_cascades_take_every_live_certificate,
        contract::every_record_carries_the_chain_through_it,
        contract::readers_see_a_cascade_whole_or_not_at_all,
    ]
);

// --- PostgreSQL only --------------------------------------------------------------------

/// With the database gone, a write fails UNAVAILABLE and leaves nothing behind.
#[tokio::test]
async fn postgres_unavailable_writes_nothing() {
    use citypass_runtime::{ErrorKind, ServiceError};
    let (pool, url) = citypass_testkit::fresh_database().await;
    let log = PostgresLog::new(pool.clone()).await.unwrap();
    log.revoke(&command(token(1)), none(), NOW).await.unwrap();
    pool.close().await;
    let err = log
        .revoke(&command(token(2)), none(), NOW)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let err = log.list(0, 10).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    // Looked at through a new connection: only the first revocation is there.
    let other = PostgresLog::new(sqlx::PgPool::connect(&url).await.unwrap())
        .await
        .unwrap();
    let page = other.list(0, 10).await.unwrap();
    assert_eq!(page.head, 1);
    assert_eq!(page.records.len(), 1);
    assert_eq!(page.records[0].entry.target, token(1));
}

/// Security finding 6: rows written before the chain existed are chained by the
/// migration that adds it, in SQL, exactly as `citypass_revocation::chain` does (every
/// kind, both actions, with and without expiry, an 8-byte key target), and the log then
/// continues the chain.
#[tokio::test]
async fn finding_6_the_migration_chains_rows_written_before_it() {
    let (pool, _url) = citypass_testkit::fresh_database().await;
    // The schema before the chain: the first migration only.
    let first =
        citypass_postgres::Embedded(&citypass_revocation_service::log::postgres::MIGRATIONS.0[..1]);
    citypass_postgres::migrate(&pool, first).await.unwrap();
    let old: Vec<(Entry, Reason)> = vec![
        (
            Entry {
                epoch: 1,
                target: token(1),
                action: Action::Revoke {
                    compromised: false,
                    revoked_before: NOW,
                },
                expires_at: Some(NOW + 360),
                created_at: NOW,
            },
            Reason::Revoke(RevocationReason::Superseded),
        ),
        (
            Entry {
                epoch: 2,
                target: subject(2),
                action: Action::Revoke {
                    compromised: false,
                    revoked_before: NOW + 1,
                },
                expires_at: None,
                created_at: NOW,
            },
            Reason::Revoke(RevocationReason::Arrears),
        ),
        (
            Entry {
                epoch: 3,
                target: Target::Certificate(serial(3)),
                action: Action::Revoke {
                    compromised: false,
                    revoked_before: NOW + 1,
                },
                expires_at: Some(NOW + 900),
                created_at: NOW,
            },
            Reason::Revoke(RevocationReason::Arrears),
        ),
        (
            Entry {
                epoch: 4,
                target: subject(2),
                action: Action::Reinstate,
                expires_at: None,
                created_at: NOW + 7,
            },
            Reason::Reinstate(ReinstateReason::ArrearsRepaid),
        ),
        (
            Entry {
                epoch: 5,
                target: Target::Key(Kid([0xfe, 1, 2, 3, 4, 5, 6, 0x80])),
                action: Action::Revoke {
                    compromised: true,
                    revoked_before: u64::try_from(i64::MAX).unwrap(),
                },
                expires_at: None,
                created_at: NOW + 8,
            },
            Reason::Revoke(RevocationReason::KeyCompromised),
        ),
    ];
    for (entry, reason) in &old {
        let revoked_before = entry.revoked_before().map(|rb| i64::try_from(rb).unwrap());
        sqlx::query(
            "INSERT INTO revocation_log (epoch, action, target_kind, target_id, reason, \
                 revoked_before, expires_at, created_at, actor, note) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'ops', '')",
        )
        .bind(i64::try_from(entry.epoch).unwrap())
        .bind(i16::from(entry.action.code()))
        .bind(i16::from(entry.target.kind().code()))
        .bind(entry.target.id())
        .bind(i16::from(reason.code()))
        .bind(revoked_before)
        .bind(entry.expires_at.map(|t| i64::try_from(t).unwrap()))
        .bind(i64::try_from(entry.created_at).unwrap())
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query("UPDATE revocation_head SET epoch = 5")
        .execute(&pool)
        .await
        .unwrap();

    // The service starts: the chain migration runs.
    let log: Arc<dyn Log> = Arc::new(PostgresLog::new(pool).await.expect("migrations apply"));
    let records = all(&log).await;
    assert_eq!(
        records
            .iter()
            .map(|r| (r.entry.clone(), r.reason))
            .collect::<Vec<_>>(),
        old,
        "entries with their compromised bit from the reason, the reason kept for audit"
    );
    let head = assert_chained(&records);
    assert_eq!(log.list(5, 10).await.unwrap().head_chain, head);
    // New writes continue the chain.
    log.revoke(&command(token(6)), none(), NOW + 9)
        .await
        .unwrap();
    let records = all(&log).await;
    assert_eq!(records.len(), 6);
    assert_eq!(
        log.list(0, 1).await.unwrap().head_chain,
        assert_chained(&records)
    );
}
