//! Crypto-key routing: which peer owns which prefixes.
//!
//! One table answers both questions WireGuard asks of allowed IPs: "which peer gets this packet
//! from the TUN?" (longest-prefix match on the destination) and "may this peer send from that
//! source?" (longest-prefix match on the decrypted source must name the sender). The lookup is a
//! tree bitmap (`ip_network_table`), whose cost depends on the address length, not on the number
//! of peers.

use ip_network::IpNetwork;
use ip_network_table::IpNetworkTable;
use std::net::IpAddr;

/// Parses `address/prefix` into a network, masking host bits as WireGuard does.
pub fn parse_network(s: &str) -> Option<IpNetwork> {
    let (addr, len) = s.split_once('/')?;
    IpNetwork::new_truncate(addr.parse::<IpAddr>().ok()?, len.parse().ok()?).ok()
}

/// Longest-prefix table from networks to owners of type `T`.
pub struct AllowedIps<T> {
    table: IpNetworkTable<T>,
}

impl<T: Copy + PartialEq> Default for AllowedIps<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + PartialEq> AllowedIps<T> {
    pub fn new() -> Self {
        AllowedIps {
            table: IpNetworkTable::new(),
        }
    }

    /// Gives `net` to `owner`. Like WireGuard, a prefix has one owner: if another owner had
    /// exactly this prefix it is returned, so the caller can drop it from that owner's list.
    pub fn insert(&mut self, net: IpNetwork, owner: T) -> Option<T> {
        self.table.insert(net, owner).filter(|old| *old != owner)
    }

    /// Removes `net` if `owner` holds it; returns whether it did.
    pub fn remove(&mut self, net: IpNetwork, owner: T) -> bool {
        if self.table.exact_match(net) == Some(&owner) {
            self.table.remove(net);
            true
        } else {
            false
        }
    }

    /// The owner of the longest prefix containing `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<T> {
        match addr {
            IpAddr::V4(a) => self.table.longest_match_ipv4(a).map(|(_, t)| *t),
            IpAddr::V6(a) => self.table.longest_match_ipv6(a).map(|(_, t)| *t),
        }
    }

    /// Number of prefixes held, IPv4 and IPv6 together.
    pub fn len(&self) -> usize {
        let (v4, v6) = self.table.len();
        v4 + v6
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNetwork {
        parse_network(s).unwrap()
    }

    #[test]
    fn parses_networks_and_masks_host_bits() {
        assert_eq!(parse_network("10.1.2.3/16"), parse_network("10.1.0.0/16"));
        assert!(parse_network("fd00::1/64").is_some());
        for bad in ["10.0.0.0", "10.0.0.0/33", "x/8", "10.0.0.0/-1", ""] {
            assert_eq!(parse_network(bad), None, "{bad}");
        }
    }

    #[test]
    fn longest_prefix_wins_and_prefixes_move_between_owners() {
        let mut t = AllowedIps::new();
        assert_eq!(t.insert(net("10.0.0.0/8"), 1), None);
        assert_eq!(t.insert(net("10.1.0.0/16"), 2), None);
        assert_eq!(t.lookup("10.1.2.3".parse().unwrap()), Some(2));
        assert_eq!(t.lookup("10.2.2.3".parse().unwrap()), Some(1));
        assert_eq!(t.lookup("11.0.0.1".parse().unwrap()), None);
        // Re-inserting for the same owner is not a move; inserting for another is.
        assert_eq!(t.insert(net("10.1.0.0/16"), 2), None);
        assert_eq!(t.insert(net("10.1.0.0/16"), 3), Some(2));
        assert!(
            !t.remove(net("10.1.0.0/16"), 2),
            "only the owner may remove"
        );
        assert!(t.remove(net("10.1.0.0/16"), 3));
        assert_eq!(t.lookup("10.1.2.3".parse().unwrap()), Some(1));
        t.insert(net("fd00::/64"), 4);
        assert_eq!(t.lookup("fd00::9".parse().unwrap()), Some(4));
        assert_eq!(t.len(), 2);
    }

    fn arb_v4_net() -> impl Strategy<Value = (u32, u8)> {
        (any::<u32>(), 0u8..=32)
    }

    proptest! {
        /// The table agrees with a linear scan for the longest matching prefix.
        #[test]
        fn matches_linear_scan(nets in proptest::collection::vec((arb_v4_net(), 0u16..50), 0..60),
                               probes in proptest::collection::vec(any::<u32>(), 1..50)) {
            let mut t = AllowedIps::new();
            let mut model: Vec<(u32, u8, u16)> = Vec::new();
            for ((addr, len), owner) in nets {
                let n = IpNetwork::new_truncate(IpAddr::from(std::net::Ipv4Addr::from(addr)), len).unwrap();
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                let base = addr & mask;
                t.insert(n, owner);
                model.retain(|(b, l, _)| !(*b == base && *l == len));
                model.push((base, len, owner));
            }
            for p in probes {
                let want = model.iter()
                    .filter(|(b, l, _)| { let m = if *l == 0 { 0 } else { u32::MAX << (32 - l) }; p & m == *b })
                    .max_by_key(|(_, l, _)| *l)
                    .map(|(_, _, o)| *o);
                prop_assert_eq!(t.lookup(IpAddr::from(std::net::Ipv4Addr::from(p))), want);
            }
        }
    }
}
