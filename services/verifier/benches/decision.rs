//! The whole decision without the network, next to ring's bare signature checks in the
//! same run: the verifier (`Verifier::verify`: gate registry, the shared pipeline, the
//! revocation step on a fixed set, the holder step (the code's subject unsealed with the
//! real `Holder` and its subject key, the subject-revocation check), single use in the
//! memory store, the scene policy (CP2 at a scenic gate: reserve, the venue pseudonym
//! (HMAC) of the subject the holder step opened, the venue count in memory, settle),
//! the answer) on a fresh code per iteration. Identity is never asked: neither metro
//! nor scenic reads a profile.
//!
//! Goals (issue 10): `decision_cp1 / bare_ed25519_verify <= 1.3`, `decision_cp2 /
//! (bare_ed25519_verify + bare_p256_verify) <= 1.3`. Service throughput against a bare
//! server comes with the load generator.

mod fixture;

use citypass_token::*;
use citypass_verifier::Scan;
use criterion::{BatchSize, Criterion, black_box, criterion_group, criterion_main};
use ring::signature::{self, UnparsedPublicKey};

use fixture::scan;

fn bench(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let (issuer, verifier) = fixture::verifier();
    // The service decides on tokio; scene policies bound their work with its timer.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let decide = |scan: Scan| {
        let answer = runtime
            .block_on(verifier.verify(&scan.gate_id.clone(), &scan, None))
            .expect("an answer");
        assert!(answer.allowed(), "{answer:?}");
    };

    let subject = [0x5a; 16];
    let mut n = 0u64;
    c.bench_function("decision_cp1", |b| {
        b.iter_batched(
            || {
                n += 1;
                let code = issuer
                    .issue_token(&subject, Scopes::all(), unix_now(), 60)
                    .unwrap();
                scan("metro-entry-1", Scene::Metro, n, code.text)
            },
            |scan| decide(black_box(scan)),
            BatchSize::SmallInput,
        )
    });

    let device = DeviceKey::generate(&rng).unwrap();
    let cert = issuer
        .certify(
            &subject,
            device.public_key(),
            Scopes::all(),
            unix_now(),
            86_400,
        )
        .unwrap();
    let signer = OfflineSigner::new(device, cert.bytes).unwrap();
    let mut counter = 0u64;
    c.bench_function("decision_cp2", |b| {
        b.iter_batched(
            || {
                counter += 1;
                let code = signer.make_code(unix_now(), 60, counter, &rng).unwrap();
                scan("scenic-1", Scene::Scenic, counter, code)
            },
            |scan| decide(black_box(scan)),
            BatchSize::SmallInput,
        )
    });

    let msg = b"a message of roughly the size of a citypass Sig_structure, signed once \
                for the ceiling measurement of bare signature verification in ring....";
    let ed_sig = issuer.key().sign(msg);
    let ed_pub = issuer.key().public_key().as_bytes().to_vec();
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
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
