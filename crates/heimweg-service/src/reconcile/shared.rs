//! One key, one device (BSI ORP.4.A14): telling a config copied onto a second device from a
//! device that roams, by how the data plane saw each key's endpoint move.
//!
//! A laptop that moves from the office network to a hotspot changes its address once; one that
//! flaps between Wi-Fi and mobile data changes it now and then. Two devices with one key take
//! turns: the gateway's endpoint for the key follows whichever sent last, back and forth
//! between two addresses again and again. The data plane counts, at every authenticated packet,
//! how often a key's endpoint went back to the address before (`heimweg_core::Roaming`); a key
//! is flagged when that count grew by [`RETURNS`] within [`WINDOW`]. Only the address counts,
//! not the port (NAT rebinding changes ports). Counting in the data plane rather than sampling
//! the endpoint matters: two devices that each reconnect within a sample's interval look like
//! one device to a sampler for minutes.

use super::plan::ObservedPeer;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// How far back the samples reach.
pub const WINDOW: i64 = 300;
/// How many returns to the address before flag a key: one is a move and back (a phone leaving
/// the Wi-Fi and coming back); two are two devices taking turns (three switches between two
/// addresses).
pub const RETURNS: u64 = 2;

/// A key seen used from two places at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedKey {
    pub public_key: [u8; 32],
    pub addresses: (IpAddr, IpAddr),
}

/// The recent counts of every key's returns, as sampled.
#[derive(Debug, Default)]
pub struct SharedKeyWatch {
    /// Per key: (when, returns so far) at each sample, oldest first, the oldest at most
    /// [`WINDOW`] old.
    samples: HashMap<[u8; 32], VecDeque<(i64, u64)>>,
}

impl SharedKeyWatch {
    /// Takes one sample of the data plane's view at `now`; returns the keys that now look
    /// shared (each time the pattern holds: the store keeps the flag from repeating).
    pub fn observe(&mut self, observed: &[ObservedPeer], now: i64) -> Vec<SharedKey> {
        let mut out = Vec::new();
        for p in observed {
            let samples = self.samples.entry(p.public_key).or_default();
            // A peer added again starts counting from zero: its earlier samples say nothing.
            if samples.back().is_some_and(|(_, n)| *n > p.returns) {
                samples.clear();
            }
            samples.push_back((now, p.returns));
            while samples.front().is_some_and(|(t, _)| *t < now - WINDOW) {
                samples.pop_front();
            }
            let first = samples.front().map_or(p.returns, |(_, n)| *n);
            let (Some(a), Some(b)) = (p.endpoint.map(|e| e.ip()), p.previous_address) else {
                continue;
            };
            if p.returns - first >= RETURNS {
                out.push(SharedKey {
                    public_key: p.public_key,
                    addresses: if a < b { (a, b) } else { (b, a) },
                });
            }
        }
        // Keys no longer observed (revoked, held) are forgotten.
        if self.samples.len() > observed.len() {
            let live: std::collections::HashSet<&[u8; 32]> =
                observed.iter().map(|p| &p.public_key).collect();
            self.samples.retain(|k, _| live.contains(k));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    const KEY: [u8; 32] = [7; 32];
    const HOME: &str = "198.51.100.7:41000";
    const OTHER: &str = "203.0.113.9:5000";

    /// The data plane's view: the endpoint, the address before it, the returns so far.
    fn seen(endpoint: &str, previous: &str, returns: u64) -> Vec<ObservedPeer> {
        vec![ObservedPeer {
            public_key: KEY,
            last_handshake_at: Some(1),
            endpoint: Some(endpoint.parse::<SocketAddr>().unwrap()),
            previous_address: Some(previous.parse::<SocketAddr>().unwrap().ip()),
            returns,
        }]
    }

    #[test]
    fn two_devices_taking_turns_are_flagged_at_the_second_return() {
        let mut w = SharedKeyWatch::default();
        assert!(w.observe(&seen(OTHER, HOME, 0), 0).is_empty(), "a move");
        assert!(w.observe(&seen(HOME, OTHER, 1), 10).is_empty(), "and back");
        let found = w.observe(&seen(OTHER, HOME, 2), 20);
        assert_eq!(
            found[0].addresses,
            (
                "198.51.100.7".parse().unwrap(),
                "203.0.113.9".parse().unwrap()
            )
        );
        // Many turns between two samples (what a sampler would miss) flag at once.
        let mut w = SharedKeyWatch::default();
        assert!(
            w.observe(&seen(OTHER, HOME, 5), 0).is_empty(),
            "the baseline"
        );
        assert_eq!(w.observe(&seen(HOME, OTHER, 9), 10).len(), 1);
    }

    #[test]
    fn returns_from_before_the_watch_or_a_re_added_peer_count_nothing() {
        let mut w = SharedKeyWatch::default();
        // A laptop that moved back and forth yesterday: its count is the baseline.
        assert!(w.observe(&seen(HOME, OTHER, 40), 0).is_empty());
        assert!(w.observe(&seen(HOME, OTHER, 41), 10).is_empty());
        // Removed and added again (a window closed and opened): counting starts at zero.
        assert!(w.observe(&seen(HOME, OTHER, 0), 20).is_empty());
        assert!(w.observe(&seen(OTHER, HOME, 1), 30).is_empty());
    }

    #[test]
    fn returns_spread_over_more_than_the_window_are_not_flagged() {
        let mut w = SharedKeyWatch::default();
        // One return every 4 minutes: never two within any 5 minutes.
        for i in 0..6u64 {
            let found = w.observe(&seen(HOME, OTHER, i), i as i64 * 240);
            assert!(found.is_empty(), "sample {i}");
        }
    }
}
