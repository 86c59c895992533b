//! Properties of the set and its formats over random logs.
//!
//! - A set built from any log, snapshotted (any kinds, any time) and rebuilt from the
//!   decoded bytes equals the live set pruned at that time and restricted to those kinds.
//! - Encoding is deterministic: equal sets give identical bytes.
//! - The compaction a set performs never changes an answer: every query agrees with a
//!   naive evaluation over the whole log.
//! - Decoding never panics, on arbitrary bytes or on mutations of valid snapshots and
//!   stream entries.

use citypass_revocation::stream::{decode_entry, decode_message, encode_entry};
use citypass_revocation::{
    Action, ChainHash, Chained, Entry, Kinds, RevocationSet, Snapshot, Target,
};
use citypass_token::{CertSerial, Cti, DeviceId, Kid, SubjectId};
use proptest::prelude::*;

/// A handful of ids per kind, so that targets repeat and compaction is exercised.
fn target() -> impl Strategy<Value = Target> {
    (1u8..=5, 0u8..3).prop_map(|(kind, n)| {
        let bytes = [n; 16];
        match kind {
            1 => Target::Token(Cti::from_bytes(bytes)),
            2 => Target::Device(DeviceId::from_bytes(bytes)),
            3 => Target::Subject(SubjectId::from_bytes(bytes)),
            4 => Target::Certificate(CertSerial::from_bytes(bytes)),
            _ => Target::Key(Kid([n; 8])),
        }
    })
}

/// An entry without its epoch (assigned in log order).
fn draft() -> impl Strategy<Value = (Target, bool, u64, Option<u64>, u64)> {
    (
        target(),
        any::<bool>(),
        0u64..20,
        proptest::option::of(0u64..20),
        0u64..20,
    )
}

fn log(max: usize) -> impl Strategy<Value = Vec<Entry>> {
    proptest::collection::vec(draft(), 0..max).prop_map(|drafts| {
        drafts
            .into_iter()
            .enumerate()
            .map(|(i, (target, reinstate, rb, expires, created))| {
                let reinstate = reinstate && target.kind().reinstatable();
                Entry {
                    epoch: i as u64 + 1,
                    action: if reinstate {
                        Action::Reinstate
                    } else {
                        Action::Revoke {
                            // Some compromised (a compromised key kills all it signed).
                            compromised: rb % 3 == 0,
                            revoked_before: rb,
                        }
                    },
                    expires_at: if reinstate { None } else { expires },
                    target,
                    created_at: created,
                }
            })
            .collect()
    })
}

fn kinds() -> impl Strategy<Value = Kinds> {
    (1u8..32).prop_map(|bits| Kinds::from_bits(bits).expect("valid bits"))
}

fn build(entries: &[Entry]) -> RevocationSet {
    let mut set = RevocationSet::new();
    set.apply_all(entries.iter().cloned())
        .expect("a gapless log applies");
    set
}

/// The answers computed from the whole log, without any compaction.
mod naive {
    use super::*;

    pub fn killed(log: &[Entry], target: &Target, iat: u64) -> bool {
        log.iter().any(|e| &e.target == target && e.kills(iat))
    }

    pub fn blocked(log: &[Entry], target: &Target) -> bool {
        log.iter()
            .rfind(|e| &e.target == target)
            .is_some_and(Entry::is_revoke)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn snapshot_round_trip_equals_the_live_set(log in log(40), kinds in kinds(), now in 0u64..25) {
        let set = build(&log);
        let snapshot = set.snapshot(kinds, now);
        let bytes = snapshot.encode();
        let decoded = Snapshot::decode(&bytes).expect("a snapshot decodes");
        prop_assert_eq!(&decoded, &snapshot);
        let rebuilt = RevocationSet::from_snapshot(&decoded);
        let mut live = set.clone();
        live.prune(now);
        prop_assert_eq!(&rebuilt, &live.restricted(kinds));
        // Deterministic: the rebuilt set encodes to the very same bytes.
        prop_assert_eq!(rebuilt.snapshot(kinds, now).encode(), bytes);
    }

    #[test]
    fn compaction_never_changes_an_answer(log in log(40), probe in target(), iat in 0u64..22) {
        let set = build(&log);
        let killed = naive::killed(&log, &probe, iat);
        let answer = match &probe {
            Target::Token(cti) => set.token_revoked(cti),
            Target::Certificate(serial) => set.certificate_revoked(serial),
            Target::Device(id) => set.device_revoked(id, iat),
            Target::Subject(id) => set.subject_revoked(id, iat),
            Target::Key(kid) => set.key_revoked(kid, iat),
        };
        prop_assert_eq!(answer, killed);
        match &probe {
            Target::Device(id) => prop_assert_eq!(set.issuance_blocked_device(id), naive::blocked(&log, &probe)),
            Target::Subject(id) => prop_assert_eq!(set.issuance_blocked_subject(id), naive::blocked(&log, &probe)),
            _ => {}
        }
        prop_assert_eq!(set.epoch(), log.len() as u64);
    }

    #[test]
    fn entries_round_trip_through_the_stream_format(log in log(10)) {
        let mut set = RevocationSet::new();
        for entry in log {
            let chained = Chained::link(&set.chain(), entry.clone());
            let bytes = encode_entry(&chained);
            prop_assert_eq!(decode_entry(&bytes), Ok(chained.clone()));
            let epoch = entry.epoch.to_string();
            prop_assert_eq!(decode_message(Some(epoch.as_bytes()), Some(&bytes)), Ok(chained.clone()));
            // What the log chains, a set applying the same entries agrees with.
            prop_assert_eq!(set.apply_chained(chained.clone()), Ok(citypass_revocation::Applied::Applied));
            prop_assert_eq!(set.chain(), chained.chain);
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Snapshot::decode(&bytes);
        let _ = decode_entry(&bytes);
        let mut prefixed = b"CPRS\x02\x1f".to_vec();
        prefixed.extend_from_slice(&bytes);
        let _ = Snapshot::decode(&prefixed);
    }

    #[test]
    fn decoding_mutated_snapshots_never_panics(
        log in log(8),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let mut bytes = build(&log).snapshot(Kinds::ALL, 0).encode();
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        if let Ok(snapshot) = Snapshot::decode(&bytes) {
            // Whatever decodes is a valid snapshot and encodes back to the same bytes.
            prop_assert_eq!(snapshot.encode(), bytes.clone());
            let _ = RevocationSet::from_snapshot(&snapshot);
        }
        bytes.truncate(cut % (bytes.len() + 1));
        let _ = Snapshot::decode(&bytes);
        for entry in &log {
            let mut encoded = encode_entry(&Chained::link(&ChainHash::GENESIS, entry.clone()));
            let at = cut % encoded.len();
            encoded[at] ^= 0x5a;
            let _ = decode_entry(&encoded);
        }
    }
}
