//! The seam between the pipeline and the models that run inside it ([`FaceModels`],
//! [`OnnxFaceModels`]); the configuration that names them is [`crate::config`],
//! re-exported here.
//!
//! The shipped models (`docs/face-models.md`) are what was found in a public registry
//! package, of unstated origin: a city replaces them with a procured, certified model.
//! Everything such a model needs to plug in is here: the ONNX files, their input sizes,
//! the pixel normalisation each was trained with, the recognition model's reference
//! points and its match threshold ([`ModelConfig`]); or, for a runtime other than ONNX,
//! an implementation of [`FaceModels`].

use image::RgbImage;

use crate::Embedding;
use crate::FaceError;
use crate::detect::{Detector, FaceBox};
use crate::embed::Recogniser;
use crate::landmarks::{LandmarkModel, Landmarks};
use crate::liveness::{Liveness, LivenessModel};

pub use crate::config::{
    ARCFACE_112, DetectorConfig, LandmarkConfig, LivenessConfig, MODELS_DIR_ENV, ModelConfig,
    Normalisation, RecogniserConfig, SHIPPED_LIVE_CLASS, SHIPPED_LIVENESS_THRESHOLD,
    SHIPPED_MATCH_THRESHOLD, models_dir,
};

/// What the pipeline asks of the models. [`OnnxFaceModels`] runs ONNX files; another
/// runtime or a procured model's SDK implements this.
pub trait FaceModels: Send + Sync {
    /// The configuration (sizes, reference points, thresholds) the pipeline follows.
    fn config(&self) -> &ModelConfig;
    /// Every face found, in photo pixels, best score first.
    fn detect(&self, photo: &RgbImage) -> Result<Vec<FaceBox>, FaceError>;
    /// The five points of one detected face, in photo pixels.
    fn landmarks(&self, photo: &RgbImage, face: &FaceBox) -> Result<Landmarks, FaceError>;
    /// The embedding of a face aligned to the reference points (a square of the
    /// recognition input's size).
    fn embed(&self, aligned: &RgbImage) -> Result<Embedding, FaceError>;
    /// The liveness of one detected face, or `None` where no liveness model is
    /// configured.
    fn liveness(&self, photo: &RgbImage, face: &FaceBox) -> Result<Option<Liveness>, FaceError> {
        let _ = (photo, face);
        Ok(None)
    }
}

/// The ONNX models (detector, landmarks, recognition, and liveness where configured),
/// run on the CPU by tract.
pub struct OnnxFaceModels {
    config: ModelConfig,
    detector: Detector,
    landmarks: LandmarkModel,
    recogniser: Recogniser,
    liveness: Option<LivenessModel>,
}

impl OnnxFaceModels {
    /// Loads and optimises the models the configuration names (a second or so).
    pub fn load(config: ModelConfig) -> Result<Self, FaceError> {
        config.check()?;
        Ok(Self {
            detector: Detector::load(&config.detector)?,
            landmarks: LandmarkModel::load(&config.landmarks)?,
            recogniser: Recogniser::load(&config.recogniser)?,
            liveness: config
                .liveness
                .as_ref()
                .map(LivenessModel::load)
                .transpose()?,
            config,
        })
    }
}

impl FaceModels for OnnxFaceModels {
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn detect(&self, photo: &RgbImage) -> Result<Vec<FaceBox>, FaceError> {
        self.detector.detect(photo)
    }
    fn landmarks(&self, photo: &RgbImage, face: &FaceBox) -> Result<Landmarks, FaceError> {
        self.landmarks.locate(photo, face)
    }
    fn embed(&self, aligned: &RgbImage) -> Result<Embedding, FaceError> {
        self.recogniser.embed(aligned)
    }
    fn liveness(&self, photo: &RgbImage, face: &FaceBox) -> Result<Option<Liveness>, FaceError> {
        self.liveness
            .as_ref()
            .map(|model| model.check(photo, face))
            .transpose()
    }
}
