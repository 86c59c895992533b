//! Arbitrary scanned text through every text-level decoder: verify (online and
//! offline) and inspect. Any panic, hang or runaway allocation is a bug.
#![no_main]

use citypass_token::{IssuerKey, KeySet, KeyStatus, KeyUsage, PublishedKey, Validation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = IssuerKey::from_seed(&[0x11; 32]).expect("fixed seed");
    let keys = KeySet::new(vec![PublishedKey {
        key: key.public_key().clone(),
        status: KeyStatus::Active,
        usage: KeyUsage::Code,
    }])
    .expect("one key");
    let v = Validation::at(1_800_000_000);
    let _ = citypass_token::verify_online(text, &keys, &v);
    let _ = citypass_token::verify_offline(text, &keys, &v);
    let _ = citypass_token::inspect(text);
});
