//! The cryptography of accounts and secrets: argon2id password hashes, TOTP (RFC 6238, by
//! `totp-rs`), sealing of TOTP secrets at rest, constant-time comparison (`subtle`), and the
//! random values behind tokens, sessions, CSRF tokens and recovery codes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Passwords shorter than this are refused: with the lockout, 12 characters are out of reach
/// of online guessing and hold up for a while if a hash leaks.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longer input is refused before hashing, so a megabyte "password" cannot tie up a core.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a new password is refused.
pub fn password_problem(password: &str) -> Option<&'static str> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        Some("short")
    } else if password.len() > MAX_PASSWORD_BYTES {
        Some("long")
    } else {
        None
    }
}

/// An argon2id PHC string with the crate's defaults (m = 19 MiB, t = 2, p = 1: OWASP's
/// minimum). Takes tens of milliseconds: call it off the async threads.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        // Hashing fails only for parameters or salts out of range, which these are not.
        .expect("argon2id with default parameters hashes any password")
}

/// Checks `password` against a PHC string; a malformed hash never matches.
pub fn verify_password(phc: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash to check unknown names against, so that a login for a name that does not exist takes
/// as long as one for a name that does.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a password of anyone"))
}

/// `n` random bytes as base64url.
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Equal strings, compared in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The TOTP period and the steps either side that still count (clock drift of phones).
const TOTP_PERIOD_SECS: i64 = 30;
const TOTP_SKEW_STEPS: i64 = 1;

fn totp(secret: &[u8]) -> totp_rs::TOTP {
    // RFC 6238 with HMAC-SHA-1, six digits, 30 s: what every authenticator app uses by
    // default. `new_unchecked` because secrets made before heimweg used this crate are 160
    // bits, which its checked constructor accepts too; it is the size it refuses below 128
    // bits that `new_totp_secret` never makes.
    totp_rs::TOTP::new_unchecked(
        totp_rs::Algorithm::SHA1,
        6,
        0,
        TOTP_PERIOD_SECS as u64,
        secret.to_vec(),
    )
}

/// The six-digit code for time step `step`.
pub fn totp_code(secret: &[u8], step: i64) -> String {
    totp(secret).generate((step.max(0) * TOTP_PERIOD_SECS) as u64)
}

/// The time step whose code `code` is, within the allowed drift of `now`: the step, not just
/// "valid", so that the store can accept each step once.
pub fn totp_match(secret: &[u8], code: &str, now: i64) -> Option<i64> {
    let code = code.trim().replace(' ', "");
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret);
    let step = now.div_euclid(TOTP_PERIOD_SECS);
    (step - TOTP_SKEW_STEPS..=step + TOTP_SKEW_STEPS)
        .filter(|s| *s >= 0)
        .find(|&s| same(&t.generate((s * TOTP_PERIOD_SECS) as u64), &code))
}

/// A new TOTP secret: 160 bits, as RFC 4226 recommends.
pub fn new_totp_secret() -> Vec<u8> {
    let mut s = vec![0u8; 20];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut s);
    s
}

/// RFC 4648 base32 without padding: how authenticator apps take a secret.
pub fn base32(bytes: &[u8]) -> String {
    match totp_rs::Secret::Raw(bytes.to_vec()).to_encoded() {
        totp_rs::Secret::Encoded(s) => s.trim_end_matches('=').to_string(),
        totp_rs::Secret::Raw(_) => unreachable!("to_encoded always encodes"),
    }
}

/// The bytes of an RFC 4648 base32 text (as [`base32`] writes it); `None` if it is not one.
pub fn from_base32(text: &str) -> Option<Vec<u8>> {
    totp_rs::Secret::Encoded(text.to_string()).to_bytes().ok()
}

/// The `otpauth://` URI an authenticator app scans.
pub fn otpauth_uri(account: &str, secret: &[u8]) -> String {
    let label: String = form_urlencoded::byte_serialize(format!("heimweg:{account}").as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    format!(
        "otpauth://totp/{label}?secret={}&issuer=heimweg&algorithm=SHA1&digits=6&period=30",
        base32(secret)
    )
}

/// Ten one-time recovery codes, `xxxx-xxxx-xxxx-xxxx` from an unambiguous alphabet of 31
/// characters: 79 bits each, out of reach of guessing online and of brute force on a leaked
/// (unsalted SHA-256) hash.
pub fn new_recovery_codes() -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    // Bytes from 248 up are drawn again: 248 is the largest multiple of 31 below 256, so every
    // character is equally likely.
    let limit = 256 - 256 % ALPHABET.len();
    (0..10)
        .map(|_| {
            let mut chars = String::with_capacity(19);
            while chars.len() < 19 {
                let mut b = [0u8; 1];
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
                if usize::from(b[0]) >= limit {
                    continue;
                }
                if matches!(chars.len(), 4 | 9 | 14) {
                    chars.push('-');
                }
                chars.push(ALPHABET[usize::from(b[0]) % ALPHABET.len()] as char);
            }
            chars
        })
        .collect()
}

/// What the store keeps of a recovery code; case and spaces do not matter when typed.
pub fn recovery_code_hash(code: &str) -> String {
    let normalized: String = code
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_lowercase();
    hex::encode(Sha256::digest(normalized.as_bytes()))
}

/// Seals secrets the panel keeps (TOTP secrets) with ChaCha20-Poly1305 under a key the
/// gateway derives from its own private key: a copy of the database alone reveals nothing.
#[derive(Clone)]
pub struct Sealer(ChaCha20Poly1305);

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

impl Sealer {
    pub fn new(key: [u8; 32]) -> Sealer {
        Sealer(ChaCha20Poly1305::new(&key.into()))
    }

    /// The sealer of a gateway: its key is derived from the gateway's private key (with a
    /// label of its own), so every gateway sharing that key opens what another sealed, and no
    /// second secret needs managing.
    pub fn for_gateway(private_key: &[u8; 32]) -> Sealer {
        let mut h = Sha256::new();
        h.update(b"heimweg panel sealing key v1\0");
        h.update(private_key);
        Sealer::new(h.finalize().into())
    }

    pub fn seal(&self, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        let mut out = nonce.to_vec();
        out.extend(
            self.0
                .encrypt(Nonce::from_slice(&nonce), plaintext)
                .expect("ChaCha20-Poly1305 encrypts any plaintext of sane length"),
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
    }

    /// The plaintext, or `None` if `sealed` was not made by this key (or was altered).
    pub fn open(&self, sealed: &str) -> Option<Vec<u8>> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sealed)
            .ok()?;
        if raw.len() < 12 + 16 {
            return None;
        }
        let (nonce, ct) = raw.split_at(12);
        self.0.decrypt(Nonce::from_slice(nonce), ct).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_matches_the_rfc_6238_sha1_vectors() {
        let secret = b"12345678901234567890";
        // RFC 6238 appendix B gives 8 digits; the 6-digit code is their last six.
        for (t, code) in [
            (59, 94_287_082),
            (1_111_111_109, 7_081_804),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
        ] {
            assert_eq!(
                totp_code(secret, t / 30),
                format!("{:06}", code % 1_000_000),
                "t = {t}"
            );
        }
        assert_eq!(totp_match(secret, "287082", 59), Some(1));
        assert_eq!(
            totp_match(secret, "287 082", 59 + 30),
            Some(1),
            "one step of drift"
        );
        assert_eq!(
            totp_match(secret, "287082", 59 + 90),
            None,
            "three steps late"
        );
        assert_eq!(totp_match(secret, "28708", 59), None);
        assert_eq!(totp_match(secret, "abcdef", 59), None);
    }

    #[test]
    fn base32_follows_rfc_4648() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn passwords_verify_and_bad_hashes_never_match() {
        let h = hash_password("correct horse battery");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "correct horse batterY"));
        assert!(!verify_password("not a hash", "x"));
        assert!(!verify_password(&h, &"x".repeat(MAX_PASSWORD_BYTES + 1)));
        assert_eq!(password_problem("short"), Some("short"));
        assert_eq!(password_problem("twelve chars"), None);
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_unaltered() {
        let a = Sealer::new([1; 32]);
        let sealed = a.seal(b"totp secret");
        assert_eq!(a.open(&sealed).as_deref(), Some(&b"totp secret"[..]));
        assert_eq!(Sealer::new([2; 32]).open(&sealed), None);
        let mut altered = sealed.into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(a.open(std::str::from_utf8(&altered).unwrap()), None);
        assert_eq!(a.open("%%%"), None);
    }

    #[test]
    fn recovery_codes_are_distinct_and_hash_the_way_they_are_typed() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        let set: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(set.len(), 10);
        let c = &codes[0];
        assert_eq!(c.len(), 19);
        assert_eq!(c.matches('-').count(), 3);
        assert_eq!(
            recovery_code_hash(c),
            recovery_code_hash(&format!(" {} ", c.to_uppercase()))
        );
    }
}
