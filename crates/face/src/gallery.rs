//! The 1:N gallery: the enrolled embeddings a set of gates may match a live face
//! against, held in memory and searched by brute force.
//!
//! Why brute force: a gallery is one city's consenting riders at one station or venue
//! (thousands to a hundred thousand). A scan over contiguous rows of [`DIMENSION`]
//! floats is exact (no index can miss the true best match or rank a second best wrongly,
//! which the margin rule depends on), needs no training or rebuild, and measures in
//! milliseconds at 100 000 (`cargo bench -p citypass-face --bench gallery`).
//!
//! Search returns the best and the second best similarity; [`MatchRule`] decides: the
//! best must reach the threshold and lead the second best by the margin, so two
//! similar-looking enrolled riders are never confused for each other at an unattended
//! gate (the gate answers "use your code" instead).

use std::collections::HashMap;
use std::hash::Hash;

use crate::embedding::{DIMENSION, Embedding, Similarity};

/// Enrolled embeddings by key (a rider's handle), rows stored contiguously.
#[derive(Clone)]
pub struct Gallery<K> {
    keys: Vec<K>,
    rows: Vec<f32>,
    index: HashMap<K, usize>,
}

/// The best match of a search and how far ahead of the next it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate<K> {
    pub key: K,
    pub best: Similarity,
    /// The second best similarity; -1 when the gallery holds one entry.
    pub second: Similarity,
}

/// When a 1:N search is a match.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchRule {
    /// The best similarity must be at least this.
    pub threshold: f32,
    /// And lead the second best by at least this.
    pub margin: f32,
}

/// What a 1:N search decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision<K> {
    Match(Candidate<K>),
    /// Nobody enrolled is similar enough.
    NoMatch,
    /// The best is similar enough but another enrolled face is too close behind.
    Ambiguous,
}

/// The size only: the rows are biometric data.
impl<K> std::fmt::Debug for Gallery<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gallery({} entries)", self.keys.len())
    }
}

impl<K> Default for Gallery<K> {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            rows: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + Hash> Gallery<K> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds `key`'s embedding, replacing the one it had.
    pub fn insert(&mut self, key: K, embedding: &Embedding) {
        if let Some(&at) = self.index.get(&key) {
            self.rows[at * DIMENSION..(at + 1) * DIMENSION].copy_from_slice(embedding.values());
            return;
        }
        self.index.insert(key.clone(), self.keys.len());
        self.keys.push(key);
        self.rows.extend_from_slice(embedding.values());
    }

    /// Removes `key`'s embedding (a withdrawal); false when it had none.
    pub fn remove(&mut self, key: &K) -> bool {
        let Some(at) = self.index.remove(key) else {
            return false;
        };
        let last = self.keys.len() - 1;
        if at != last {
            self.rows
                .copy_within(last * DIMENSION..(last + 1) * DIMENSION, at * DIMENSION);
            self.keys.swap(at, last);
            self.index.insert(self.keys[at].clone(), at);
        }
        self.keys.pop();
        self.rows.truncate(last * DIMENSION);
        true
    }

    pub fn contains(&self, key: &K) -> bool {
        self.index.contains_key(key)
    }

    /// The embedding enrolled for `key` (a 1:1 check against a claimed holder).
    pub fn similarity_to(&self, key: &K, probe: &Embedding) -> Option<Similarity> {
        let at = *self.index.get(key)?;
        Some(Similarity(dot(
            &self.rows[at * DIMENSION..(at + 1) * DIMENSION],
            probe.values(),
        )))
    }

    /// The most similar entry and the runner-up's similarity; `None` when empty.
    pub fn search(&self, probe: &Embedding) -> Option<Candidate<K>> {
        let probe = probe.values();
        let (mut best, mut best_at, mut second) = (f32::NEG_INFINITY, 0, -1.0f32);
        for (at, row) in self.rows.chunks_exact(DIMENSION).enumerate() {
            let score = dot(row, probe);
            if score > best {
                second = best.max(second);
                best = score;
                best_at = at;
            } else if score > second {
                second = score;
            }
        }
        Some(Candidate {
            key: self.keys.get(best_at)?.clone(),
            best: Similarity(best),
            second: Similarity(second),
        })
    }

    /// Searches and applies `rule`.
    pub fn decide(&self, probe: &Embedding, rule: MatchRule) -> Decision<K> {
        match self.search(probe) {
            None => Decision::NoMatch,
            Some(c) if c.best.0 < rule.threshold => Decision::NoMatch,
            Some(c) if c.best.0 - c.second.0 < rule.margin => Decision::Ambiguous,
            Some(c) => Decision::Match(c),
        }
    }
}

/// The dot product of two rows, in eight independent lanes so that the compiler
/// vectorises it (a single running sum is a serial dependency chain).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedding(seed: u32) -> Embedding {
        Embedding::sample(seed)
    }

    /// `base` moved towards `toward` by `t` and normalised again: a second photo of
    /// the same face.
    fn blend(base: &Embedding, toward: &Embedding, t: f32) -> Embedding {
        let raw: Vec<f32> = base
            .values()
            .iter()
            .zip(toward.values())
            .map(|(a, b)| a * (1.0 - t) + b * t)
            .collect();
        Embedding::normalise(&raw).unwrap()
    }

    const RULE: MatchRule = MatchRule {
        threshold: 0.5,
        margin: 0.1,
    };

    fn gallery(n: u32) -> Gallery<u32> {
        let mut g = Gallery::new();
        for key in 0..n {
            g.insert(key, &embedding(key + 1));
        }
        g
    }

    #[test]
    fn the_enrolled_face_is_found_and_a_stranger_is_not() {
        let g = gallery(200);
        let probe = blend(&embedding(43), &embedding(9999), 0.3);
        match g.decide(&probe, RULE) {
            Decision::Match(c) => {
                assert_eq!(c.key, 42);
                assert!(c.best.0 > 0.5 && c.second.0 < 0.3, "{c:?}");
            }
            other => panic!("expected a match, got {other:?}"),
        }
        assert_eq!(g.decide(&embedding(9999), RULE), Decision::NoMatch);
        assert_eq!(
            Gallery::<u32>::new().decide(&probe, RULE),
            Decision::NoMatch
        );
    }

    #[test]
    fn two_close_enrolled_faces_are_ambiguous_not_a_match() {
        let mut g = gallery(50);
        let twin = blend(&embedding(11), &embedding(7777), 0.1);
        g.insert(1000, &twin);
        assert_eq!(g.decide(&embedding(11), RULE), Decision::Ambiguous);
    }

    #[test]
    fn a_withdrawn_face_is_gone_and_the_rest_still_match() {
        let mut g = gallery(10);
        assert!(g.remove(&3));
        assert!(!g.remove(&3));
        assert!(!g.contains(&3));
        assert_eq!(g.len(), 9);
        assert_eq!(g.decide(&embedding(4), RULE), Decision::NoMatch);
        // The last row moved into the hole: it must still be found under its key.
        match g.decide(&embedding(10), RULE) {
            Decision::Match(c) => assert_eq!(c.key, 9),
            other => panic!("expected a match, got {other:?}"),
        }
        for key in (0..10).filter(|k| *k != 3) {
            let score = g.similarity_to(&key, &embedding(key + 1)).unwrap();
            assert!((score.0 - 1.0).abs() < 1e-4, "{key}: {score:?}");
        }
        assert_eq!(g.similarity_to(&3, &embedding(4)), None);
    }

    #[test]
    fn re_enrolment_replaces_the_embedding() {
        let mut g = gallery(5);
        g.insert(2, &embedding(500));
        assert_eq!(g.len(), 5);
        assert!(g.similarity_to(&2, &embedding(3)).unwrap().0 < 0.5);
        assert!(g.similarity_to(&2, &embedding(500)).unwrap().0 > 0.99);
    }
}
