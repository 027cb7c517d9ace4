//! A people list as an admin uploads it (`heimweg_control::import::parse_people`): any bytes,
//! as a file from an unknown Excel, a paste, or an attacker with an admin's session.
//!
//! Checked: the parser never panics; a file it refuses is refused with one of its errors; of a
//! file it reads, every row and every refusal has a line after the header and within the file,
//! each line at most once; every accepted name parses again to itself, and no device is
//! accepted twice (names compared as the store compares them).

#![no_main]

use heimweg_control::import::{line_breaks, parse_people, MAX_IMPORT_ROWS};
use heimweg_control::Name;
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;

fuzz_target!(|data: &[u8]| {
    let Ok(list) = parse_people(data) else {
        return;
    };
    let lines = 1 + line_breaks(data);
    let mut seen = HashSet::new();
    for line in list
        .rows
        .iter()
        .map(|r| r.line)
        .chain(list.refused.iter().map(|r| r.line))
    {
        assert!((2..=lines).contains(&line), "line {line} of {lines}");
        assert!(seen.insert(line), "line {line} twice");
    }
    assert!(list.rows.len() + list.refused.len() <= MAX_IMPORT_ROWS);
    assert!(list.rows.windows(2).all(|w| w[0].line < w[1].line));
    let mut devices = HashSet::new();
    for r in &list.rows {
        for name in [Some(&r.user), Some(&r.group), r.device.as_ref()].into_iter().flatten() {
            assert_eq!(Name::new(name.as_str()).as_ref(), Ok(name));
        }
        if let Some(d) = &r.device {
            assert!(devices.insert(d.key()), "{d} accepted twice");
        }
    }
    for r in &list.refused {
        assert!(!r.reason.is_empty());
    }
});
