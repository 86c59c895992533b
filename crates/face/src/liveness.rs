//! A presentation-attack (liveness) score for a detected face: how much the model
//! believes the photo shows a live person rather than a printed photo or a screen.
//!
//! Why a separate stage: an unattended face-pass gate must not open for a photo held
//! up to its camera (issue 14), and the score travels with the embedding so the
//! verifier can apply its own rule. The score is the model's belief, not a proof: the
//! shipped model (`fr_liveness.onnx`, docs/face-models.md) was only run on the
//! repository's real photos, which it scores as live; there are no spoof fixtures, so
//! nothing here shows that it refuses a spoof.
//!
//! Pre-processing as the shipped package's JavaScript (`lib/fr_liveness.js`) does it:
//! the detector's box widened by [`LivenessConfig::crop_scale`] (2.7) about its centre
//! (less where the photo is smaller), shifted back inside the photo, cut out and
//! resized (stretched) to the model's square input; RGB values as they are (0-255,
//! mean 0, deviation 1); the output's softmax, of which one class is "live".

use image::RgbImage;

use crate::FaceError;
use crate::config::LivenessConfig;
use crate::detect::FaceBox;
use crate::onnx::OnnxModel;
use crate::photo::sample_bilinear;

/// The liveness model's belief that a face is a live person, in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Liveness {
    /// The softmax probability of the "live" class.
    pub score: f32,
    /// Whether the score reaches the configured threshold.
    pub live: bool,
}

/// The liveness model with its configuration.
#[derive(Debug)]
pub(crate) struct LivenessModel {
    model: OnnxModel,
    config: LivenessConfig,
}

impl LivenessModel {
    pub(crate) fn load(config: &LivenessConfig) -> Result<Self, FaceError> {
        let model = OnnxModel::load("liveness", &config.path, [1, 3, config.size, config.size])?;
        Ok(Self {
            model,
            config: config.clone(),
        })
    }

    /// The liveness of `face` in `photo`.
    pub(crate) fn check(&self, photo: &RgbImage, face: &FaceBox) -> Result<Liveness, FaceError> {
        let (left, top, width, height) = crop(
            face,
            photo.width() as f32,
            photo.height() as f32,
            self.config.crop_scale,
        )
        .ok_or(FaceError::NoFace)?;
        let size = self.config.size;
        let n = &self.config.normalisation;
        let plane = size * size;
        let mut input = vec![0.0f32; 3 * plane];
        let (step_x, step_y) = (width / size as f32, height / size as f32);
        for row in 0..size {
            for col in 0..size {
                let rgb = sample_bilinear(
                    photo,
                    left + (col as f32 + 0.5) * step_x - 0.5,
                    top + (row as f32 + 0.5) * step_y - 0.5,
                );
                for (c, value) in rgb.iter().enumerate() {
                    input[c * plane + row * size + col] = (value - n.mean[c]) / n.std[c];
                }
            }
        }
        let outputs = self.model.run(input)?;
        let logits = outputs.first().map(Vec::as_slice).unwrap_or_default();
        let probabilities = softmax(logits);
        let score = probabilities
            .get(self.config.live_class)
            .copied()
            .filter(|s| s.is_finite())
            .ok_or_else(|| FaceError::Inference {
                model: "liveness",
                reason: format!(
                    "{} outputs, class {} is \"live\"",
                    logits.len(),
                    self.config.live_class
                ),
            })?;
        Ok(Liveness {
            score,
            live: score >= self.config.threshold,
        })
    }
}

/// The region the liveness model sees: the box scaled by `scale` about its centre (at
/// most as large as the photo allows), shifted to lie inside the photo. `None` for an
/// empty box. As `alignLivenessImage` in the package's JavaScript.
pub fn crop(
    face: &FaceBox,
    photo_w: f32,
    photo_h: f32,
    scale: f32,
) -> Option<(f32, f32, f32, f32)> {
    let (w, h) = (face.width(), face.height());
    if !(w >= 1.0 && h >= 1.0 && photo_w >= 2.0 && photo_h >= 2.0) {
        return None;
    }
    let scale = scale.min((photo_h - 1.0) / h).min((photo_w - 1.0) / w);
    let (new_w, new_h) = (w * scale, h * scale);
    let (cx, cy) = (face.x1 + w / 2.0, face.y1 + h / 2.0);
    let mut left = cx - new_w / 2.0;
    let mut top = cy - new_h / 2.0;
    left = left.clamp(0.0, (photo_w - 1.0 - new_w).max(0.0));
    top = top.clamp(0.0, (photo_h - 1.0 - new_h).max(0.0));
    Some((left, top, new_w, new_h))
}

/// Softmax, stable for large logits; empty for an empty input.
fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x1: f32, y1: f32, x2: f32, y2: f32) -> FaceBox {
        FaceBox {
            x1,
            y1,
            x2,
            y2,
            score: 0.9,
        }
    }

    #[test]
    fn the_crop_widens_the_box_and_stays_inside_the_photo() {
        // Room all round: 2.7 times the box, same centre.
        let (l, t, w, h) = crop(&face(450.0, 450.0, 550.0, 550.0), 1000.0, 1000.0, 2.7).unwrap();
        assert!((w - 270.0).abs() < 1e-3 && (h - 270.0).abs() < 1e-3);
        assert!((l + w / 2.0 - 500.0).abs() < 1e-3 && (t + h / 2.0 - 500.0).abs() < 1e-3);
        // Near a corner: shifted inside, not shrunk.
        let (l, t, w, _) = crop(&face(0.0, 0.0, 100.0, 100.0), 1000.0, 1000.0, 2.7).unwrap();
        assert_eq!((l, t), (0.0, 0.0));
        assert!((w - 270.0).abs() < 1e-3);
        // A face filling the photo: scaled only as far as the photo goes.
        let (l, t, w, h) = crop(&face(10.0, 10.0, 190.0, 190.0), 200.0, 200.0, 2.7).unwrap();
        assert!(l >= 0.0 && t >= 0.0 && l + w <= 199.0 + 1e-3 && t + h <= 199.0 + 1e-3);
        assert!(crop(&face(5.0, 5.0, 5.0, 9.0), 200.0, 200.0, 2.7).is_none());
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[1000.0, 1001.0, 999.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(p[1] > p[0] && p[0] > p[2]);
        assert!(softmax(&[]).is_empty());
    }
}
