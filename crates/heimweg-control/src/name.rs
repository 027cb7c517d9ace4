//! Names people give things: devices, users, groups, panel accounts, API tokens.
//!
//! A name is what an admin types, searches for and reads back in every artifact heimweg makes:
//! the client config and its file name, the QR code, the Apple profile (XML), the panel, the
//! audit log, a CSV export. So one type decides what a name may be, once:
//!
//! - Unicode, normalised to NFC (an "ä" typed on a Mac and on Windows is the same name);
//! - 1 to [`Name::MAX_CHARS`] characters, no space at either end;
//! - no control characters, no line or paragraph separators, no Unicode noncharacters (U+FFFE
//!   is not allowed in XML), no characters that reorder or hide text (bidi overrides and
//!   isolates, and every default-ignorable code point: zero-width joiners and spaces, fillers,
//!   variation selectors, tags, the BOM) — text that displays as one name and is another;
//! - case does not make a different name: `Anna-iPad` and `anna-ipad` are the same device.
//!   A name is kept and shown as it was first written; [`Name::key`] is what uniqueness and
//!   lookups compare.

use std::fmt;
use unicode_normalization::UnicodeNormalization;

/// A validated name (see the module documentation).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

/// Why a name was refused, in words an admin can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a name must not be empty")]
    Empty,
    #[error("a name has at most {max} characters; this one has {0}", max = Name::MAX_CHARS)]
    TooLong(usize),
    #[error("a name must not start or end with a space")]
    OuterSpace,
    #[error("a name must not contain {0} (character U+{1:04X})")]
    Character(&'static str, u32),
}

impl Name {
    /// Long enough for "Stadtkämmerei-Laptop-Vertretung-2", short enough for a table cell.
    pub const MAX_CHARS: usize = 64;

    /// Validates and normalises `raw`.
    pub fn new(raw: &str) -> Result<Name, NameError> {
        let s: String = raw.nfc().collect();
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        let chars = s.chars().count();
        if chars > Name::MAX_CHARS {
            return Err(NameError::TooLong(chars));
        }
        if s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
            return Err(NameError::OuterSpace);
        }
        if let Some((what, c)) = s.chars().find_map(|c| forbidden(c).map(|w| (w, c))) {
            return Err(NameError::Character(what, u32::from(c)));
        }
        Ok(Name(s))
    }

    /// A name as a store kept it. Earlier versions refused less (they allowed invisible and
    /// direction-changing characters, and spaces at the ends); such names stay readable and
    /// usable, so an upgrade loses no device, and every renderer escapes what it prints
    /// anyway. Only what no version ever stored is refused: nothing, or control characters.
    pub fn from_stored(raw: &str) -> Result<Name, NameError> {
        if raw.trim().is_empty() {
            return Err(NameError::Empty);
        }
        if let Some(c) = raw.chars().find(|c| c.is_control()) {
            return Err(NameError::Character("a control character", u32::from(c)));
        }
        Ok(Name(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What two names are compared by: lower case of the NFC form. `Anna-iPad` and
    /// `anna-ipad` have the same key.
    pub fn key(&self) -> String {
        name_key(&self.0)
    }
}

/// The comparison key of a name as stored (see [`Name::key`]): NFC again after lower-casing,
/// since the lower case of an NFC text need not be NFC (`J` with a combining caron has no
/// precomposed form, `ǰ` has), and a key must be the key of itself.
pub fn name_key(name: &str) -> String {
    name.nfc().flat_map(char::to_lowercase).nfc().collect()
}

/// What kind of character `c` is, if names must not contain it.
fn forbidden(c: char) -> Option<&'static str> {
    let u = u32::from(c);
    if c.is_control() {
        Some("a control character")
    } else if matches!(u, 0x2028 | 0x2029) {
        Some("a line break")
    } else if matches!(u, 0xFDD0..=0xFDEF) || u & 0xFFFE == 0xFFFE {
        Some("a Unicode noncharacter")
    } else if matches!(u, 0x202A..=0x202E | 0x2066..=0x2069 | 0x200E | 0x200F | 0x061C) {
        Some("a character that changes the direction of text")
    } else if default_ignorable(u) {
        Some("an invisible character")
    } else if c.is_whitespace() && c != ' ' {
        Some("a space other than the ordinary one")
    } else {
        None
    }
}

/// Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): what renders as nothing
/// where it is not understood. Soft hyphen, joiners and zero-width spaces, fillers, variation
/// selectors, the BOM, invisible operators, tags (which can spell a hidden text).
fn default_ignorable(u: u32) -> bool {
    matches!(
        u,
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Name, NameError> {
        Name::new(s)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// An e-mail address as far as heimweg needs one: something with an `@`, no spaces, at most
/// 254 bytes (RFC 5321's path limit). Mail servers judge the rest.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an e-mail address")]
pub struct EmailError(String);

impl Email {
    pub fn new(raw: &str) -> Result<Email, EmailError> {
        let s = raw.trim();
        let ok = s.len() <= 254
            && s.split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if ok {
            Ok(Email(s.to_string()))
        } else {
            Err(EmailError(raw.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass_and_keep_their_spelling() {
        for ok in [
            "anna-ipad",
            "Anna iPad",
            "Stadtkämmerei Laptop 3",
            "日本語",
            "a",
            "x@y.z",
        ] {
            let n = Name::new(ok).unwrap();
            assert_eq!(n.as_str(), ok);
        }
        assert_eq!(Name::new(&"a".repeat(64)).unwrap().as_str().len(), 64);
        assert_eq!(
            Name::new(&"ä".repeat(64)).unwrap().as_str().chars().count(),
            64
        );
    }

    #[test]
    fn refused_names_say_why() {
        assert_eq!(Name::new(""), Err(NameError::Empty));
        assert_eq!(Name::new(&"a".repeat(65)), Err(NameError::TooLong(65)));
        assert_eq!(Name::new(" anna"), Err(NameError::OuterSpace));
        assert_eq!(Name::new("anna "), Err(NameError::OuterSpace));
        for (bad, what) in [
            ("an\nna", "control"),
            ("an\u{7f}na", "control"),
            ("an\u{85}na", "control"),
            ("a\u{2028}b", "line break"),
            ("a\u{fffe}b", "noncharacter"),
            ("a\u{ffff}b", "noncharacter"),
            ("a\u{1fffe}b", "noncharacter"),
            ("a\u{fdd0}b", "noncharacter"),
            ("a\u{202e}b", "direction"),
            ("a\u{2067}b", "direction"),
            ("a\u{200b}b", "invisible"),
            ("a\u{feff}b", "invisible"),
            ("a\u{ad}b", "invisible"),
            ("a\u{a0}b", "space other"),
            ("a\tb", "control"),
        ] {
            let err = Name::new(bad).unwrap_err().to_string();
            assert!(err.contains(what), "{bad:?}: {err}");
        }
    }

    #[test]
    fn case_and_normalisation_make_no_new_name() {
        let a = Name::new("Anna-iPad").unwrap();
        let b = Name::new("anna-ipad").unwrap();
        assert_ne!(a, b, "each keeps its spelling");
        assert_eq!(a.key(), b.key());
        // "ä" precomposed and as "a" + combining diaeresis.
        let composed = Name::new("K\u{e4}mmerei").unwrap();
        let decomposed = Name::new("Ka\u{308}mmerei").unwrap();
        assert_eq!(composed, decomposed, "stored in NFC");
        assert_eq!(name_key("STRASSE"), name_key("strasse"));
    }

    #[test]
    fn a_key_is_its_own_key() {
        // Found writing fuzz/domain_text (its key invariant): upper-case J with a combining caron has no precomposed
        // form, lower case it has (U+01F0), so lower-casing the NFC form left a key that was
        // not NFC, and "J\u{30C}" and "\u{1F0}" (the same name but for case) got two keys.
        let upper = Name::new("J\u{30C}osef").unwrap();
        let lower = Name::new("\u{1F0}osef").unwrap();
        assert_eq!(upper.key(), lower.key());
        assert_eq!(name_key(&upper.key()), upper.key());
        assert_eq!(upper.key(), "\u{1F0}osef");
    }

    #[test]
    fn invisible_characters_are_refused() {
        // Found writing fuzz/domain_text: Unicode's default-ignorable code points render as
        // nothing, so "anna" and "anna" with one of them looked like one name and were two.
        for c in [
            '\u{034F}',
            '\u{115F}',
            '\u{1160}',
            '\u{17B4}',
            '\u{180B}',
            '\u{206A}',
            '\u{3164}',
            '\u{FE0F}',
            '\u{FFA0}',
            '\u{FFF0}',
            '\u{1D173}',
            '\u{E0001}',
            '\u{E0041}',
        ] {
            let err = Name::new(&format!("anna{c}")).unwrap_err().to_string();
            assert!(err.contains("invisible"), "U+{:04X}: {err}", u32::from(c));
        }
        assert_eq!(
            Name::new("\u{3164}"),
            Err(NameError::Character("an invisible character", 0x3164))
        );
        // Stored names stay readable.
        assert!(Name::from_stored("anna\u{E0041}").is_ok());
    }

    #[test]
    fn emails_need_an_at_and_no_spaces() {
        assert!(Email::new("anna@stadt.example").is_ok());
        assert!(Email::new(" anna@stadt.example ").is_ok());
        for bad in [
            "anna",
            "@stadt",
            "anna@",
            "an na@x",
            &format!("{}@x", "a".repeat(260)),
        ] {
            assert!(Email::new(bad).is_err(), "{bad}");
        }
    }
}
