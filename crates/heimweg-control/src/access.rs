//! Who may do what: API token scopes, panel roles, and the actor every change is made by.

use crate::name::Name;
use std::fmt;

/// Something an API token may do. A token holds a set of them ([`Scopes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    DevicesRead,
    DevicesWrite,
    GroupsRead,
    GroupsWrite,
    UsersRead,
    UsersWrite,
    TokensRead,
    TokensWrite,
    AuditRead,
}

impl Scope {
    pub const ALL: [Scope; 9] = [
        Scope::DevicesRead,
        Scope::DevicesWrite,
        Scope::GroupsRead,
        Scope::GroupsWrite,
        Scope::UsersRead,
        Scope::UsersWrite,
        Scope::TokensRead,
        Scope::TokensWrite,
        Scope::AuditRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::DevicesRead => "devices:read",
            Scope::DevicesWrite => "devices:write",
            Scope::GroupsRead => "groups:read",
            Scope::GroupsWrite => "groups:write",
            Scope::UsersRead => "users:read",
            Scope::UsersWrite => "users:write",
            Scope::TokensRead => "tokens:read",
            Scope::TokensWrite => "tokens:write",
            Scope::AuditRead => "audit:read",
        }
    }

    /// The scope names, comma-separated, for error messages and help texts.
    pub fn names() -> String {
        Scope::ALL.map(Scope::as_str).join(", ")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?}; use {names}", names = Scope::names())]
pub struct ScopeError(pub String);

impl std::str::FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Scope, ScopeError> {
        Scope::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| ScopeError(s.chars().take(40).collect()))
    }
}

/// The scopes a token holds, without duplicates, in a stable order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Scopes {
        let mut v: Vec<Scope> = scopes.into_iter().collect();
        v.sort();
        v.dedup();
        Scopes(v)
    }

    pub fn all() -> Scopes {
        Scopes(Scope::ALL.to_vec())
    }

    /// Parses names as people type them; an unknown one is an error.
    pub fn parse(names: &[impl AsRef<str>]) -> Result<Scopes, ScopeError> {
        names
            .iter()
            .map(|n| n.as_ref().trim().parse())
            .collect::<Result<Vec<_>, _>>()
            .map(Scopes::new)
    }

    pub fn has(&self, s: Scope) -> bool {
        self.0.contains(&s)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    /// The first of `other`'s scopes this set lacks, if any.
    pub fn missing_from(&self, other: &Scopes) -> Option<Scope> {
        other.iter().find(|s| !self.has(*s))
    }

    /// Space-separated, as the store keeps them.
    pub fn to_stored(&self) -> String {
        self.0
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|s| s.as_str()).collect()
    }
}

/// What an account may do in the panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Look, never change: for the helpdesk that answers "is my VPN on?".
    Helpdesk,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Helpdesk => "helpdesk",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("role {0:?} is not one of admin, helpdesk")]
pub struct RoleError(pub String);

impl std::str::FromStr for Role {
    type Err = RoleError;
    fn from_str(s: &str) -> Result<Role, RoleError> {
        match s {
            "admin" => Ok(Role::Admin),
            "helpdesk" => Ok(Role::Helpdesk),
            _ => Err(RoleError(s.chars().take(40).collect())),
        }
    }
}

/// How far a panel session has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStage {
    /// The password was right; the second factor is still due.
    Password,
    /// Logged in.
    Full,
}

impl SessionStage {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStage::Password => "password",
            SessionStage::Full => "full",
        }
    }
}

impl std::str::FromStr for SessionStage {
    type Err = RoleError;
    fn from_str(s: &str) -> Result<SessionStage, RoleError> {
        match s {
            "password" => Ok(SessionStage::Password),
            "full" => Ok(SessionStage::Full),
            _ => Err(RoleError(s.chars().take(40).collect())),
        }
    }
}

/// Who makes a change: recorded in the audit log, and for a token or a panel account checked
/// again inside the transaction that makes the change (a token revoked a moment earlier
/// changes nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// heimweg itself: first-run defaults, expiry.
    System,
    /// The command line on the gateway, by the Unix user who ran it.
    Cli { user: String },
    /// An API token.
    Token { id: i64, name: Name },
    /// A panel account.
    Admin { id: i64, name: Name },
    /// An enrollment link being redeemed, by the actor who made it.
    Link { id: i64, created_by: String },
    /// A staff member filing an access request through the public form.
    Requester { name: String },
    /// The panel's own bookkeeping (a lockout after failed logins).
    Panel,
    /// The directory sync (LDAP / Active Directory): a leaver disabled, a newcomer created.
    Directory,
    /// A staff member signed in through the identity provider, on their own staff page.
    Staff { id: i64, name: Name },
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::System => f.write_str("system"),
            Actor::Cli { user } => write!(f, "cli:{user}"),
            Actor::Token { name, .. } => write!(f, "token:{name}"),
            Actor::Admin { name, .. } => write!(f, "admin:{name}"),
            Actor::Link { id, created_by } => write!(f, "link:{id}:{created_by}"),
            Actor::Requester { name } => write!(f, "request:{name}"),
            Actor::Panel => f.write_str("panel"),
            Actor::Directory => f.write_str("directory"),
            Actor::Staff { name, .. } => write!(f, "staff:{name}"),
        }
    }
}

/// An actor as the audit log recorded it, taken apart for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedActor<'a> {
    System,
    Cli(&'a str),
    Token(&'a str),
    Admin(&'a str),
    Link {
        id: &'a str,
        created_by: &'a str,
    },
    Requester(&'a str),
    Panel,
    Directory,
    Staff(&'a str),
    /// Written by a version that knew other actors.
    Other(&'a str),
}

impl<'a> RecordedActor<'a> {
    pub fn parse(s: &'a str) -> RecordedActor<'a> {
        if let Some(rest) = s.strip_prefix("link:") {
            if let Some((id, by)) = rest.split_once(':') {
                return RecordedActor::Link { id, created_by: by };
            }
        }
        match s.split_once(':') {
            Some(("cli", u)) => RecordedActor::Cli(u),
            Some(("token", t)) => RecordedActor::Token(t),
            Some(("admin", a)) => RecordedActor::Admin(a),
            Some(("request", r)) => RecordedActor::Requester(r),
            Some(("staff", u)) => RecordedActor::Staff(u),
            _ if s == "system" => RecordedActor::System,
            _ if s == "panel" => RecordedActor::Panel,
            _ if s == "directory" => RecordedActor::Directory,
            _ => RecordedActor::Other(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_sort_and_compare() {
        let s = Scopes::parse(&["devices:write", "devices:read", "devices:read"]).unwrap();
        assert_eq!(s.to_stored(), "devices:read devices:write");
        assert!(s.has(Scope::DevicesRead));
        assert_eq!(
            s.missing_from(&Scopes::new([Scope::DevicesRead, Scope::AuditRead])),
            Some(Scope::AuditRead)
        );
        let err = Scopes::parse(&["devices:admin"]).unwrap_err().to_string();
        assert!(
            err.contains("devices:admin") && err.contains("audit:read"),
            "{err}"
        );
    }

    #[test]
    fn actors_print_as_the_audit_log_always_did_and_parse_back() {
        let anna = Name::new("anna").unwrap();
        let cases = [
            (Actor::System, "system"),
            (
                Actor::Cli {
                    user: "root".into(),
                },
                "cli:root",
            ),
            (
                Actor::Token {
                    id: 3,
                    name: anna.clone(),
                },
                "token:anna",
            ),
            (
                Actor::Admin {
                    id: 1,
                    name: anna.clone(),
                },
                "admin:anna",
            ),
            (
                Actor::Link {
                    id: 2,
                    created_by: "admin:anna".into(),
                },
                "link:2:admin:anna",
            ),
            (
                Actor::Requester {
                    name: "Petra".into(),
                },
                "request:Petra",
            ),
            (Actor::Panel, "panel"),
            (Actor::Directory, "directory"),
            (
                Actor::Staff {
                    id: 4,
                    name: anna.clone(),
                },
                "staff:anna",
            ),
        ];
        for (actor, text) in cases {
            assert_eq!(actor.to_string(), text);
        }
        assert_eq!(
            RecordedActor::parse("link:2:admin:anna"),
            RecordedActor::Link {
                id: "2",
                created_by: "admin:anna"
            }
        );
        assert_eq!(
            RecordedActor::parse("admin:anna"),
            RecordedActor::Admin("anna")
        );
        assert_eq!(RecordedActor::parse("test"), RecordedActor::Other("test"));
    }
}
