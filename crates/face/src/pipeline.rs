//! Photo bytes to an [`Embedding`]: decode, detect, choose the face, find its landmarks,
//! align, embed. The one entry point a counter's camera or an app calls; everything it
//! refuses is a [`FaceError`] saying why.
//!
//! Which face: the largest, since the person presenting stands nearest the camera; but
//! when another face is nearly as large (its area at least
//! [`ModelConfig::ambiguity_ratio`] of the largest), nobody can tell who presents and
//! the photo is refused ([`FaceError::SeveralFaces`]) rather than enrolling or checking
//! a bystander. A face narrower than [`ModelConfig::min_face_pixels`] is refused as too
//! small: its embedding would be unreliable.

use image::RgbImage;

use crate::detect::FaceBox;
use crate::liveness::Liveness;
use crate::model::{FaceModels, ModelConfig, OnnxFaceModels};
use crate::{Embedding, FaceError, Similarity, align, photo};

/// A photo's embedding and, where a liveness model is configured, its liveness score
/// (of the same face).
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub embedding: Embedding,
    pub liveness: Option<Liveness>,
}

/// The pipeline over a set of models.
pub struct FacePipeline<M = OnnxFaceModels> {
    models: M,
}

impl FacePipeline<OnnxFaceModels> {
    /// Loads the ONNX models the configuration names.
    pub fn load(config: ModelConfig) -> Result<Self, FaceError> {
        Ok(Self::new(OnnxFaceModels::load(config)?))
    }
}

impl<M: FaceModels> FacePipeline<M> {
    pub fn new(models: M) -> Self {
        Self { models }
    }

    pub fn models(&self) -> &M {
        &self.models
    }

    /// The embedding of the one face in a JPEG or PNG photo.
    pub fn embed_photo(&self, bytes: &[u8]) -> Result<Embedding, FaceError> {
        self.embed_image(&photo::decode(bytes)?)
    }

    /// The embedding of the one face in decoded pixels.
    pub fn embed_image(&self, photo: &RgbImage) -> Result<Embedding, FaceError> {
        let face = self.face(photo)?;
        self.embed_face(photo, &face)
    }

    /// The embedding and the liveness of the one face in a JPEG or PNG photo: what a
    /// gate's or counter's camera sends.
    pub fn check_photo(&self, bytes: &[u8]) -> Result<Checked, FaceError> {
        self.check_image(&photo::decode(bytes)?)
    }

    /// The embedding and the liveness of the one face in decoded pixels.
    pub fn check_image(&self, photo: &RgbImage) -> Result<Checked, FaceError> {
        let face = self.face(photo)?;
        Ok(Checked {
            embedding: self.embed_face(photo, &face)?,
            liveness: self.models.liveness(photo, &face)?,
        })
    }

    fn face(&self, photo: &RgbImage) -> Result<FaceBox, FaceError> {
        let faces = self.models.detect(photo)?;
        choose_face(&faces, self.models.config())
    }

    fn embed_face(&self, photo: &RgbImage, face: &FaceBox) -> Result<Embedding, FaceError> {
        let config = self.models.config();
        let landmarks = self.models.landmarks(photo, face)?;
        let size = config.recogniser.size as u32;
        let aligned = align::align(photo, &landmarks, &config.recogniser.reference, size)?;
        self.models.embed(&aligned)
    }

    /// Whether two embeddings are the same person at the model's threshold.
    pub fn same_person(&self, a: &Embedding, b: &Embedding) -> (bool, Similarity) {
        let similarity = a.similarity(b);
        (
            similarity.0 >= self.models.config().recogniser.match_threshold,
            similarity,
        )
    }
}

/// The face the pipeline embeds, by the rules in this module's documentation.
pub fn choose_face(faces: &[FaceBox], config: &ModelConfig) -> Result<FaceBox, FaceError> {
    let mut by_area: Vec<&FaceBox> = faces.iter().filter(|f| f.area() > 0.0).collect();
    by_area.sort_by(|a, b| b.area().total_cmp(&a.area()));
    let Some(largest) = by_area.first() else {
        return Err(FaceError::NoFace);
    };
    if let Some(second) = by_area.get(1)
        && second.area() >= config.ambiguity_ratio * largest.area()
    {
        return Err(FaceError::SeveralFaces);
    }
    let side = largest.width().min(largest.height());
    if side < config.min_face_pixels as f32 {
        return Err(FaceError::FaceTooSmall {
            side: side as u32,
            minimum: config.min_face_pixels,
        });
    }
    Ok(**largest)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn face(side: f32, at: f32) -> FaceBox {
        FaceBox {
            x1: at,
            y1: at,
            x2: at + side,
            y2: at + side,
            score: 0.9,
        }
    }

    #[test]
    fn the_largest_face_is_chosen_unless_another_is_nearly_as_large() {
        let config = ModelConfig::shipped(Path::new("/m"));
        assert_eq!(
            choose_face(&[face(50.0, 0.0), face(200.0, 300.0)], &config).unwrap(),
            face(200.0, 300.0)
        );
        assert!(matches!(
            choose_face(&[face(180.0, 0.0), face(200.0, 300.0)], &config),
            Err(FaceError::SeveralFaces)
        ));
    }

    #[test]
    fn no_face_and_small_faces_are_refused() {
        let config = ModelConfig::shipped(Path::new("/m"));
        assert!(matches!(choose_face(&[], &config), Err(FaceError::NoFace)));
        assert!(matches!(
            choose_face(&[face(20.0, 0.0)], &config),
            Err(FaceError::FaceTooSmall {
                side: 20,
                minimum: 40
            })
        ));
    }
}
