//! The reconciler: the one path from the store to the running data plane.
//!
//! It watches the store's revision (every write bumps it) and the next device expiry, and on
//! either rebuilds the desired peer set — every device that is neither revoked nor expired,
//! with its group's access policy — and hands it to [`DataPlane::sync_peers`], which touches
//! only the peers that differ. Polling the revision every 200 ms keeps revocation well inside
//! the one second the operators were promised, at the cost of one tiny query; on PostgreSQL a
//! LISTEN/NOTIFY watcher wakes it as soon as any gateway or CLI commits.

use anyhow::Result;
use heimweg_control::PublicKey;
use heimweg_core::{IpNetwork, Policy};
use heimweg_dataplane::{DataPlane, PeerSpec};
use heimweg_store::{PeerStatus, Store};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const POLL: Duration = Duration::from_millis(200);
/// How often handshake times and endpoints are written back to the store for the panel and
/// `heimweg device list`.
const STATUS_EVERY: Duration = Duration::from_secs(10);

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

/// What the data plane observed of each peer since the last write, as store rows. Only
/// entries that differ from `written` are returned, so an idle gateway writes nothing.
fn changed_status(
    dataplane: &DataPlane,
    written: &mut HashMap<[u8; 32], (Option<i64>, Option<String>)>,
) -> Vec<PeerStatus> {
    use heimweg_dataplane::uapi::UapiHandler;
    let snapshot = UapiHandler::get(dataplane);
    let mut out = Vec::new();
    for p in snapshot.peers {
        let at = p
            .last_handshake
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        let endpoint = p.endpoint.map(|e| e.to_string());
        let value = (at, endpoint.clone());
        if written.get(&p.public_key) == Some(&value) || (at.is_none() && endpoint.is_none()) {
            continue;
        }
        let Ok(public_key) = PublicKey::from_bytes(p.public_key) else {
            continue;
        };
        written.insert(p.public_key, value);
        out.push(PeerStatus {
            public_key,
            last_handshake_at: at,
            last_endpoint: endpoint,
        });
    }
    out
}

/// Runs until the task is dropped.
pub async fn run(store: Arc<Store>, dataplane: Arc<DataPlane>) {
    // On PostgreSQL, other gateways' and CLIs' commits wake the loop at once.
    let mut watcher = match store.watch().await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "no change notifications; polling only");
            None
        }
    };
    let mut applied_revision = None;
    let mut next_expiry: Option<i64> = None;
    let mut written = HashMap::new();
    let mut last_status = tokio::time::Instant::now();
    loop {
        if last_status.elapsed() >= STATUS_EVERY {
            last_status = tokio::time::Instant::now();
            let seen = changed_status(&dataplane, &mut written);
            if let Err(e) = store.record_status(&seen).await {
                tracing::warn!(error = %e, "recording peer status failed");
                written.clear();
            }
        }
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
        match watcher.as_mut() {
            Some(w) => {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = w.changed() => {}
                }
            }
            None => tokio::time::sleep(POLL).await,
        }
    }
}
