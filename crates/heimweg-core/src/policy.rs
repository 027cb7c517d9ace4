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

/// The destinations a peer may reach: allowed prefixes, and denied ones carved out of them.
/// The most specific prefix that holds an address decides, so a denied /16 inside an allowed
/// /8 is closed, and an allowed /32 inside that /16 is open again.
pub struct Policy {
    /// Prefix → allowed (true) or denied (false).
    table: IpNetworkTable<bool>,
    prefixes: Vec<IpNetwork>,
    denied: Vec<IpNetwork>,
}

impl Policy {
    /// A policy allowing exactly these prefixes (and nothing if the list is empty).
    pub fn new(prefixes: impl IntoIterator<Item = IpNetwork>) -> Policy {
        Policy::with_denied(prefixes, [])
    }

    /// A policy allowing `allowed` except `denied`; a prefix in both is denied.
    pub fn with_denied(
        allowed: impl IntoIterator<Item = IpNetwork>,
        denied: impl IntoIterator<Item = IpNetwork>,
    ) -> Policy {
        let mut table = IpNetworkTable::new();
        let mut denied_list = Vec::new();
        for p in denied {
            if table.insert(p, false).is_none() {
                denied_list.push(p);
            }
        }
        let mut list = Vec::new();
        for p in allowed {
            if table.exact_match(p).is_none() {
                table.insert(p, true);
                list.push(p);
            }
        }
        Policy {
            table,
            prefixes: list,
            denied: denied_list,
        }
    }

    /// Whether `addr` is allowed: the most specific prefix holding it is an allowed one.
    pub fn allows(&self, addr: IpAddr) -> bool {
        let allowed = match addr {
            IpAddr::V4(a) => self.table.longest_match_ipv4(a).map(|(_, v)| *v),
            IpAddr::V6(a) => self.table.longest_match_ipv6(a).map(|(_, v)| *v),
        };
        allowed == Some(true)
    }

    /// The allowed prefixes.
    pub fn prefixes(&self) -> &[IpNetwork] {
        &self.prefixes
    }

    /// The denied prefixes.
    pub fn denied(&self) -> &[IpNetwork] {
        &self.denied
    }

    /// Whether two optional policies allow the same: a reconciler builds new ones on every
    /// pass, and an equal one must not count as a change.
    pub fn same(a: Option<&Arc<Policy>>, b: Option<&Arc<Policy>>) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                Arc::ptr_eq(a, b) || (a.prefixes() == b.prefixes() && a.denied() == b.denied())
            }
            _ => false,
        }
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("allowed", &self.prefixes)
            .field("denied", &self.denied)
            .finish()
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

    #[test]
    fn the_most_specific_prefix_decides() {
        // A group that may reach 10/8, not the device pool 10.77/16 inside it, but the
        // gateway's own address in the pool.
        let p = Policy::with_denied(
            [net("10.0.0.0/8"), net("10.77.0.1/32"), net("fd77::1/128")],
            [net("10.77.0.0/16"), net("fd77::/64")],
        );
        assert!(p.allows("10.20.0.1".parse().unwrap()));
        assert!(!p.allows("10.77.0.2".parse().unwrap()), "another device");
        assert!(p.allows("10.77.0.1".parse().unwrap()), "the gateway");
        assert!(!p.allows("fd77::2".parse().unwrap()));
        assert!(p.allows("fd77::1".parse().unwrap()));
        // A prefix both allowed and denied is denied.
        let both = Policy::with_denied([net("10.77.0.0/16")], [net("10.77.0.0/16")]);
        assert!(!both.allows("10.77.0.9".parse().unwrap()));
        let a = Arc::new(Policy::with_denied(
            [net("10.0.0.0/8")],
            [net("10.77.0.0/16")],
        ));
        let b = Arc::new(Policy::new([net("10.0.0.0/8")]));
        assert!(!Policy::same(Some(&a), Some(&b)), "a carve-out is a change");
    }
}
