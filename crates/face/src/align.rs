//! Bringing a face to the recognition model's reference points: the similarity
//! transform (rotation, uniform scale, translation) that best maps the five landmarks
//! onto the reference in the least-squares sense (Umeyama's method without reflection),
//! and the bilinear warp that draws the aligned face.
//!
//! A similarity rather than a full affine transform: it cannot shear or squash a face
//! to fit, so a bad landmark shows as a worse match instead of a distorted face that
//! matches anyone.

use image::{Rgb, RgbImage};

use crate::FaceError;
use crate::landmarks::{Landmarks, Point};
use crate::photo::sample_bilinear;

/// `x' = a·x − b·y + tx`, `y' = b·x + a·y + ty`: a rotation and uniform scale
/// (`a + ib`) and a translation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimilarityTransform {
    pub a: f32,
    pub b: f32,
    pub tx: f32,
    pub ty: f32,
}

impl SimilarityTransform {
    pub fn apply(&self, p: Point) -> Point {
        Point {
            x: self.a * p.x - self.b * p.y + self.tx,
            y: self.b * p.x + self.a * p.y + self.ty,
        }
    }

    /// The inverse transform (`None` for a zero scale).
    pub fn inverse(&self) -> Option<SimilarityTransform> {
        let norm = self.a * self.a + self.b * self.b;
        if !(norm.is_finite() && norm > f32::EPSILON) {
            return None;
        }
        let (a, b) = (self.a / norm, -self.b / norm);
        Some(SimilarityTransform {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        })
    }
}

/// The least-squares similarity mapping `from` onto `to`. In complex numbers,
/// `to ≈ z·from + t` with `z = Σ conj(f̄)·t̄ / Σ |f̄|²` over the centred points.
/// `None` when the source points all coincide (or are not finite).
pub fn estimate(from: &[Point], to: &[Point]) -> Option<SimilarityTransform> {
    let n = from.len().min(to.len());
    if n < 2 {
        return None;
    }
    let mean = |ps: &[Point]| {
        let (sx, sy) = ps[..n]
            .iter()
            .fold((0.0, 0.0), |(x, y), p| (x + p.x, y + p.y));
        Point {
            x: sx / n as f32,
            y: sy / n as f32,
        }
    };
    let (mf, mt) = (mean(from), mean(to));
    let (mut re, mut im, mut norm) = (0.0f32, 0.0f32, 0.0f32);
    for (f, t) in from.iter().zip(to).take(n) {
        let (fx, fy, tx, ty) = (f.x - mf.x, f.y - mf.y, t.x - mt.x, t.y - mt.y);
        re += fx * tx + fy * ty;
        im += fx * ty - fy * tx;
        norm += fx * fx + fy * fy;
    }
    if !(norm.is_finite() && norm > 1e-6 && re.is_finite() && im.is_finite()) {
        return None;
    }
    let (a, b) = (re / norm, im / norm);
    Some(SimilarityTransform {
        a,
        b,
        tx: mt.x - (a * mf.x - b * mf.y),
        ty: mt.y - (b * mf.x + a * mf.y),
    })
}

/// The face of `landmarks` in `photo`, aligned to `reference` in a `size`×`size` image.
pub fn align(
    photo: &RgbImage,
    landmarks: &Landmarks,
    reference: &[[f32; 2]; 5],
    size: u32,
) -> Result<RgbImage, FaceError> {
    let reference = reference.map(|[x, y]| Point { x, y });
    let to_reference = estimate(&landmarks.0, &reference).ok_or(FaceError::NotAligned)?;
    let to_photo = to_reference.inverse().ok_or(FaceError::NotAligned)?;
    Ok(warp(photo, &to_photo, size))
}

/// Draws a `size`×`size` image whose pixel (x, y) is the photo at `to_photo(x, y)`,
/// bilinear, black outside the photo.
pub fn warp(photo: &RgbImage, to_photo: &SimilarityTransform, size: u32) -> RgbImage {
    RgbImage::from_fn(size, size, |x, y| {
        let p = to_photo.apply(Point {
            x: x as f32,
            y: y as f32,
        });
        let [r, g, b] = sample_bilinear(photo, p.x, p.y);
        Rgb([r, g, b].map(|v| v.round().clamp(0.0, 255.0) as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(x: f32, y: f32) -> Point {
        Point { x, y }
    }

    #[test]
    fn a_known_similarity_is_recovered_exactly() {
        let truth = SimilarityTransform {
            a: 0.8,
            b: 0.3,
            tx: 12.0,
            ty: -4.0,
        };
        let from = [
            p(10.0, 20.0),
            p(40.0, 22.0),
            p(25.0, 35.0),
            p(14.0, 50.0),
            p(38.0, 49.0),
        ];
        let to = from.map(|q| truth.apply(q));
        let found = estimate(&from, &to).unwrap();
        for (q, t) in from.iter().zip(&to) {
            let got = found.apply(*q);
            assert!((got.x - t.x).abs() < 1e-3 && (got.y - t.y).abs() < 1e-3);
        }
        let back = found.inverse().unwrap().apply(to[2]);
        assert!((back.x - from[2].x).abs() < 1e-3 && (back.y - from[2].y).abs() < 1e-3);
    }

    #[test]
    fn coincident_or_non_finite_points_have_no_transform() {
        let same = [p(5.0, 5.0); 5];
        let reference = ARCFACE.map(|[x, y]| p(x, y));
        assert!(estimate(&same, &reference).is_none());
        let mut nan = reference;
        nan[1].x = f32::NAN;
        assert!(estimate(&nan, &reference).is_none());
    }

    const ARCFACE: [[f32; 2]; 5] = crate::config::ARCFACE_112;

    #[test]
    fn warping_by_the_identity_copies_the_photo_and_outside_is_black() {
        let photo = RgbImage::from_fn(8, 8, |x, y| Rgb([(x * 30) as u8, (y * 30) as u8, 7]));
        let identity = SimilarityTransform {
            a: 1.0,
            b: 0.0,
            tx: 0.0,
            ty: 0.0,
        };
        let copy = warp(&photo, &identity, 8);
        assert_eq!(copy, photo);
        let shifted = SimilarityTransform {
            tx: 100.0,
            ..identity
        };
        assert!(warp(&photo, &shifted, 4).pixels().all(|p| p.0 == [0, 0, 0]));
    }
}
