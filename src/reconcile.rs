//! The reconciler: the one path from the store to the running data plane.
//!
//! It watches the store's revision (every write bumps it) and the next device expiry, and on
//! either rebuilds the desired peer set — every device that is neither revoked nor expired,
//! with its group's access policy — and hands it to [`DataPlane::sync_peers`], which touches
//! only the peers that differ. Polling the revision every 200 ms keeps revocation well inside
//! the one second the operators were promised, at the cost of one tiny query.

use anyhow::Result;
use heimweg_core::{IpNetwork, Policy};
use heimweg_dataplane::{DataPlane, PeerSpec};
use heimweg_store::Store;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const POLL: Duration = Duration::from_millis(200);

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn to_network(net: &IpNet) -> Option<IpNetwork> {
    IpNetwork::new_truncate(net.network(), net.prefix_len()).ok()
}

/// The peers the data plane should have at `now`.
pub async fn desired_peers(store: &Store, now: i64) -> Result<Vec<PeerSpec>> {
    let groups = store.groups().await?;
    // One Policy per group, shared by its peers: the group's networks plus its DNS servers,
    // which the client config routes through the tunnel.
    let policies: HashMap<i64, Arc<Policy>> = groups
        .iter()
        .map(|g| {
            let dns = g
                .dns
                .iter()
                .filter_map(|d| d.parse::<IpAddr>().ok())
                .map(IpNet::from);
            let nets = g
                .allowed_prefixes
                .iter()
                .copied()
                .chain(dns)
                .filter_map(|n| to_network(&n));
            (g.id, Arc::new(Policy::new(nets)))
        })
        .collect();
    let peers = store.active_peers(now).await?;
    Ok(peers
        .into_iter()
        .map(|p| PeerSpec {
            public_key: *p.public_key.as_bytes(),
            preshared_key: p.preshared_key,
            allowed_ips: [IpAddr::V4(p.ipv4), IpAddr::V6(p.ipv6)]
                .into_iter()
                .filter_map(|a| to_network(&IpNet::from(a)))
                .collect(),
            // A device whose group vanished gets an empty policy: it reaches nothing.
            policy: Some(
                policies
                    .get(&p.group_id)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Policy::new([]))),
            ),
        })
        .collect())
}

/// Runs until the task is dropped.
pub async fn run(store: Arc<Store>, dataplane: Arc<DataPlane>) {
    let mut applied_revision = None;
    let mut next_expiry: Option<i64> = None;
    loop {
        let now = unix_now();
        let revision = store.revision().await.ok();
        let due = next_expiry.is_some_and(|t| t <= now);
        if revision.is_some() && (revision != applied_revision || due) {
            match desired_peers(&store, now).await {
                Ok(desired) => {
                    let report = dataplane.sync_peers(&desired);
                    if report != Default::default() {
                        tracing::info!(
                            added = report.added,
                            removed = report.removed,
                            updated = report.updated,
                            peers = desired.len(),
                            "data plane reconciled"
                        );
                    }
                    applied_revision = revision;
                    next_expiry = store.next_expiry(now).await.ok().flatten();
                }
                Err(e) => tracing::warn!(error = %e, "reconcile failed; retrying"),
            }
        }
        tokio::time::sleep(POLL).await;
    }
}
