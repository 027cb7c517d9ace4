//! One key, one device (BSI ORP.4.A14): telling a config copied onto a second device from a
//! device that roams, by where the data plane last saw each key.
//!
//! A laptop that moves from the office network to a hotspot changes its address once; one that
//! flaps between Wi-Fi and mobile data changes it now and then. Two devices with one key take
//! turns: the gateway's endpoint for the key follows whichever sent last, so the samples
//! alternate between two addresses again and again. A key is flagged when, within
//! [`WINDOW`], its endpoint switched [`SWITCHES`] times between the same two addresses. Only the
//! address counts, not the port (NAT rebinding changes ports).

use super::plan::ObservedPeer;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// How far back the samples reach.
pub const WINDOW: i64 = 300;
/// How many switches between two addresses within the window flag a key: one is a move, two a
/// move and back; three is two devices taking turns.
pub const SWITCHES: usize = 3;

/// A key seen used from two places at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedKey {
    pub public_key: [u8; 32],
    pub addresses: (IpAddr, IpAddr),
}

/// The recent endpoint addresses of every key, as sampled.
#[derive(Debug, Default)]
pub struct SharedKeyWatch {
    /// Per key: (when, address) at each change of address, oldest first.
    changes: HashMap<[u8; 32], VecDeque<(i64, IpAddr)>>,
}

impl SharedKeyWatch {
    /// Takes one sample of the data plane's view at `now`; returns the keys that now look
    /// shared (each time the pattern holds: the store keeps the flag from repeating).
    pub fn observe(&mut self, observed: &[ObservedPeer], now: i64) -> Vec<SharedKey> {
        let mut out = Vec::new();
        for p in observed {
            let Some(ip) = p.endpoint.map(|e| e.ip()) else {
                continue;
            };
            let changes = self.changes.entry(p.public_key).or_default();
            if changes.back().map(|(_, last)| *last) != Some(ip) {
                changes.push_back((now, ip));
            }
            while changes.len() > 1 && changes[1].0 <= now - WINDOW {
                changes.pop_front();
            }
            if let Some(pair) = alternating(changes) {
                out.push(SharedKey {
                    public_key: p.public_key,
                    addresses: pair,
                });
            }
        }
        // Keys no longer observed (revoked, held) are forgotten.
        if self.changes.len() > observed.len() {
            let live: std::collections::HashSet<&[u8; 32]> =
                observed.iter().map(|p| &p.public_key).collect();
            self.changes.retain(|k, _| live.contains(k));
        }
        out
    }
}

/// The two addresses the last [`SWITCHES`] changes alternated between, if they did.
fn alternating(changes: &VecDeque<(i64, IpAddr)>) -> Option<(IpAddr, IpAddr)> {
    if changes.len() < SWITCHES + 1 {
        return None;
    }
    let tail: Vec<IpAddr> = changes
        .iter()
        .rev()
        .take(SWITCHES + 1)
        .map(|c| c.1)
        .collect();
    let (a, b) = (tail[0], tail[1]);
    tail.iter()
        .enumerate()
        .all(|(i, ip)| *ip == if i % 2 == 0 { a } else { b })
        .then_some(if a < b { (a, b) } else { (b, a) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    const KEY: [u8; 32] = [7; 32];

    fn at(addr: &str) -> Vec<ObservedPeer> {
        vec![ObservedPeer {
            public_key: KEY,
            last_handshake_at: Some(1),
            endpoint: Some(addr.parse::<SocketAddr>().unwrap()),
        }]
    }

    /// Feeds one sample every 10 s (the status loop's pace); returns when the key was flagged.
    fn feed(samples: &[&str]) -> Vec<i64> {
        let mut w = SharedKeyWatch::default();
        samples
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let now = 1_000 + 10 * i as i64;
                (!w.observe(&at(s), now).is_empty()).then_some(now)
            })
            .collect()
    }

    #[test]
    fn two_devices_taking_turns_are_flagged_after_three_switches() {
        let home = "198.51.100.7:41000";
        let other = "203.0.113.9:5000";
        let flagged = feed(&[home, other, home, home, other]);
        assert_eq!(flagged, [1_040], "at the third switch");
        let mut w = SharedKeyWatch::default();
        for (i, s) in [home, other, home].iter().enumerate() {
            assert!(w.observe(&at(s), i as i64 * 10).is_empty());
        }
        let found = w.observe(&at(other), 30);
        assert_eq!(
            found[0].addresses,
            (
                "198.51.100.7".parse().unwrap(),
                "203.0.113.9".parse().unwrap()
            )
        );
    }

    #[test]
    fn a_device_that_roams_or_rebinds_its_port_is_not_flagged() {
        // Office, then a hotspot, then home: three addresses, never back and forth.
        assert!(feed(&[
            "198.51.100.7:1",
            "203.0.113.9:2",
            "192.0.2.44:3",
            "192.0.2.44:3"
        ])
        .is_empty());
        // NAT rebinding: the port changes, the address stays.
        assert!(feed(&[
            "198.51.100.7:1",
            "198.51.100.7:2",
            "198.51.100.7:3",
            "198.51.100.7:4"
        ])
        .is_empty());
        // A move and back (a phone leaving the Wi-Fi and coming back).
        assert!(feed(&["198.51.100.7:1", "203.0.113.9:2", "198.51.100.7:1"]).is_empty());
    }

    #[test]
    fn switches_spread_over_more_than_the_window_are_not_flagged() {
        let mut w = SharedKeyWatch::default();
        let (a, b) = ("198.51.100.7:1", "203.0.113.9:2");
        // One switch every 2 minutes: only two within any 5 minutes.
        for (i, s) in [a, b, a, b, a, b].iter().enumerate() {
            assert!(w.observe(&at(s), i as i64 * 200).is_empty(), "sample {i}");
        }
    }
}
