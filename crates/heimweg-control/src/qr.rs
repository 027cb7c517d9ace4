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

    /// The smallest symbol for `text` (error correction L), for a terminal, where every module
    /// is a character cell and the screen is undamaged.
    pub fn encode_smallest(text: &str) -> Result<Qr, TooLong> {
        QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L)
            .map(|code| Qr { code })
            .map_err(|_| TooLong(text.len()))
    }

    /// Character cells per line of [`Qr::to_terminal`]: the modules and the quiet zone.
    pub fn terminal_columns(&self) -> usize {
        self.width() + 2 * QUIET_ZONE
    }

    /// Two modules per character cell with half blocks, for `heimweg device add` in a
    /// terminal. Every line sets its own colours, black on white (the fixed entries 16 and 231
    /// of the 256-colour palette, which themes do not change), so the code reads the same on a
    /// dark and on a light terminal; the colours are reset at each line's end.
    pub fn to_terminal(&self) -> String {
        const BLACK_ON_WHITE: &str = "\x1b[38;5;16;48;5;231m";
        const RESET: &str = "\x1b[0m";
        let side = self.terminal_columns() as isize;
        let q = QUIET_ZONE as isize;
        let dark = |x: isize, y: isize| {
            let (mx, my) = (x - q, y - q);
            mx >= 0 && my >= 0 && self.dark(mx as usize, my as usize)
        };
        let mut out = String::new();
        let mut y = 0;
        while y < side {
            out.push_str(BLACK_ON_WHITE);
            for x in 0..side {
                let top = dark(x, y);
                let bottom = y + 1 < side && dark(x, y + 1);
                out.push(match (top, bottom) {
                    (true, true) => '█',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (false, false) => ' ',
                });
            }
            out.push_str(RESET);
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

    /// Reads a terminal rendering back into pixels (4 per module) and decodes it: what a phone
    /// sees on the screen, whatever the terminal's own colours.
    fn decode_terminal(term: &str) -> String {
        let rows: Vec<Vec<(bool, bool)>> = term
            .lines()
            .map(|l| {
                assert!(l.starts_with("\x1b[38;5;16;48;5;231m") && l.ends_with("\x1b[0m"));
                l.trim_start_matches("\x1b[38;5;16;48;5;231m")
                    .trim_end_matches("\x1b[0m")
                    .chars()
                    .map(|c| match c {
                        '█' => (true, true),
                        '▀' => (true, false),
                        '▄' => (false, true),
                        ' ' => (false, false),
                        other => panic!("unexpected {other:?}"),
                    })
                    .collect()
            })
            .collect();
        let (w, h, s) = (rows[0].len(), rows.len() * 2, 4);
        let mut px = vec![255u8; w * s * h * s];
        for (r, row) in rows.iter().enumerate() {
            for (x, &(top, bottom)) in row.iter().enumerate() {
                for (dy, dark) in [(0, top), (1, bottom)] {
                    if dark {
                        for yy in 0..s {
                            for xx in 0..s {
                                px[((2 * r + dy) * s + yy) * w * s + x * s + xx] = 0;
                            }
                        }
                    }
                }
            }
        }
        let mut img =
            rqrr::PreparedImage::prepare_from_greyscale(w * s, h * s, |x, y| px[y * w * s + x]);
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "exactly one symbol");
        grids[0].decode().unwrap().1
    }

    #[test]
    fn the_terminal_code_decodes_and_a_full_config_fits_80_columns() {
        // A complete config as heimweg renders it: private and preshared key, both address
        // families, resolver and search domain, a split tunnel of four networks, a long name.
        let config = "[Interface]\n\
            PrivateKey = sC+4Y0X3Zt7GmG0y9Ck6nSy6jrxcJjA6Fz9QvH6bKFo=\n\
            Address = 10.77.123.234/32, fd77::7bea/128\n\
            DNS = 10.1.0.53, verwaltung.stadt-beispiel.de\n\
            MTU = 1380\n\n\
            [Peer]\n\
            PublicKey = hY2Fk1gUkDf57uQ44ws/hFrhBx8aP3AXJ9VZnkFZdTc=\n\
            PresharedKey = BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\
            AllowedIPs = 10.20.0.0/16, 10.30.0.0/16, fd00:20::/48, 192.168.100.0/24, 10.1.0.53/32\n\
            Endpoint = vpn.stadt-beispiel.de:51820\n\
            PersistentKeepalive = 25\n";
        let compact = crate::clientconf::compact_for_qr(config);
        let qr = Qr::encode_smallest(&compact).unwrap();
        assert!(
            qr.terminal_columns() <= 80,
            "{} columns",
            qr.terminal_columns()
        );
        let term = qr.to_terminal();
        assert_eq!(decode_terminal(&term), compact);
        let side = qr.terminal_columns();
        assert_eq!(term.lines().count(), side.div_ceil(2));
        assert!(format!("{qr:?}").contains("version"));
    }

    #[test]
    fn the_svg_has_the_symbol() {
        let svg = Qr::encode("hello").unwrap().to_svg();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg") && svg.contains("path"));
    }
}
