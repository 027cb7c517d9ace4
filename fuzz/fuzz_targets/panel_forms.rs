//! A form body as a browser (or anyone) posts it to the admin panel, decoded into every form
//! the panel's pages take by axum's `Form` extractor, the handlers' own conversions run on what
//! decodes, and the guard's CSRF token taken out of it (`heimweg_api::fuzzing::decode_forms`,
//! which holds the checks: names as the domain accepts them, link lifetimes within bounds,
//! bounded policies, expiry dates ending on a day's last second, login redirects that stay on
//! the site, refusals rendered without markup from the input, a CSRF field that changes
//! nothing else). The query strings of the pages are decoded the same way.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    heimweg_api::fuzzing::decode_forms(data);
});
