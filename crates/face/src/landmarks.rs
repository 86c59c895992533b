//! Five points of a face (the eyes, the nose tip, the mouth corners): what alignment
//! needs to bring a face to the recognition model's reference points.
//!
//! The shipped landmark model gives the 68 points of the iBUG layout on a grey square
//! crop of the detected face; the five are taken from them as the model's publisher does
//! (each eye the mean of its four lid points, the nose tip, each mouth corner the mean
//! of its outer and inner corner).

use image::RgbImage;

use crate::FaceError;
use crate::config::LandmarkConfig;
use crate::detect::FaceBox;
use crate::onnx::OnnxModel;
use crate::photo::sample_bilinear;

/// A point in photo pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

/// Left eye, right eye, nose tip, left and right mouth corner, as seen in the image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Landmarks(pub [Point; 5]);

/// The 68 iBUG points' indices averaged into each of the five.
const FIVE_OF_68: [&[usize]; 5] = [
    &[37, 38, 40, 41],
    &[43, 44, 46, 47],
    &[30],
    &[48, 60],
    &[54, 64],
];

/// The five points from the 68 (x, y pairs, in any coordinates).
pub fn five_of_68(points: &[f32]) -> Option<Landmarks> {
    if points.len() != 68 * 2 {
        return None;
    }
    let mean = |indices: &[usize]| {
        let n = indices.len() as f32;
        Point {
            x: indices.iter().map(|i| points[2 * i]).sum::<f32>() / n,
            y: indices.iter().map(|i| points[2 * i + 1]).sum::<f32>() / n,
        }
    };
    Some(Landmarks(FIVE_OF_68.map(mean)))
}

/// The landmark model with its configuration.
#[derive(Debug)]
pub(crate) struct LandmarkModel {
    model: OnnxModel,
    config: LandmarkConfig,
}

impl LandmarkModel {
    pub(crate) fn load(config: &LandmarkConfig) -> Result<Self, FaceError> {
        let model = OnnxModel::load("landmarks", &config.path, [1, 1, config.size, config.size])?;
        Ok(Self {
            model,
            config: config.clone(),
        })
    }

    /// The five points of `face` in `photo`.
    pub(crate) fn locate(&self, photo: &RgbImage, face: &FaceBox) -> Result<Landmarks, FaceError> {
        // A square crop around the box's centre, as wide as the box's longer side.
        let side = face.width().max(face.height());
        if side.partial_cmp(&1.0) != Some(std::cmp::Ordering::Greater) {
            return Err(FaceError::NoFace);
        }
        let left = (face.x1 + face.x2) / 2.0 - side / 2.0;
        let top = (face.y1 + face.y2) / 2.0 - side / 2.0;
        let size = self.config.size;
        let step = side / size as f32;
        let mut input = Vec::with_capacity(size * size);
        for row in 0..size {
            for col in 0..size {
                let [r, g, b] = sample_bilinear(
                    photo,
                    left + (col as f32 + 0.5) * step - 0.5,
                    top + (row as f32 + 0.5) * step - 0.5,
                );
                let grey = 0.299 * r + 0.587 * g + 0.114 * b;
                input.push(grey * self.config.scale);
            }
        }
        let outputs = self.model.run(input)?;
        let points = outputs.first().map(Vec::as_slice).unwrap_or_default();
        let in_crop = five_of_68(points).ok_or_else(|| FaceError::Inference {
            model: "landmarks",
            reason: format!("{} values, 68 points expected", points.len()),
        })?;
        Ok(Landmarks(in_crop.0.map(|p| Point {
            x: left + p.x * side,
            y: top + p.y * side,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_points_are_means_of_the_68() {
        let mut points = vec![0.0f32; 136];
        for i in [37, 38, 40, 41] {
            points[2 * i] = 10.0 + i as f32;
            points[2 * i + 1] = 20.0;
        }
        points[60] = 5.0;
        points[61] = 6.0;
        let five = five_of_68(&points).unwrap();
        assert_eq!(
            five.0[0],
            Point {
                x: 10.0 + 39.0,
                y: 20.0
            }
        );
        assert_eq!(five.0[2], Point { x: 5.0, y: 6.0 });
        assert!(five_of_68(&points[..10]).is_none());
    }
}
