//! Text as people type it into the API, the panel and the command line, and as stores kept
//! it, into the parsers of `heimweg_control`'s domain: names (`Name::new`, `Name::from_stored`,
//! the comparison key), e-mail addresses, group policies (networks and DNS entries), the
//! gateway's endpoint, token scopes, the named states, recorded actors, distinguished names and
//! group mappings as the directory sync reads them, the identity provider's group and role
//! mappings and staff device names, usage windows and absences; and the first bytes as numbers
//! into the bounded lifetimes.
//!
//! Checked: an accepted name is NFC, 1 to 64 characters, without outer spaces and without a
//! character the rules refuse (control, line separators, noncharacters, and everything Unicode
//! calls default-ignorable: characters that reorder or hide text), parses again to itself,
//! reads back from a store, and its key is a fixed point (`name_key(key) == key`: otherwise
//! two names that differ only in case could get two keys). Policies are within their bounds
//! with truncated, distinct networks and survive the round trip through their text; endpoints,
//! scopes, states and actors print back to what was parsed. An accepted usage window reads
//! back from its own text to the same window, and at any moment answers a next change after
//! that moment.
//!
//! The input: the whole text is a name, an e-mail address, an endpoint, a state, an actor;
//! its lines are scope names; the lines before a blank line are networks, the ones after it
//! DNS entries.

#![no_main]

use heimweg_control::directory::{Dn, GroupMap};
use heimweg_control::identity::{own_device_name, ClaimGroupMap, RoleClaims};
use heimweg_control::lifecycle::LinkStatus;
use heimweg_control::name::name_key;
use heimweg_control::policy::{parse_dns, parse_networks};
use heimweg_control::{
    AuditAction, DeviceStatus, DnsEntry, Email, Endpoint, ExpiryDays, GroupPolicy, LinkHours,
    Name, NameError, RecordedActor, RequestStatus, Role, Scope, Scopes, SessionStage, TunnelMode,
};
use libfuzzer_sys::fuzz_target;
use std::fmt::Display;
use std::str::FromStr;
use unicode_normalization::{is_nfc, UnicodeNormalization};

fuzz_target!(|data: &[u8]| {
    numbers(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    names(text);
    email(text);
    policy(text);
    endpoint(text);
    scopes(text);
    states(text);
    actor(text);
    directory(text);
    window(text, data);
});

/// The text's first line as a schedule, its second as a zone, the rest as closed dates; the
/// first bytes as moments to ask it about. Also the two first lines as an absence's span.
fn window(text: &str, data: &[u8]) {
    use heimweg_control::window::{absence_span, time_zone, UsageWindow};
    let mut lines = text.splitn(3, '\n');
    let (schedule, zone, closed) = (
        lines.next().unwrap_or(""),
        lines.next().unwrap_or(""),
        lines.next().unwrap_or(""),
    );
    if let Ok(w) = UsageWindow::new(schedule, zone, closed) {
        let again = UsageWindow::new(&w.schedule(), w.time_zone(), &w.closed_text())
            .expect("a window reads back from its own text");
        assert_eq!(again, w);
        let mut at = [0u8; 8];
        for (i, b) in data.iter().take(8).enumerate() {
            at[i] = *b;
        }
        // Moments from 1970 to about 2300, and the extremes.
        let moment = (i64::from_le_bytes(at) & 0x2_ffff_ffff).min(10_400_000_000);
        for t in [moment, 0, -1, i64::MAX, i64::MIN] {
            if let Some(next) = w.at(t).until {
                assert!(next > t, "a next change after the moment asked about");
            }
        }
    }
    if let Ok(berlin) = time_zone("Europe/Berlin") {
        if let Ok((from, until)) = absence_span(schedule, zone, &berlin) {
            assert!(until > from, "an absence ends after it starts");
        }
    }
}

/// What names may not contain (the rules in `heimweg_control::name`, restated): control
/// characters, line and paragraph separators, noncharacters, whitespace other than the space,
/// and Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): the characters that
/// render as nothing, direction marks and overrides, joiners, fillers, tags, variation
/// selectors.
fn refused(c: char) -> bool {
    let u = u32::from(c);
    c.is_control()
        || matches!(u, 0x2028 | 0x2029)
        || matches!(u, 0xFDD0..=0xFDEF)
        || u & 0xFFFE == 0xFFFE
        || (c.is_whitespace() && c != ' ')
        || matches!(
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

fn names(text: &str) {
    let nfc: String = text.nfc().collect();
    match Name::new(text) {
        Ok(n) => {
            let s = n.as_str();
            assert_eq!(s, nfc, "a name is kept as the NFC of what was typed");
            assert!(is_nfc(s));
            assert!((1..=Name::MAX_CHARS).contains(&s.chars().count()));
            assert!(!s.starts_with(char::is_whitespace) && !s.ends_with(char::is_whitespace));
            if let Some(c) = s.chars().find(|c| refused(*c)) {
                panic!("the name {s:?} holds U+{:04X}", u32::from(c));
            }
            assert_eq!(Name::new(s).as_ref(), Ok(&n), "a name parses again to itself");
            assert_eq!(
                Name::from_stored(s).as_ref(),
                Ok(&n),
                "a name reads back from a store"
            );
            assert_eq!(n.to_string(), s);
            let key = n.key();
            assert_eq!(name_key(&key), key, "the key of a key is another key");
            assert_eq!(name_key(s), key);
        }
        Err(NameError::Empty) => assert!(nfc.is_empty()),
        Err(NameError::TooLong(chars)) => {
            assert_eq!(chars, nfc.chars().count());
            assert!(chars > Name::MAX_CHARS);
        }
        Err(NameError::OuterSpace) => {
            assert!(nfc.starts_with(char::is_whitespace) || nfc.ends_with(char::is_whitespace))
        }
        Err(NameError::Character(_, u)) => {
            let c = char::from_u32(u).expect("a character of the name");
            assert!(nfc.contains(c) && refused(c), "U+{u:04X} refused");
        }
    }
    // What a store kept: anything but blanks and control characters, as it was.
    match Name::from_stored(text) {
        Ok(n) => {
            assert_eq!(n.as_str(), text);
            assert!(!text.trim().is_empty() && !text.chars().any(char::is_control));
        }
        Err(_) => assert!(text.trim().is_empty() || text.chars().any(char::is_control)),
    }
    let key = name_key(text);
    assert_eq!(name_key(&key), key, "the key of a key is another key");
}

fn email(text: &str) {
    if let Ok(e) = Email::new(text) {
        let s = e.as_str();
        assert_eq!(s, text.trim());
        assert!(s.len() <= 254);
        assert!(!s.chars().any(|c| c.is_whitespace() || c.is_control()));
        let (local, domain) = s.split_once('@').expect("an @");
        assert!(!local.is_empty() && !domain.is_empty());
        assert_eq!(Email::new(s), Ok(e));
    }
}

fn policy(text: &str) {
    let (nets, dns) = text.split_once("\n\n").unwrap_or((text, ""));
    let nets: Vec<&str> = nets.lines().collect();
    let dns: Vec<&str> = dns.lines().collect();
    let tunnel = TunnelMode::from_full(text.len() % 2 == 1);
    if let Ok(parsed) = parse_networks(&nets) {
        assert!(nets.len() <= GroupPolicy::MAX_NETWORKS);
        assert_eq!(parsed.len(), nets.len());
    }
    if let Ok(parsed) = parse_dns(&dns) {
        assert_eq!(parsed.len(), dns.len());
        for d in parsed {
            round_trip(&d);
            if let DnsEntry::SearchDomain(s) = &d {
                assert_eq!(*s, s.to_ascii_lowercase());
            }
        }
    } else {
        assert!(dns.len() > GroupPolicy::MAX_DNS || dns.iter().any(|d| d.parse::<DnsEntry>().is_err()));
    }
    let Ok(p) = GroupPolicy::parse(&nets, tunnel, &dns) else {
        return;
    };
    let n = p.networks();
    assert!((1..=GroupPolicy::MAX_NETWORKS).contains(&n.len()));
    assert!(p.dns().len() <= GroupPolicy::MAX_DNS);
    assert_eq!(p.tunnel(), tunnel);
    for (i, net) in n.iter().enumerate() {
        assert_eq!(*net, net.trunc(), "networks are truncated");
        assert!(!n[..i].contains(net), "networks are distinct");
    }
    assert_eq!(p.reachable().count(), n.len() + p.resolvers().count());
    // As a store keeps it: the texts of its parts.
    let nets_text: Vec<String> = n.iter().map(ToString::to_string).collect();
    let dns_text: Vec<String> = p.dns().iter().map(ToString::to_string).collect();
    assert_eq!(GroupPolicy::parse(&nets_text, tunnel, &dns_text), Ok(p.clone()));
    assert_eq!(p.with(None, None, None, Some(true)).map(|q| q.allows_peer_to_peer()), Ok(true));
}

fn endpoint(text: &str) {
    if let Ok(e) = text.parse::<Endpoint>() {
        assert_ne!(e.port(), 0);
        assert!(!e.host().is_empty());
        round_trip(&e);
    }
}

fn scopes(text: &str) {
    let names: Vec<&str> = text.split(['\n', ' ', ',']).filter(|s| !s.is_empty()).collect();
    if let Ok(s) = Scopes::parse(&names) {
        assert_eq!(s.iter().count(), s.names().len());
        for n in &names {
            assert!(s.has(n.trim().parse::<Scope>().expect("a scope that parsed")));
        }
        if !s.is_empty() {
            let stored = s.to_stored();
            let back: Vec<&str> = stored.split(' ').collect();
            assert_eq!(Scopes::parse(&back), Ok(s.clone()));
        }
        assert_eq!(s.missing_from(&s), None);
        assert_eq!(Scopes::all().missing_from(&s), None);
    }
    if let Ok(s) = text.parse::<Scope>() {
        round_trip(&s);
    }
}

/// `s` prints as text that parses back to `s`.
fn round_trip<T: FromStr + Display + PartialEq + std::fmt::Debug>(v: &T)
where
    T::Err: std::fmt::Debug,
{
    let text = v.to_string();
    assert_eq!(text.parse::<T>().ok().as_ref(), Some(v), "{text:?} does not parse back");
}

/// A state parses from exactly its name.
fn state<T: FromStr + Display + PartialEq + std::fmt::Debug>(text: &str)
where
    T::Err: std::fmt::Debug,
{
    if let Ok(v) = text.parse::<T>() {
        assert_eq!(v.to_string(), text);
        round_trip(&v);
    }
}

fn states(text: &str) {
    state::<DeviceStatus>(text);
    state::<RequestStatus>(text);
    state::<LinkStatus>(text);
    state::<AuditAction>(text);
    if let Ok(r) = text.parse::<Role>() {
        assert_eq!(r.as_str(), text);
    }
    if let Ok(s) = text.parse::<SessionStage>() {
        assert_eq!(s.as_str(), text);
    }
    if let Err(e) = text.parse::<DeviceStatus>() {
        assert!(e.value.chars().count() <= 60);
    }
}

/// The audit log's actor column taken apart puts together again.
fn actor(text: &str) {
    let again = match RecordedActor::parse(text) {
        RecordedActor::System => "system".to_string(),
        RecordedActor::Panel => "panel".to_string(),
        RecordedActor::Directory => "directory".to_string(),
        RecordedActor::Cli(u) => format!("cli:{u}"),
        RecordedActor::Token(t) => format!("token:{t}"),
        RecordedActor::Admin(a) => format!("admin:{a}"),
        RecordedActor::Requester(r) => format!("request:{r}"),
        RecordedActor::Staff(s) => format!("staff:{s}"),
        RecordedActor::Link { id, created_by } => format!("link:{id}:{created_by}"),
        RecordedActor::Other(o) => o.to_string(),
    };
    assert_eq!(again, text);
}

/// A DN as a directory answers it (or an admin writes it in the group mapping): an accepted
/// one prints to a form that parses back to the same name, and a name is within itself; a
/// group mapping that parses maps at least one group.
fn directory(text: &str) {
    if let Ok(dn) = Dn::parse(text) {
        let again = Dn::parse(&dn.to_string())
            .unwrap_or_else(|e| panic!("{dn} (from {text:?}) does not parse again: {e}"));
        assert_eq!(again, dn, "{text:?}");
        assert!(dn.is_within(&dn));
    }
    if let Ok(map) = GroupMap::parse(text) {
        assert!(!map.entries().is_empty());
    }
    // The identity provider's mappings: every mapped value maps back to its group, and a
    // device named after its owner is a valid name starting with the owner's key.
    if let Ok(map) = ClaimGroupMap::parse(text) {
        for (value, group) in map.entries() {
            assert!(!value.is_empty());
            let groups = map.groups_for(std::slice::from_ref(value));
            assert!(groups.iter().any(|g| g.key() == group.key()), "{text:?}");
        }
    }
    let roles = RoleClaims::parse(text, text);
    assert!(roles.admin.iter().all(|v| !v.is_empty()));
    if let (Some(first), Ok(owner)) = (text.lines().next(), Name::new("anna")) {
        if let Ok(device) = own_device_name(&owner, first) {
            assert!(device.key().starts_with("anna-"), "{first:?}");
        }
    }
}

fn numbers(data: &[u8]) {
    let word = |at: usize| {
        let mut b = [0u8; 4];
        for (i, x) in b.iter_mut().enumerate() {
            *x = data.get(at + i).copied().unwrap_or(0);
        }
        u32::from_le_bytes(b)
    };
    for n in [word(0), word(4), word(0) % 4000, word(4) % 800] {
        match ExpiryDays::new(n) {
            Ok(d) => {
                assert!((1..=3650).contains(&n));
                assert_eq!(d.as_secs(), i64::from(n) * 86_400);
            }
            Err(e) => {
                assert!(!(1..=3650).contains(&n));
                assert_eq!(e.value, i64::from(n));
            }
        }
        match LinkHours::new(n) {
            Ok(h) => {
                assert!((1..=720).contains(&n));
                assert_eq!(h.as_secs(), i64::from(n) * 3600);
            }
            Err(_) => assert!(!(1..=720).contains(&n)),
        }
    }
}
