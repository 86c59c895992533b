//! Arbitrary bytes as the revocation formats that cross a trust boundary: a snapshot
//! an offline gate loads, and a stream message a follower reads from Redis. Any panic,
//! hang or runaway allocation is a bug.
#![no_main]

use citypass_revocation::{RevocationSet, Snapshot, stream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(snapshot) = Snapshot::decode(data) {
        // Whatever decodes must also load into a set and re-encode.
        let set = RevocationSet::from_snapshot(&snapshot);
        let _ = set.epoch();
        let _ = snapshot.encode();
    }
    // Split the input into the stream message's two fields.
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (epoch, entry) = data.split_at(cut);
    let _ = stream::decode_message(Some(epoch), Some(entry));
});
