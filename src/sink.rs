//! The reconciler's view of this gateway's data plane: the service plans the peers, and this
//! adapter hands them to [`DataPlane::sync_peers`] and reads back what the peers did.

use heimweg_core::{IpNetwork, Policy};
use heimweg_dataplane::{DataPlane, PeerSpec};
use heimweg_service::reconcile::{DesiredPeer, ObservedPeer, PeerPolicy, PeerSink, SyncReport};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The running data plane as a [`PeerSink`].
pub struct DataPlaneSink {
    dataplane: Arc<DataPlane>,
}

impl DataPlaneSink {
    pub fn new(dataplane: Arc<DataPlane>) -> DataPlaneSink {
        DataPlaneSink { dataplane }
    }
}

fn to_network(net: &IpNet) -> Option<IpNetwork> {
    IpNetwork::new_truncate(net.network(), net.prefix_len()).ok()
}

/// The data plane's lookup table for a planned policy.
fn to_policy(p: &PeerPolicy) -> Policy {
    Policy::with_denied(
        p.allowed.iter().filter_map(to_network),
        p.denied.iter().filter_map(to_network),
    )
}

/// The data plane's peers for `peers`. The plan gives every peer of a group the same
/// policy (one `Arc`), and the data plane keeps one `Policy` per group likewise: one lookup
/// table per group, not per peer, at 100,000 peers.
fn peer_specs(peers: &[DesiredPeer]) -> Vec<PeerSpec> {
    // Keyed by the plan's allocation, which `peers` keeps alive for the whole call.
    let mut policies: HashMap<*const PeerPolicy, Arc<Policy>> = HashMap::new();
    peers
        .iter()
        .map(|p| {
            let policy = policies
                .entry(Arc::as_ptr(&p.policy))
                .or_insert_with(|| Arc::new(to_policy(&p.policy)));
            PeerSpec {
                public_key: p.public_key,
                preshared_key: p.preshared_key,
                allowed_ips: p.addresses.iter().filter_map(to_network).collect(),
                policy: Some(Arc::clone(policy)),
            }
        })
        .collect()
}

impl PeerSink for DataPlaneSink {
    fn sync(&self, peers: &[DesiredPeer]) -> SyncReport {
        let r = self.dataplane.sync_peers(&peer_specs(peers));
        SyncReport {
            added: r.added,
            removed: r.removed,
            updated: r.updated,
        }
    }

    fn endpoint_hints(&self, hints: &[([u8; 32], SocketAddr)]) {
        self.dataplane.set_endpoint_hints(hints);
    }

    fn observed(&self) -> Vec<ObservedPeer> {
        // The core knows a handshake only as "how long ago"; the store keeps wall-clock time.
        let now = SystemTime::now();
        self.dataplane
            .peers()
            .into_iter()
            .map(|p| ObservedPeer {
                public_key: p.public_key,
                last_handshake_at: p
                    .last_handshake_ago
                    .and_then(|ago| now.checked_sub(ago))
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs() as i64),
                endpoint: p.endpoint,
                previous_address: p.roaming.previous,
                returns: p.roaming.returns,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(key: u8, policy: &Arc<PeerPolicy>) -> DesiredPeer {
        DesiredPeer {
            public_key: [key; 32],
            preshared_key: None,
            addresses: [
                format!("10.77.0.{key}/32").parse().unwrap(),
                format!("fd00::{key}/128").parse().unwrap(),
            ],
            policy: Arc::clone(policy),
        }
    }

    #[test]
    fn peers_of_one_group_share_one_policy_and_keep_their_own_addresses() {
        let staff = Arc::new(PeerPolicy {
            allowed: vec!["10.0.0.0/8".parse::<IpNet>().unwrap()],
            denied: vec!["10.77.0.0/16".parse::<IpNet>().unwrap()],
        });
        let lan = Arc::new(PeerPolicy {
            allowed: vec!["10.30.0.0/16".parse::<IpNet>().unwrap()],
            denied: vec![],
        });
        let specs = peer_specs(&[peer(1, &staff), peer(2, &lan), peer(3, &staff)]);
        let policy = |i: usize| specs[i].policy.as_ref().unwrap();
        assert!(Arc::ptr_eq(policy(0), policy(2)), "one Policy per group");
        assert!(!Arc::ptr_eq(policy(0), policy(1)));
        assert_eq!(specs[1].public_key, [2; 32]);
        let addrs: Vec<String> = specs[2].allowed_ips.iter().map(|n| n.to_string()).collect();
        assert_eq!(addrs, ["10.77.0.3/32", "fd00::3/128"]);
        assert!(policy(0).allows("10.20.0.1".parse().unwrap()));
        assert!(
            !policy(0).allows("10.77.0.9".parse().unwrap()),
            "the carve-out reaches the data plane"
        );
    }
}
