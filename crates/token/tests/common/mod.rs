//! Fixed keys and builders shared by the token tests.
#![allow(dead_code)]

use citypass_token::*;

/// Unix time the fixtures are issued at.
pub const NOW: u64 = 1_800_000_000;

pub fn issuer_key() -> IssuerKey {
    IssuerKey::from_seed(&[0x11; 32]).expect("fixed seed")
}

pub fn subject_key() -> SubjectKey {
    SubjectKey::from_bytes(&[0x22; 32]).expect("fixed key")
}

pub fn issuer() -> Issuer {
    Issuer::new("cp", issuer_key(), subject_key())
}

pub fn keyset() -> KeySet {
    KeySet::new(vec![PublishedKey {
        key: issuer_key().public_key().clone(),
        status: KeyStatus::Active,
        usage: KeyUsage::Code,
    }])
    .expect("one key")
}

pub const SUBJECT: [u8; 16] = [0x5a; 16];

pub fn cp1() -> IssuedToken {
    issuer()
        .issue_token(&SUBJECT, Scopes::all(), NOW, 60)
        .expect("issue")
}

pub fn offline_signer() -> OfflineSigner {
    let rng = SystemRandom::new();
    let key = DeviceKey::generate(&rng).expect("key");
    let cert = issuer()
        .certify(&SUBJECT, key.public_key(), Scopes::all(), NOW, 86_400)
        .expect("certify");
    OfflineSigner::new(key, cert.bytes).expect("signer")
}

pub fn cp2() -> String {
    offline_signer()
        .make_code(NOW, 60, 1, &SystemRandom::new())
        .expect("code")
}
