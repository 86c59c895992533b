//! The face embedding: what a recognition model makes of one aligned face, and the only
//! form in which a face leaves the device that saw it.
//!
//! Every embedding in the system has [`DIMENSION`] components and unit L2 length, so
//! the cosine similarity of two is their dot product. A vector that is not finite, not
//! of the right dimension or far from unit length is refused on the way in
//! ([`Embedding::from_normalised`]) rather than compared, since a crafted vector (all
//! zeros, NaN, a huge norm) could otherwise score against every template.

use thiserror::Error;

/// Components of every embedding (the shipped recognition model's output; a procured
/// model with another size needs every stored template re-enrolled anyway).
pub const DIMENSION: usize = 512;

/// How far from 1 an embedding's length may be on the way in (f32 rounding of a
/// normalised vector is far smaller).
const UNIT_TOLERANCE: f32 = 1e-3;

/// An embedding that is not usable. Says what is wrong, never the values.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EmbeddingError {
    #[error("an embedding has {DIMENSION} components, this one has {0}")]
    Dimension(usize),
    #[error("an embedding's components must be finite numbers")]
    NotFinite,
    #[error("an embedding must have unit length (L2-normalised)")]
    NotNormalised,
    #[error("an embedding cannot be all zeros")]
    Zero,
}

/// Cosine similarity of two embeddings, in [-1, 1]: higher is more alike.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Similarity(pub f32);

/// A unit-length face embedding of [`DIMENSION`] components.
#[derive(Clone, PartialEq)]
pub struct Embedding(Box<[f32]>);

impl Embedding {
    /// Normalises a model's raw output. Refuses a wrong dimension, a non-finite
    /// component or an all-zero vector.
    pub fn normalise(raw: &[f32]) -> Result<Self, EmbeddingError> {
        check_shape(raw)?;
        let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return Err(EmbeddingError::Zero);
        }
        Ok(Self(raw.iter().map(|x| x / norm).collect()))
    }

    /// Takes an embedding that should already be normalised (as sent by a counter or a
    /// gate, or decrypted from a template) and checks that it is.
    pub fn from_normalised(values: Vec<f32>) -> Result<Self, EmbeddingError> {
        check_shape(&values)?;
        let length = values.iter().map(|x| x * x).sum::<f32>().sqrt();
        if (length - 1.0).abs() > UNIT_TOLERANCE {
            return Err(EmbeddingError::NotNormalised);
        }
        Ok(Self(values.into_boxed_slice()))
    }

    /// Cosine similarity (the dot product, both being unit length).
    pub fn similarity(&self, other: &Embedding) -> Similarity {
        Similarity(self.0.iter().zip(other.0.iter()).map(|(a, b)| a * b).sum())
    }

    /// A deterministic stand-in embedding, one per `seed` (xorshift, normalised): for
    /// tests, benches and demos that need distinct embeddings without a model. It is
    /// no one's face; two seeds are about as similar as two strangers.
    pub fn sample(seed: u32) -> Embedding {
        let mut state = seed.wrapping_mul(2654435761) | 1;
        let raw: Vec<f32> = (0..DIMENSION)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 2001) as f32 - 1000.0
            })
            .collect();
        match Embedding::normalise(&raw) {
            Ok(embedding) => embedding,
            // Unreachable: 512 finite values that are not all zero (xorshift never
            // yields a zero state from a non-zero one, and `| 1` starts non-zero).
            Err(_) => Embedding(vec![1.0 / (DIMENSION as f32).sqrt(); DIMENSION].into()),
        }
    }

    /// The components, for encoding (a protobuf `repeated float`, an encrypted
    /// template).
    pub fn values(&self) -> &[f32] {
        &self.0
    }

    /// Little-endian bytes (4 × [`DIMENSION`]), the plaintext of a stored template.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// The inverse of [`Embedding::to_le_bytes`], with the same checks as
    /// [`Embedding::from_normalised`].
    pub fn from_le_bytes(bytes: &[u8]) -> Result<Self, EmbeddingError> {
        if !bytes.len().is_multiple_of(4) {
            return Err(EmbeddingError::Dimension(bytes.len() / 4));
        }
        let values = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Self::from_normalised(values)
    }
}

/// No components in Debug output: an embedding is biometric data.
impl std::fmt::Debug for Embedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Embedding({} components)", self.0.len())
    }
}

fn check_shape(values: &[f32]) -> Result<(), EmbeddingError> {
    if values.len() != DIMENSION {
        return Err(EmbeddingError::Dimension(values.len()));
    }
    if !values.iter().all(|x| x.is_finite()) {
        return Err(EmbeddingError::NotFinite);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vector far from unit length, different for each seed.
    fn raw(seed: u32) -> Vec<f32> {
        Embedding::sample(seed)
            .values()
            .iter()
            .map(|x| x * 300.0)
            .collect()
    }

    #[test]
    fn a_normalised_embedding_has_unit_length_and_matches_itself() {
        let e = Embedding::normalise(&raw(1)).unwrap();
        assert!((e.similarity(&e).0 - 1.0).abs() < 1e-5);
        let other = Embedding::normalise(&raw(7)).unwrap();
        assert!(e.similarity(&other).0 < 0.99);
    }

    #[test]
    fn bytes_round_trip() {
        let e = Embedding::normalise(&raw(3)).unwrap();
        assert_eq!(Embedding::from_le_bytes(&e.to_le_bytes()).unwrap(), e);
    }

    #[test]
    fn crafted_vectors_are_refused() {
        assert_eq!(
            Embedding::normalise(&[0.0; DIMENSION]),
            Err(EmbeddingError::Zero)
        );
        assert_eq!(
            Embedding::normalise(&[1.0; 3]),
            Err(EmbeddingError::Dimension(3))
        );
        let mut nan = raw(1);
        nan[5] = f32::NAN;
        assert_eq!(Embedding::normalise(&nan), Err(EmbeddingError::NotFinite));
        assert_eq!(
            Embedding::from_normalised(raw(1)),
            Err(EmbeddingError::NotNormalised)
        );
        assert_eq!(
            Embedding::from_le_bytes(&[0; 7]),
            Err(EmbeddingError::Dimension(1))
        );
    }

    #[test]
    fn debug_shows_no_values() {
        let e = Embedding::normalise(&raw(1)).unwrap();
        assert_eq!(format!("{e:?}"), "Embedding(512 components)");
    }
}
