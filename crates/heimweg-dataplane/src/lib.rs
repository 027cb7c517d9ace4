//! heimweg-dataplane: runs the sans-IO core over a real TUN device and real UDP sockets.
//!
//! [`DataPlane::start`] creates the TUN (one queue per worker), binds one `SO_REUSEPORT` UDP
//! socket per worker on the listen port and starts one worker thread per core. Each worker waits
//! on its TUN queue, its socket and a wake-up eventfd, feeds what arrives to the shared
//! [`heimweg_core::Device`] in batches and sends what comes out. The [`DataPlane`] value is the
//! handle through which everything else changes peers and reads state; [`uapi`] exposes the same
//! handle over WireGuard's cross-platform UAPI socket so the stock `wg` tool works.
//!
//! It deliberately does not know about the store, the API or the panel: the control plane
//! reaches it only through this handle. Every syscall lives in `heimweg-sys`.

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod offload;
pub mod uapi;
mod worker;

use heimweg_core::{AdmissionConfig, Device, DropReason, IpNetwork, Key, Policy};
use heimweg_sys::poll::EventFd;
use heimweg_sys::tun::{Offload, Tun};
use heimweg_sys::udp::UdpSocket;
use parking_lot::{Mutex, RwLockReadGuard, RwLockUpgradableReadGuard, RwLockWriteGuard};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use uapi::{DeviceSnapshot, PeerChange, PeerSnapshot, SetRequest, UapiError, UapiHandler};

/// Socket buffers sized for bursts: a 2-core gateway can fall behind by several milliseconds
/// of line-rate traffic while it does handshakes, and the kernel's default (~200 KiB) overflows.
const SOCKET_BUFFER_BYTES: usize = 7 << 20;

/// Longest a peer sync holds the peer table for writing at a time (a batch of packets takes
/// about as long): at 100,000 peers a whole pass takes tens of milliseconds, which the workers
/// must not spend waiting.
const SYNC_HOLD: Duration = Duration::from_millis(1);
/// Most changes a peer sync collects before it applies them: removing or updating one takes a
/// few microseconds, so a piece stays near [`SYNC_HOLD`].
const SYNC_PIECE: usize = 256;

/// How to bring the data plane up.
#[derive(Clone, Debug)]
pub struct Config {
    /// Name of the TUN interface (at most 15 bytes).
    pub interface: String,
    /// Worker threads, each with a TUN queue and a UDP socket. 0 = one per core.
    pub workers: usize,
    /// UDP port; 0 = a random free port (as wireguard-go does until `wg set listen-port`).
    pub listen_port: u16,
    /// MTU set on the interface; wireguard-go's default is 1420 (1500 minus IPv6+UDP+WireGuard).
    pub mtu: u32,
    /// Addresses put on the interface. Empty for the standalone mode, where wg-quick does it.
    pub addresses: Vec<InterfaceAddress>,
    /// Whether to set the link up; wg-quick does it itself in the standalone mode.
    pub set_up: bool,
    pub private_key: Option<Key>,
    pub admission: AdmissionConfig,
}

impl Config {
    pub fn new(interface: impl Into<String>) -> Config {
        Config {
            interface: interface.into(),
            workers: 0,
            listen_port: 0,
            mtu: 1420,
            addresses: Vec::new(),
            set_up: false,
            private_key: None,
            admission: AdmissionConfig::default(),
        }
    }
}

/// An address of the interface itself: unlike an allowed-IP prefix it keeps its host part
/// (`10.77.0.1/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl std::str::FromStr for InterfaceAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX, e.g. 10.77.0.1/24"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let prefix_len: u8 = len
            .parse()
            .map_err(|_| format!("{len:?} is not a prefix length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(format!("prefix length {prefix_len} is longer than {max}"));
        }
        Ok(InterfaceAddress { addr, prefix_len })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("creating TUN interface {name}")]
    Tun {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("configuring interface {name}")]
    Interface {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("binding UDP port {port}")]
    Bind {
        port: u16,
        #[source]
        source: io::Error,
    },
    #[error("creating worker wake-up eventfd or thread")]
    Worker(#[source] io::Error),
}

/// A peer as the control plane wants it.
#[derive(Clone, Debug)]
pub struct PeerSpec {
    pub public_key: Key,
    pub preshared_key: Option<Key>,
    pub allowed_ips: Vec<IpNetwork>,
    /// The group's access policy; shared between the group's peers.
    pub policy: Option<Arc<Policy>>,
}

/// What [`DataPlane::sync_peers`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub added: usize,
    pub removed: usize,
    pub updated: usize,
}

/// The UDP sockets of one listen port, one per worker.
pub(crate) struct Sockets {
    pub port: u16,
    pub list: Vec<UdpSocket>,
}

/// State shared between the handle and the workers.
pub(crate) struct Shared {
    /// Workers share it for reading (packets change only per-peer state inside); changes to
    /// the peer set take it for writing.
    pub device: parking_lot::RwLock<Device>,
    pub tuns: Vec<Tun>,
    pub sockets: RwLock<Arc<Sockets>>,
    /// Bumped whenever `sockets` is replaced, so workers notice without taking the lock.
    pub sockets_generation: AtomicU64,
    pub wakers: Vec<EventFd>,
    pub shutdown: AtomicBool,
    pub fwmark: AtomicU32,
    /// Set by a worker that lost its TUN (the interface was deleted): the process should exit.
    pub tun_gone: AtomicBool,
    /// One per worker, written only by that worker.
    pub worker_stats: Vec<WorkerStats>,
}

/// What one worker counts outside the core: its busy time and the I/O errors that lose
/// packets after the core has handled them.
#[derive(Default)]
pub(crate) struct WorkerStats {
    pub busy_ns: AtomicU64,
    pub udp_recv_errors: AtomicU64,
    /// Datagrams the socket refused (a full send buffer), dropped as a router would.
    pub udp_send_dropped: AtomicU64,
    pub tun_write_errors: AtomicU64,
}

/// A point-in-time view of the data plane for metrics.
#[derive(Clone, Debug)]
pub struct MetricsSnapshot {
    pub counters: heimweg_core::Counters,
    pub handshake_queue_depth: usize,
    pub peers: usize,
    /// Peers with a handshake in the last [`ACTIVE_WINDOW`].
    pub active_peers: usize,
    /// Per worker: seconds spent processing (not waiting).
    pub worker_busy_seconds: Vec<f64>,
    pub udp_recv_errors: u64,
    pub udp_send_dropped: u64,
    pub tun_write_errors: u64,
    /// The TUN hands over TCP super-packets (TSO), and UDP ones (USO).
    pub tun_tso: bool,
    pub tun_uso: bool,
    /// Every worker's socket still sends with UDP GSO (the kernel may refuse it for good).
    pub udp_gso: bool,
}

/// A peer counts as active (connected) with a handshake this recent: WireGuard rekeys every
/// two minutes while traffic flows, so 180 s covers a live session with margin.
pub const ACTIVE_WINDOW: std::time::Duration = std::time::Duration::from_secs(180);

impl Shared {
    /// The device for packets and reading: shared by all workers at once. (parking_lot's
    /// locks do not poison: a worker that panicked while holding it leaves a consistent
    /// `Device` behind, since every method finishes its own bookkeeping.)
    pub fn device(&self) -> RwLockReadGuard<'_, Device> {
        self.device.read()
    }

    /// The device for changing the peer set: waits for the workers' current batches.
    pub fn device_mut(&self) -> RwLockWriteGuard<'_, Device> {
        self.device.write()
    }

    fn wake_all(&self) {
        for w in &self.wakers {
            let _ = w.notify();
        }
    }
}

/// The running data plane, and the handle to change it.
pub struct DataPlane {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    interface: String,
}

impl DataPlane {
    /// Creates the interface and sockets and starts the workers.
    pub fn start(config: Config, seed: u64) -> Result<DataPlane, StartError> {
        let workers = if config.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.workers
        };
        let tun_err = |source| StartError::Tun {
            name: config.interface.clone(),
            source,
        };
        let mut tuns = Vec::with_capacity(workers);
        for _ in 0..workers {
            let tun = Tun::open(&config.interface, true).map_err(tun_err)?;
            tun.set_nonblocking(true).map_err(tun_err)?;
            tuns.push(tun);
        }
        let name = tuns[0].name().to_string();
        let if_err = |source| StartError::Interface {
            name: name.clone(),
            source,
        };
        heimweg_sys::iface::set_mtu(&name, config.mtu).map_err(if_err)?;
        for a in &config.addresses {
            heimweg_sys::iface::add_address(&name, a.addr, a.prefix_len).map_err(if_err)?;
        }
        if config.set_up {
            heimweg_sys::iface::set_up(&name, true).map_err(if_err)?;
        }
        let sockets =
            bind_sockets(config.listen_port, workers).map_err(|source| StartError::Bind {
                port: config.listen_port,
                source,
            })?;
        let wakers = (0..workers)
            .map(|_| EventFd::new())
            .collect::<io::Result<Vec<_>>>()
            .map_err(StartError::Worker)?;
        // The handshake queue drains as fast as the workers answer, but no faster than the
        // cores run them.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let admission = AdmissionConfig {
            workers: workers.min(cores),
            ..config.admission
        };
        let shared = Arc::new(Shared {
            device: parking_lot::RwLock::new(Device::new(config.private_key, seed, admission)),
            tuns,
            sockets: RwLock::new(Arc::new(sockets)),
            sockets_generation: AtomicU64::new(0),
            wakers,
            shutdown: AtomicBool::new(false),
            fwmark: AtomicU32::new(0),
            tun_gone: AtomicBool::new(false),
            worker_stats: (0..workers).map(|_| WorkerStats::default()).collect(),
        });
        let mut handles = Vec::with_capacity(workers);
        for i in 0..workers {
            let s = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("hw-worker-{i}"))
                .spawn(move || worker::run(s, i))
                .map_err(StartError::Worker)?;
            handles.push(h);
        }
        tracing::info!(
            interface = %name,
            workers,
            port = shared.sockets.read().map(|s| s.port).unwrap_or(0),
            tun_offload = ?shared.tuns[0].offload(),
            "data plane up"
        );
        Ok(DataPlane {
            shared,
            workers: Mutex::new(handles),
            interface: name,
        })
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    pub fn listen_port(&self) -> u16 {
        self.shared.sockets.read().map(|s| s.port).unwrap_or(0)
    }

    /// True once a worker found its TUN gone (someone deleted the interface).
    pub fn tun_gone(&self) -> bool {
        self.shared.tun_gone.load(Ordering::Relaxed)
    }

    /// Aggregate counters: drops by reason, handshakes, bytes.
    pub fn stats(&self) -> Vec<(String, u64)> {
        let d = self.shared.device();
        let c = d.counters();
        let mut v: Vec<(String, u64)> = c
            .drop_counts()
            .map(|(r, n)| (format!("drop_{}", r.as_str()), n))
            .collect();
        v.push(("drops_total".into(), c.total_drops()));
        v.push(("handshakes_ok".into(), c.handshakes_ok));
        v.push(("cookies_sent".into(), c.cookies_sent));
        v.push(("rx_datagrams".into(), c.rx_datagrams));
        v.push(("rx_packets".into(), c.rx_packets));
        v.push(("rx_bytes".into(), c.rx_bytes));
        v.push(("tx_packets".into(), c.tx_packets));
        v.push(("tx_bytes".into(), c.tx_bytes));
        v.push((
            "handshake_queue_depth".into(),
            d.handshake_queue_depth() as u64,
        ));
        v.push(("peers".into(), d.peer_count() as u64));
        v.push(("peers_scheduled".into(), d.scheduled_peers() as u64));
        v
    }

    /// Everything the metrics endpoint reports. Reading shares the table with the workers; but
    /// a peer change that arrives during the walk waits for it, and the workers wait behind
    /// that change (walking in pieces, as `sync_peers` does, would bound it; not done yet).
    pub fn metrics(&self) -> MetricsSnapshot {
        let (counters, handshake_queue_depth, peers, active_peers) = {
            let d = self.shared.device();
            let active = d.peers_with_handshake_within(ACTIVE_WINDOW);
            (
                d.counters(),
                d.handshake_queue_depth(),
                d.peer_count(),
                active,
            )
        };
        let w = &self.shared.worker_stats;
        let sum = |f: fn(&WorkerStats) -> &AtomicU64| {
            w.iter().map(|s| f(s).load(Ordering::Relaxed)).sum::<u64>()
        };
        let tun = self.shared.tuns.first().map(|t| t.offload());
        let udp_gso = self
            .shared
            .sockets
            .read()
            .map(|s| s.list.iter().all(|u| u.gso()))
            .unwrap_or(false);
        MetricsSnapshot {
            tun_tso: matches!(tun, Some(Offload::Tcp | Offload::TcpUdp)),
            tun_uso: tun == Some(Offload::TcpUdp),
            udp_gso,
            counters,
            handshake_queue_depth,
            peers,
            active_peers,
            worker_busy_seconds: w
                .iter()
                .map(|s| s.busy_ns.load(Ordering::Relaxed) as f64 / 1e9)
                .collect(),
            udp_recv_errors: sum(|s| &s.udp_recv_errors),
            udp_send_dropped: sum(|s| &s.udp_send_dropped),
            tun_write_errors: sum(|s| &s.tun_write_errors),
        }
    }

    /// One peer's counters and endpoint, by public key (one lookup, not a walk of all peers).
    pub fn peer(&self, public_key: &[u8; 32]) -> Option<heimweg_core::PeerInfo> {
        let d = self.shared.device();
        d.peer_id(public_key).and_then(|id| d.peer(id))
    }

    /// Every peer's view (endpoint, how it moved, counters, last handshake), in one walk of
    /// the peer table.
    pub fn peers(&self) -> Vec<heimweg_core::PeerInfo> {
        self.shared.device().peers().collect()
    }

    /// How often a packet was dropped for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.shared.device().counters().drops(reason)
    }

    /// Makes the peer set equal to `desired`: missing peers are added, extra ones removed,
    /// changed ones updated in place. A peer whose settings did not change is not touched at
    /// all, so its session carries on (invariant: one peer's change never disturbs another).
    ///
    /// The workers are held up only by actual changes, and for at most about a millisecond at a
    /// time. The comparison runs beside them (an upgradable read: it shares the table with the
    /// workers and keeps out only other writers), so a pass that changes nothing stops no
    /// traffic however many peers there are; the table is taken for writing only to apply a
    /// piece of changes found, at most [`SYNC_HOLD`] of work at a time, and handed back to the
    /// workers between pieces.
    pub fn sync_peers(&self, desired: &[PeerSpec]) -> SyncReport {
        let mut report = SyncReport::default();
        let wanted: std::collections::HashSet<&Key> =
            desired.iter().map(|p| &p.public_key).collect();
        let mut slot = 0;
        loop {
            let d = self.shared.device.upgradable_read();
            let slots = d.peer_slots();
            if slot >= slots {
                break;
            }
            let since = Instant::now();
            let start = slot;
            let mut stale = Vec::new();
            // At least one piece per hold, however long the wait for the lock was.
            while slot < slots
                && stale.len() < SYNC_PIECE
                && (slot == start || since.elapsed() < SYNC_HOLD)
            {
                let end = (slot + 64).min(slots);
                stale.extend(
                    d.peer_keys(slot..end)
                        .filter(|(_, k)| !wanted.contains(k))
                        .map(|(id, _)| id),
                );
                slot = end;
            }
            if stale.is_empty() {
                RwLockUpgradableReadGuard::unlock_fair(d);
                continue;
            }
            let mut d = RwLockUpgradableReadGuard::upgrade(d);
            for id in stale {
                d.remove_peer(id);
                report.removed += 1;
            }
            // Hand the table to the waiting workers: an ordinary unlock would let this loop
            // take it straight back, and the workers would wait for the whole pass after all.
            RwLockWriteGuard::unlock_fair(d);
        }
        {
            let d = self.shared.device.upgradable_read();
            let missing = desired.len().saturating_sub(d.peer_count());
            if missing > SYNC_PIECE {
                // Many new peers (a gateway starting): room for all of them in one go.
                RwLockUpgradableReadGuard::upgrade(d).reserve_peers(missing);
            }
        }
        let mut next = 0;
        while next < desired.len() {
            let d = self.shared.device.upgradable_read();
            let since = Instant::now();
            let start = next;
            let mut changed = Vec::new();
            while next < desired.len()
                && changed.len() < SYNC_PIECE
                && (next == start || since.elapsed() < SYNC_HOLD)
            {
                if differs(&d, &desired[next]) {
                    changed.push(next);
                }
                next += 1;
            }
            if changed.is_empty() {
                RwLockUpgradableReadGuard::unlock_fair(d);
                continue;
            }
            let mut d = RwLockUpgradableReadGuard::upgrade(d);
            let since = Instant::now();
            for (n, &i) in changed.iter().enumerate() {
                // A new peer costs a Diffie-Hellman: a piece may take longer than a hold. What
                // is left is looked at again in the next one.
                if n > 0 && since.elapsed() >= SYNC_HOLD {
                    next = i;
                    break;
                }
                apply_spec(&mut d, &desired[i], &mut report);
            }
            RwLockWriteGuard::unlock_fair(d);
        }
        if report != SyncReport::default() {
            self.shared.wake_all();
        }
        report
    }

    /// Tells the data plane where the store last saw devices (by any gateway on the shared
    /// database), so that after a failover their traffic makes this gateway start a handshake
    /// at once (see `Device::set_endpoint_hint`). Keys that are not peers are ignored. Holds
    /// the device for writing for a piece of the list at a time, like [`DataPlane::sync_peers`].
    pub fn set_endpoint_hints(&self, hints: &[(Key, SocketAddr)]) {
        for piece in hints.chunks(SYNC_PIECE) {
            let mut d = self.shared.device.write();
            for (key, addr) in piece {
                if let Some(id) = d.peer_id(key) {
                    d.set_endpoint_hint(id, *addr);
                }
            }
            RwLockWriteGuard::unlock_fair(d);
        }
    }

    /// Rebinds every worker socket to `port`. On failure the old sockets stay in place.
    fn set_listen_port(&self, port: u16) -> io::Result<()> {
        let current = self.listen_port();
        if port == current && port != 0 {
            return Ok(());
        }
        let workers = self.shared.tuns.len();
        let fresh = bind_sockets(port, workers)?;
        {
            let mut guard = self
                .shared
                .sockets
                .write()
                .unwrap_or_else(|p| p.into_inner());
            *guard = Arc::new(fresh);
        }
        self.shared
            .sockets_generation
            .fetch_add(1, Ordering::Release);
        self.shared.wake_all();
        Ok(())
    }

    /// Stops the workers and waits for them; idempotent. The TUN disappears when the last
    /// queue closes, i.e. when this handle is dropped.
    pub fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.wake_all();
        let handles: Vec<_> = self.workers.lock().drain(..).collect();
        for h in handles {
            let _ = h.join();
        }
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds `workers` sockets on one port, dual-stack where the host has IPv6. Port 0 picks a
/// free port with the first socket and binds the others to the same one.
fn bind_sockets(port: u16, workers: usize) -> io::Result<Sockets> {
    let any6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
    let any4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
    // Hosts booted with ipv6.disable=1 have no AF_INET6 at all.
    let unspecified = match UdpSocket::bind(SocketAddr::new(any6.ip(), 0), false, 0) {
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => any4,
        _ => any6,
    };
    let mut base = unspecified;
    if port == 0 {
        // The kernel's port-0 autobind lets an SO_REUSEPORT socket land on a port that another
        // process of the same user holds with SO_REUSEPORT, and the two would then share its
        // traffic. A probe without SO_REUSEPORT only gets a port nobody holds; we take that.
        let probe = UdpSocket::bind(unspecified, false, 0)?;
        base.set_port(probe.local_addr()?.port());
    }
    let first = UdpSocket::bind(base, true, SOCKET_BUFFER_BYTES)?;
    let local = first.local_addr()?;
    let mut list = vec![first];
    for _ in 1..workers {
        list.push(UdpSocket::bind(local, true, SOCKET_BUFFER_BYTES)?);
    }
    Ok(Sockets {
        port: local.port(),
        list,
    })
}

impl UapiHandler for DataPlane {
    fn get(&self) -> DeviceSnapshot {
        let d = self.shared.device();
        let mut snapshot = device_snapshot(&d, SystemTime::now());
        snapshot.listen_port = self.listen_port();
        snapshot.fwmark = self.shared.fwmark.load(Ordering::Relaxed);
        snapshot
    }

    fn set(&self, req: SetRequest) -> Result<(), UapiError> {
        // The only step that can fail comes first, so a failed request changes nothing.
        if let Some(port) = req.listen_port {
            self.set_listen_port(port).map_err(|e| {
                if e.kind() == io::ErrorKind::AddrInUse {
                    UapiError::AddrInUse
                } else {
                    UapiError::Io(e.to_string())
                }
            })?;
        }
        if let Some(mark) = req.fwmark {
            self.shared.fwmark.store(mark, Ordering::Relaxed);
        }
        apply_set(&mut self.shared.device_mut(), &req);
        // New endpoints or keepalives may have moved a deadline earlier than a worker sleeps.
        self.shared.wake_all();
        Ok(())
    }

    fn stats(&self) -> Vec<(String, u64)> {
        DataPlane::stats(self)
    }
}

/// What `get=1` reports of the device (the port and the mark are the caller's).
fn device_snapshot(d: &Device, now: SystemTime) -> DeviceSnapshot {
    DeviceSnapshot {
        private_key: d.private_key(),
        listen_port: 0,
        fwmark: 0,
        peers: d
            .peers()
            .map(|p| PeerSnapshot {
                public_key: p.public_key,
                preshared_key: p.preshared_key,
                endpoint: p.endpoint,
                persistent_keepalive: p.persistent_keepalive,
                allowed_ips: p.allowed_ips,
                // UAPI wants wall-clock epoch time; the core only knows "how long ago".
                last_handshake: p.last_handshake_ago.and_then(|ago| now.checked_sub(ago)),
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
            })
            .collect(),
    }
}

/// The device's part of a validated `set=1` request, in one write hold of the peer table (the
/// caller's): the key, then the peers.
fn apply_set(d: &mut Device, req: &SetRequest) {
    if let Some(key) = req.private_key {
        d.set_private_key(key);
    }
    if req.replace_peers {
        d.clear_peers();
    }
    for change in &req.peers {
        apply_peer_change(d, change);
    }
}

/// Whether the peer `spec` names is missing or set otherwise.
fn differs(d: &Device, spec: &PeerSpec) -> bool {
    let Some(now) = d
        .peer_id(&spec.public_key)
        .and_then(|id| d.peer_settings(id))
    else {
        return true;
    };
    now.preshared_key != spec.preshared_key
        || !same_networks(now.allowed_ips, &spec.allowed_ips)
        || !Policy::same(now.policy, spec.policy.as_ref())
}

fn same_networks(a: &[IpNetwork], b: &[IpNetwork]) -> bool {
    a.len() == b.len() && b.iter().all(|n| a.contains(n))
}

/// Makes one peer as `spec` says, changing only what differs.
fn apply_spec(d: &mut Device, spec: &PeerSpec, report: &mut SyncReport) {
    let existing = d.peer_id(&spec.public_key);
    let (id, psk_same, ips_same) = match existing {
        Some(id) => match d.peer_settings(id) {
            Some(now) => (
                id,
                now.preshared_key == spec.preshared_key,
                same_networks(now.allowed_ips, &spec.allowed_ips),
            ),
            None => (id, false, false),
        },
        None => {
            report.added += 1;
            let id = d.add_peer(spec.public_key);
            (
                id,
                spec.preshared_key.is_none(),
                spec.allowed_ips.is_empty(),
            )
        }
    };
    let mut changed = false;
    if !psk_same {
        d.set_preshared_key(id, spec.preshared_key);
        changed = true;
    }
    if !ips_same {
        d.clear_allowed_ips(id);
        for net in &spec.allowed_ips {
            d.add_allowed_ip(id, *net);
        }
        changed = true;
    }
    if d.set_policy(id, spec.policy.clone()) {
        changed = true;
    }
    if changed && existing.is_some() {
        report.updated += 1;
    }
}

fn apply_peer_change(d: &mut Device, c: &PeerChange) {
    if d.public_key() == Some(c.public_key) {
        // wireguard-go ignores a peer that is the device itself; so do we.
        return;
    }
    let existing = d.peer_id(&c.public_key);
    if c.remove {
        if let Some(id) = existing {
            d.remove_peer(id);
            tracing::info!(peer = %heimweg_core::short_key(&c.public_key), "peer removed");
        }
        return;
    }
    let id = match existing {
        Some(id) => id,
        None if c.update_only => return,
        None => {
            tracing::info!(peer = %heimweg_core::short_key(&c.public_key), "peer added");
            d.add_peer(c.public_key)
        }
    };
    if let Some(psk) = c.preshared_key {
        d.set_preshared_key(id, psk);
    }
    if let Some(ep) = c.endpoint {
        d.set_endpoint(id, ep);
    }
    if let Some(ka) = c.persistent_keepalive {
        d.set_persistent_keepalive(id, ka);
    }
    if c.replace_allowed_ips {
        d.clear_allowed_ips(id);
    }
    for net in &c.allowed_ips_remove {
        d.remove_allowed_ip(id, *net);
    }
    for net in &c.allowed_ips_add {
        d.add_allowed_ip(id, *net);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        heimweg_core::allowed_ips::parse_network(s).unwrap()
    }

    #[test]
    fn sync_peers_touches_only_what_changed() {
        // Needs root for the TUN, as every data-plane test on this project's machines has.
        let mut config = Config::new(format!("hwsync{}", std::process::id() % 100_000));
        config.workers = 1;
        config.private_key = Some([7; 32]);
        let dp = DataPlane::start(config, 1).expect("root is needed for a TUN");
        let policy = Arc::new(Policy::new([net("10.20.0.0/16")]));
        let spec = |k: u8, ip: &str| PeerSpec {
            public_key: [k; 32],
            preshared_key: None,
            allowed_ips: vec![net(ip)],
            policy: Some(policy.clone()),
        };
        let mut desired = vec![spec(1, "10.77.0.2/32"), spec(2, "10.77.0.3/32")];
        assert_eq!(
            dp.sync_peers(&desired),
            SyncReport {
                added: 2,
                removed: 0,
                updated: 0
            }
        );
        assert_eq!(
            dp.sync_peers(&desired),
            SyncReport::default(),
            "a no-op pass changes nothing"
        );
        {
            // Nor does it take the table from the workers: it finishes while one reads. (A
            // pass that tried to write would wait for this reader for ever.)
            let _reading = dp.shared.device();
            assert_eq!(dp.sync_peers(&desired), SyncReport::default());
        }
        // An equal policy in a new Arc (as a reconciler builds each pass) is not a change.
        desired[0].policy = Some(Arc::new(Policy::new([net("10.20.0.0/16")])));
        assert_eq!(dp.sync_peers(&desired), SyncReport::default());
        desired[1].allowed_ips = vec![net("10.77.0.9/32")];
        desired[0].policy = Some(Arc::new(Policy::new([net("10.21.0.0/16")])));
        assert_eq!(
            dp.sync_peers(&desired),
            SyncReport {
                added: 0,
                removed: 0,
                updated: 2
            }
        );
        desired.remove(0);
        assert_eq!(
            dp.sync_peers(&desired),
            SyncReport {
                added: 0,
                removed: 1,
                updated: 0
            }
        );
        let m = dp.metrics();
        assert_eq!(m.peers, 1);
        assert!(
            m.tun_tso && m.udp_gso,
            "this kernel offers TSO on TUN and UDP GSO"
        );
        let snapshot = UapiHandler::get(&dp);
        assert_eq!(snapshot.peers.len(), 1);
        assert_eq!(snapshot.peers[0].allowed_ips, vec![net("10.77.0.9/32")]);
        dp.shutdown();
    }

    #[test]
    fn interface_addresses_keep_the_host_part_and_reject_nonsense() {
        let a: InterfaceAddress = "10.77.0.1/24".parse().unwrap();
        assert_eq!(a.addr, "10.77.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(a.prefix_len, 24);
        let b: InterfaceAddress = "fd77::1/64".parse().unwrap();
        assert_eq!(b.prefix_len, 64);
        for bad in [
            "10.77.0.1",
            "10.77.0.1/33",
            "fd77::1/129",
            "x/24",
            "10.0.0.1/-1",
            "",
        ] {
            assert!(bad.parse::<InterfaceAddress>().is_err(), "{bad}");
        }
    }
}
