//! Key text as an API client or an admin pastes it, into the strict base64 parsers of
//! `heimweg_control::keys`. Checked: whatever parses is exactly the text the key renders to
//! (give or take surrounding whitespace), so one key has one spelling; and every key renders
//! to text that parses back to it. Secrets never show up in `Debug`.

#![no_main]

use heimweg_control::keys::{KeyError, PresharedKey, PrivateKey, PublicKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        parse_is_canonical(text);
    }
    let mut bytes = [0u8; 32];
    let n = data.len().min(32);
    bytes[..n].copy_from_slice(&data[..n]);
    render_parses_back(bytes);
});

fn parse_is_canonical(text: &str) {
    let trimmed = text.trim();
    match text.parse::<PublicKey>() {
        Ok(k) => {
            assert_eq!(k.to_base64(), trimmed);
            assert_eq!(k.to_string(), trimmed);
        }
        Err(KeyError::Zero) => {
            assert!(trimmed.starts_with("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
        }
        Err(_) => {}
    }
    let private = text.parse::<PrivateKey>();
    if let Ok(k) = &private {
        assert_eq!(k.expose_base64(), trimmed);
    }
    let preshared = text.parse::<PresharedKey>();
    if let Ok(k) = &preshared {
        assert_eq!(k.expose_base64(), trimmed);
    }
    // One decoder for all three: they accept the same texts.
    assert_eq!(private.is_ok(), preshared.is_ok());
}

fn render_parses_back(bytes: [u8; 32]) {
    match PublicKey::from_bytes(bytes) {
        Ok(k) => {
            assert_eq!(k.to_base64().parse::<PublicKey>(), Ok(k));
            assert_eq!(k.as_bytes(), &bytes);
        }
        Err(e) => {
            assert_eq!(e, KeyError::Zero);
            assert_eq!(bytes, [0u8; 32]);
        }
    }
    let private = PrivateKey::from_bytes(bytes);
    let text = private.expose_base64();
    let back: PrivateKey = text.parse().expect("a rendered private key parses");
    // The bytes as given, not clamped: the same bytes make the same public key, and not
    // deriving it here keeps a Diffie-Hellman-sized cost out of every input.
    assert_eq!(back.expose_bytes(), bytes);
    assert!(
        !format!("{private:?}").contains(&text),
        "a private key in Debug"
    );

    let psk = PresharedKey::from_bytes(bytes);
    let text = psk.expose_base64();
    let back: PresharedKey = text.parse().expect("a rendered preshared key parses");
    assert_eq!(back, psk);
    assert_eq!(back.expose_bytes(), bytes);
    assert!(
        !format!("{psk:?}").contains(&text),
        "a preshared key in Debug"
    );
}
