//! Rendering codes as QR symbols: SVG, PNG and terminal text.
//!
//! Codes are encoded at error-correction level M (15% recovery: enough for a cracked
//! phone screen, small enough for the version budget). The whole text is QR
//! alphanumeric (Base45 plus the `CPn:` prefix), so the encoder uses that mode
//! throughout. NOTES.md: encoding costs ~2 ms, mostly mask selection; servers render
//! only when asked.

use qrcode::render::{svg, unicode};
use qrcode::{Color, EcLevel, QrCode, Version};

use crate::TokenError;

/// Quiet zone around the symbol, in modules (the QR standard asks for 4).
const QUIET_ZONE: usize = 4;

/// A code encoded as a QR symbol.
pub struct Qr(QrCode);

impl Qr {
    /// Encodes `text` at error-correction level M.
    pub fn encode(text: &str) -> Result<Self, TokenError> {
        QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
            .map(Qr)
            .map_err(|_| TokenError::Qr("text does not fit any QR version"))
    }

    /// The QR version (1-40) chosen for the text.
    pub fn version(&self) -> u8 {
        match self.0.version() {
            Version::Normal(v) | Version::Micro(v) => v.clamp(0, 40) as u8,
        }
    }

    /// Modules per side, without the quiet zone.
    pub fn width(&self) -> usize {
        self.0.width()
    }

    /// An SVG document, at least `min_px` pixels per side.
    pub fn to_svg(&self, min_px: u32) -> String {
        self.0
            .render::<svg::Color<'_>>()
            .min_dimensions(min_px, min_px)
            .quiet_zone(true)
            .build()
    }

    /// Unicode half blocks, two module rows per line, light-on-dark inverted so it
    /// scans from a dark terminal.
    pub fn to_terminal(&self) -> String {
        self.0
            .render::<unicode::Dense1x2>()
            .dark_color(unicode::Dense1x2::Light)
            .light_color(unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build()
    }

    /// A greyscale PNG with `scale` pixels per module.
    pub fn to_png(&self, scale: usize) -> Result<Vec<u8>, TokenError> {
        let scale = scale.clamp(1, 64);
        let modules = self.0.width();
        let colors = self.0.to_colors();
        let side = (modules + 2 * QUIET_ZONE) * scale;
        let mut pixels = vec![255u8; side * side];
        for (i, color) in colors.iter().enumerate() {
            if *color != Color::Dark {
                continue;
            }
            let (mx, my) = (i % modules + QUIET_ZONE, i / modules + QUIET_ZONE);
            for y in my * scale..(my + 1) * scale {
                pixels[y * side + mx * scale..y * side + (mx + 1) * scale].fill(0);
            }
        }
        let side32 = u32::try_from(side).map_err(|_| TokenError::Qr("image too large"))?;
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, side32, side32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|_| TokenError::Qr("PNG header"))?;
        writer
            .write_image_data(&pixels)
            .map_err(|_| TokenError::Qr("PNG data"))?;
        writer.finish().map_err(|_| TokenError::Qr("PNG end"))?;
        Ok(out)
    }
}
