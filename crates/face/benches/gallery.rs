//! 1:N search time over 10 000 and 100 000 enrolled embeddings, one thread, beside its
//! ceiling measured in the same run: one pass reading the same floats (a plain sum), the
//! least any exact search must do.
//!
//! `cargo bench -p citypass-face --bench gallery`

use citypass_face::{DIMENSION, Embedding, Gallery, MatchRule};
use criterion::{Criterion, black_box, criterion_group, criterion_main};

fn search(c: &mut Criterion) {
    let rule = MatchRule {
        threshold: 0.5,
        margin: 0.1,
    };
    for n in [10_000u32, 100_000] {
        let mut gallery = Gallery::new();
        let mut flat = Vec::with_capacity(n as usize * DIMENSION);
        for key in 0..n {
            let e = Embedding::sample(key + 1);
            flat.extend_from_slice(e.values());
            gallery.insert(key, &e);
        }
        let probe = Embedding::sample(n / 2);
        c.bench_function(&format!("gallery/decide/{n}"), |b| {
            b.iter(|| gallery.decide(black_box(&probe), rule))
        });
        c.bench_function(&format!("ceiling/read_all/{n}"), |b| {
            b.iter(|| {
                let mut lanes = [0.0f32; 8];
                for x in black_box(&flat).chunks_exact(8) {
                    for i in 0..8 {
                        lanes[i] += x[i];
                    }
                }
                lanes.iter().sum::<f32>()
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = search
}
criterion_main!(benches);
