//! 1:N brute-force search over random unit embeddings, one thread: 10 000 and
//! 100 000 templates (a station's or a venue's face-pass gallery).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use citypass_face::{DIMENSION, Embedding, Gallery};

/// Deterministic pseudo-random unit embeddings (xorshift), different for each seed.
fn embedding(seed: u64) -> Embedding {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let raw: Vec<f32> = (0..DIMENSION)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    Embedding::normalise(&raw).expect("a random vector normalises")
}

fn search(c: &mut Criterion) {
    let mut group = c.benchmark_group("gallery_nearest");
    group.sample_size(20);
    let query = embedding(u64::MAX);
    for size in [10_000usize, 100_000] {
        let mut gallery = Gallery::with_capacity(size);
        for i in 0..size {
            gallery.insert(i, &embedding(i as u64));
        }
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &gallery, |b, gallery| {
            b.iter(|| gallery.nearest(std::hint::black_box(&query)))
        });
    }
    group.finish();
}

criterion_group!(benches, search);
criterion_main!(benches);
