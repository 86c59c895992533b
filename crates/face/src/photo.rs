//! Photo bytes to pixels: JPEG or PNG only, bounded in size before anything is
//! allocated, turned upright by the EXIF orientation a phone writes.
//!
//! The bytes come from a camera on the same device, but an app also accepts a chosen
//! file: a malformed or huge image must give an error, never a panic or an allocation
//! of gigabytes.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};

use crate::FaceError;

/// Largest side accepted (a 50-megapixel camera is ~8200 pixels wide).
pub const MAX_SIDE: u32 = 8192;
/// Most memory the decoder may allocate, in MB.
pub const MAX_DECODED_MEGABYTES: u32 = 256;

/// Decodes a JPEG or PNG photo into upright RGB pixels.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, FaceError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| FaceError::NotAnImage)?;
    if !matches!(reader.format(), Some(ImageFormat::Jpeg | ImageFormat::Png)) {
        return Err(FaceError::NotAnImage);
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(u64::from(MAX_DECODED_MEGABYTES) * 1024 * 1024);
    reader.limits(limits);
    let read_error = |e: ImageError| match e {
        ImageError::Limits(_) => FaceError::PhotoTooLarge {
            max_side: MAX_SIDE,
            max_megabytes: MAX_DECODED_MEGABYTES,
        },
        _ => FaceError::NotAnImage,
    };
    let mut decoder = reader.into_decoder().map_err(read_error)?;
    let orientation = decoder.orientation().map_err(read_error)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(read_error)?;
    image.apply_orientation(orientation);
    if image.width() == 0 || image.height() == 0 {
        return Err(FaceError::NotAnImage);
    }
    Ok(image.into_rgb8())
}

/// The photo's colour at (x, y) (pixel centres at integers), bilinear, black outside.
pub(crate) fn sample_bilinear(photo: &RgbImage, x: f32, y: f32) -> [f32; 3] {
    if !(x.is_finite() && y.is_finite()) {
        return [0.0; 3];
    }
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (w, h) = (photo.width() as i64, photo.height() as i64);
    let pixel = |px: f32, py: f32| -> [f32; 3] {
        let (px, py) = (px as i64, py as i64);
        if px < 0 || py < 0 || px >= w || py >= h {
            return [0.0; 3];
        }
        photo.get_pixel(px as u32, py as u32).0.map(f32::from)
    };
    let (p00, p10) = (pixel(x0, y0), pixel(x0 + 1.0, y0));
    let (p01, p11) = (pixel(x0, y0 + 1.0), pixel(x0 + 1.0, y0 + 1.0));
    std::array::from_fn(|c| {
        let top = p00[c] * (1.0 - fx) + p10[c] * fx;
        let bottom = p01[c] * (1.0 - fx) + p11[c] * fx;
        top * (1.0 - fy) + bottom * fy
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let image = RgbImage::new(width, height);
        image
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn garbage_and_other_formats_are_not_images() {
        assert!(matches!(decode(b""), Err(FaceError::NotAnImage)));
        assert!(matches!(
            decode(b"not a photo at all"),
            Err(FaceError::NotAnImage)
        ));
        assert!(matches!(
            decode(b"GIF89a\x01\x00\x01\x00"),
            Err(FaceError::NotAnImage)
        ));
        let mut truncated = png(32, 32);
        truncated.truncate(truncated.len() / 2);
        assert!(matches!(decode(&truncated), Err(FaceError::NotAnImage)));
        // A JPEG's start-of-image marker and nothing else.
        assert!(matches!(
            decode(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 16]),
            Err(FaceError::NotAnImage)
        ));
    }

    #[test]
    fn a_small_png_decodes() {
        let image = decode(&png(7, 5)).unwrap();
        assert_eq!(image.dimensions(), (7, 5));
    }

    #[test]
    fn a_huge_declared_size_is_refused_before_decoding() {
        // A PNG header claiming 100 000 × 100 000 pixels (a decompression bomb's start).
        let mut bytes = png(1, 1);
        bytes[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let header_crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&header_crc.to_be_bytes());
        assert!(matches!(
            decode(&bytes),
            Err(FaceError::PhotoTooLarge { .. })
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Any bytes: an image or an error, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            let _ = decode(&bytes);
        }

        /// A real JPEG and PNG with bytes overwritten anywhere: an image or an error.
        #[test]
        fn damaged_photos_never_panic(
            at in proptest::collection::vec((0usize..1_000_000, proptest::prelude::any::<u8>()), 1..16),
            keep in 0usize..1_000_000,
        ) {
            let jpeg: &[u8] = include_bytes!("../tests/photos/biden.jpg");
            for original in [jpeg.to_vec(), png(40, 30)] {
                let mut bytes = original;
                for (position, value) in &at {
                    let len = bytes.len();
                    bytes[position % len] = *value;
                }
                bytes.truncate(keep % (bytes.len() + 1));
                let _ = decode(&bytes);
            }
        }
    }

    /// PNG's CRC-32 (so the forged header above is read, not refused as corrupt).
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
