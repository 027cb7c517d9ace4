//! The operations endpoint on its own listener (default 127.0.0.1:9586, the port WireGuard
//! exporters use): `/metrics` for Prometheus, `/healthz` (the process answers) and `/readyz`
//! (the data plane runs and the store answers).
//!
//! Data-plane series are read at scrape time from one snapshot, so they cost nothing between
//! scrapes and a removed peer's series disappear with it. Aggregates only by default;
//! per-peer series are opt-in, capped, and keyed by the device's id: names appear (in
//! `heimweg_peer_info`) only when asked for, and endpoints never. The devices about to expire
//! are counted in the store at scrape time too.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use heimweg_core::DropReason;
use heimweg_dataplane::DataPlane;
use heimweg_service::reconcile::Directory;
use heimweg_service::Service;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    CounterVec, Encoder, GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

/// What the operator chose for per-peer series.
#[derive(Clone, Copy, Debug, Default)]
pub struct PerPeer {
    /// At most this many peers get series (0: none). Peers are taken in device-id order, so
    /// the set is stable between scrapes.
    pub max: usize,
    /// Put device names into `heimweg_peer_info` (personal data in the TSDB: opt-in).
    pub names: bool,
}

/// Builds the registry: process metrics, build info, the data plane collector.
pub fn registry(
    dataplane: Arc<DataPlane>,
    directory: Arc<Directory>,
    per_peer: PerPeer,
) -> prometheus::Result<Registry> {
    let registry = Registry::new();
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    let build = IntGaugeVec::new(
        Opts::new(
            "heimweg_build_info",
            "The running heimweg's version; always 1.",
        ),
        &["version"],
    )?;
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    registry.register(Box::new(build))?;
    registry.register(Box::new(DataPlaneCollector::new(
        dataplane, directory, per_peer,
    )?))?;
    Ok(registry)
}

/// Series filled from a [`heimweg_dataplane::MetricsSnapshot`] on every scrape.
struct DataPlaneCollector {
    dataplane: Arc<DataPlane>,
    directory: Arc<Directory>,
    per_peer: PerPeer,
    interface: String,
    /// Serialises scrapes: each one resets the series and refills them.
    series: Mutex<Series>,
    descs: Vec<Desc>,
}

struct Series {
    peers: IntGaugeVec,
    handshakes: IntCounterVec,
    packets: IntCounterVec,
    bytes: IntCounterVec,
    compat_rx: IntCounterVec,
    compat_tx: IntCounterVec,
    drops: IntCounterVec,
    queue: IntGauge,
    busy: CounterVec,
    errors: IntCounterVec,
    offload: IntGaugeVec,
    peer_rx: IntCounterVec,
    peer_tx: IntCounterVec,
    peer_handshake: GaugeVec,
    peer_info: IntGaugeVec,
}

impl Series {
    // One declaration per family, with its help text: a list, read top to bottom.
    #[allow(clippy::too_many_lines)]
    fn new() -> prometheus::Result<Series> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        Ok(Series {
            peers: IntGaugeVec::new(
                Opts::new(
                    "heimweg_peers",
                    "Peers by state: configured, or active (a handshake in the last 180 s).",
                ),
                &["state"],
            )?,
            handshakes: counter(
                "heimweg_handshakes_total",
                "Handshake initiations by result: ok, cookie_sent (answered with a cookie \
                 under load), rate_limited (per-source limit, full queue, or waited past the \
                 client's retransmit), invalid; and prompted: handshakes the gateway started \
                 because a device's traffic arrived under another gateway's session.",
                &["result"],
            )?,
            packets: counter(
                "heimweg_packets_total",
                "Data packets through the tunnel by direction (rx: from peers, tx: to peers).",
                &["direction"],
            )?,
            bytes: counter(
                "heimweg_bytes_total",
                "Bytes through the tunnel by direction (rx: from peers, tx: to peers).",
                &["direction"],
            )?,
            compat_rx: counter(
                "wireguard_interface_received_bytes_total",
                "Bytes received on the interface (wg-portal's name, for existing dashboards).",
                &["interface"],
            )?,
            compat_tx: counter(
                "wireguard_interface_sent_bytes_total",
                "Bytes sent on the interface (wg-portal's name, for existing dashboards).",
                &["interface"],
            )?,
            drops: counter(
                "heimweg_dropped_packets_total",
                "Packets dropped, by reason; every dropped packet is counted exactly once.",
                &["reason"],
            )?,
            queue: IntGauge::new(
                "heimweg_handshake_queue_depth",
                "Handshake initiations waiting for a worker; once they would take more than \
                 3 s to answer (measured cost per handshake), the gateway answers new ones with \
                 cookies.",
            )?,
            busy: CounterVec::new(
                Opts::new(
                    "heimweg_worker_busy_seconds_total",
                    "Time each worker spent processing rather than waiting.",
                ),
                &["worker"],
            )?,
            errors: counter(
                "heimweg_dataplane_errors_total",
                "I/O errors in the data plane by kind: udp_receive, udp_send_dropped \
                 (datagrams a full socket refused), tun_write.",
                &["kind"],
            )?,
            offload: IntGaugeVec::new(
                Opts::new(
                    "heimweg_dataplane_offload",
                    "Offloads in use (1) or not (0): tun_tso and tun_uso (the TUN hands over \
                     TCP and UDP super-packets), udp_gso (one send per run of datagrams; 0 \
                     after the kernel refused it). Without them the gateway needs several \
                     times the CPU per GB.",
                ),
                &["kind"],
            )?,
            peer_rx: counter(
                "heimweg_peer_received_bytes_total",
                "Bytes received from a peer (opt-in per-peer series).",
                &["device_id"],
            )?,
            peer_tx: counter(
                "heimweg_peer_sent_bytes_total",
                "Bytes sent to a peer (opt-in per-peer series).",
                &["device_id"],
            )?,
            peer_handshake: GaugeVec::new(
                Opts::new(
                    "heimweg_peer_last_handshake_timestamp_seconds",
                    "Unix time of a peer's last handshake (opt-in per-peer series).",
                ),
                &["device_id"],
            )?,
            peer_info: IntGaugeVec::new(
                Opts::new(
                    "heimweg_peer_info",
                    "A peer's group (and name, if enabled); always 1. Join on device_id.",
                ),
                &["device_id", "group", "device"],
            )?,
        })
    }

    fn collectors(&self) -> Vec<&dyn Collector> {
        vec![
            &self.peers,
            &self.handshakes,
            &self.packets,
            &self.bytes,
            &self.compat_rx,
            &self.compat_tx,
            &self.drops,
            &self.queue,
            &self.busy,
            &self.errors,
            &self.offload,
            &self.peer_rx,
            &self.peer_tx,
            &self.peer_handshake,
            &self.peer_info,
        ]
    }
}

impl DataPlaneCollector {
    fn new(
        dataplane: Arc<DataPlane>,
        directory: Arc<Directory>,
        per_peer: PerPeer,
    ) -> prometheus::Result<DataPlaneCollector> {
        let series = Series::new()?;
        let descs = series
            .collectors()
            .iter()
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect();
        Ok(DataPlaneCollector {
            interface: dataplane.interface().to_string(),
            dataplane,
            directory,
            per_peer,
            series: Mutex::new(series),
            descs,
        })
    }

    fn fill(&self, s: &Series) {
        let m = self.dataplane.metrics();
        let c = &m.counters;
        s.peers
            .with_label_values(&["configured"])
            .set(m.peers as i64);
        s.peers
            .with_label_values(&["active"])
            .set(m.active_peers as i64);
        let set = |v: &IntCounterVec, label: &str, n: u64| {
            let counter = v.with_label_values(&[label]);
            counter.reset();
            counter.inc_by(n);
        };
        set(&s.handshakes, "ok", c.handshakes_ok);
        set(&s.handshakes, "cookie_sent", c.cookies_sent);
        set(&s.handshakes, "prompted", c.handshakes_prompted);
        set(
            &s.handshakes,
            "rate_limited",
            c.drops(DropReason::HandshakeRateLimited)
                + c.drops(DropReason::HandshakeQueueFull)
                + c.drops(DropReason::HandshakeStale),
        );
        set(
            &s.handshakes,
            "invalid",
            c.drops(DropReason::HandshakeInvalid)
                + c.drops(DropReason::InvalidMac)
                + c.drops(DropReason::HandshakeReplay),
        );
        set(&s.packets, "rx", c.rx_packets);
        set(&s.packets, "tx", c.tx_packets);
        set(&s.bytes, "rx", c.rx_bytes);
        set(&s.bytes, "tx", c.tx_bytes);
        set(&s.compat_rx, &self.interface, c.rx_bytes);
        set(&s.compat_tx, &self.interface, c.tx_bytes);
        for (reason, n) in c.drop_counts() {
            set(&s.drops, reason.as_str(), n);
        }
        s.queue.set(m.handshake_queue_depth as i64);
        for (i, secs) in m.worker_busy_seconds.iter().enumerate() {
            let w = s.busy.with_label_values(&[&i.to_string()]);
            w.reset();
            w.inc_by(*secs);
        }
        set(&s.errors, "udp_receive", m.udp_recv_errors);
        set(&s.errors, "udp_send_dropped", m.udp_send_dropped);
        set(&s.errors, "tun_write", m.tun_write_errors);
        for (kind, on) in [
            ("tun_tso", m.tun_tso),
            ("tun_uso", m.tun_uso),
            ("udp_gso", m.udp_gso),
        ] {
            s.offload.with_label_values(&[kind]).set(i64::from(on));
        }
        if self.per_peer.max > 0 {
            self.fill_peers(s);
        }
    }

    fn fill_peers(&self, s: &Series) {
        use heimweg_dataplane::uapi::UapiHandler;
        // Peers that left since the last scrape must not linger.
        s.peer_rx.reset();
        s.peer_tx.reset();
        s.peer_handshake.reset();
        s.peer_info.reset();
        let Ok(directory) = self.directory.read() else {
            return;
        };
        let mut peers: Vec<_> = UapiHandler::get(&*self.dataplane)
            .peers
            .into_iter()
            .filter_map(|p| directory.get(&p.public_key).map(|meta| (meta.clone(), p)))
            .collect();
        peers.sort_by_key(|(meta, _)| meta.device_id);
        for (meta, p) in peers.into_iter().take(self.per_peer.max) {
            let id = meta.device_id.to_string();
            s.peer_rx.with_label_values(&[&id]).inc_by(p.rx_bytes);
            s.peer_tx.with_label_values(&[&id]).inc_by(p.tx_bytes);
            let at = p
                .last_handshake
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64());
            s.peer_handshake.with_label_values(&[&id]).set(at);
            let name = if self.per_peer.names {
                meta.name.as_str()
            } else {
                ""
            };
            s.peer_info
                .with_label_values(&[&id, &meta.group, name])
                .set(1);
        }
    }
}

impl Collector for DataPlaneCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Ok(series) = self.series.lock() else {
            return Vec::new();
        };
        self.fill(&series);
        series
            .collectors()
            .iter()
            .flat_map(|c| c.collect())
            // An opt-in family with no peers yet is left out rather than sent empty.
            .filter(|f| !f.get_metric().is_empty())
            .collect()
    }
}

/// How far ahead `heimweg_devices_expiring` looks: its `within` labels and their seconds.
const EXPIRING_WITHIN: [(&str, i64); 2] = [("1d", 86_400), ("7d", 604_800)];

/// The store's answer about expiring devices must not hold up a scrape for long.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct OpsState {
    registry: Registry,
    dataplane: Arc<DataPlane>,
    service: Service,
    expiring: IntGaugeVec,
}

/// The router of the operations listener; registers the series it fills itself.
pub fn router(
    registry: Registry,
    dataplane: Arc<DataPlane>,
    service: Service,
) -> prometheus::Result<Router> {
    let expiring = IntGaugeVec::new(
        Opts::new(
            "heimweg_devices_expiring",
            "Active devices whose expiry falls within the next day (within=1d) or week \
             (within=7d); they stop working then unless someone extends them.",
        ),
        &["within"],
    )?;
    registry.register(Box::new(expiring.clone()))?;
    Ok(Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(OpsState {
            registry,
            dataplane,
            service,
            expiring,
        }))
}

/// Counts the devices about to expire. The collectors run synchronously inside `gather`, so
/// the store is asked here, before it; when it does not answer, the series keep their last
/// values (an alert on them holds rather than flaps) and the log says why.
async fn count_expiring(st: &OpsState) {
    let within = EXPIRING_WITHIN.map(|(_, secs)| secs);
    match tokio::time::timeout(STORE_TIMEOUT, st.service.devices_expiring(&within)).await {
        Ok(Ok(counts)) => {
            for ((label, _), n) in EXPIRING_WITHIN.iter().zip(counts) {
                st.expiring.with_label_values(&[label]).set(n);
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics: counting the expiring devices failed");
        }
        Err(_) => {
            tracing::warn!("metrics: the store did not count the expiring devices within 2 s")
        }
    }
}

async fn metrics(State(st): State<OpsState>) -> Response {
    count_expiring(&st).await;
    // Gathering takes the data plane's lock briefly: do it off the async threads.
    let registry = st.registry.clone();
    let families = match tokio::task::spawn_blocking(move || registry.gather()).await {
        Ok(f) => f,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let mut body = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&families, &mut body) {
        tracing::error!(error = %e, "encoding metrics failed");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(header::CONTENT_TYPE, encoder.format_type().to_string())],
        body,
    )
        .into_response()
}

/// Ready when the data plane still has its interface and the store answers within 2 s.
async fn readyz(State(st): State<OpsState>) -> Response {
    if st.dataplane.tun_gone() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the data plane lost its interface\n",
        )
            .into_response();
    }
    match tokio::time::timeout(STORE_TIMEOUT, st.service.revision()).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the store failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: the store does not answer\n",
            )
                .into_response()
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the store did not answer within 2 s\n",
        )
            .into_response(),
    }
}
