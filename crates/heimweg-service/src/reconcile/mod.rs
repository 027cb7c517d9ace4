//! The reconciler: the one path from the store to the running data plane.
//!
//! It watches the store's revision (every write bumps it) and the plan's next wake-up (an
//! expiry, a usage window's edge, an absence's start or end), and on either reads the state, makes the [`plan`] and hands the peers to the data
//! plane through a [`PeerSink`], which touches only the peers that differ. Polling the
//! revision every 200 ms keeps revocation well inside the one second the operators were
//! promised, at the cost of one tiny query; on PostgreSQL a LISTEN/NOTIFY watcher wakes it as
//! soon as any gateway or CLI commits, and on this gateway the service wakes it ([`Handle`])
//! and waits for the pass, so that an enrolled device is a peer before the API answers.

mod plan;
mod shared;

pub use plan::{
    changed_status, plan, DesiredPeer, Hold, ObservedPeer, PeerMeta, PeerPolicy, Plan, State,
    Written,
};
pub use shared::{SharedKey, SharedKeyWatch};

use crate::Service;
use prometheus::{Gauge, IntCounterVec, IntGauge, Opts, Registry};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{watch, Notify};

const POLL: Duration = Duration::from_millis(200);
/// How often handshake times and endpoints are written back to the store for the panel and
/// `heimweg device list`.
const STATUS_EVERY: Duration = Duration::from_secs(10);
/// How long an enrollment waits for the data plane before it answers anyway (the peer
/// follows with the next pass; the client's retry finds it).
const SYNC_WAIT: Duration = Duration::from_secs(2);

/// The data plane as the reconciler sees it.
pub trait PeerSink: Send + Sync + 'static {
    /// Makes the data plane's peers equal `peers`, touching only those that differ. Blocking:
    /// at 100,000 peers a pass takes tens of milliseconds (called off the async threads).
    fn sync(&self, peers: &[DesiredPeer]) -> SyncReport;
    /// What the data plane observed of its peers.
    fn observed(&self) -> Vec<ObservedPeer>;
    /// Where the store last saw devices, by key (see [`record_status_loop`]).
    fn endpoint_hints(&self, hints: &[([u8; 32], SocketAddr)]);
}

/// What a sync changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub added: usize,
    pub removed: usize,
    pub updated: usize,
}

/// Public key → device, as of the last reconcile; read by the per-peer metrics.
pub type Directory = RwLock<HashMap<[u8; 32], PeerMeta>>;

/// The reconciler's own health, for `/metrics`.
pub struct ReconcileMetrics {
    /// Since when the store has been ahead of the data plane; read at every scrape, so a pass
    /// that hangs shows as a growing lag instead of the last value set.
    behind_since: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    applied_revision: IntGauge,
    runs: IntCounterVec,
}

/// `heimweg_reconciler_lag_seconds`, computed when Prometheus asks.
struct LagCollector {
    behind_since: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    desc: prometheus::core::Desc,
}

impl prometheus::core::Collector for LagCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let since = *self.behind_since.lock().unwrap_or_else(|p| p.into_inner());
        let gauge = Gauge::with_opts(Opts::new(
            "heimweg_reconciler_lag_seconds",
            "How long the store has held changes the data plane does not have yet (0: in sync).",
        ))
        .expect("a valid metric");
        gauge.set(since.map_or(0.0, |t| t.elapsed().as_secs_f64()));
        gauge.collect()
    }
}

impl ReconcileMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<ReconcileMetrics> {
        let behind_since = Arc::new(std::sync::Mutex::new(None));
        let lag = LagCollector {
            behind_since: Arc::clone(&behind_since),
            desc: prometheus::core::Desc::new(
                "heimweg_reconciler_lag_seconds".into(),
                "How long the store has held changes the data plane does not have yet (0: in sync)."
                    .into(),
                vec![],
                HashMap::new(),
            )?,
        };
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
        registry.register(Box::new(lag))?;
        registry.register(Box::new(applied_revision.clone()))?;
        registry.register(Box::new(runs.clone()))?;
        Ok(ReconcileMetrics {
            behind_since,
            applied_revision,
            runs,
        })
    }

    /// Records whether (and since when) the data plane is behind the store.
    fn behind(&self, since: Option<tokio::time::Instant>) {
        *self.behind_since.lock().unwrap_or_else(|p| p.into_inner()) =
            since.map(tokio::time::Instant::into_std);
    }
}

/// Asks the reconciler for a pass and waits for it.
#[derive(Clone)]
pub struct Handle {
    kick: Arc<Notify>,
    requested: Arc<AtomicU64>,
    done: watch::Receiver<u64>,
}

impl Handle {
    /// Returns once a pass that started after this call has finished (or after a short
    /// wait, if the store does not answer): everything committed before the call is then in
    /// the data plane.
    pub async fn sync_now(&self) {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.kick.notify_one();
        let mut done = self.done.clone();
        let reached = tokio::time::timeout(SYNC_WAIT, done.wait_for(|d| *d >= ticket)).await;
        if reached.is_err() {
            tracing::warn!("the data plane did not follow within 2 s; it will at its next pass");
        }
    }
}

/// The reconciler of one gateway.
pub struct Reconciler {
    service: Service,
    sink: Arc<dyn PeerSink>,
    directory: Arc<Directory>,
    metrics: ReconcileMetrics,
    kick: Arc<Notify>,
    requested: Arc<AtomicU64>,
    done: watch::Sender<u64>,
}

impl Reconciler {
    /// A reconciler reading through `service` (give it a dedicated reader: it must never queue
    /// behind API readers) and applying to `sink`; the handle goes to the service that answers
    /// enrollments.
    pub fn new(
        service: Service,
        sink: Arc<dyn PeerSink>,
        directory: Arc<Directory>,
        metrics: ReconcileMetrics,
    ) -> (Reconciler, Handle) {
        let kick = Arc::new(Notify::new());
        let requested = Arc::new(AtomicU64::new(0));
        let (done, done_rx) = watch::channel(0);
        let handle = Handle {
            kick: Arc::clone(&kick),
            requested: Arc::clone(&requested),
            done: done_rx,
        };
        (
            Reconciler {
                service,
                sink,
                directory,
                metrics,
                kick,
                requested,
                done,
            },
            handle,
        )
    }

    /// Reads the state and makes the plan for `now`.
    async fn read_plan(&self, now: i64) -> crate::Result<Plan> {
        let state = self.service.plan_state(now).await?;
        Ok(plan(&state, now))
    }

    /// Runs until the task is dropped.
    pub async fn run(self) {
        // On PostgreSQL, other gateways' and CLIs' commits wake the loop at once.
        let mut watcher = match self.service.store.watch().await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "no change notifications; polling only");
                None
            }
        };
        // Writing what the data plane observed waits for the store's write lock like any
        // write; in its own task, a busy store never delays the next reconcile.
        tokio::spawn(record_status_loop(
            self.service.clone(),
            Arc::clone(&self.sink),
        ));
        let mut progress = Progress::default();
        loop {
            // Every request made before this point is covered by this pass.
            let ticket = self.requested.load(Ordering::SeqCst);
            if self.pass(&mut progress).await {
                self.done.send_if_modified(|d| {
                    let moved = ticket > *d;
                    *d = (*d).max(ticket);
                    moved
                });
            }
            match watcher.as_mut() {
                Some(w) => {
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => {}
                        _ = w.changed() => {}
                        _ = self.kick.notified() => {}
                    }
                }
                None => {
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => {}
                        _ = self.kick.notified() => {}
                    }
                }
            }
        }
    }

    /// Makes the data plane equal to the store if the revision moved or an expiry is due;
    /// true when the data plane is in sync afterwards.
    async fn pass(&self, p: &mut Progress) -> bool {
        let now = self.service.now();
        let revision = match self.service.store.revision().await {
            Ok(r) => {
                if std::mem::take(&mut p.store_down) {
                    tracing::info!("the store answers again");
                }
                r
            }
            Err(e) => {
                // The store is unreachable: count it and let the lag grow, so ops see it;
                // log the outage once, not five times a second.
                self.metrics.runs.with_label_values(&["error"]).inc();
                let since = *p.behind_since.get_or_insert_with(tokio::time::Instant::now);
                self.metrics.behind(Some(since));
                if !std::mem::replace(&mut p.store_down, true) {
                    tracing::warn!(error = %e, "the store does not answer; the data plane keeps its peers");
                }
                return false;
            }
        };
        let due = p.wake_at.is_some_and(|t| t <= now);
        if p.applied_revision == Some(revision) && !due {
            return true;
        }
        let since = *p.behind_since.get_or_insert_with(tokio::time::Instant::now);
        self.metrics.behind(Some(since));
        match self.apply(now).await {
            Ok(next) => {
                p.applied_revision = Some(revision);
                p.wake_at = next;
                p.behind_since = None;
                self.metrics.behind(None);
                self.metrics.runs.with_label_values(&["ok"]).inc();
                self.metrics.applied_revision.set(revision);
                true
            }
            Err(e) => {
                self.metrics.runs.with_label_values(&["error"]).inc();
                tracing::warn!(error = %e, "reconcile failed; retrying");
                false
            }
        }
    }

    /// One pass: plan and sync. Returns the plan's next wake-up.
    async fn apply(&self, now: i64) -> Result<Option<i64>, PassError> {
        let plan = self.read_plan(now).await?;
        // A pass at 100,000 peers takes tens of milliseconds, the first one about a second:
        // not on an async thread, where it would hold up the API.
        let sink = Arc::clone(&self.sink);
        let peers = plan.peers;
        let (report, count) = tokio::task::spawn_blocking(move || {
            let report = sink.sync(&peers);
            (report, peers.len())
        })
        .await
        .map_err(|e| PassError::Sync(e.to_string()))?;
        if report != SyncReport::default() {
            tracing::info!(
                added = report.added,
                removed = report.removed,
                updated = report.updated,
                peers = count,
                "data plane reconciled"
            );
        }
        if report.added > 0 {
            self.hint_returning_peers(now).await;
        }
        if let Ok(mut d) = self.directory.write() {
            *d = plan.directory;
        }
        Ok(plan.wake_at)
    }

    /// A device that comes back minutes after it was cut off (an activation, an absence ended
    /// early, a window reopened) still sends under the session the gateway dropped, and a
    /// stock client waits 15 s of silence before it starts a handshake of its own. With its
    /// last endpoint as a hint, its first packet makes the gateway start the handshake at once.
    /// Endpoints older than the client's keys can live are left out: such a client starts the
    /// handshake itself.
    async fn hint_returning_peers(&self, now: i64) {
        if let Err(e) = hint_endpoints(&self.service, &self.sink, now - RETURNING_PEER_SECS).await {
            tracing::warn!(error = %e, "reading where returning devices were seen failed");
        }
    }
}

/// Hands the data plane, as endpoint hints, where any gateway on the database last saw the
/// devices with a handshake since `since`.
async fn hint_endpoints(
    service: &Service,
    sink: &Arc<dyn PeerSink>,
    since: i64,
) -> crate::Result<()> {
    let hints: Vec<([u8; 32], SocketAddr)> = service
        .store
        .endpoints_seen_since(since)
        .await?
        .into_iter()
        .map(|(key, addr)| (*key.as_bytes(), addr))
        .collect();
    if !hints.is_empty() {
        let sink = Arc::clone(sink);
        let _ = tokio::task::spawn_blocking(move || sink.endpoint_hints(&hints)).await;
    }
    Ok(())
}

/// How far back a returning device's endpoint counts: three times WireGuard's
/// `REJECT_AFTER_TIME` (180 s), past which no client uses its old keys.
const RETURNING_PEER_SECS: i64 = 540;

/// Where the reconciler stands between passes.
#[derive(Default)]
struct Progress {
    applied_revision: Option<i64>,
    /// The plan's next wake-up (an expiry, a window's edge, an absence's start or end).
    wake_at: Option<i64>,
    /// When the store was first seen ahead of the data plane; `None` while in sync.
    behind_since: Option<tokio::time::Instant>,
    store_down: bool,
}

/// The two ways a pass fails.
#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error(transparent)]
    Read(#[from] crate::ServiceError),
    #[error("the peer sync failed: {0}")]
    Sync(String),
}

impl Service {
    /// What the reconciler's plan for `now` is made from.
    async fn plan_state(&self, now: i64) -> crate::Result<State> {
        let settings = self.store.settings().await?;
        Ok(State {
            groups: self.store.groups().await?,
            devices: self.store.unrevoked_peers().await?,
            absences: self.store.absence_spans(now).await?,
            activations: self.store.activation_spans(now).await?,
            pools: vec![settings.pool_v4.into(), settings.pool_v6.into()],
        })
    }

    /// Why the plan holds `d` out of the data plane now, if it does (its group's window is
    /// closed, it or its owner is absent, its owner has not signed in to connect): the plan's
    /// own answer for this one device.
    pub async fn device_hold(&self, d: &heimweg_store::Device) -> crate::Result<Option<Hold>> {
        if d.revoked_at.is_some() {
            return Ok(None);
        }
        let now = self.now();
        let owner_id = match &d.owner {
            Some(o) => match self.store.user(o, now).await {
                Ok(u) => Some(u.id),
                Err(heimweg_store::StoreError::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let groups = self.store.groups().await?;
        let group_id = groups
            .iter()
            .find(|g| g.name.key() == d.group.key())
            .map_or(-1, |g| g.id);
        let state = State {
            groups,
            devices: vec![heimweg_store::ActivePeer {
                device_id: d.id,
                name: d.name.clone(),
                public_key: d.public_key,
                preshared_key: None,
                ipv4: d.ipv4,
                ipv6: d.ipv6,
                group_id,
                owner_id,
                expires_at: d.expires_at,
            }],
            absences: self.store.absence_spans(now).await?,
            activations: self.store.activation_spans(now).await?,
            pools: Vec::new(),
        };
        Ok(plan(&state, now).held.get(&d.id).copied())
    }

    /// The plan's directory now (public key → device): who the data plane's peers are, for
    /// `heimweg status`.
    pub async fn peer_directory(&self) -> crate::Result<HashMap<[u8; 32], PeerMeta>> {
        let now = self.now();
        let state = self.plan_state(now).await?;
        Ok(plan(&state, now).directory)
    }
}

/// Every [`STATUS_EVERY`], writes back what changed in the data plane's view of its peers, and
/// reads where every gateway on the database last saw each device, for the data plane's
/// endpoint hints (a failover). The first read, at start, takes every device's; later ones the
/// devices with a handshake in the last few rounds (written back by their gateway within a
/// round of it).
async fn record_status_loop(service: Service, sink: Arc<dyn PeerSink>) {
    let mut written = Written::new();
    let mut shared_keys = SharedKeyWatch::default();
    let mut hints_since = 0;
    let mut tick = tokio::time::interval(STATUS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let observed = {
            let sink = Arc::clone(&sink);
            match tokio::task::spawn_blocking(move || sink.observed()).await {
                Ok(o) => o,
                Err(_) => continue,
            }
        };
        let now = service.now();
        for shared in shared_keys.observe(&observed, now) {
            flag_shared_key(&service, &shared, now).await;
        }
        let seen = changed_status(&observed, &mut written);
        if let Err(e) = service.store.record_status(&seen).await {
            tracing::warn!(error = %e, "recording peer status failed");
            written.clear();
        }
        match hint_endpoints(&service, &sink, hints_since).await {
            Ok(()) => hints_since = now - 3 * STATUS_EVERY.as_secs() as i64,
            Err(e) => tracing::warn!(error = %e, "reading where devices were seen failed"),
        }
    }
}

/// Flags a key seen used from two places in the store (audited once an hour per device) and,
/// if the settings say so, suspends its device; the reconciler follows the store's revision.
async fn flag_shared_key(service: &Service, shared: &SharedKey, now: i64) {
    let Ok(key) = heimweg_control::PublicKey::from_bytes(shared.public_key) else {
        return;
    };
    let hours = match service.store.settings().await {
        Ok(s) => s.shared_key_suspend_hours,
        Err(e) => {
            tracing::warn!(error = %e, "reading the settings failed");
            return;
        }
    };
    let addresses = format!("{} and {}", shared.addresses.0, shared.addresses.1);
    match service
        .store
        .flag_shared_key(&key, &addresses, hours, now)
        .await
    {
        Ok(Some(device)) => tracing::warn!(
            %device,
            %addresses,
            suspended_hours = hours,
            "a device's key is used from two places at once"
        ),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "flagging a shared key failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(registry: &Registry) -> f64 {
        registry
            .gather()
            .iter()
            .find(|f| f.name() == "heimweg_reconciler_lag_seconds")
            .map(|f| f.get_metric()[0].get_gauge().get_value())
            .expect("the lag is exported")
    }

    #[test]
    fn the_lag_grows_while_a_pass_hangs_and_is_zero_in_sync() {
        let registry = Registry::new();
        let metrics = ReconcileMetrics::register(&registry).unwrap();
        assert_eq!(lag(&registry), 0.0);
        let since = tokio::time::Instant::now() - Duration::from_secs(3);
        metrics.behind(Some(since));
        // Nothing else happens (the pass hangs): every scrape still sees the lag grow.
        let first = lag(&registry);
        assert!(first >= 3.0, "{first}");
        std::thread::sleep(Duration::from_millis(20));
        assert!(lag(&registry) > first);
        metrics.behind(None);
        assert_eq!(lag(&registry), 0.0);
    }
}
