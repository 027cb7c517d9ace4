//! Sign-in through the city's identity provider (OpenID Connect): what the provider's group
//! claim decides. Pure: the service hands in the claims it verified, these functions say which
//! heimweg groups a staff member may put devices in and which panel role, if any, an account
//! gets. Nothing here trusts a claim the service has not checked.

use crate::directory::split_unescaped;
use crate::{Name, NameError, Role};

/// Provider groups mapped to heimweg groups, in priority order:
/// `staff=vpn-users;tiefbau=Straßenbau, Tiefbau`. A value is compared exactly as the provider
/// sends it (Entra ID sends object ids, Keycloak paths such as `/vpn-users`); a `;` inside one
/// is written `\;`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimGroupMap(Vec<(String, Name)>);

/// Why a mapping was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClaimMapError {
    #[error("{0:?}: an entry is a heimweg group, '=', and the provider's group")]
    NoEquals(String),
    #[error("{0:?}: the provider's group is empty")]
    EmptyValue(String),
    #[error("heimweg group: {0}")]
    Name(#[from] NameError),
    #[error("the provider's group {0:?} is mapped twice")]
    Twice(String),
}

impl ClaimGroupMap {
    pub fn parse(raw: &str) -> Result<ClaimGroupMap, ClaimMapError> {
        let mut entries: Vec<(String, Name)> = Vec::new();
        for part in split_unescaped(raw, ';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (group, value) = part
                .split_once('=')
                .ok_or_else(|| ClaimMapError::NoEquals(part.to_string()))?;
            let group = Name::new(group.trim())?;
            let value = value.trim().replace("\\;", ";");
            if value.is_empty() {
                return Err(ClaimMapError::EmptyValue(part.to_string()));
            }
            if entries.iter().any(|(v, _)| *v == value) {
                return Err(ClaimMapError::Twice(value));
            }
            entries.push((value, group));
        }
        Ok(ClaimGroupMap(entries))
    }

    pub fn entries(&self) -> &[(String, Name)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The heimweg groups `claims` map to, in the mapping's order and each once: the first is
    /// the one a new device gets unless its owner picks another of them.
    pub fn groups_for(&self, claims: &[String]) -> Vec<Name> {
        let mut out: Vec<Name> = Vec::new();
        for (value, group) in &self.0 {
            if claims.iter().any(|c| c == value) && !out.iter().any(|g| g.key() == group.key()) {
                out.push(group.clone());
            }
        }
        out
    }
}

/// Which provider groups make a panel account an admin or the helpdesk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleClaims {
    pub admin: Vec<String>,
    pub helpdesk: Vec<String>,
}

impl RoleClaims {
    /// `a;b` lists of provider groups (`\;` inside one).
    pub fn parse(admin: &str, helpdesk: &str) -> RoleClaims {
        let list = |raw: &str| {
            split_unescaped(raw, ';')
                .into_iter()
                .map(|v| v.trim().replace("\\;", ";"))
                .filter(|v| !v.is_empty())
                .collect()
        };
        RoleClaims {
            admin: list(admin),
            helpdesk: list(helpdesk),
        }
    }

    /// Whether anyone can reach the panel through the provider.
    pub fn is_empty(&self) -> bool {
        self.admin.is_empty() && self.helpdesk.is_empty()
    }

    /// The role `claims` give: admin if any admin group is among them, else helpdesk if a
    /// helpdesk group is, else none (the panel is closed to them; the staff page is not).
    pub fn role_for(&self, claims: &[String]) -> Option<Role> {
        let has = |list: &[String]| list.iter().any(|v| claims.contains(v));
        if has(&self.admin) {
            Some(Role::Admin)
        } else if has(&self.helpdesk) {
            Some(Role::Helpdesk)
        } else {
            None
        }
    }
}

/// The device name for `label` given by `owner` on the staff page: device names are unique
/// across the gateway, so the owner's name goes first (`anna-laptop`) unless the label
/// already starts with it.
pub fn own_device_name(owner: &Name, label: &str) -> Result<Name, NameError> {
    let label = Name::new(label.trim())?;
    let prefix = format!("{}-", owner.key());
    if label.key().starts_with(&prefix) {
        return Ok(label);
    }
    Name::new(&format!("{owner}-{label}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn the_mapping_keeps_its_order_and_values_as_the_provider_sends_them() {
        let m = ClaimGroupMap::parse(
            "tiefbau=Straßenbau, Tiefbau; staff=vpn-users ;staff=/vpn/alle;odd=a\\;b",
        )
        .unwrap();
        assert_eq!(
            m.groups_for(&claims(&["vpn-users", "Straßenbau, Tiefbau"])),
            vec![Name::new("tiefbau").unwrap(), Name::new("staff").unwrap()]
        );
        // Two provider groups mapping to one heimweg group give it once.
        assert_eq!(
            m.groups_for(&claims(&["/vpn/alle", "vpn-users"])),
            vec![Name::new("staff").unwrap()]
        );
        assert_eq!(
            m.groups_for(&claims(&["a;b"])),
            vec![Name::new("odd").unwrap()]
        );
        // Exact comparison: a provider's group differing in case is another group.
        assert!(m.groups_for(&claims(&["VPN-USERS", "kantine"])).is_empty());
        assert!(ClaimGroupMap::parse("").unwrap().is_empty());
    }

    #[test]
    fn a_wrong_mapping_says_what_is_wrong() {
        assert!(matches!(
            ClaimGroupMap::parse("staff"),
            Err(ClaimMapError::NoEquals(_))
        ));
        assert!(matches!(
            ClaimGroupMap::parse("staff= "),
            Err(ClaimMapError::EmptyValue(_))
        ));
        assert!(matches!(
            ClaimGroupMap::parse("a=x;b=x"),
            Err(ClaimMapError::Twice(v)) if v == "x"
        ));
        assert!(matches!(
            ClaimGroupMap::parse(" =x"),
            Err(ClaimMapError::Name(_))
        ));
    }

    #[test]
    fn the_admin_group_wins_over_the_helpdesk_group_and_no_group_gives_no_role() {
        let r = RoleClaims::parse("heimweg-admins", "heimweg-helpdesk;it-support");
        assert_eq!(
            r.role_for(&claims(&["it-support", "heimweg-admins"])),
            Some(Role::Admin)
        );
        assert_eq!(r.role_for(&claims(&["it-support"])), Some(Role::Helpdesk));
        assert_eq!(r.role_for(&claims(&["vpn-users"])), None);
        assert!(RoleClaims::parse(" ; ", "").is_empty());
    }

    #[test]
    fn a_device_name_starts_with_its_owner() {
        let anna = Name::new("Anna").unwrap();
        assert_eq!(
            own_device_name(&anna, " Laptop ").unwrap().as_str(),
            "Anna-Laptop"
        );
        assert_eq!(
            own_device_name(&anna, "anna-iPad").unwrap().as_str(),
            "anna-iPad"
        );
        assert!(own_device_name(&anna, "").is_err());
        let long = "x".repeat(Name::MAX_CHARS - 2);
        assert!(matches!(
            own_device_name(&anna, &long),
            Err(NameError::TooLong(_))
        ));
    }
}
