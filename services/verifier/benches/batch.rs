//! VerifyStream's batches against single decisions, in CPU per code, with ring's bare
//! Ed25519 verify in the same run (issue 10, item 7; issue 12's "VerifyStream with
//! batching >= 1.0x the bare verify server").
//!
//! - `single_decision_cp1`: one scan decided as Verify decides it (`Verifier::verify`:
//!   read, the signature alone with ring, the rest of the pipeline), per code;
//! - `batched_decision_cp1/N`: N scans read, their issuer signatures decided as one
//!   batch (`batch::check_signatures`: ed25519-dalek's `verify_batch`), then each
//!   concluded; criterion's throughput is in codes, so its time per element is the CPU
//!   per code;
//! - `batched_decision_cp1_one_forged/32`: the same with one forged code among 32: the
//!   batch fails and every signature is checked alone (the fallback's cost);
//! - `bare_ed25519_verify`: ring's Ed25519 verify of one message (what the bare verify
//!   server does per request).
//!
//! The whole decision is the fixture's (`fixture.rs`, shared with `decision.rs`): the
//! real holder, memory stores, the transit policy on fixed taps at a metro entry gate.

mod fixture;

use citypass_token::*;
use citypass_verifier::batch::check_signatures;
use citypass_verifier::{ReadScan, Scan, Verifier};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, black_box};
use criterion::{criterion_group, criterion_main};
use ring::signature::{self, UnparsedPublicKey};

use fixture::scan;

/// Decides `scans` as VerifyStream decides the scans waiting together.
async fn decide_together(verifier: &Verifier, scans: Vec<Scan>) {
    let mut reads: Vec<ReadScan> = scans
        .iter()
        .map(|scan| verifier.read(&scan.gate_id, scan).expect("read"))
        .collect();
    check_signatures(verifier, reads.iter_mut());
    for (scan, read) in scans.iter().zip(reads) {
        let answer = verifier.conclude(scan, read, None).await.expect("answer");
        black_box(answer);
    }
}

/// `text` with its signature's first byte (of R) changed.
fn forged(text: &str) -> String {
    let (prefix, body) = text.split_at(4);
    let mut bytes = base45::decode(body).expect("Base45");
    let at = bytes.len() - 64;
    bytes[at] ^= 1;
    format!("{prefix}{}", base45::encode(&bytes))
}

fn bench(c: &mut Criterion) {
    let (issuer, verifier) = fixture::verifier();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let subject = [0x5a; 16];
    let mut n = 0u64;
    let mut codes = |count: usize, forge: Option<usize>| -> Vec<Scan> {
        (0..count)
            .map(|i| {
                n += 1;
                let text = issuer
                    .issue_token(&subject, Scopes::all(), unix_now(), 60)
                    .unwrap()
                    .text;
                let text = if forge == Some(i) {
                    forged(&text)
                } else {
                    text
                };
                scan("metro-entry-1", Scene::Metro, n, text)
            })
            .collect()
    };

    let mut group = c.benchmark_group("per_code");
    group.throughput(Throughput::Elements(1));
    group.bench_function("single_decision_cp1", |b| {
        b.iter_batched(
            || codes(1, None).remove(0),
            |scan| {
                let answer = runtime
                    .block_on(verifier.verify(&scan.gate_id, &scan, None))
                    .expect("an answer");
                assert!(answer.allowed(), "{answer:?}");
            },
            BatchSize::SmallInput,
        )
    });
    for size in [2usize, 8, 32, 64] {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(
            BenchmarkId::new("batched_decision_cp1", size),
            &size,
            |b, &size| {
                b.iter_batched(
                    || codes(size, None),
                    |scans| runtime.block_on(decide_together(&verifier, scans)),
                    BatchSize::SmallInput,
                )
            },
        );
    }
    group.throughput(Throughput::Elements(32));
    group.bench_with_input(
        BenchmarkId::new("batched_decision_cp1_one_forged", 32),
        &32usize,
        |b, &size| {
            b.iter_batched(
                || codes(size, Some(size / 2)),
                |scans| runtime.block_on(decide_together(&verifier, scans)),
                BatchSize::SmallInput,
            )
        },
    );
    group.throughput(Throughput::Elements(1));
    let msg = b"a message of roughly the size of a citypass Sig_structure, signed once \
                for the ceiling measurement of bare signature verification in ring....";
    let ed_sig = issuer.key().sign(msg);
    let ed_pub = issuer.key().public_key().as_bytes().to_vec();
    group.bench_function("bare_ed25519_verify", |b| {
        b.iter(|| {
            UnparsedPublicKey::new(&signature::ED25519, &ed_pub)
                .verify(black_box(msg), &ed_sig)
                .unwrap()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
