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
use prometheus::{Gauge, IntCounterVec, IntGauge, Opts, Registry};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
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

/// What the metrics need to know about a peer the data plane only knows by key.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerMeta {
    pub device_id: i64,
    pub name: String,
    pub group: String,
}

/// Public key → device, as of the last reconcile; read by the per-peer metrics.
pub type Directory = RwLock<HashMap<[u8; 32], PeerMeta>>;

/// The desired state at `now`: the peers the data plane should have, and who they are.
pub struct Desired {
    pub peers: Vec<PeerSpec>,
    pub directory: HashMap<[u8; 32], PeerMeta>,
}

/// The peers the data plane should have at `now`.
pub async fn desired_peers(store: &Store, now: i64) -> Result<Desired> {
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
    let group_names: HashMap<i64, &str> = groups.iter().map(|g| (g.id, g.name.as_str())).collect();
    let active = store.active_peers(now).await?;
    let directory = active
        .iter()
        .map(|p| {
            (
                *p.public_key.as_bytes(),
                PeerMeta {
                    device_id: p.device_id,
                    name: p.name.clone(),
                    group: group_names.get(&p.group_id).unwrap_or(&"").to_string(),
                },
            )
        })
        .collect();
    let peers = active
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
        .collect();
    Ok(Desired { peers, directory })
}

/// The reconciler's own health, for `/metrics`.
pub struct ReconcileMetrics {
    lag: Gauge,
    applied_revision: IntGauge,
    runs: IntCounterVec,
}

impl ReconcileMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<ReconcileMetrics> {
        let lag = Gauge::new(
            "heimweg_reconciler_lag_seconds",
            "How long the store has held changes the data plane does not have yet (0: in sync).",
        )?;
        let applied_revision = IntGauge::new(
            "heimweg_reconciler_applied_revision",
            "The store revision the data plane was last made equal to.",
        )?;
        let runs = IntCounterVec::new(
            Opts::new(
                "heimweg_reconciler_runs_total",
                "Reconcile attempts by result (ok, error).",
            ),
            &["result"],
        )?;
        registry.register(Box::new(lag.clone()))?;
        registry.register(Box::new(applied_revision.clone()))?;
        registry.register(Box::new(runs.clone()))?;
        Ok(ReconcileMetrics {
            lag,
            applied_revision,
            runs,
        })
    }
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

/// Every [`STATUS_EVERY`], writes back what changed in the data plane's view of its peers.
async fn record_status_loop(store: Arc<Store>, dataplane: Arc<DataPlane>) {
    let mut written = HashMap::new();
    let mut tick = tokio::time::interval(STATUS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let seen = changed_status(&dataplane, &mut written);
        if let Err(e) = store.record_status(&seen).await {
            tracing::warn!(error = %e, "recording peer status failed");
            written.clear();
        }
    }
}

/// Runs until the task is dropped.
pub async fn run(
    store: Arc<Store>,
    dataplane: Arc<DataPlane>,
    directory: Arc<Directory>,
    metrics: ReconcileMetrics,
) {
    // On PostgreSQL, other gateways' and CLIs' commits wake the loop at once.
    let mut watcher = match store.watch().await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "no change notifications; polling only");
            None
        }
    };
    // Writing what the data plane observed waits for the store's write lock like any write;
    // in its own task, a busy store never delays the next reconcile.
    tokio::spawn(record_status_loop(
        Arc::clone(&store),
        Arc::clone(&dataplane),
    ));
    let mut applied_revision = None;
    let mut next_expiry: Option<i64> = None;
    // When the store was first seen ahead of the data plane; None while in sync.
    let mut behind_since: Option<tokio::time::Instant> = None;
    let mut store_down = false;
    loop {
        let now = unix_now();
        let revision = match store.revision().await {
            Ok(r) => {
                if std::mem::take(&mut store_down) {
                    tracing::info!("the store answers again");
                }
                Some(r)
            }
            Err(e) => {
                // The store is unreachable: count it and let the lag grow, so ops see it; log
                // the outage once, not five times a second.
                metrics.runs.with_label_values(&["error"]).inc();
                behind_since.get_or_insert_with(tokio::time::Instant::now);
                if !std::mem::replace(&mut store_down, true) {
                    tracing::warn!(error = %e, "the store does not answer; the data plane keeps its peers");
                }
                None
            }
        };
        let due = next_expiry.is_some_and(|t| t <= now);
        if revision.is_some() && (revision != applied_revision || due) {
            behind_since.get_or_insert_with(tokio::time::Instant::now);
            match desired_peers(&store, now).await {
                Ok(desired) => {
                    // A pass at 100,000 peers takes tens of milliseconds, the first one about
                    // a second: not on an async thread, where it would hold up the API.
                    let (dp, peers) = (Arc::clone(&dataplane), desired.peers);
                    let synced =
                        tokio::task::spawn_blocking(move || (dp.sync_peers(&peers), peers.len()))
                            .await;
                    let (report, count) = match synced {
                        Ok(r) => r,
                        Err(e) => {
                            metrics.runs.with_label_values(&["error"]).inc();
                            tracing::error!(error = %e, "the peer sync failed; retrying");
                            tokio::time::sleep(POLL).await;
                            continue;
                        }
                    };
                    if report != Default::default() {
                        tracing::info!(
                            added = report.added,
                            removed = report.removed,
                            updated = report.updated,
                            peers = count,
                            "data plane reconciled"
                        );
                    }
                    if let Ok(mut d) = directory.write() {
                        *d = desired.directory;
                    }
                    applied_revision = revision;
                    behind_since = None;
                    metrics.runs.with_label_values(&["ok"]).inc();
                    metrics.applied_revision.set(revision.unwrap_or(0));
                    // Unknown is not "never": on an error, look again in a second, or an
                    // expired device would stay connected until the next unrelated change.
                    next_expiry = match store.next_expiry(now).await {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::warn!(error = %e, "reading the next expiry failed");
                            Some(now + 1)
                        }
                    };
                }
                Err(e) => {
                    metrics.runs.with_label_values(&["error"]).inc();
                    tracing::warn!(error = %e, "reconcile failed; retrying");
                }
            }
        }
        metrics
            .lag
            .set(behind_since.map_or(0.0, |t| t.elapsed().as_secs_f64()));
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
