//! Rendered QR symbols scan back to the exact code, through an independent decoder.

mod common;
use citypass_token::*;
use common::*;

/// Decodes a PNG produced by `Qr::to_png` with the `png` crate and scans it with rqrr.
fn scan_png(png_bytes: &[u8]) -> String {
    let decoder = png::Decoder::new(png_bytes);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one symbol");
    let (_, content) = grids[0].decode().unwrap();
    content
}

#[test]
fn online_code_png_scans_back() {
    let text = cp1().text;
    let png = Qr::encode(&text).unwrap().to_png(4).unwrap();
    assert_eq!(scan_png(&png), text);
}

#[test]
fn offline_code_png_scans_back() {
    let text = cp2();
    let png = Qr::encode(&text).unwrap().to_png(4).unwrap();
    assert_eq!(scan_png(&png), text);
    // And the scanned text still verifies.
    assert!(verify_offline(&scan_png(&png), &keyset(), &Validation::at(NOW)).is_ok());
}
