//! What names the face models and the pipeline's rules about faces: the ONNX files,
//! their input sizes, the pixel normalisation each was trained with, the recognition
//! model's reference points and its match threshold ([`ModelConfig`]), and where the
//! shipped models are ([`models_dir`]). Apart from the models themselves
//! ([`crate::model`]), so that each stage (detect, landmarks, embed) reads its own
//! settings without depending on the seam that runs it.

use std::path::{Path, PathBuf};

use crate::FaceError;

/// The environment variable naming the folder of the face models (else the tools
/// directory's `face-models`, where `scripts/fetch-face-models` puts them).
pub const MODELS_DIR_ENV: &str = "CITYPASS_FACE_MODELS";

/// Per-channel `(value - mean) / std` for an RGB input (values 0-255).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalisation {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalisation {
    fn check(&self) -> Result<(), FaceError> {
        if self.std.iter().any(|s| !s.is_finite() || *s == 0.0)
            || self.mean.iter().any(|m| !m.is_finite())
        {
            return Err(FaceError::Config(
                "normalisation needs finite means and non-zero deviations",
            ));
        }
        Ok(())
    }
}

/// The face detector: an SSD-style model giving, per anchor, a face score and a box in
/// corners normalised to the input (`scores` N×2, `boxes` N×4).
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    pub path: PathBuf,
    /// Input width and height (the photo is scaled to fit and padded, not stretched).
    pub width: usize,
    pub height: usize,
    pub normalisation: Normalisation,
    /// Lowest face score kept.
    pub score_threshold: f32,
    /// Boxes overlapping a better one by more than this intersection-over-union are
    /// the same face.
    pub nms_iou: f32,
}

/// The landmark model: a grey square crop of the face in, points normalised to the crop
/// out (68 points in the iBUG layout for the shipped model).
#[derive(Debug, Clone, PartialEq)]
pub struct LandmarkConfig {
    pub path: PathBuf,
    /// Side of the square grey input.
    pub size: usize,
    /// Grey values (0-255) are multiplied by this.
    pub scale: f32,
}

/// The recognition model: an aligned RGB face in, a [`crate::DIMENSION`]-component
/// embedding out.
#[derive(Debug, Clone, PartialEq)]
pub struct RecogniserConfig {
    pub path: PathBuf,
    /// Side of the square aligned input.
    pub size: usize,
    pub normalisation: Normalisation,
    /// Where the eyes, the nose tip and the mouth corners sit in the aligned input (the
    /// points the model was trained with).
    pub reference: [[f32; 2]; 5],
    /// Cosine similarity at and above which two embeddings are the same person. Chosen
    /// from measured false-accept and false-reject rates (`examples/calibrate.rs`).
    pub match_threshold: f32,
}

/// The liveness (presentation-attack) model: a crop around the detected face in, one
/// score per class out (softmax taken here), one class meaning "live".
#[derive(Debug, Clone, PartialEq)]
pub struct LivenessConfig {
    pub path: PathBuf,
    /// Side of the square RGB input (the crop is stretched to it).
    pub size: usize,
    /// The detector's box is widened by this factor about its centre (the model sees
    /// the face with its surroundings: a photo's edge, a screen's frame).
    pub crop_scale: f32,
    pub normalisation: Normalisation,
    /// Which output class is "live".
    pub live_class: usize,
    /// Score (softmax probability of the live class) at and above which a face counts
    /// as live.
    pub threshold: f32,
}

/// The models and the pipeline's rules about faces.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub detector: DetectorConfig,
    pub landmarks: LandmarkConfig,
    pub recogniser: RecogniserConfig,
    /// The liveness model, if the deployment has one (`None`: photos are embedded
    /// without a liveness score).
    pub liveness: Option<LivenessConfig>,
    /// A face narrower than this (pixels in the photo) is refused as too small.
    pub min_face_pixels: u32,
    /// With several faces the largest is taken, unless another's area is at least this
    /// fraction of it (then nobody knows who presents, and the photo is refused).
    pub ambiguity_ratio: f32,
}

/// ArcFace's five reference points for a 112×112 input (left eye, right eye, nose tip,
/// left and right mouth corner, as seen in the image).
pub const ARCFACE_112: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// The shipped recognition model's threshold (`docs/architecture.md`, Face: chosen with
/// `cargo run --release -p citypass-face --example calibrate`).
pub const SHIPPED_MATCH_THRESHOLD: f32 = 0.42;

/// The shipped liveness model's "live" class (found by experiment on the test photos
/// and matching the package's JavaScript, which reports class 0: docs/face-models.md).
pub const SHIPPED_LIVE_CLASS: usize = 0;

/// The shipped liveness model's threshold: the package's JavaScript states none; 0.5
/// (the more likely class) until spoof fixtures allow a measured choice.
pub const SHIPPED_LIVENESS_THRESHOLD: f32 = 0.5;

impl ModelConfig {
    /// The shipped models (`faceplugin-face-recognition-js` 0.0.1, `docs/face-models.md`)
    /// in `dir`, with their published pre-processing.
    pub fn shipped(dir: &Path) -> Self {
        let half_range = Normalisation {
            mean: [127.0; 3],
            std: [128.0; 3],
        };
        ModelConfig {
            detector: DetectorConfig {
                path: dir.join("fr_detect.onnx"),
                width: 320,
                height: 240,
                normalisation: half_range,
                score_threshold: 0.7,
                nms_iou: 0.4,
            },
            landmarks: LandmarkConfig {
                path: dir.join("fr_landmark.onnx"),
                size: 64,
                scale: 1.0 / 256.0,
            },
            recogniser: RecogniserConfig {
                path: dir.join("fr_feature.onnx"),
                size: 112,
                normalisation: half_range,
                reference: ARCFACE_112,
                match_threshold: SHIPPED_MATCH_THRESHOLD,
            },
            liveness: Some(LivenessConfig {
                path: dir.join("fr_liveness.onnx"),
                size: 128,
                crop_scale: 2.7,
                normalisation: Normalisation {
                    mean: [0.0; 3],
                    std: [1.0; 3],
                },
                live_class: SHIPPED_LIVE_CLASS,
                threshold: SHIPPED_LIVENESS_THRESHOLD,
            }),
            min_face_pixels: 40,
            ambiguity_ratio: 0.5,
        }
    }

    /// Refuses a configuration no model can run with.
    pub fn check(&self) -> Result<(), FaceError> {
        if self.detector.width == 0 || self.detector.height == 0 || self.landmarks.size == 0 {
            return Err(FaceError::Config("input sizes must be positive"));
        }
        if self.recogniser.size < 16 {
            return Err(FaceError::Config(
                "the recognition input must be at least 16 pixels",
            ));
        }
        self.detector.normalisation.check()?;
        self.recogniser.normalisation.check()?;
        if !(self.landmarks.scale.is_finite() && self.landmarks.scale > 0.0) {
            return Err(FaceError::Config("the landmark scale must be positive"));
        }
        let unit = |x: f32| x.is_finite() && (0.0..=1.0).contains(&x);
        if !unit(self.detector.score_threshold)
            || !unit(self.detector.nms_iou)
            || !unit(self.ambiguity_ratio)
        {
            return Err(FaceError::Config(
                "thresholds and ratios must lie in [0, 1]",
            ));
        }
        if !(self.recogniser.match_threshold.is_finite()
            && (-1.0..=1.0).contains(&self.recogniser.match_threshold))
        {
            return Err(FaceError::Config("the match threshold must lie in [-1, 1]"));
        }
        if let Some(liveness) = &self.liveness {
            liveness.normalisation.check()?;
            if liveness.size < 16 {
                return Err(FaceError::Config(
                    "the liveness input must be at least 16 pixels",
                ));
            }
            if !(liveness.crop_scale.is_finite() && liveness.crop_scale >= 1.0) {
                return Err(FaceError::Config(
                    "the liveness crop scale must be at least 1",
                ));
            }
            if !unit(liveness.threshold) {
                return Err(FaceError::Config(
                    "thresholds and ratios must lie in [0, 1]",
                ));
            }
        }
        if self
            .recogniser
            .reference
            .iter()
            .flatten()
            .any(|v| !v.is_finite())
        {
            return Err(FaceError::Config("reference points must be finite"));
        }
        Ok(())
    }
}

/// Where the face models are: `CITYPASS_FACE_MODELS`, else `face-models` in the tools
/// directory (`CITYPASS_TOOLS_DIR`, else `$XDG_CACHE_HOME/citypass/tools`, else
/// `~/.cache/citypass/tools`), as `scripts/fetch-face-models` and `scripts/test` use it.
pub fn models_dir() -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var(MODELS_DIR_ENV) {
        return dir;
    }
    let tools = var("CITYPASS_TOOLS_DIR").unwrap_or_else(|| {
        var("XDG_CACHE_HOME")
            .or_else(|| var("HOME").map(|h| h.join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"))
            .join("citypass/tools")
    });
    tools.join("face-models")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_configuration_is_valid_and_bad_ones_are_refused() {
        let good = ModelConfig::shipped(Path::new("/models"));
        good.check().unwrap();
        let mut bad = good.clone();
        bad.recogniser.normalisation.std[1] = 0.0;
        assert!(matches!(bad.check(), Err(FaceError::Config(_))));
        let mut bad = good.clone();
        bad.detector.score_threshold = f32::NAN;
        assert!(matches!(bad.check(), Err(FaceError::Config(_))));
        let mut bad = good.clone();
        bad.detector.width = 0;
        assert!(matches!(bad.check(), Err(FaceError::Config(_))));
        let mut bad = good.clone();
        if let Some(l) = bad.liveness.as_mut() {
            l.threshold = 1.5;
        }
        assert!(matches!(bad.check(), Err(FaceError::Config(_))));
        let mut without = good;
        without.liveness = None;
        without.check().unwrap();
    }
}
