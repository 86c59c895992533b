//! 1:N search: which enrolled embedding is nearest a live one, and how far ahead of
//! the runner-up, by brute-force cosine over a contiguous matrix.
//!
//! Brute force because a gate's gallery (those who consented to face pass there) is
//! small enough: one thread scans 100 000 templates in milliseconds
//! (`benches/search.rs`), with exact answers and nothing to rebuild when one
//! withdraws. The margin to the second best is what a gate's decision needs besides the
//! best score (a twin, or a gallery too large for the threshold, shows as a small one).
//! No model needed: the verifier holds a gallery without linking the pipeline.

use crate::{DIMENSION, Embedding, Similarity};

/// Enrolled embeddings, each under a key (a pseudonym, a template id).
#[derive(Clone, Default)]
pub struct Gallery<K> {
    keys: Vec<K>,
    values: Vec<f32>,
}

/// The best match of a search and the runner-up's score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nearest<'a, K> {
    pub key: &'a K,
    pub similarity: Similarity,
    /// The second best score (`None` in a gallery of one).
    pub runner_up: Option<Similarity>,
}

impl<K> Gallery<K> {
    pub fn new() -> Self {
        Self {
            keys: Vec::new(),
            values: Vec::new(),
        }
    }

    pub fn with_capacity(templates: usize) -> Self {
        Self {
            keys: Vec::with_capacity(templates),
            values: Vec::with_capacity(templates * DIMENSION),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn insert(&mut self, key: K, embedding: &Embedding) {
        self.keys.push(key);
        self.values.extend_from_slice(embedding.values());
    }

    /// Removes every template whose key `remove` says (a withdrawal).
    pub fn remove_where(&mut self, mut remove: impl FnMut(&K) -> bool) {
        let mut kept = 0;
        for i in 0..self.keys.len() {
            if !remove(&self.keys[i]) {
                self.keys.swap(kept, i);
                self.values
                    .copy_within(i * DIMENSION..(i + 1) * DIMENSION, kept * DIMENSION);
                kept += 1;
            }
        }
        self.keys.truncate(kept);
        self.values.truncate(kept * DIMENSION);
    }

    /// The nearest template to `query`, or `None` in an empty gallery.
    pub fn nearest(&self, query: &Embedding) -> Option<Nearest<'_, K>> {
        let query = query.values();
        let mut best = (usize::MAX, f32::NEG_INFINITY);
        let mut second = f32::NEG_INFINITY;
        for (i, row) in self.values.chunks_exact(DIMENSION).enumerate() {
            let score = dot(query, row);
            if score > best.1 {
                second = best.1;
                best = (i, score);
            } else if score > second {
                second = score;
            }
        }
        let key = self.keys.get(best.0)?;
        Some(Nearest {
            key,
            similarity: Similarity(best.1),
            runner_up: (self.keys.len() > 1).then_some(Similarity(second)),
        })
    }
}

/// A dot product in eight independent sums, so the compiler can use vector registers
/// (one running sum must add in order and cannot).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for lane in 0..8 {
            sums[lane] += x[lane] * y[lane];
        }
    }
    let tail: f32 = a
        .chunks_exact(8)
        .remainder()
        .iter()
        .zip(b.chunks_exact(8).remainder())
        .map(|(x, y)| x * y)
        .sum();
    sums.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedding(seed: u32) -> Embedding {
        let mut state = seed.wrapping_mul(2654435761) | 1;
        let raw: Vec<f32> = (0..DIMENSION)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 1000) as f32 - 500.0
            })
            .collect();
        Embedding::normalise(&raw).unwrap()
    }

    #[test]
    fn the_nearest_is_the_same_embedding_with_the_runner_up_below() {
        let mut gallery = Gallery::new();
        for seed in 1..50 {
            gallery.insert(seed, &embedding(seed));
        }
        let found = gallery.nearest(&embedding(17)).unwrap();
        assert_eq!(*found.key, 17);
        assert!((found.similarity.0 - 1.0).abs() < 1e-4);
        assert!(found.runner_up.unwrap().0 < 0.5);
        // The same as comparing one by one.
        let direct = embedding(17).similarity(&embedding(3)).0;
        assert!((dot(embedding(17).values(), embedding(3).values()) - direct).abs() < 1e-5);
    }

    #[test]
    fn withdrawn_templates_are_gone_and_an_empty_gallery_finds_nobody() {
        let mut gallery = Gallery::new();
        for seed in 1..10 {
            gallery.insert(seed, &embedding(seed));
        }
        gallery.remove_where(|k| *k == 4 || *k == 9);
        assert_eq!(gallery.len(), 7);
        assert_ne!(*gallery.nearest(&embedding(4)).unwrap().key, 4);
        assert_eq!(*gallery.nearest(&embedding(5)).unwrap().key, 5);
        gallery.remove_where(|_| true);
        assert!(gallery.nearest(&embedding(5)).is_none());
    }
}
