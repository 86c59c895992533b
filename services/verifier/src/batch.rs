//! VerifyStream's batches: the scans already waiting on one stream have their codes'
//! Ed25519 signatures decided as one batch (`citypass_token::check_batch`), then each
//! goes on through the one decision pipeline ([`Verifier::conclude`]).
//!
//! A batch gathers only what has already arrived: the stream hands over every request
//! that is ready when it is polled ([`MAX_BATCH`] at most), never waits for more, and a
//! lone request is checked alone exactly as Verify checks it. So batching adds no
//! latency at low load, and under load the requests that queued while the previous
//! ones were decided form the next batch.
//!
//! The issuer's signature is what is batched: a CP1 code's own, a CP2 code's
//! certificate's. The CP2 code's ES256 signature by the phone's key is checked alone
//! (ECDSA has no batch equation). When a batch's equation fails, every signature in
//! it is checked alone, so a forged code is refused by itself (`bad_signature`, or
//! `certificate_invalid` for a CP2 certificate) and the others go on; a forged code
//! costs its batch one failed equation on top of the single checks.

use citypass_token::{BatchOutcome, check_batch};

use crate::verify::{ReadScan, Verifier};

/// Most scans whose signatures are decided as one batch: enough to take most of the
/// saving (the per-signature cost flattens out past a few dozen), small enough that a
/// batch occupies a core for a few milliseconds at most.
pub const MAX_BATCH: usize = 64;

/// Decides the undecided issuer signatures among `reads` as one batch (see the module
/// documentation), counted in the verifier's metrics.
pub fn check_signatures<'a>(
    verifier: &Verifier,
    reads: impl IntoIterator<Item = &'a mut ReadScan>,
) -> BatchOutcome {
    let outcome = check_batch(reads.into_iter().filter_map(ReadScan::signature_mut));
    verifier.metrics().batch(outcome);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::time::Duration;

    use citypass_gate::DenyReason;
    use citypass_token::{
        DeviceKey, Issuer, IssuerKey, KeySet, KeyStatus, KeyUsage, OfflineSigner, PublishedKey,
        Scene, Scopes, SubjectId, SubjectKey, SystemRandom, TokenError, unix_now,
    };
    use proptest::prelude::*;

    use crate::gates::{Gate, GateDirection, Gates, Registry};
    use crate::key_set::Keys;
    use crate::model::{Answer, Direction, Refusal, Scan};
    use crate::replay::MemoryReplayStore;
    use crate::scene::{Policies, ScenesConfig};
    use crate::stand_in_subjects::FixedSubjects;
    use crate::stand_in_transit::FixedTaps;
    use crate::venues::MemoryVenueStore;
    use crate::verify::{FixedRevocations, Rules};

    const GATE: &str = "metro-entry-1";
    const SUBJECT: [u8; 16] = [0x5a; 16];

    /// A verifier with memory stores and one metro entry gate, and the code issuer.
    fn verifier() -> (Issuer, Verifier) {
        let issuer = Issuer::new(
            "cp",
            IssuerKey::from_seed(&[0x11; 32]).unwrap(),
            SubjectKey::from_bytes(&[0x22; 32]).unwrap(),
        );
        let keys = KeySet::new(vec![PublishedKey {
            key: issuer.key().public_key().clone(),
            status: KeyStatus::Active,
            usage: KeyUsage::Code,
        }])
        .unwrap();
        let gate = Gate {
            scene: Scene::Metro,
            direction: Some(GateDirection::Entry),
            station: None,
            stop: None,
            venue: None,
            hospital: None,
            hall: None,
            operator: None,
            face_pass: false,
            attended: false,
        };
        let subjects = Arc::new(FixedSubjects::new(FixedSubjects::citizen(
            SubjectId::from_bytes(SUBJECT),
        )));
        let verifier = Verifier::new(
            Rules {
                skew: 30,
                revocation_max_age: Duration::from_secs(10),
            },
            Keys::fixed(keys),
            Gates::fixed(Registry::new([(GATE.to_owned(), gate)]).unwrap()),
            Arc::new(FixedRevocations::default()),
            Arc::new(MemoryReplayStore::new(100_000)),
            Arc::new(
                Policies::new(
                    ScenesConfig::default(),
                    subjects.clone(),
                    Arc::new(MemoryVenueStore::new(1_000)),
                )
                .with_transit(Arc::new(FixedTaps::default())),
            ),
        )
        .with_subjects(subjects);
        (issuer, verifier)
    }

    fn scan(n: usize, qr_text: String) -> Scan {
        Scan {
            gate_id: GATE.to_owned(),
            scene: Scene::Metro,
            scan_id: format!("scan-{n}"),
            qr_text,
            direction: Direction::Unspecified,
            station_id: String::new(),
            live_face: None,
        }
    }

    /// `text` (`CP1:`/`CP2:` and Base45) with `xor` applied to the byte `from_end`
    /// bytes before the end of its COSE bytes.
    fn tampered(text: &str, from_end: usize, xor: u8) -> String {
        let (prefix, body) = text.split_at(4);
        let mut bytes = base45::decode(body).unwrap();
        let at = bytes.len() - from_end;
        bytes[at] ^= xor;
        format!("{prefix}{}", base45::encode(&bytes))
    }

    /// A fresh online code, its signature's byte `64 - at` changed by `xor` when
    /// forged.
    fn online(issuer: &Issuer, forged: Option<(usize, u8)>) -> String {
        let text = issuer
            .issue_token(&SUBJECT, Scopes::all(), unix_now(), 60)
            .unwrap()
            .text;
        match forged {
            Some((at, xor)) => tampered(&text, 64 - at, xor),
            None => text,
        }
    }

    /// Reads `scans`, decides their signatures as one batch, concludes each.
    async fn decide_batch(verifier: &Verifier, scans: &[Scan]) -> (BatchOutcome, Vec<Answer>) {
        let mut reads: Vec<ReadScan> = scans
            .iter()
            .map(|scan| verifier.read(GATE, scan).expect("read"))
            .collect();
        let outcome = check_signatures(verifier, reads.iter_mut());
        let mut answers = Vec::new();
        for (scan, read) in scans.iter().zip(reads) {
            answers.push(verifier.conclude(scan, read, None).await.expect("answer"));
        }
        (outcome, answers)
    }

    fn bad_signature() -> Option<Refusal> {
        Some(Refusal::Code(DenyReason::Token(TokenError::BadSignature)))
    }

    #[tokio::test]
    async fn valid_codes_pass_as_one_batch() {
        let (issuer, verifier) = verifier();
        let scans: Vec<Scan> = (0..16).map(|n| scan(n, online(&issuer, None))).collect();
        let (outcome, answers) = decide_batch(&verifier, &scans).await;
        assert_eq!(outcome, BatchOutcome::Passed(16));
        assert!(answers.iter().all(Answer::allowed), "{answers:?}");
    }

    #[tokio::test]
    async fn a_forged_code_in_a_batch_denies_only_itself() {
        let (issuer, verifier) = verifier();
        let scans: Vec<Scan> = (0..32)
            .map(|n| scan(n, online(&issuer, (n == 7).then_some((3, 0x01)))))
            .collect();
        let (outcome, answers) = decide_batch(&verifier, &scans).await;
        assert_eq!(outcome, BatchOutcome::FellBack(32));
        for (n, answer) in answers.iter().enumerate() {
            if n == 7 {
                assert_eq!(answer.refusal, bad_signature(), "the forged code");
            } else {
                assert!(answer.allowed(), "scan {n}: {answer:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_lone_scan_is_checked_alone() {
        let (issuer, verifier) = verifier();
        let scans = [scan(0, online(&issuer, None))];
        let (outcome, answers) = decide_batch(&verifier, &scans).await;
        assert_eq!(outcome, BatchOutcome::Alone);
        assert!(answers[0].allowed(), "{answers:?}");
        let forged = [scan(1, online(&issuer, Some((0, 0x80))))];
        let (outcome, answers) = decide_batch(&verifier, &forged).await;
        assert_eq!(outcome, BatchOutcome::Alone);
        assert_eq!(answers[0].refusal, bad_signature());
    }

    /// CP2: the certificate's Ed25519 signature joins the batch (the code's ES256 one is
    /// checked alone); a certificate whose issuer signature is forged is refused
    /// `certificate_invalid`, by itself.
    #[tokio::test]
    async fn offline_certificates_join_the_batch() {
        let (issuer, verifier) = verifier();
        let rng = SystemRandom::new();
        let signer = |forge: bool| {
            let device = DeviceKey::generate(&rng).unwrap();
            let mut cert = issuer
                .certify(
                    &SUBJECT,
                    device.public_key(),
                    Scopes::all(),
                    unix_now(),
                    3600,
                )
                .unwrap()
                .bytes;
            if forge {
                let at = cert.len() - 40;
                cert[at] ^= 0x04;
            }
            OfflineSigner::new(device, cert).unwrap()
        };
        let (good, forged) = (signer(false), signer(true));
        let mut scans = Vec::new();
        for n in 0..6 {
            scans.push(scan(n, online(&issuer, None)));
        }
        scans.push(scan(6, good.make_code(unix_now(), 60, 1, &rng).unwrap()));
        scans.push(scan(7, good.make_code(unix_now(), 60, 2, &rng).unwrap()));
        let (outcome, answers) = decide_batch(&verifier, &scans).await;
        assert_eq!(outcome, BatchOutcome::Passed(8));
        assert!(answers.iter().all(Answer::allowed), "{answers:?}");

        let mut scans: Vec<Scan> = (10..14).map(|n| scan(n, online(&issuer, None))).collect();
        scans.push(scan(14, forged.make_code(unix_now(), 60, 1, &rng).unwrap()));
        let (outcome, answers) = decide_batch(&verifier, &scans).await;
        assert_eq!(outcome, BatchOutcome::FellBack(5));
        assert!(answers[..4].iter().all(Answer::allowed), "{answers:?}");
        assert_eq!(
            answers[4].refusal,
            Some(Refusal::Code(DenyReason::Token(
                TokenError::CertificateInvalid(Box::new(TokenError::BadSignature))
            )))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Whatever signatures of a batch are forged (any byte, any change), exactly
        /// those are refused `bad_signature` and every other scan is allowed; the
        /// batch passes only when none is forged.
        #[test]
        fn the_fallback_refuses_exactly_the_forged(
            size in 2usize..24,
            forged in proptest::collection::btree_map(0usize..24, (0usize..64, 1u8..=255), 0..4),
        ) {
            let forged: std::collections::BTreeMap<usize, (usize, u8)> =
                forged.into_iter().filter(|(n, _)| *n < size).collect();
            let (issuer, verifier) = verifier();
            let scans: Vec<Scan> = (0..size)
                .map(|n| scan(n, online(&issuer, forged.get(&n).copied())))
                .collect();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            let (outcome, answers) = runtime.block_on(decide_batch(&verifier, &scans));
            let expected = if forged.is_empty() {
                BatchOutcome::Passed(size)
            } else {
                BatchOutcome::FellBack(size)
            };
            prop_assert_eq!(outcome, expected);
            let refused: BTreeSet<usize> = answers
                .iter()
                .enumerate()
                .filter(|(_, a)| !a.allowed())
                .map(|(n, a)| {
                    assert_eq!(a.refusal, bad_signature(), "scan {}", n);
                    n
                })
                .collect();
            prop_assert_eq!(refused, forged.keys().copied().collect::<BTreeSet<_>>());
        }
    }
}
