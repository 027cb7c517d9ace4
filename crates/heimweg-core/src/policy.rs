//! Access policy: which internal networks a peer may talk to, enforced after decryption.
//!
//! A client's config lists AllowedIPs, but that only steers the client's own routing; a
//! modified client can send anywhere. The gateway is the security boundary, so each peer may
//! carry a [`Policy`] (usually its group's, shared by `Arc`) and every packet is checked in both
//! directions: a decrypted packet's destination, and the source of a packet on its way to the
//! peer. A peer without a policy is limited only by crypto-key routing, as in plain WireGuard
//! (the standalone `heimweg-wg` mode).

use ip_network::IpNetwork;
use ip_network_table::IpNetworkTable;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// A set of destination prefixes a peer may reach.
pub struct Policy {
    allowed: IpNetworkTable<()>,
    prefixes: Vec<IpNetwork>,
}

impl Policy {
    /// A policy allowing exactly these prefixes (and nothing if the list is empty).
    pub fn new(prefixes: impl IntoIterator<Item = IpNetwork>) -> Policy {
        let mut allowed = IpNetworkTable::new();
        let mut list = Vec::new();
        for p in prefixes {
            if allowed.insert(p, ()).is_none() {
                list.push(p);
            }
        }
        Policy {
            allowed,
            prefixes: list,
        }
    }

    /// Whether `addr` lies inside one of the allowed prefixes.
    pub fn allows(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.allowed.longest_match_ipv4(a).is_some(),
            IpAddr::V6(a) => self.allowed.longest_match_ipv6(a).is_some(),
        }
    }

    pub fn prefixes(&self) -> &[IpNetwork] {
        &self.prefixes
    }

    /// Whether two optional policies allow the same: a reconciler builds new ones on every
    /// pass, and an equal one must not count as a change.
    pub fn same(a: Option<&Arc<Policy>>, b: Option<&Arc<Policy>>) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a.prefixes() == b.prefixes(),
            _ => false,
        }
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Policy").field(&self.prefixes).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        crate::allowed_ips::parse_network(s).unwrap()
    }

    #[test]
    fn allows_only_listed_prefixes_of_both_families() {
        let p = Policy::new([
            net("10.20.0.0/16"),
            net("fd00:20::/48"),
            net("10.20.0.0/16"),
        ]);
        assert_eq!(p.prefixes().len(), 2);
        assert!(p.allows("10.20.3.4".parse().unwrap()));
        assert!(!p.allows("10.21.0.1".parse().unwrap()));
        assert!(p.allows("fd00:20::5".parse().unwrap()));
        assert!(!p.allows("fd00:21::5".parse().unwrap()));
        let none = Policy::new([]);
        assert!(!none.allows("10.20.3.4".parse().unwrap()));
        let full = Policy::new([net("0.0.0.0/0"), net("::/0")]);
        assert!(full.allows("192.0.2.1".parse().unwrap()));
        assert!(full.allows("2001:db8::1".parse().unwrap()));
    }
}
