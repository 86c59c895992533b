//! Arbitrary bytes as COSE: wrapped as both code kinds (so the fuzzer explores CBOR,
//! not Base45) and as a device certificate.
#![no_main]

use citypass_token::{IssuerKey, KeySet, KeyStatus, KeyUsage, PublishedKey, Validation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = IssuerKey::from_seed(&[0x11; 32]).expect("fixed seed");
    let keys = KeySet::new(vec![PublishedKey {
        key: key.public_key().clone(),
        status: KeyStatus::Active,
        usage: KeyUsage::Code,
    }])
    .expect("one key");
    let v = Validation::at(1_800_000_000);
    let b45 = base45::encode(data);
    let _ = citypass_token::verify_online(&format!("CP1:{b45}"), &keys, &v);
    let _ = citypass_token::verify_offline(&format!("CP2:{b45}"), &keys, &v);
    let _ = citypass_token::inspect(&format!("CP2:{b45}"));
    let _ = citypass_token::verify_certificate(data, &keys, &v);
});
