//! Finding faces: the detector model's scores and boxes, kept above a score, merged by
//! non-maximum suppression, in the photo's pixels.
//!
//! The photo is scaled to fit the detector's input and padded rather than stretched,
//! so that a portrait photo's faces keep their shape (the model was trained on
//! undistorted faces).

use image::RgbImage;
use image::imageops::{self, FilterType};

use crate::FaceError;
use crate::config::DetectorConfig;
use crate::onnx::OnnxModel;

/// One detected face: a box in photo pixels and the detector's score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
}

impl FaceBox {
    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }
    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }
    /// Intersection over union with `other` (0 when either is empty).
    pub fn iou(&self, other: &FaceBox) -> f32 {
        let w = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let h = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let intersection = w * h;
        let union = self.area() + other.area() - intersection;
        if union > 0.0 {
            intersection / union
        } else {
            0.0
        }
    }
}

/// Keeps the best-scoring box of each group of boxes overlapping by more than `iou`.
/// Best score first; non-finite boxes and scores are dropped.
pub fn non_maximum_suppression(mut boxes: Vec<FaceBox>, iou: f32) -> Vec<FaceBox> {
    boxes.retain(|b| {
        [b.x1, b.y1, b.x2, b.y2, b.score]
            .iter()
            .all(|v| v.is_finite())
            && b.area() > 0.0
    });
    boxes.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<FaceBox> = Vec::new();
    for candidate in boxes {
        if kept.iter().all(|k| k.iou(&candidate) <= iou) {
            kept.push(candidate);
        }
    }
    kept
}

/// The detector model with its configuration.
#[derive(Debug)]
pub(crate) struct Detector {
    model: OnnxModel,
    config: DetectorConfig,
    scores: usize,
    boxes: usize,
}

impl Detector {
    pub(crate) fn load(config: &DetectorConfig) -> Result<Self, FaceError> {
        let model = OnnxModel::load(
            "detector",
            &config.path,
            [1, 3, config.height, config.width],
        )?;
        // Outputs by name where the model names them (the shipped one does), else in the
        // usual order of SSD exports: scores, then boxes.
        let scores = model.output_index("scores").unwrap_or(0);
        let boxes = model.output_index("boxes").unwrap_or(1);
        Ok(Self {
            model,
            config: config.clone(),
            scores,
            boxes,
        })
    }

    /// Every face in `photo` above the score threshold, best first.
    pub(crate) fn detect(&self, photo: &RgbImage) -> Result<Vec<FaceBox>, FaceError> {
        let (input_w, input_h) = (self.config.width, self.config.height);
        let scale =
            (input_w as f32 / photo.width() as f32).min(input_h as f32 / photo.height() as f32);
        let fitted_w = ((photo.width() as f32 * scale).round() as u32).clamp(1, input_w as u32);
        let fitted_h = ((photo.height() as f32 * scale).round() as u32).clamp(1, input_h as u32);
        let fitted = imageops::resize(photo, fitted_w, fitted_h, FilterType::Triangle);

        // NCHW, padded with each channel's mean (zero after normalisation).
        let n = &self.config.normalisation;
        let plane = input_w * input_h;
        let mut input = vec![0.0f32; 3 * plane];
        for (c, chunk) in input.chunks_exact_mut(plane).enumerate() {
            for (x, y, pixel) in fitted.enumerate_pixels() {
                chunk[y as usize * input_w + x as usize] =
                    (f32::from(pixel[c]) - n.mean[c]) / n.std[c];
            }
        }
        let outputs = self.model.run(input)?;
        let bad = |reason: String| FaceError::Inference {
            model: "detector",
            reason,
        };
        let (Some(scores), Some(boxes)) = (outputs.get(self.scores), outputs.get(self.boxes))
        else {
            return Err(bad(format!(
                "{} outputs, scores and boxes expected",
                outputs.len()
            )));
        };
        let anchors = scores.len() / 2;
        if scores.len() != anchors * 2 || boxes.len() != anchors * 4 {
            return Err(bad(format!(
                "{} scores and {} box values do not make anchors of 2 and 4",
                scores.len(),
                boxes.len()
            )));
        }
        // Boxes are corners normalised to the detector's input: to input pixels, then
        // back to the photo by the fitting scale, clipped to the photo.
        let (photo_w, photo_h) = (photo.width() as f32, photo.height() as f32);
        let candidates = scores
            .chunks_exact(2)
            .zip(boxes.chunks_exact(4))
            .filter(|(s, _)| s[1] >= self.config.score_threshold)
            .map(|(s, b)| FaceBox {
                x1: (b[0] * input_w as f32 / scale).clamp(0.0, photo_w),
                y1: (b[1] * input_h as f32 / scale).clamp(0.0, photo_h),
                x2: (b[2] * input_w as f32 / scale).clamp(0.0, photo_w),
                y2: (b[3] * input_h as f32 / scale).clamp(0.0, photo_h),
                score: s[1],
            })
            .collect();
        Ok(non_maximum_suppression(candidates, self.config.nms_iou))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x1: f32, y1: f32, x2: f32, y2: f32, score: f32) -> FaceBox {
        FaceBox {
            x1,
            y1,
            x2,
            y2,
            score,
        }
    }

    #[test]
    fn overlapping_boxes_keep_the_best_and_separate_faces_stay() {
        let kept = non_maximum_suppression(
            vec![
                b(0.0, 0.0, 10.0, 10.0, 0.8),
                b(1.0, 1.0, 11.0, 11.0, 0.9),
                b(50.0, 50.0, 60.0, 60.0, 0.75),
            ],
            0.4,
        );
        assert_eq!(
            kept,
            vec![
                b(1.0, 1.0, 11.0, 11.0, 0.9),
                b(50.0, 50.0, 60.0, 60.0, 0.75)
            ]
        );
    }

    #[test]
    fn empty_and_non_finite_boxes_are_dropped() {
        let kept = non_maximum_suppression(
            vec![
                b(0.0, 0.0, 0.0, 10.0, 0.9),
                b(f32::NAN, 0.0, 10.0, 10.0, 0.9),
                b(0.0, 0.0, 10.0, 10.0, f32::INFINITY),
            ],
            0.4,
        );
        assert!(kept.is_empty());
    }

    #[test]
    fn iou_of_identical_and_disjoint_boxes() {
        let a = b(0.0, 0.0, 10.0, 10.0, 1.0);
        assert!((a.iou(&a) - 1.0).abs() < 1e-6);
        assert_eq!(a.iou(&b(20.0, 20.0, 30.0, 30.0, 1.0)), 0.0);
    }
}
