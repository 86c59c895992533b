//! From an aligned face to its [`Embedding`]: the recognition model's pre-processing
//! (RGB, per-channel normalisation, NCHW) and its output normalised to unit length.

use image::RgbImage;

use crate::config::RecogniserConfig;
use crate::onnx::OnnxModel;
use crate::{Embedding, FaceError};

/// The recognition model with its configuration.
#[derive(Debug)]
pub(crate) struct Recogniser {
    model: OnnxModel,
    config: RecogniserConfig,
}

impl Recogniser {
    pub(crate) fn load(config: &RecogniserConfig) -> Result<Self, FaceError> {
        let model = OnnxModel::load(
            "recognition",
            &config.path,
            [1, 3, config.size, config.size],
        )?;
        Ok(Self {
            model,
            config: config.clone(),
        })
    }

    /// The embedding of a face already aligned to the reference points.
    pub(crate) fn embed(&self, aligned: &RgbImage) -> Result<Embedding, FaceError> {
        let size = self.config.size;
        if aligned.dimensions() != (size as u32, size as u32) {
            return Err(FaceError::Inference {
                model: "recognition",
                reason: format!("an aligned face is {size}×{size} pixels"),
            });
        }
        let n = &self.config.normalisation;
        let plane = size * size;
        let mut input = vec![0.0f32; 3 * plane];
        for (c, chunk) in input.chunks_exact_mut(plane).enumerate() {
            for (value, pixel) in chunk.iter_mut().zip(aligned.pixels()) {
                *value = (f32::from(pixel[c]) - n.mean[c]) / n.std[c];
            }
        }
        let outputs = self.model.run(input)?;
        let raw = outputs.first().map(Vec::as_slice).unwrap_or_default();
        Ok(Embedding::normalise(raw)?)
    }
}
