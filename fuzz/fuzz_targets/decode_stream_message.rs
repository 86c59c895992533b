//! Arbitrary bytes as the Redis Stream message a follower reads (stream version 2: the
//! entry with its chain hash, security review finding 6). Whoever can write to Redis
//! chooses these bytes. Any panic, hang or runaway allocation is a bug, and so is:
//!
//! - a message that decodes but does not re-encode to the same `entry` bytes (the
//!   format has exactly one encoding per entry);
//! - a chain check that disagrees with the hash: a set at the epoch before the entry
//!   applies it exactly when the carried chain hash is the set's chain followed by the
//!   entry, and then holds that chain hash.
#![no_main]

use citypass_revocation::{
    Applied, ApplyError, ChainHash, Chained, Kinds, RevocationSet, Snapshot, stream,
};
use libfuzzer_sys::fuzz_target;

/// A set at `epoch` with chain hash `chain` (what a follower holds), built from an
/// empty snapshot.
fn set_at(epoch: u64, chain: ChainHash) -> RevocationSet {
    RevocationSet::from_snapshot(&Snapshot {
        epoch,
        chain,
        kinds: Kinds::ALL,
        created_at: 0,
        entries: Vec::new(),
    })
}

fuzz_target!(|data: &[u8]| {
    // The first byte says where the epoch field ends; the rest is the entry field.
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(rest.len());
    let (epoch, entry) = rest.split_at(cut);
    if let Ok(chained) = stream::decode_message(Some(epoch), Some(entry)) {
        check(&chained, entry);
    }
    // The whole input as the entry field, with the epoch field it names itself: the
    // fuzzer need not guess a matching decimal to reach the chain checks (and needs no
    // seed corpus, which is not kept in the repository).
    let named = rest
        .get(1..9)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")).to_string());
    if let Some(named) = named
        && let Ok(chained) = stream::decode_message(Some(named.as_bytes()), Some(rest))
    {
        check(&chained, rest);
    }
});

/// What must hold of every message that decodes.
fn check(chained: &Chained, entry: &[u8]) {
    assert_eq!(
        stream::encode_entry(chained),
        entry,
        "one encoding per entry"
    );
    let before = chained.entry.epoch - 1; // decoding refuses epoch 0
    // The carried hash's predecessor is unknown (finding it is a preimage); try the
    // genesis and hashes derived from the input: the check must agree with `follows`.
    let candidates = [
        ChainHash::GENESIS,
        ChainHash(*chained.chain.as_bytes()),
        ChainHash::GENESIS.next(&chained.entry),
    ];
    for prev in candidates {
        let mut set = set_at(before, prev);
        let follows = chained.follows(&prev);
        match set.apply_chained(chained.clone()) {
            Ok(Applied::Applied) => {
                assert!(follows, "applied an entry off the chain");
                assert_eq!(set.chain(), chained.chain);
                assert_eq!(set.epoch(), chained.entry.epoch);
            }
            Err(ApplyError::Chain { epoch }) => {
                assert!(!follows, "refused an entry on the chain");
                assert_eq!(epoch, chained.entry.epoch);
                assert_eq!(set.chain(), prev, "a refused entry changes nothing");
                assert_eq!(set.epoch(), before);
            }
            other => panic!("a decoded entry at the next epoch gave {other:?}"),
        }
    }
    // The entry followed by its own recomputed hash is always on the chain.
    let mut relinked = chained.clone();
    relinked.chain = ChainHash::GENESIS.next(&chained.entry);
    let mut set = set_at(before, ChainHash::GENESIS);
    assert_eq!(set.apply_chained(relinked), Ok(Applied::Applied));
}
