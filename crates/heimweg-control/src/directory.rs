//! Directory sync: what a run of the LDAP / Active Directory sync changes, decided without I/O.
//!
//! The service reads the directory's entries; [`plan`] compares them with the users heimweg
//! knows and says whom to create, change, disable and enable again, or refuses the whole run
//! when it would disable more people than a directory plausibly loses at once (an emptied
//! group, a wrong filter, a half-answered search). The store applies a plan in one
//! transaction.
//!
//! Rules, as documented for admins (deploy/README.md):
//! - An entry is a user of heimweg when it is found under the base with the filter, is not
//!   disabled in the directory, and is a member of at least one mapped group. Its group is
//!   the first group in the mapping it is a member of: the mapping's order is its priority.
//! - Users are matched by the directory's stable id (AD `objectGUID`, OpenLDAP `entryUUID`),
//!   never by name or address alone. A local user of the same name (made by an admin before
//!   the directory was connected) is linked to the entry once, when nobody else holds it.
//! - A linked user who is no longer a user of heimweg is disabled: every device revoked, every
//!   open link withdrawn. They are enabled again when they return only if the setting says
//!   so and it was the directory that disabled them; their revoked keys never come back.

use crate::name::{Email, Name};
use std::collections::{HashMap, HashSet};
use std::fmt;

/// A distinguished name, parsed (RFC 4514) so that two spellings of one name compare equal:
/// OpenLDAP answers `cn=Müller\2C Jürgen`, Samba `CN=Müller\, Jürgen`, for the same entry.
/// Attribute types and values compare without case, as the attributes that name entries
/// (cn, ou, dc, uid) are defined.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dn {
    /// RDNs from the entry up to the root; each a sorted list of (type, value), both folded
    /// to lower case, values unescaped.
    rdns: Vec<Vec<(String, String)>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{dn:?} is not a distinguished name: {why}")]
pub struct DnError {
    dn: String,
    why: &'static str,
}

impl Dn {
    pub fn parse(raw: &str) -> Result<Dn, DnError> {
        let err = |why| DnError {
            dn: raw.chars().take(200).collect(),
            why,
        };
        let bytes = raw.as_bytes();
        let mut rdns = Vec::new();
        let mut rdn = Vec::new();
        let mut i = 0;
        if raw.trim().is_empty() {
            return Err(err("it is empty"));
        }
        loop {
            // attribute type, up to '='
            let start = i;
            while i < bytes.len() && bytes[i] != b'=' {
                // A descriptor (cn) or an OID (2.5.4.3), with spaces around.
                if !(bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'-' | b'.' | b' ')) {
                    return Err(err("an attribute type holds a character no type has"));
                }
                i += 1;
            }
            if i == bytes.len() {
                return Err(err("a part has no '='"));
            }
            let kind = raw[start..i].trim().to_lowercase();
            if kind.is_empty() {
                return Err(err("a part has no attribute type"));
            }
            i += 1;
            let (value, next) = parse_value(bytes, i).map_err(err)?;
            i = next;
            rdn.push((kind, value.to_lowercase()));
            match bytes.get(i) {
                None => {
                    rdn.sort();
                    rdns.push(std::mem::take(&mut rdn));
                    break;
                }
                Some(b'+') => i += 1,
                Some(b',' | b';') => {
                    rdn.sort();
                    rdns.push(std::mem::take(&mut rdn));
                    i += 1;
                }
                Some(_) => return Err(err("a value is followed by something unexpected")),
            }
        }
        Ok(Dn { rdns })
    }

    /// Whether this name is `base` or below it.
    pub fn is_within(&self, base: &Dn) -> bool {
        self.rdns.len() >= base.rdns.len() && self.rdns.ends_with(&base.rdns)
    }
}

/// One attribute value from `start`: unescaped, and where it ends (at a separator or the end).
fn parse_value(bytes: &[u8], mut i: usize) -> Result<(String, usize), &'static str> {
    while i < bytes.len() && bytes[i] == b' ' {
        i += 1;
    }
    let mut out = Vec::new();
    if bytes.get(i) == Some(&b'"') {
        // The quoted form of RFC 2253's predecessor, which some servers still write.
        i += 1;
        loop {
            match bytes.get(i) {
                None => return Err("a quoted value is not closed"),
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(b'\\') => {
                    let (b, n) = unescape(bytes, i)?;
                    out.push(b);
                    i = n;
                }
                Some(&b) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
    } else {
        // Spaces before a separator belong to the layout, unless escaped.
        let mut kept = 0;
        while let Some(&b) = bytes.get(i) {
            match b {
                b',' | b'+' | b';' => break,
                b'\\' => {
                    let (b, n) = unescape(bytes, i)?;
                    out.push(b);
                    kept = out.len();
                    i = n;
                }
                b'"' => return Err("a value holds an unescaped quote"),
                _ => {
                    out.push(b);
                    if b != b' ' {
                        kept = out.len();
                    }
                    i += 1;
                }
            }
        }
        out.truncate(kept);
    }
    let value = String::from_utf8(out).map_err(|_| "an escaped value is not UTF-8")?;
    Ok((value, i))
}

/// The byte a backslash escape at `i` stands for (`\,` or `\2C`), and where the escape ends.
fn unescape(bytes: &[u8], i: usize) -> Result<(u8, usize), &'static str> {
    let hex = |b: u8| (b as char).to_digit(16);
    match (bytes.get(i + 1), bytes.get(i + 2)) {
        (Some(&a), Some(&b)) if hex(a).is_some() && hex(b).is_some() => {
            let v = hex(a).unwrap_or(0) * 16 + hex(b).unwrap_or(0);
            Ok((v as u8, i + 3))
        }
        (Some(&c), _) if !c.is_ascii_hexdigit() => Ok((c, i + 2)),
        _ => Err("a backslash is not followed by a character or two hex digits"),
    }
}

impl fmt::Display for Dn {
    /// The normalised form (lower case, RFC 4514 escapes): for logs and comparisons by eye.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, rdn) in self.rdns.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            for (m, (kind, value)) in rdn.iter().enumerate() {
                if m > 0 {
                    f.write_str("+")?;
                }
                write!(f, "{kind}=")?;
                let last = value.chars().count().saturating_sub(1);
                for (k, c) in value.chars().enumerate() {
                    let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
                        || (k == 0 && (c == ' ' || c == '#'))
                        || (k == last && c == ' ');
                    if special {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
            }
        }
        Ok(())
    }
}

/// Which heimweg group a directory group grants, in the order of priority.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupMap(Vec<(Dn, Name)>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupMapError {
    #[error("the group mapping {0:?} has no '=' between a heimweg group and a directory group")]
    NoEquals(String),
    #[error("the group mapping names a heimweg group that is not a valid name: {0}")]
    Name(#[from] crate::name::NameError),
    #[error("the group mapping names a directory group that is {0}")]
    Dn(#[from] DnError),
    #[error("the directory group {0} is mapped twice")]
    Twice(String),
    #[error("the group mapping is empty: map at least one directory group to a heimweg group")]
    Empty,
}

impl GroupMap {
    /// `staff=cn=vpn-users,ou=groups,dc=stadt,dc=example;tiefbau=cn=Straßenbau\, Tiefbau,…`:
    /// heimweg group, '=', the directory group's DN; entries apart by ';' (a ';' inside a
    /// DN written `\;`). The first entry a user is a member of decides their group.
    pub fn parse(raw: &str) -> Result<GroupMap, GroupMapError> {
        let mut entries = Vec::new();
        for part in split_unescaped(raw, ';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (group, dn) = part
                .split_once('=')
                .ok_or_else(|| GroupMapError::NoEquals(part.to_string()))?;
            let group = Name::new(group.trim())?;
            let dn = Dn::parse(dn.trim())?;
            if entries.iter().any(|(d, _)| *d == dn) {
                return Err(GroupMapError::Twice(dn.to_string()));
            }
            entries.push((dn, group));
        }
        if entries.is_empty() {
            return Err(GroupMapError::Empty);
        }
        Ok(GroupMap(entries))
    }

    pub fn entries(&self) -> &[(Dn, Name)] {
        &self.0
    }

    /// The heimweg group of someone who is a member of `groups`: the first mapped one.
    pub fn group_for(&self, groups: &HashSet<Dn>) -> Option<&Name> {
        self.0
            .iter()
            .find(|(dn, _)| groups.contains(dn))
            .map(|(_, g)| g)
    }
}

/// `raw` split at every `sep` not preceded by a backslash (the backslash stays, for the DN).
pub(crate) fn split_unescaped(raw: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in raw.chars() {
        if c == sep && !escaped {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push(c);
        }
        escaped = c == '\\' && !escaped;
    }
    parts
}

/// One entry the directory returned, as the service read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The directory's stable id (objectGUID, entryUUID), as text.
    pub id: String,
    pub dn: String,
    /// The login name (sAMAccountName, uid).
    pub login: String,
    pub email: Option<String>,
    /// The DNs of the groups the entry is a member of (memberOf).
    pub groups: Vec<String>,
    /// Disabled or locked in the directory.
    pub disabled: bool,
}

/// A user heimweg knows, as the plan needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub id: i64,
    pub name: Name,
    pub email: Option<Email>,
    pub directory_id: Option<String>,
    pub group: Option<Name>,
    pub disabled: bool,
    /// Disabled by a directory sync (not by an admin).
    pub disabled_by_directory: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPolicy {
    /// At most this share (per cent) of the linked, enabled users is disabled in one run.
    pub max_disable_percent: u8,
    /// Enable a returning user the directory disabled.
    pub reenable: bool,
}

impl SyncPolicy {
    /// Disabling this many or fewer is always allowed, whatever the share: in a directory of
    /// twenty, one leaver is five per cent.
    pub const ALWAYS_ALLOWED: usize = 3;
}

impl Default for SyncPolicy {
    fn default() -> SyncPolicy {
        SyncPolicy {
            max_disable_percent: 10,
            reenable: false,
        }
    }
}

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub directory_id: String,
    pub name: Name,
    pub email: Option<Email>,
    pub group: Name,
}

/// What changes for a known user; `None` fields stay as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserChange {
    pub id: i64,
    pub name: Name,
    /// Linked to this directory entry (it was a local user).
    pub link: Option<String>,
    pub rename: Option<Name>,
    pub email: Option<Option<Email>>,
    pub group: Option<Name>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub create: Vec<NewUser>,
    pub change: Vec<UserChange>,
    /// (id, name) of users to disable.
    pub disable: Vec<(i64, Name)>,
    /// (id, name) of users to enable again.
    pub enable: Vec<(i64, Name)>,
    /// Entries left out, with the reason (a login that is no valid name, a name taken).
    pub skipped: Vec<String>,
    /// Entries read, and of them users of heimweg.
    pub entries: usize,
    pub eligible: usize,
}

impl Plan {
    pub fn changes_anything(&self) -> bool {
        !(self.create.is_empty()
            && self.change.is_empty()
            && self.disable.is_empty()
            && self.enable.is_empty())
    }
}

/// A run that would disable too many: nothing is changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refused: the directory's answer would disable {would} of {linked} users, more than the \
     {percent} % a run may disable ({reason}); nothing was changed. If this is right, raise \
     HEIMWEG_LDAP_MAX_DISABLE_PERCENT for one run or disable them by hand"
)]
pub struct Refused {
    pub would: usize,
    pub linked: usize,
    pub percent: u8,
    pub reason: &'static str,
}

/// Decides a run: `known` are all users of heimweg, `found` what the directory returned.
pub fn plan(
    known: &[Known],
    found: &[Entry],
    map: &GroupMap,
    policy: SyncPolicy,
) -> Result<Plan, Refused> {
    let mut planner = Planner::new(known, policy);
    planner.out.entries = found.len();
    for e in found {
        planner.entry(e, map);
    }
    planner.finish(known)
}

/// A run being planned: the users by id and name, and what the entries so far decided.
struct Planner<'a> {
    by_directory_id: HashMap<&'a str, &'a Known>,
    by_name: HashMap<String, &'a Known>,
    /// Who holds which name once the run is done (a directory id, or `local:ID`), so that a
    /// rename and a new user cannot take one name twice.
    names: HashMap<String, String>,
    /// The directory ids of linked users who are still users.
    present: HashSet<String>,
    seen_ids: HashSet<String>,
    policy: SyncPolicy,
    out: Plan,
}

/// What holds a name: a linked user's directory id, else the local user's id.
fn holder(k: &Known) -> String {
    k.directory_id
        .clone()
        .unwrap_or_else(|| format!("local:{}", k.id))
}

impl<'a> Planner<'a> {
    fn new(known: &'a [Known], policy: SyncPolicy) -> Planner<'a> {
        Planner {
            by_directory_id: known
                .iter()
                .filter_map(|k| k.directory_id.as_deref().map(|d| (d, k)))
                .collect(),
            by_name: known.iter().map(|k| (k.name.key(), k)).collect(),
            names: known.iter().map(|k| (k.name.key(), holder(k))).collect(),
            present: HashSet::new(),
            seen_ids: HashSet::new(),
            policy,
            out: Plan::default(),
        }
    }

    /// Keeps the linked user of entry `id` (if any) from being disabled.
    fn keep(&mut self, id: &str) {
        if self.by_directory_id.contains_key(id) {
            self.present.insert(id.to_string());
        }
    }

    fn entry(&mut self, e: &Entry, map: &GroupMap) {
        if !self.seen_ids.insert(e.id.clone()) {
            self.out
                .skipped
                .push(format!("{}: its id {} came twice", e.dn, e.id));
            return;
        }
        let groups: HashSet<Dn> = e.groups.iter().filter_map(|g| Dn::parse(g).ok()).collect();
        let group = match map.group_for(&groups) {
            Some(g) if !e.disabled => g,
            // Not (or no longer) a user of heimweg: a linked user is disabled at the end.
            _ => return,
        };
        let name = match Name::new(e.login.trim()) {
            Ok(n) => n,
            Err(why) => {
                self.out.skipped.push(format!(
                    "{}: its login {:?} is no valid name: {why}",
                    e.dn, e.login
                ));
                // Still a user, under a login heimweg cannot take: not disabled for it.
                self.keep(&e.id);
                return;
            }
        };
        // An address the store would refuse is left out, not the person.
        let email = e.email.as_deref().and_then(|m| Email::new(m.trim()).ok());
        let linked = self.by_directory_id.get(e.id.as_str()).copied();
        let local = match (linked, self.by_name.get(&name.key())) {
            (None, Some(k)) if k.directory_id.is_none() => Some(*k),
            _ => None,
        };
        let target = linked.or(local);
        let taken_by_other = match (self.names.get(&name.key()), target) {
            (Some(h), Some(k)) => *h != holder(k),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if taken_by_other {
            self.out.skipped.push(format!(
                "{}: the name {name} belongs to another user of heimweg",
                e.dn
            ));
            // Still a user: not disabled for a name clash.
            self.keep(&e.id);
            return;
        }
        self.out.eligible += 1;
        self.present.insert(e.id.clone());
        match target {
            None => {
                self.names.insert(name.key(), e.id.clone());
                self.out.create.push(NewUser {
                    directory_id: e.id.clone(),
                    name,
                    email,
                    group: group.clone(),
                });
            }
            Some(k) => self.follow(k, e, name, email, group),
        }
    }

    /// A known user's entry: what changed, and whether they come back.
    fn follow(&mut self, k: &Known, e: &Entry, name: Name, email: Option<Email>, group: &Name) {
        if k.name.key() != name.key() {
            self.names.remove(&k.name.key());
            self.names.insert(name.key(), e.id.clone());
        }
        let change = UserChange {
            id: k.id,
            name: k.name.clone(),
            link: k.directory_id.is_none().then(|| e.id.clone()),
            rename: (k.name != name).then(|| name.clone()),
            email: (k.email != email && email.is_some()).then(|| email.clone()),
            group: (k.group.as_ref() != Some(group)).then(|| group.clone()),
        };
        if change.link.is_some()
            || change.rename.is_some()
            || change.email.is_some()
            || change.group.is_some()
        {
            self.out.change.push(change);
        }
        if k.disabled && k.disabled_by_directory && self.policy.reenable {
            self.out.enable.push((k.id, name));
        }
    }

    /// Linked, enabled users the run did not keep are disabled, unless that is too many.
    fn finish(mut self, known: &[Known]) -> Result<Plan, Refused> {
        let linked_enabled: Vec<&Known> = known
            .iter()
            .filter(|k| k.directory_id.is_some() && !k.disabled)
            .collect();
        self.out.disable = linked_enabled
            .iter()
            .filter(|k| {
                !self
                    .present
                    .contains(k.directory_id.as_deref().unwrap_or_default())
            })
            .map(|k| (k.id, k.name.clone()))
            .collect();
        let would = self.out.disable.len();
        let linked = linked_enabled.len();
        let percent = self.policy.max_disable_percent;
        if would > 0 && self.out.eligible == 0 {
            return Err(Refused {
                would,
                linked,
                percent,
                reason: "the directory named nobody at all",
            });
        }
        if would > SyncPolicy::ALWAYS_ALLOWED && would * 100 > usize::from(percent) * linked {
            return Err(Refused {
                would,
                linked,
                percent,
                reason: "more than a directory plausibly loses at once",
            });
        }
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(s: &str) -> Dn {
        Dn::parse(s).unwrap()
    }

    #[test]
    fn two_spellings_of_one_dn_are_equal() {
        assert_eq!(
            dn(r"cn=Müller\2C Jürgen,ou=people,dc=stadt,dc=example"),
            dn(r"CN=Müller\, Jürgen, OU=People,DC=stadt,DC=example")
        );
        // \C3\BC is ü in UTF-8, escaped byte by byte.
        assert_eq!(dn(r"cn=M\C3\BCller"), dn("cn=Müller"));
        assert_eq!(
            dn(r#"cn="Müller, Jürgen",dc=x"#),
            dn(r"cn=Müller\, Jürgen,dc=x")
        );
        assert_ne!(dn("cn=a,dc=x"), dn("cn=a,dc=y"));
        assert_eq!(dn("cn=a+uid=b,dc=x"), dn("UID=b+CN=a,dc=x"));
        assert_eq!(dn(r"cn=a\ ,dc=x").to_string(), r"cn=a\ ,dc=x");
        assert_ne!(dn(r"cn=a\ ,dc=x"), dn("cn=a,dc=x"));
        assert!(dn("cn=a,ou=p,dc=x").is_within(&dn("OU=P,DC=X")));
        assert!(!dn("dc=x").is_within(&dn("ou=p,dc=x")));
    }

    #[test]
    fn the_normal_form_parses_back_to_itself() {
        for s in [
            r"cn=Müller\, Jürgen,ou=people,dc=stadt,dc=example",
            r"cn=\#1\;x\=y\+z,dc=x",
            r"cn=Straßenbau\2C Tiefbau,ou=groups,dc=stadt,dc=example",
        ] {
            let d = dn(s);
            assert_eq!(dn(&d.to_string()), d, "{s}");
        }
    }

    #[test]
    fn broken_dns_are_errors() {
        for s in [
            "",
            "   ",
            "cn",
            "=x",
            r"cn=a\",
            r"cn=a\zz\",
            r#"cn="a"#,
            r#"cn=a"b"#,
            r"cn=\FF\FE",
            "cn=a,",
            "cn=a;;dc=x",
            "cn=a x",
        ] {
            // "cn=a x" is valid (a space inside a value); the rest must fail.
            if s == "cn=a x" {
                assert!(Dn::parse(s).is_ok());
            } else {
                assert!(Dn::parse(s).is_err(), "{s:?} parsed");
            }
        }
    }

    #[test]
    fn the_group_map_keeps_its_order_and_refuses_nonsense() {
        let m = GroupMap::parse(
            r" staff = cn=vpn-users,ou=groups,dc=stadt,dc=example ; tiefbau=cn=Straßenbau\, Tiefbau,ou=groups,dc=stadt,dc=example;",
        )
        .unwrap();
        assert_eq!(m.entries().len(), 2);
        let both: HashSet<Dn> = [
            dn(r"cn=Straßenbau\2C Tiefbau,ou=groups,dc=stadt,dc=example"),
            dn("CN=VPN-Users,OU=Groups,DC=stadt,DC=example"),
        ]
        .into();
        assert_eq!(m.group_for(&both).unwrap().as_str(), "staff");
        let one: HashSet<Dn> = [dn(
            r"cn=Straßenbau\2C Tiefbau,ou=groups,dc=stadt,dc=example",
        )]
        .into();
        assert_eq!(m.group_for(&one).unwrap().as_str(), "tiefbau");
        assert!(m.group_for(&HashSet::new()).is_none());
        assert!(GroupMap::parse(r"a=cn=x\;y,dc=z").is_ok());
        for bad in ["", " ; ", "staff", "=cn=x", "staff=", "a=cn=x;b=CN=X"] {
            assert!(GroupMap::parse(bad).is_err(), "{bad:?}");
        }
    }

    const VPN: &str = "cn=vpn-users,ou=groups,dc=x";

    fn map() -> GroupMap {
        GroupMap::parse(&format!("staff={VPN};tiefbau=cn=tiefbau,ou=groups,dc=x")).unwrap()
    }

    fn entry(id: &str, login: &str, groups: &[&str]) -> Entry {
        Entry {
            id: id.into(),
            dn: format!("uid={login},ou=people,dc=x"),
            login: login.into(),
            email: Some(format!("{login}@stadt.example")),
            groups: groups.iter().map(|g| (*g).to_string()).collect(),
            disabled: false,
        }
    }

    fn known(id: i64, name: &str, directory_id: Option<&str>) -> Known {
        Known {
            id,
            name: Name::new(name).unwrap(),
            email: Email::new(&format!("{name}@stadt.example")).ok(),
            directory_id: directory_id.map(String::from),
            group: Some(Name::new("staff").unwrap()),
            disabled: false,
            disabled_by_directory: false,
        }
    }

    fn people(n: usize) -> (Vec<Known>, Vec<Entry>) {
        let known = (0..n)
            .map(|i| known(i as i64 + 1, &format!("p{i}"), Some(&format!("id{i}"))))
            .collect();
        let found = (0..n)
            .map(|i| entry(&format!("id{i}"), &format!("p{i}"), &[VPN]))
            .collect();
        (known, found)
    }

    #[test]
    fn new_entries_are_created_with_their_first_mapped_group() {
        let found = [
            entry("g1", "alice", &[VPN, "cn=tiefbau,ou=groups,dc=x"]),
            entry("g2", "jürgen", &["CN=Tiefbau,OU=Groups,DC=x"]),
            entry("g3", "carol", &["cn=other,dc=x"]),
        ];
        let p = plan(&[], &found, &map(), SyncPolicy::default()).unwrap();
        let made: Vec<(&str, &str)> = p
            .create
            .iter()
            .map(|u| (u.name.as_str(), u.group.as_str()))
            .collect();
        assert_eq!(made, [("alice", "staff"), ("jürgen", "tiefbau")]);
        assert_eq!((p.entries, p.eligible), (3, 2));
        assert!(p.disable.is_empty());
    }

    #[test]
    fn a_run_with_nothing_new_changes_nothing() {
        let (k, f) = people(50);
        let p = plan(&k, &f, &map(), SyncPolicy::default()).unwrap();
        assert!(!p.changes_anything(), "{p:?}");
    }

    #[test]
    fn leavers_are_disabled_within_the_threshold() {
        let (k, mut f) = people(100);
        // Ten leave: four are gone, three are disabled, three lost the group.
        f.drain(0..4);
        for e in &mut f[0..3] {
            e.disabled = true;
        }
        for e in &mut f[3..6] {
            e.groups = vec!["cn=other,dc=x".into()];
        }
        let p = plan(&k, &f, &map(), SyncPolicy::default()).unwrap();
        let gone: Vec<&str> = p.disable.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(
            gone,
            ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9"]
        );
    }

    #[test]
    fn a_run_that_would_disable_too_many_is_refused() {
        let (k, f) = people(100);
        let r = plan(&k, &f[..89], &map(), SyncPolicy::default()).unwrap_err();
        assert_eq!((r.would, r.linked), (11, 100));
        assert!(r.to_string().contains("nothing was changed"));
        // Raised for one run, it goes through.
        let loose = SyncPolicy {
            max_disable_percent: 20,
            ..SyncPolicy::default()
        };
        assert_eq!(plan(&k, &f[..89], &map(), loose).unwrap().disable.len(), 11);
        // Three always may go, even from a directory of five.
        let (k, f) = people(5);
        assert_eq!(
            plan(&k, &f[..2], &map(), SyncPolicy::default())
                .unwrap()
                .disable
                .len(),
            3
        );
        assert!(plan(&k, &f[..1], &map(), SyncPolicy::default()).is_err());
    }

    #[test]
    fn an_empty_answer_disables_nobody_even_at_any_threshold() {
        let (k, mut f) = people(2);
        let all = SyncPolicy {
            max_disable_percent: 100,
            ..SyncPolicy::default()
        };
        assert!(plan(&k, &[], &map(), all).is_err());
        // The group emptied: entries still come, but nobody is a user.
        for e in &mut f {
            e.groups.clear();
        }
        let r = plan(&k, &f, &map(), all).unwrap_err();
        assert_eq!(r.reason, "the directory named nobody at all");
    }

    #[test]
    fn users_are_matched_by_id_and_renames_follow() {
        let k = [known(1, "jmueller", Some("g2")), known(2, "alice", None)];
        let mut f = [
            entry("g2", "juergen.mueller", &[VPN]),
            entry("g1", "Alice", &[VPN]),
        ];
        f[1].email = Some("alice.neu@stadt.example".into());
        let p = plan(&k, &f, &map(), SyncPolicy::default()).unwrap();
        assert!(p.create.is_empty() && p.disable.is_empty(), "{p:?}");
        assert_eq!(p.change.len(), 2);
        assert_eq!(
            p.change[0].rename.as_ref().unwrap().as_str(),
            "juergen.mueller"
        );
        // The local alice is linked; her name's case follows the directory.
        assert_eq!(p.change[1].link.as_deref(), Some("g1"));
        assert_eq!(p.change[1].rename.as_ref().unwrap().as_str(), "Alice");
        assert_eq!(
            p.change[1].email.clone().unwrap().unwrap().as_str(),
            "alice.neu@stadt.example"
        );
    }

    #[test]
    fn a_name_held_by_another_entry_is_skipped_not_stolen() {
        let k = [known(1, "alice", Some("g1"))];
        // Another entry (a recreated account) with the same login: not linked to alice.
        let f = [entry("g1", "alice", &[VPN]), entry("g9", "ALICE", &[VPN])];
        let p = plan(&k, &f, &map(), SyncPolicy::default()).unwrap();
        assert!(p.create.is_empty() && p.change.is_empty() && p.disable.is_empty());
        assert_eq!(p.skipped.len(), 1);
        assert!(p.skipped[0].contains("belongs to another user"));
        // An entry that comes twice is read once.
        let f = [entry("g1", "alice", &[VPN]), entry("g1", "alice", &[VPN])];
        assert_eq!(
            plan(&k, &f, &map(), SyncPolicy::default())
                .unwrap()
                .skipped
                .len(),
            1
        );
    }

    #[test]
    fn an_invalid_login_is_skipped_and_reported() {
        let f = [
            entry("g1", "bad\u{202e}name", &[VPN]),
            entry("g2", "ok", &[VPN]),
        ];
        let p = plan(&[], &f, &map(), SyncPolicy::default()).unwrap();
        assert_eq!(p.create.len(), 1);
        assert!(p.skipped[0].contains("no valid name"));
    }

    #[test]
    fn only_users_the_directory_disabled_come_back_and_only_when_allowed() {
        let mut by_dir = known(1, "alice", Some("g1"));
        by_dir.disabled = true;
        by_dir.disabled_by_directory = true;
        let mut by_admin = known(2, "bob", Some("g2"));
        by_admin.disabled = true;
        let k = [by_dir, by_admin];
        let f = [entry("g1", "alice", &[VPN]), entry("g2", "bob", &[VPN])];
        let p = plan(&k, &f, &map(), SyncPolicy::default()).unwrap();
        assert!(p.enable.is_empty());
        let back = SyncPolicy {
            reenable: true,
            ..SyncPolicy::default()
        };
        let p = plan(&k, &f, &map(), back).unwrap();
        assert_eq!(p.enable, [(1, Name::new("alice").unwrap())]);
    }

    #[test]
    fn a_group_change_moves_the_user() {
        let k = [known(1, "jmueller", Some("g2"))];
        let f = [entry("g2", "jmueller", &["cn=tiefbau,ou=groups,dc=x"])];
        let p = plan(&k, &f, &map(), SyncPolicy::default()).unwrap();
        assert_eq!(p.change[0].group.as_ref().unwrap().as_str(), "tiefbau");
    }
}
