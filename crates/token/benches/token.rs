//! Costs of the code format, with ring's bare signature checks as the ceiling.
//!
//! `verify_cp1 / bare_ed25519_verify` is the overhead of everything citypass adds
//! around one Ed25519 verification (Base45, bounded CBOR, header rules, claims, time);
//! the goal is <= 1.2. An offline code costs one Ed25519 (certificate) plus one P-256
//! verification, so its ceiling is the sum of the two bare checks.

use citypass_token::*;
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use ring::signature::{self, UnparsedPublicKey};

const NOW: u64 = 1_800_000_000;

fn bench(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let key = IssuerKey::from_seed(&[0x11; 32]).unwrap();
    let keys = KeySet::new(vec![PublishedKey {
        key: key.public_key().clone(),
        status: KeyStatus::Active,
        usage: KeyUsage::Code,
    }])
    .unwrap();
    let issuer = Issuer::new(
        "cp",
        IssuerKey::from_seed(&[0x11; 32]).unwrap(),
        SubjectKey::from_bytes(&[0x22; 32]).unwrap(),
    );
    let subject = [0x5a; 16];
    let cp1 = issuer
        .issue_token(&subject, Scopes::all(), NOW, 60)
        .unwrap()
        .text;
    let device = DeviceKey::generate(&rng).unwrap();
    let cert = issuer
        .certify(&subject, device.public_key(), Scopes::all(), NOW, 86_400)
        .unwrap();
    let signer = OfflineSigner::new(device, cert.bytes).unwrap();
    let cp2 = signer.make_code(NOW, 60, 1, &rng).unwrap();
    let v = Validation::at(NOW);

    c.bench_function("sign_cp1", |b| {
        b.iter(|| {
            issuer
                .issue_token(black_box(&subject), Scopes::all(), NOW, 60)
                .unwrap()
        })
    });
    c.bench_function("verify_cp1", |b| {
        b.iter(|| verify_online(black_box(&cp1), &keys, &v).unwrap())
    });
    // Everything before the signature (text, CBOR, headers, key, the signature
    // check's inputs): what a verifier's own decoding costs per scan.
    c.bench_function("read_cp1", |b| {
        b.iter(|| read_online(black_box(&cp1), &keys, &v).unwrap())
    });
    c.bench_function("verify_cp2", |b| {
        b.iter(|| verify_offline(black_box(&cp2), &keys, &v).unwrap())
    });

    let msg = b"a message of roughly the size of a citypass Sig_structure, signed once \
                for the ceiling measurement of bare signature verification in ring....";
    let ed_sig = key.sign(msg);
    let ed_pub = key.public_key().as_bytes().to_vec();
    c.bench_function("bare_ed25519_verify", |b| {
        b.iter(|| {
            UnparsedPublicKey::new(&signature::ED25519, &ed_pub)
                .verify(black_box(msg), &ed_sig)
                .unwrap()
        })
    });
    let p_key = DeviceKey::generate(&rng).unwrap();
    let p_sig = p_key.sign(&rng, msg).unwrap();
    let p_pub = p_key.public_key().as_bytes().to_vec();
    c.bench_function("bare_p256_verify", |b| {
        b.iter(|| {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &p_pub)
                .verify(black_box(msg), &p_sig)
                .unwrap()
        })
    });

    c.bench_function("render_svg_cp1", |b| {
        b.iter(|| Qr::encode(black_box(&cp1)).unwrap().to_svg(256))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
