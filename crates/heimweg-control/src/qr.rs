//! QR codes of client configs, for the iOS and Android apps' camera import.
//!
//! The payload is the plain config text in byte mode, as both apps parse it. The error
//! correction is chosen to fit: the highest level (Q, then M, then L) whose symbol stays at or
//! below version 20 (97×97 modules), because denser symbols get hard for phone cameras to read
//! off a laptop screen; longer payloads fall back to the lowest level that fits at all.

use qrcode::types::{Color, QrError};
use qrcode::{EcLevel, QrCode, Version};

/// Largest version preferred before trading error correction for size.
const COMFORTABLE_VERSION: i16 = 20;
/// White border, in modules, that scanners need around the symbol.
const QUIET_ZONE: usize = 4;

#[derive(Debug, thiserror::Error)]
#[error("the config is too long for a QR code ({0} bytes)")]
pub struct TooLong(pub usize);

/// An encoded QR symbol.
pub struct Qr {
    code: QrCode,
}

impl std::fmt::Debug for Qr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The payload may hold a private key: show only the shape.
        f.debug_struct("Qr")
            .field("version", &self.version())
            .field("ec", &self.code.error_correction_level())
            .finish()
    }
}

impl Qr {
    pub fn encode(text: &str) -> Result<Qr, TooLong> {
        let mut smallest = None;
        for level in [EcLevel::Q, EcLevel::M, EcLevel::L] {
            match QrCode::with_error_correction_level(text.as_bytes(), level) {
                Ok(code) => {
                    if let Version::Normal(v) = code.version() {
                        if v <= COMFORTABLE_VERSION {
                            return Ok(Qr { code });
                        }
                    }
                    smallest = Some(code);
                }
                Err(QrError::DataTooLong) => {}
                Err(_) => return Err(TooLong(text.len())),
            }
        }
        smallest.map(|code| Qr { code }).ok_or(TooLong(text.len()))
    }

    pub fn version(&self) -> i16 {
        match self.code.version() {
            Version::Normal(v) | Version::Micro(v) => v,
        }
    }

    pub fn error_correction(&self) -> EcLevel {
        self.code.error_correction_level()
    }

    /// Modules per side, without the quiet zone.
    pub fn width(&self) -> usize {
        self.code.width()
    }

    fn dark(&self, x: usize, y: usize) -> bool {
        let w = self.code.width();
        x < w && y < w && self.code[(x, y)] == Color::Dark
    }

    /// An SVG document, scalable, with the quiet zone.
    pub fn to_svg(&self) -> String {
        self.code
            .render::<qrcode::render::svg::Color<'_>>()
            .quiet_zone(true)
            .min_dimensions(300, 300)
            .build()
    }

    /// A greyscale PNG with `scale` pixels per module (at least 1) and the quiet zone.
    pub fn to_png(&self, scale: usize) -> Vec<u8> {
        let scale = scale.max(1);
        let side_modules = self.width() + 2 * QUIET_ZONE;
        let side = side_modules * scale;
        let mut pixels = vec![255u8; side * side];
        for y in 0..side {
            for x in 0..side {
                let (mx, my) = (x / scale, y / scale);
                if mx >= QUIET_ZONE
                    && my >= QUIET_ZONE
                    && self.dark(mx - QUIET_ZONE, my - QUIET_ZONE)
                {
                    pixels[y * side + x] = 0;
                }
            }
        }
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, side as u32, side as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        // Writing into a Vec cannot fail for I/O reasons, and the dimensions match the data.
        if let Ok(mut w) = enc.write_header() {
            let _ = w.write_image_data(&pixels);
        }
        out
    }

    /// Two modules per character cell with half blocks, for `heimweg device add` in a
    /// terminal. Dark modules are drawn as the terminal background (light-on-dark terminals
    /// are the norm), so the light parts are the blocks.
    pub fn to_terminal(&self) -> String {
        let side = (self.width() + 2 * QUIET_ZONE) as isize;
        let q = QUIET_ZONE as isize;
        let light = |x: isize, y: isize| {
            let (mx, my) = (x - q, y - q);
            !(mx >= 0 && my >= 0 && self.dark(mx as usize, my as usize))
        };
        let mut out = String::new();
        let mut y = 0;
        while y < side {
            for x in 0..side {
                let top = light(x, y);
                let bottom = y + 1 < side && light(x, y + 1);
                out.push(match (top, bottom) {
                    (true, true) => '█',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (false, false) => ' ',
                });
            }
            out.push('\n');
            y += 2;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a PNG with an independent decoder (rqrr), as a phone would see it.
    fn decode_png(png_bytes: &[u8]) -> String {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let (w, h) = (info.width as usize, info.height as usize);
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "exactly one symbol");
        grids[0].decode().unwrap().1
    }

    fn config_like(len: usize) -> String {
        let mut s = String::from(
            "[Interface]\nPrivateKey = sC+4Y0X3Zt7GmG0y9Ck6nSy6jrxcJjA6Fz9QvH6bKFo=\n",
        );
        while s.len() < len {
            s.push_str("AllowedIPs = 10.20.0.0/16, fd00:20::/48\n");
        }
        s
    }

    #[test]
    fn png_decodes_back_to_the_config() {
        for len in [200, 434, 900] {
            let text = config_like(len);
            let qr = Qr::encode(&text).unwrap();
            assert_eq!(decode_png(&qr.to_png(6)), text, "{len} bytes");
        }
    }

    #[test]
    fn error_correction_is_chosen_to_fit() {
        let small = Qr::encode(&config_like(200)).unwrap();
        assert_eq!(small.error_correction(), EcLevel::Q);
        assert!(small.version() <= COMFORTABLE_VERSION);
        let typical = Qr::encode(&config_like(434)).unwrap();
        assert!(typical.version() <= COMFORTABLE_VERSION);
        let long = Qr::encode(&config_like(1200)).unwrap();
        assert_eq!(long.error_correction(), EcLevel::L);
        assert!(Qr::encode(&"x".repeat(4000)).is_err());
    }

    #[test]
    fn svg_and_terminal_renderings_have_the_symbol() {
        let qr = Qr::encode("hello").unwrap();
        let svg = qr.to_svg();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg") && svg.contains("path"));
        let term = qr.to_terminal();
        let rows: Vec<&str> = term.lines().collect();
        let side = qr.width() + 2 * QUIET_ZONE;
        assert_eq!(rows.len(), side.div_ceil(2));
        assert!(rows.iter().all(|r| r.chars().count() == side));
        assert!(rows[0].chars().all(|c| c == '█'), "quiet zone on top");
        assert!(format!("{qr:?}").contains("version"));
    }
}
