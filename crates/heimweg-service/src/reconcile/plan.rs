//! The reconciler's decisions, without I/O: from the store's state and a moment, the peers
//! the data plane should have and when to look again; from what the data plane observed,
//! what to write back.

use heimweg_control::{Name, PublicKey};
use heimweg_store::{AbsenceSpan, ActivationSpan, ActivePeer, Group, PeerStatus};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// What the plan is made from: every group, every device that is not revoked, the absences
/// that have not ended, the activations that run, and the devices' address pools.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub groups: Vec<Group>,
    pub devices: Vec<ActivePeer>,
    pub absences: Vec<AbsenceSpan>,
    pub activations: Vec<ActivationSpan>,
    /// The pools devices get their addresses from: carved out of what a group reaches unless
    /// the group allows device-to-device traffic.
    pub pools: Vec<IpNet>,
}

/// What a peer may reach: `allowed`, except the `denied` prefixes inside it (the most specific
/// prefix holding an address decides).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerPolicy {
    pub allowed: Vec<IpNet>,
    pub denied: Vec<IpNet>,
}

impl PeerPolicy {
    /// A group's policy at the gateway: its networks and resolvers; other devices only if the
    /// group asks for it, else the pools are carved out (a network that covers them, or
    /// 0.0.0.0/0 for a full tunnel, does not open them). A prefix the group names that is more
    /// specific than a pool (the gateway's own address) stays open.
    fn of(group: &Group, pools: &[IpNet]) -> PeerPolicy {
        let mut allowed: Vec<IpNet> = group.policy.reachable().collect();
        let denied = if group.policy.allows_peer_to_peer() {
            allowed.extend(pools.iter().copied());
            Vec::new()
        } else {
            pools.to_vec()
        };
        PeerPolicy { allowed, denied }
    }
}

/// A peer the data plane should have.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredPeer {
    pub public_key: [u8; 32],
    pub preshared_key: Option<[u8; 32]>,
    /// The device's own addresses: the only sources it may send from.
    pub addresses: [IpNet; 2],
    /// What the device may reach (its group's networks and resolvers, without other devices
    /// unless the group allows it), shared by every peer of the group: the same `Arc` for the
    /// same group.
    pub policy: Arc<PeerPolicy>,
}

/// Who a peer is, for the per-peer metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerMeta {
    pub device_id: i64,
    pub name: Name,
    pub group: String,
}

/// Why a device that is not revoked or expired is no peer at the moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Its group's usage window is closed; it opens at `until` (Unix seconds), if known
    /// within the next weeks.
    Window { until: Option<i64> },
    /// It or its owner is absent until `until`.
    Absent { until: i64 },
    /// Its group requires sign in to connect, and its owner has no activation running.
    SignIn,
}

/// The plan for one moment.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub peers: Vec<DesiredPeer>,
    /// Public key → device, for metrics and `heimweg status`.
    pub directory: HashMap<[u8; 32], PeerMeta>,
    /// Devices held out of the data plane now, and why (device id → reason).
    pub held: HashMap<i64, Hold>,
    /// The next moment the plan changes by itself (a device expires, a window opens or
    /// closes, an absence begins or ends), if any: the reconciler wakes then, not by polling
    /// the whole table.
    pub wake_at: Option<i64>,
}

impl Plan {
    fn wake(&mut self, at: i64) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }
}

/// Where the absences of one user or device stand at `now`: absent until when, or the next
/// start (the earliest of each).
#[derive(Default, Clone, Copy)]
struct Absent {
    until: Option<i64>,
    next_start: Option<i64>,
}

impl Absent {
    fn add(&mut self, a: &AbsenceSpan, now: i64) {
        if a.starts_at <= now && now < a.ends_at {
            // Overlapping absences: absent until the last of them that covers now ends
            // (an adjoining one is seen at the next wake-up).
            self.until = Some(self.until.map_or(a.ends_at, |u| u.max(a.ends_at)));
        } else if a.starts_at > now {
            self.next_start = Some(self.next_start.map_or(a.starts_at, |s| s.min(a.starts_at)));
        }
    }
}

/// The absences at `now` by user and by device.
fn absences_at(absences: &[AbsenceSpan], now: i64) -> (HashMap<i64, Absent>, HashMap<i64, Absent>) {
    let mut users: HashMap<i64, Absent> = HashMap::new();
    let mut devices: HashMap<i64, Absent> = HashMap::new();
    for a in absences {
        if let Some(u) = a.user_id {
            users.entry(u).or_default().add(a, now);
        }
        if let Some(d) = a.device_id {
            devices.entry(d).or_default().add(a, now);
        }
    }
    (users, devices)
}

/// Each user's activations that run at `now`: (start, end).
fn activations_at(activations: &[ActivationSpan], now: i64) -> HashMap<i64, Vec<(i64, i64)>> {
    let mut out: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
    for a in activations {
        if a.starts_at <= now && now < a.ends_at {
            out.entry(a.user_id)
                .or_default()
                .push((a.starts_at, a.ends_at));
        }
    }
    out
}

/// Until when a device of a group that requires sign in to connect for `hours` passes
/// traffic, given its owner's `running` activations; `None`: not now. The group's own hours
/// cap an activation started for a longer one (another group's).
fn activated_until(hours: u8, running: Option<&Vec<(i64, i64)>>, now: i64) -> Option<i64> {
    running
        .into_iter()
        .flatten()
        .map(|&(start, end)| end.min(start + i64::from(hours) * 3600))
        .max()
        .filter(|&end| end > now)
}

/// The peers at `now`: devices that are not revoked and not expired, whose group's usage
/// window is open, who are not absent (the device or its owner) and, where their group
/// requires sign in to connect, whose owner's activation runs (for at most the group's
/// hours), each with its group's policy. A device whose group vanished reaches nothing.
pub fn plan(state: &State, now: i64) -> Plan {
    let nothing = Arc::new(PeerPolicy::default());
    let mut out = Plan::default();
    // Each group's window once, not once per device.
    let groups: HashMap<i64, (Arc<PeerPolicy>, &Group, Option<Hold>)> = state
        .groups
        .iter()
        .map(|g| {
            let hold = g.window.as_ref().and_then(|w| {
                let s = w.at(now);
                if let Some(t) = s.until {
                    out.wake(t);
                }
                // People see when it opens only if that is a change, not a time to look again.
                (!s.open).then_some(Hold::Window {
                    until: s.until.filter(|_| s.exact),
                })
            });
            (g.id, (Arc::new(PeerPolicy::of(g, &state.pools)), g, hold))
        })
        .collect();
    let (users, devices) = absences_at(&state.absences, now);
    let activations = activations_at(&state.activations, now);
    for d in &state.devices {
        match d.expires_at {
            Some(at) if at <= now => continue,
            Some(at) => out.wake(at),
            None => {}
        }
        let owner = d.owner_id.and_then(|u| users.get(&u));
        let mut absent_until = None;
        for a in owner.into_iter().chain(devices.get(&d.device_id)) {
            if let Some(t) = a.next_start {
                out.wake(t);
            }
            if let Some(t) = a.until {
                out.wake(t);
                absent_until = Some(absent_until.map_or(t, |u: i64| u.max(t)));
            }
        }
        if let Some(until) = absent_until {
            out.held.insert(d.device_id, Hold::Absent { until });
            continue;
        }
        let (policy, group) = match groups.get(&d.group_id) {
            Some((_, _, Some(hold))) => {
                out.held.insert(d.device_id, *hold);
                continue;
            }
            Some((p, g, None)) => {
                if let Some(hours) = g.sign_in_hours {
                    let running = d.owner_id.and_then(|u| activations.get(&u));
                    match activated_until(hours, running, now) {
                        Some(end) => out.wake(end),
                        None => {
                            out.held.insert(d.device_id, Hold::SignIn);
                            continue;
                        }
                    }
                }
                (Arc::clone(p), g.name.to_string())
            }
            None => (Arc::clone(&nothing), String::new()),
        };
        out.peers.push(DesiredPeer {
            public_key: *d.public_key.as_bytes(),
            preshared_key: d.preshared_key,
            addresses: [
                IpNet::from(IpAddr::V4(d.ipv4)),
                IpNet::from(IpAddr::V6(d.ipv6)),
            ],
            policy,
        });
        out.directory.insert(
            *d.public_key.as_bytes(),
            PeerMeta {
                device_id: d.device_id,
                name: d.name.clone(),
                group,
            },
        );
    }
    out
}

/// What the data plane observed of one peer.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedPeer {
    pub public_key: [u8; 32],
    /// Unix seconds of the last completed handshake.
    pub last_handshake_at: Option<i64>,
    pub endpoint: Option<SocketAddr>,
    /// The endpoint's address before its current one, and how often the endpoint went back to
    /// the address before (see `heimweg_core::Roaming`).
    pub previous_address: Option<std::net::IpAddr>,
    pub returns: u64,
}

/// What was last written back for each key.
pub type Written = HashMap<[u8; 32], (Option<i64>, Option<String>)>;

/// The observations that differ from what was written last, as store rows; `written` is
/// updated as if they were written. An idle gateway writes nothing, and a peer never seen
/// is not written (it would only say "never" over another gateway's news).
pub fn changed_status(observed: &[ObservedPeer], written: &mut Written) -> Vec<PeerStatus> {
    let mut out = Vec::new();
    for p in observed {
        let endpoint = p.endpoint.map(|e| e.to_string());
        let value = (p.last_handshake_at, endpoint.clone());
        if written.get(&p.public_key) == Some(&value)
            || (p.last_handshake_at.is_none() && endpoint.is_none())
        {
            continue;
        }
        let Ok(public_key) = PublicKey::from_bytes(p.public_key) else {
            continue;
        };
        written.insert(p.public_key, value);
        out.push(PeerStatus {
            public_key,
            last_handshake_at: p.last_handshake_at,
            last_endpoint: endpoint,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use heimweg_control::{GroupPolicy, PrivateKey, TunnelMode};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const NOW: i64 = 1_800_000_000;

    /// Networks as text, for comparing with literals.
    fn texts<N: ToString>(networks: &[N]) -> Vec<String> {
        networks.iter().map(ToString::to_string).collect()
    }

    fn group(id: i64, name: &str, nets: &[&str], dns: &[&str]) -> Group {
        Group {
            id,
            name: Name::new(name).unwrap(),
            policy: GroupPolicy::parse(nets, TunnelMode::Split, dns).unwrap(),
            window: None,
            sign_in_hours: None,
        }
    }

    fn device(id: i64, group_id: i64, expires_at: Option<i64>) -> ActivePeer {
        ActivePeer {
            device_id: id,
            name: Name::new(&format!("d{id}")).unwrap(),
            public_key: PrivateKey::generate().public_key(),
            preshared_key: None,
            ipv4: Ipv4Addr::new(10, 77, 0, id as u8),
            ipv6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, id as u16),
            group_id,
            owner_id: None,
            expires_at,
        }
    }

    fn state() -> State {
        State {
            groups: vec![
                group(1, "rathaus", &["10.20.0.0/16"], &["10.20.0.53"]),
                group(2, "bauamt", &["10.30.0.0/16"], &[]),
            ],
            devices: vec![
                device(1, 1, None),
                device(2, 1, Some(NOW + 60)),
                device(3, 2, Some(NOW + 30)),
            ],
            absences: Vec::new(),
            activations: Vec::new(),
            pools: vec![
                "10.77.0.0/16".parse().unwrap(),
                "fd00::/64".parse().unwrap(),
            ],
        }
    }

    #[test]
    fn every_device_is_a_peer_with_its_groups_policy_and_own_addresses() {
        let p = plan(&state(), NOW);
        assert_eq!(p.peers.len(), 3);
        let reach = texts(&p.peers[0].policy.allowed);
        assert_eq!(
            reach,
            ["10.20.0.0/16", "10.20.0.53/32"],
            "resolvers reachable too"
        );
        assert!(
            Arc::ptr_eq(&p.peers[0].policy, &p.peers[1].policy),
            "one policy per group"
        );
        assert_eq!(p.peers[2].policy.allowed.len(), 1);
        assert_eq!(p.peers[0].addresses[0].to_string(), "10.77.0.1/32");
        assert_eq!(p.directory.len(), 3);
        assert_eq!(p.directory[&p.peers[2].public_key].group, "bauamt");
    }

    #[test]
    fn expiry_removes_the_peer_on_time_and_sets_the_next_wake_up() {
        let s = state();
        assert_eq!(plan(&s, NOW).wake_at, Some(NOW + 30), "the earliest expiry");
        let later = plan(&s, NOW + 30);
        assert_eq!(later.peers.len(), 2, "expired at its second, not after");
        assert!(!later.directory.values().any(|m| m.device_id == 3));
        assert_eq!(later.wake_at, Some(NOW + 60));
        let last = plan(&s, NOW + 60);
        assert_eq!(last.peers.len(), 1);
        assert_eq!(last.wake_at, None, "nothing left to expire: no wake-up");
    }

    #[test]
    fn a_group_change_moves_the_peer_under_the_new_policy() {
        let mut s = state();
        s.devices[0].group_id = 2;
        let p = plan(&s, NOW);
        let reach = texts(&p.peers[0].policy.allowed);
        assert_eq!(reach, ["10.30.0.0/16"]);
        // A group's policy change reaches every device in it.
        s.groups[1] = group(2, "bauamt", &["10.31.0.0/16", "10.32.0.0/16"], &[]);
        let p = plan(&s, NOW);
        assert_eq!(p.peers[0].policy.allowed.len(), 2);
        assert!(Arc::ptr_eq(&p.peers[0].policy, &p.peers[2].policy));
    }

    #[test]
    fn a_revoked_device_is_no_peer_and_a_lost_group_reaches_nothing() {
        let mut s = state();
        // The store lists devices that are not revoked: a revocation is a device gone.
        let revoked = s.devices.remove(1);
        let p = plan(&s, NOW);
        assert!(!p
            .peers
            .iter()
            .any(|x| x.public_key == *revoked.public_key.as_bytes()));
        s.groups.clear();
        let p = plan(&s, NOW);
        assert_eq!(p.peers.len(), 2);
        assert!(p.peers.iter().all(|x| x.policy.allowed.is_empty()));
    }

    #[test]
    fn devices_reach_each_other_only_in_groups_that_ask_for_it() {
        let mut s = state();
        // A group whose networks cover the pool, and a full tunnel: the pool stays closed.
        s.groups[0] = group(1, "rathaus", &["10.0.0.0/8", "10.77.0.1/32"], &[]);
        let p = plan(&s, NOW);
        let pools = texts(&p.peers[0].policy.denied);
        assert_eq!(pools, ["10.77.0.0/16", "fd00::/64"]);
        assert!(
            p.peers[0]
                .policy
                .allowed
                .contains(&"10.77.0.1/32".parse().unwrap()),
            "a named address inside the pool (the gateway's) stays open"
        );
        // A group that asks for it reaches the pools, and nothing is carved out.
        s.groups[1] = Group {
            policy: s.groups[1].policy.clone().peer_to_peer(true),
            ..s.groups[1].clone()
        };
        let p = plan(&s, NOW);
        let bauamt = &p.peers[2].policy;
        assert!(bauamt.denied.is_empty());
        assert!(bauamt.allowed.contains(&"10.77.0.0/16".parse().unwrap()));
        assert!(bauamt.allowed.contains(&"fd00::/64".parse().unwrap()));
    }

    #[test]
    fn status_is_written_only_when_it_changed_and_never_for_silence() {
        let key = *PrivateKey::generate().public_key().as_bytes();
        let quiet = *PrivateKey::generate().public_key().as_bytes();
        let mut written = Written::new();
        let seen = |at: i64| ObservedPeer {
            public_key: key,
            last_handshake_at: Some(at),
            endpoint: Some("198.51.100.7:41000".parse().unwrap()),
            previous_address: None,
            returns: 0,
        };
        let never = ObservedPeer {
            public_key: quiet,
            last_handshake_at: None,
            endpoint: None,
            previous_address: None,
            returns: 0,
        };
        let first = changed_status(&[seen(NOW), never.clone()], &mut written);
        assert_eq!(
            first.len(),
            1,
            "a peer never seen says nothing over another gateway"
        );
        assert_eq!(
            first[0].last_endpoint.as_deref(),
            Some("198.51.100.7:41000")
        );
        assert!(
            changed_status(&[seen(NOW)], &mut written).is_empty(),
            "idle: no write"
        );
        assert_eq!(changed_status(&[seen(NOW + 120)], &mut written).len(), 1);
    }

    /// Unix seconds of a moment written with its offset.
    fn t(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_second()
    }

    /// A virtual clock: follows the plan's wake-ups from `from` to `to` the way the reconciler
    /// does, and records every moment the set of peers changed, with the peer count after it.
    fn follow(s: &State, from: i64, to: i64) -> Vec<(i64, usize)> {
        let mut changes = Vec::new();
        let mut now = from;
        let mut peers = plan(s, now).peers.len();
        while let Some(next) = plan(s, now).wake_at {
            assert!(next > now, "a wake-up in the past would spin");
            if next > to {
                break;
            }
            now = next;
            let count = plan(s, now).peers.len();
            if count != peers {
                changes.push((now, count));
                peers = count;
            }
        }
        changes
    }

    fn office_hours(s: &mut State) {
        s.groups[0].window = Some(
            heimweg_control::UsageWindow::new("Mon-Fri 06:00-20:00", "Europe/Berlin", "2027-11-01")
                .unwrap(),
        );
    }

    #[test]
    fn a_closed_window_holds_the_groups_devices_and_wakes_at_the_opening() {
        let mut s = state();
        s.devices[1].expires_at = None;
        s.devices[2].expires_at = None;
        office_hours(&mut s);
        // Saturday: rathaus (devices 1 and 2) is closed until Monday 06:00; bauamt is not
        // limited.
        let sat = t("2027-01-09T12:00:00+01:00");
        let p = plan(&s, sat);
        assert_eq!(p.peers.len(), 1);
        assert_eq!(
            p.held[&1],
            Hold::Window {
                until: Some(t("2027-01-11T06:00:00+01:00"))
            }
        );
        assert!(!p.directory.values().any(|m| m.group == "rathaus"));
        assert_eq!(p.wake_at, Some(t("2027-01-11T06:00:00+01:00")));
        let monday = plan(&s, t("2027-01-11T06:00:00+01:00"));
        assert_eq!(monday.peers.len(), 3, "open at the minute");
        assert!(monday.held.is_empty());
        assert_eq!(monday.wake_at, Some(t("2027-01-11T20:00:00+01:00")));
    }

    #[test]
    fn the_virtual_clock_follows_office_hours_across_both_clock_changes_in_berlin() {
        let mut s = state();
        s.devices.truncate(1);
        office_hours(&mut s);
        // The week of the spring change (Sunday 2027-03-28): 06:00 and 20:00 local stay
        // 06:00 and 20:00, one hour earlier in UTC from Monday on.
        let spring = follow(&s, t("2027-03-25T12:00:00Z"), t("2027-03-30T00:00:00Z"));
        assert_eq!(
            spring,
            [
                (t("2027-03-25T19:00:00Z"), 0),
                (t("2027-03-26T05:00:00Z"), 1),
                (t("2027-03-26T19:00:00Z"), 0),
                (t("2027-03-29T04:00:00Z"), 1),
                (t("2027-03-29T18:00:00Z"), 0),
            ]
        );
        // The autumn change (Sunday 2027-10-31), and Monday 1 November closed (All Saints'
        // Day in some Länder): Friday ends at 18:00 UTC, Tuesday opens at 05:00 UTC.
        let autumn = follow(&s, t("2027-10-29T12:00:00Z"), t("2027-11-03T00:00:00Z"));
        assert_eq!(
            autumn,
            [
                (t("2027-10-29T18:00:00Z"), 0),
                (t("2027-11-02T05:00:00Z"), 1),
                (t("2027-11-02T19:00:00Z"), 0),
            ]
        );
    }

    #[test]
    fn an_absence_holds_the_device_or_all_of_its_owners_and_ends_by_itself() {
        let mut s = state();
        for d in &mut s.devices {
            d.expires_at = None;
        }
        s.devices[0].owner_id = Some(7);
        s.devices[1].owner_id = Some(7);
        s.devices[2].owner_id = Some(8);
        s.absences = vec![
            // Owner 7 away for a week from NOW + 100.
            AbsenceSpan {
                user_id: Some(7),
                device_id: None,
                starts_at: NOW + 100,
                ends_at: NOW + 100 + 7 * 86_400,
            },
            // Device 3 suspended now for an hour.
            AbsenceSpan {
                user_id: None,
                device_id: Some(3),
                starts_at: NOW - 10,
                ends_at: NOW + 3_600,
            },
        ];
        let p = plan(&s, NOW);
        assert_eq!(p.peers.len(), 2);
        assert_eq!(p.held[&3], Hold::Absent { until: NOW + 3_600 });
        assert_eq!(
            p.wake_at,
            Some(NOW + 100),
            "wakes when the next absence begins"
        );
        let away = plan(&s, NOW + 100);
        assert!(away.peers.is_empty());
        assert_eq!(
            away.held[&1],
            Hold::Absent {
                until: NOW + 100 + 7 * 86_400
            }
        );
        assert_eq!(
            follow(&s, NOW, NOW + 8 * 86_400),
            [
                (NOW + 100, 0),
                (NOW + 3_600, 1),
                (NOW + 100 + 7 * 86_400, 3)
            ]
        );
    }

    #[test]
    fn an_absence_outlasts_a_window_that_opens_meanwhile() {
        let mut s = state();
        s.devices.truncate(1);
        s.devices[0].expires_at = None;
        s.devices[0].owner_id = Some(7);
        office_hours(&mut s);
        s.absences = vec![AbsenceSpan {
            user_id: Some(7),
            device_id: None,
            starts_at: t("2027-01-08T00:00:00+01:00"),
            ends_at: t("2027-01-12T00:00:00+01:00"),
        }];
        // Thursday's window closes at 20:00; Friday's and Monday's open while the owner is
        // away (Friday to Monday), so the device comes back on Tuesday at 06:00.
        let changes = follow(
            &s,
            t("2027-01-07T12:00:00+01:00"),
            t("2027-01-13T00:00:00+01:00"),
        );
        assert_eq!(
            changes,
            [
                (t("2027-01-07T20:00:00+01:00"), 0),
                (t("2027-01-12T06:00:00+01:00"), 1),
                (t("2027-01-12T20:00:00+01:00"), 0),
            ]
        );
    }

    #[test]
    fn sign_in_to_connect_lets_a_device_through_only_during_its_owners_activation() {
        let mut s = state();
        for d in &mut s.devices {
            d.expires_at = None;
        }
        // Rathaus requires a sign-in for 8 hours; bauamt does not.
        s.groups[0].sign_in_hours = Some(8);
        s.devices[0].owner_id = Some(7);
        s.devices[1].owner_id = None;
        s.devices[2].owner_id = Some(7);
        let before = plan(&s, NOW);
        assert_eq!(before.held[&1], Hold::SignIn, "no activation: held");
        assert_eq!(before.held[&2], Hold::SignIn, "nobody can sign in for it");
        assert!(!before.held.contains_key(&3), "its group needs no sign-in");
        assert_eq!(before.wake_at, None, "nothing to wake for");
        // An activation started for 10 hours (another group's length) ends for this group
        // after its own 8.
        s.activations = vec![ActivationSpan {
            user_id: 7,
            starts_at: NOW,
            ends_at: NOW + 10 * 3_600,
        }];
        let during = plan(&s, NOW + 60);
        assert!(during.directory.values().any(|m| m.device_id == 1));
        assert_eq!(during.held.get(&2), Some(&Hold::SignIn), "another owner's");
        assert_eq!(during.wake_at, Some(NOW + 8 * 3_600), "wakes at its end");
        assert_eq!(
            follow(&s, NOW + 60, NOW + 11 * 3_600),
            [(NOW + 8 * 3_600, 1)],
            "device 1 out at the group's end, device 3 never affected"
        );
        // Ended early: its end moved to the moment an admin ended it.
        s.activations[0].ends_at = NOW + 120;
        assert_eq!(plan(&s, NOW + 120).held[&1], Hold::SignIn);
        // An absence wins over an activation.
        s.activations[0].ends_at = NOW + 3_600;
        s.absences = vec![AbsenceSpan {
            user_id: Some(7),
            device_id: None,
            starts_at: NOW,
            ends_at: NOW + 600,
        }];
        assert_eq!(
            plan(&s, NOW + 60).held[&1],
            Hold::Absent { until: NOW + 600 }
        );
        assert!(!plan(&s, NOW + 600).held.contains_key(&1));
    }
}
