//! Entry points for the fuzz targets in `fuzz/` (cargo feature `fuzzing`, off in every build
//! that ships). They reach the panel's form decoding, private to this crate, by the same code
//! its handlers run, so a fuzz finding is a finding in production. Not an API: nothing but
//! `fuzz/` may depend on it.

/// Decodes `body` into every form the panel takes (axum's `Form`, as the handlers receive
/// it), runs the handler's own conversions on what decodes (names, link lifetimes, group
/// policies, expiry dates, keys, return paths) and the guard's CSRF token extraction, and
/// checks what each promises. Touches no store.
pub fn decode_forms(body: &[u8]) {
    crate::panel::fuzzing::decode_forms(body);
}
