//! A group's access policy: the networks its devices may reach (the gateway enforces them on
//! every packet), whether the client routes everything through the tunnel, the resolvers and
//! search domains its configs carry, and whether its devices may reach each other.

use crate::clientconf::{is_hostname, is_search_domain};
use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;

/// Split tunnel (only the group's networks through the VPN) or full tunnel (everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TunnelMode {
    #[default]
    Split,
    Full,
}

impl TunnelMode {
    pub fn is_full(self) -> bool {
        self == TunnelMode::Full
    }

    pub fn from_full(full: bool) -> TunnelMode {
        if full {
            TunnelMode::Full
        } else {
            TunnelMode::Split
        }
    }
}

/// One DNS entry of a group: a resolver the device asks, or a search domain it appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsEntry {
    Resolver(IpAddr),
    SearchDomain(String),
}

impl std::str::FromStr for DnsEntry {
    type Err = PolicyError;
    /// A resolver's address, or a search domain every app reads as one (see
    /// [`is_search_domain`]: not `10.0.0`, which wg-quick takes for a resolver).
    fn from_str(s: &str) -> Result<DnsEntry, PolicyError> {
        match DnsEntry::from_stored(s) {
            Ok(DnsEntry::SearchDomain(d)) if !is_search_domain(&d) => {
                Err(PolicyError::Dns(d.chars().take(80).collect()))
            }
            entry => entry,
        }
    }
}

impl DnsEntry {
    /// An entry as a store kept it. Earlier versions took any host name as a search domain,
    /// digits and dots only included; such a group stays readable (its configs are refused
    /// until someone corrects it, see [`crate::ClientConfig::render`]).
    pub fn from_stored(s: &str) -> Result<DnsEntry, PolicyError> {
        let s = s.trim();
        if let Ok(ip) = s.parse::<IpAddr>() {
            Ok(DnsEntry::Resolver(ip))
        } else if is_hostname(s) {
            Ok(DnsEntry::SearchDomain(s.to_ascii_lowercase()))
        } else {
            Err(PolicyError::Dns(s.chars().take(80).collect()))
        }
    }
}

impl fmt::Display for DnsEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsEntry::Resolver(ip) => ip.fmt(f),
            DnsEntry::SearchDomain(d) => f.write_str(d),
        }
    }
}

/// Why a policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{0:?} is not a CIDR such as 10.20.0.0/16")]
    Network(String),
    #[error("a group must reach at least one network")]
    NoNetworks,
    #[error("a group may name at most {max} networks; this one names {0}", max = GroupPolicy::MAX_NETWORKS)]
    TooManyNetworks(usize),
    #[error("DNS entry {0:?} is neither an IP address nor a domain name")]
    Dns(String),
    #[error("a group may name at most {max} DNS entries; this one names {0}", max = GroupPolicy::MAX_DNS)]
    TooManyDns(usize),
}

/// A group's policy, valid by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPolicy {
    networks: Vec<IpNet>,
    tunnel: TunnelMode,
    dns: Vec<DnsEntry>,
    /// Devices of the group may reach other devices (of groups that allow it too). Off unless
    /// asked for: a lost laptop must not be a way into a colleague's.
    peer_to_peer: bool,
}

impl GroupPolicy {
    /// Every network becomes a route on every device of the group, a line in its config and a
    /// prefix in the gateway's filter: a city's internal networks fit in a few dozen, and a
    /// bound keeps configs importable (a QR code holds under 3 KB) and the filter small.
    pub const MAX_NETWORKS: usize = 64;
    pub const MAX_DNS: usize = 16;

    /// A policy from its parts: networks are truncated to their prefix (10.20.1.7/16 is
    /// 10.20.0.0/16) and duplicates dropped, order kept.
    pub fn new(
        networks: Vec<IpNet>,
        tunnel: TunnelMode,
        dns: Vec<DnsEntry>,
    ) -> Result<GroupPolicy, PolicyError> {
        let mut nets: Vec<IpNet> = Vec::with_capacity(networks.len());
        for n in networks.into_iter().map(|n| n.trunc()) {
            if !nets.contains(&n) {
                nets.push(n);
            }
        }
        if nets.is_empty() {
            return Err(PolicyError::NoNetworks);
        }
        if nets.len() > GroupPolicy::MAX_NETWORKS {
            return Err(PolicyError::TooManyNetworks(nets.len()));
        }
        if dns.len() > GroupPolicy::MAX_DNS {
            return Err(PolicyError::TooManyDns(dns.len()));
        }
        Ok(GroupPolicy {
            networks: nets,
            tunnel,
            dns,
            peer_to_peer: false,
        })
    }

    /// The same policy with device-to-device traffic allowed or not.
    pub fn peer_to_peer(mut self, allowed: bool) -> GroupPolicy {
        self.peer_to_peer = allowed;
        self
    }

    /// Whether the group's devices may reach other devices.
    pub fn allows_peer_to_peer(&self) -> bool {
        self.peer_to_peer
    }

    /// A policy as a store kept it. Earlier versions had no bounds; a group saved with more
    /// networks than [`GroupPolicy::MAX_NETWORKS`] keeps working (its devices must not lose
    /// access on an upgrade) until someone changes it, which applies the bounds.
    pub fn from_stored(
        networks: Vec<IpNet>,
        tunnel: TunnelMode,
        dns: Vec<DnsEntry>,
    ) -> GroupPolicy {
        let mut nets: Vec<IpNet> = Vec::with_capacity(networks.len());
        for n in networks.into_iter().map(|n| n.trunc()) {
            if !nets.contains(&n) {
                nets.push(n);
            }
        }
        GroupPolicy {
            networks: nets,
            tunnel,
            dns,
            peer_to_peer: false,
        }
    }

    /// Parses networks and DNS entries as people type them (the API, forms, the CLI).
    pub fn parse(
        networks: &[impl AsRef<str>],
        tunnel: TunnelMode,
        dns: &[impl AsRef<str>],
    ) -> Result<GroupPolicy, PolicyError> {
        GroupPolicy::new(parse_networks(networks)?, tunnel, parse_dns(dns)?)
    }

    pub fn networks(&self) -> &[IpNet] {
        &self.networks
    }

    pub fn tunnel(&self) -> TunnelMode {
        self.tunnel
    }

    pub fn dns(&self) -> &[DnsEntry] {
        &self.dns
    }

    pub fn resolvers(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.dns.iter().filter_map(|d| match d {
            DnsEntry::Resolver(ip) => Some(*ip),
            DnsEntry::SearchDomain(_) => None,
        })
    }

    pub fn search_domains(&self) -> impl Iterator<Item = &str> + '_ {
        self.dns.iter().filter_map(|d| match d {
            DnsEntry::Resolver(_) => None,
            DnsEntry::SearchDomain(s) => Some(s.as_str()),
        })
    }

    /// What the gateway lets the group's devices reach: its networks, and its resolvers (the
    /// config routes them through the tunnel, so they must answer).
    pub fn reachable(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.networks
            .iter()
            .copied()
            .chain(self.resolvers().map(IpNet::from))
    }

    /// A copy with some parts replaced (a partial update).
    pub fn with(
        &self,
        networks: Option<Vec<IpNet>>,
        tunnel: Option<TunnelMode>,
        dns: Option<Vec<DnsEntry>>,
        peer_to_peer: Option<bool>,
    ) -> Result<GroupPolicy, PolicyError> {
        Ok(GroupPolicy::new(
            networks.unwrap_or_else(|| self.networks.clone()),
            tunnel.unwrap_or(self.tunnel),
            dns.unwrap_or_else(|| self.dns.clone()),
        )?
        .peer_to_peer(peer_to_peer.unwrap_or(self.peer_to_peer)))
    }
}

/// Networks as people type them (`10.20.0.0/16`); more than the bound is refused before any
/// is parsed, so a request with a million entries costs nothing.
pub fn parse_networks(items: &[impl AsRef<str>]) -> Result<Vec<IpNet>, PolicyError> {
    if items.len() > GroupPolicy::MAX_NETWORKS {
        return Err(PolicyError::TooManyNetworks(items.len()));
    }
    items
        .iter()
        .map(|p| {
            let p = p.as_ref().trim();
            p.parse::<IpNet>()
                .map_err(|_| PolicyError::Network(p.chars().take(80).collect()))
        })
        .collect()
}

/// DNS entries as people type them.
pub fn parse_dns(items: &[impl AsRef<str>]) -> Result<Vec<DnsEntry>, PolicyError> {
    if items.len() > GroupPolicy::MAX_DNS {
        return Err(PolicyError::TooManyDns(items.len()));
    }
    items.iter().map(|d| d.as_ref().parse()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_normalised_and_bounded() {
        let p = GroupPolicy::parse(
            &["10.20.1.7/16", "10.20.0.0/16", "fd00:20::1/48"],
            TunnelMode::Split,
            &["10.20.0.53", "Rathaus.Example"],
        )
        .unwrap();
        assert_eq!(p.networks().len(), 2, "duplicates after truncation dropped");
        assert_eq!(p.networks()[0].to_string(), "10.20.0.0/16");
        assert_eq!(p.search_domains().collect::<Vec<_>>(), ["rathaus.example"]);
        let reach: Vec<String> = p.reachable().map(|n| n.to_string()).collect();
        assert_eq!(reach, ["10.20.0.0/16", "fd00:20::/48", "10.20.0.53/32"]);

        let none: [&str; 0] = [];
        assert_eq!(
            GroupPolicy::parse(&none, TunnelMode::Full, &none),
            Err(PolicyError::NoNetworks)
        );
        let many: Vec<String> = (0..65).map(|i| format!("10.{i}.0.0/16")).collect();
        assert_eq!(
            GroupPolicy::parse(&many, TunnelMode::Split, &none),
            Err(PolicyError::TooManyNetworks(65))
        );
        assert!(matches!(
            GroupPolicy::parse(&["10.0.0.0/33"], TunnelMode::Split, &none),
            Err(PolicyError::Network(_))
        ));
        assert!(matches!(
            GroupPolicy::parse(&["10.0.0.0/8"], TunnelMode::Split, &["not a domain"]),
            Err(PolicyError::Dns(_))
        ));
    }

    #[test]
    fn a_search_domain_of_digits_and_dots_is_refused() {
        // Found by fuzz/artifacts: "10.0.0" passed as a search domain, and wg-quick reads an
        // entry of digits and dots as a resolver's address: the Linux client got a broken
        // nameserver line, outside AllowedIPs, and lost the search domain.
        for typo in ["10.0.0", "192.168.1.1.1", "123", "1."] {
            assert_eq!(
                typo.parse::<DnsEntry>(),
                Err(PolicyError::Dns(typo.into())),
                "{typo}"
            );
        }
        assert_eq!(
            "10.0.0.53".parse::<DnsEntry>(),
            Ok(DnsEntry::Resolver("10.0.0.53".parse().unwrap()))
        );
        assert_eq!(
            "intern.10.example".parse::<DnsEntry>(),
            Ok(DnsEntry::SearchDomain("intern.10.example".into()))
        );
        // What older versions stored still reads.
        assert_eq!(
            DnsEntry::from_stored("10.0.0"),
            Ok(DnsEntry::SearchDomain("10.0.0".into()))
        );
    }
}
