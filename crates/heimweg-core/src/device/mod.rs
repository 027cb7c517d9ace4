//! The concentrator state machine: many peers behind one key, one port and one TUN.

use crate::admission::{
    Admission, AdmissionConfig, Cost, Lane, Popped, QueuedInit, INIT_LEN, RETRANSMIT,
};
use crate::allowed_ips::AllowedIps;
use crate::counters::{Count, Counters, DropReason, Tally};
use crate::packet;
use crate::policy::Policy;
use crate::timers::Timers;
use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::{identify_handshake_init, IdentifiedHandshakeInit};
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use ip_network::IpNetwork;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod handshake;
mod peers;

pub use handshake::{
    answer_next_handshake, Answered, HandshakeStep, LentHandshake, PendingHandshake, Taken,
};

/// A Curve25519 key as 32 raw bytes.
pub type Key = [u8; 32];

/// WireGuard's per-packet overhead: type, receiver index, counter and tag.
pub const DATA_OVERHEAD: usize = 32;
/// The smallest output buffer the core accepts: it must hold a handshake initiation.
pub const MIN_OUT_LEN: usize = INIT_LEN;

/// How often an active peer's WireGuard timers are checked. The protocol's timers have
/// second-scale resolution (rekey 5 s, keepalive 10 s); a quarter second keeps retries prompt.
const TIMER_TICK: Duration = Duration::from_millis(250);
/// Queued initiations processed per `poll_handshake` call before returning to the caller, so a
/// flood of invalid ones cannot keep a worker away from data for long.
const HANDSHAKE_WORK_PER_POLL: usize = 8;

/// Up to this many peers hold a `Tunn` (about 11 KB) from the moment they are added, so the
/// Monday-morning storm is answered without first making one (a Diffie-Hellman each). Beyond
/// it, a peer gets its `Tunn` at its first handshake: 100,000 enrolled devices with 10,000
/// connected stay under 300 MB. A `Tunn`, once made, stays for the peer's lifetime: it holds
/// the newest initiation timestamp accepted, which is what refuses replayed initiations.
const RETAINED_TUNNELS: usize = 10_000;

/// A session is no use after this (WireGuard's Reject-After-Time): a peer whose last
/// handshake is older has no session to keep traffic flowing.
const SESSION_LIFETIME: Duration = Duration::from_secs(180);

const MSG_INIT: u32 = 1;
const MSG_RESPONSE: u32 = 2;
const MSG_COOKIE: u32 = 3;
const MSG_DATA: u32 = 4;

/// A stable handle for a peer while it exists. Slots are reused after removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(u32);

impl PeerId {
    pub fn slot(self) -> usize {
        self.0 as usize
    }
}

/// A datagram for the network: `len` bytes at the start of the caller's output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    pub dst: SocketAddr,
    pub len: usize,
}

/// What to do with the output buffer after a `handle_*` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Output {
    /// Send `len` bytes of the output buffer to `dst`.
    Network(Transmit),
    /// Write `len` bytes of the output buffer (an IP packet) to the TUN.
    Tun { len: usize, peer: PeerId },
    /// Nothing to send (keepalive, queued handshake, or a counted drop).
    Nothing,
}

/// What the peer table exposes about one peer, for UAPI and status.
#[derive(Clone)]
pub struct PeerInfo {
    pub id: PeerId,
    pub public_key: Key,
    pub preshared_key: Option<Key>,
    pub endpoint: Option<SocketAddr>,
    pub persistent_keepalive: u16,
    pub allowed_ips: Vec<IpNetwork>,
    /// Time since the current session was established, by boringtun's own clock.
    pub last_handshake_ago: Option<Duration>,
    /// Bytes received from this peer on the wire (authenticated datagrams, with overhead).
    pub rx_bytes: u64,
    /// Bytes sent to this peer on the wire.
    pub tx_bytes: u64,
    pub roaming: Roaming,
}

/// How a peer's endpoint has moved, as authenticated packets showed it: what tells a config
/// copied onto a second device from a device that roams (BSI ORP.4.A14). Counted here, at every
/// packet, because two devices taking turns switch the endpoint far more often than anyone
/// sampling it could see.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roaming {
    /// The address the endpoint had before its current one.
    pub previous: Option<std::net::IpAddr>,
    /// How often the endpoint went back to the address it had before its last change (only
    /// the address counts: NAT rebinding changes ports). A laptop that goes from the office to
    /// a hotspot and back counts once; two devices with one key count at every turn.
    pub returns: u64,
}

impl fmt::Debug for PeerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerInfo")
            .field("id", &self.id)
            .field("public_key", &short_key(&self.public_key))
            .field("preshared_key", &self.preshared_key.map(|_| "[redacted]"))
            .field("endpoint", &self.endpoint)
            .field("allowed_ips", &self.allowed_ips)
            .finish_non_exhaustive()
    }
}

/// What the control plane sets on a peer (see [`Device::peer_settings`]).
#[derive(Clone, Copy)]
pub struct PeerSettings<'a> {
    pub preshared_key: Option<Key>,
    pub allowed_ips: &'a [IpNetwork],
    pub policy: Option<&'a Arc<Policy>>,
}

/// The first four bytes of a key in hex: enough to tell peers apart in logs.
pub fn short_key(k: &Key) -> String {
    k[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        + "…"
}

/// A peer: its settings, which change only through `&mut Device`, and its live state, which
/// packets change under the peer's own lock.
struct Peer {
    public_key: Key,
    preshared_key: Option<Key>,
    persistent_keepalive: u16,
    /// The 24-bit index boringtun puts in the top bits of every receiver index of this peer.
    index: u32,
    allowed_ips: Vec<IpNetwork>,
    /// What this peer may reach; `None` = only crypto-key routing applies.
    policy: Option<Arc<Policy>>,
    /// Where the store last saw the device, by whichever gateway (see
    /// [`Device::set_endpoint_hint`]).
    hint: Option<SocketAddr>,
    /// Changes whenever the peer's `Tunn` is replaced or the peer is added again: a lent `Tunn`
    /// goes back only into the generation it came from.
    generation: u64,
    live: Mutex<Live>,
}

/// What packets change. Each peer has its own lock, so workers on different cores handle
/// different peers' packets at the same time, and a handshake answered for a peer with a
/// live session holds up only that peer.
struct Live {
    /// `None` while the device has no private key, while the peer is idle beyond the retained
    /// ones, and while it is lent out.
    tunn: Option<Box<Tunn>>,
    endpoint: Option<SocketAddr>,
    rx_bytes: u64,
    tx_bytes: u64,
    /// Set when boringtun may hold packets queued before a session existed.
    needs_flush: bool,
    /// The longest of those packets (0 when it holds none): boringtun panics when asked to
    /// encrypt one into a buffer too small for it, so a flush needs a buffer this long plus
    /// [`DATA_OVERHEAD`].
    waiting: usize,
    /// Its `Tunn` is lent out to answer a handshake without any lock (see
    /// [`Device::begin_handshake`]); `tunn` is `None` meanwhile.
    lent: bool,
    /// When the peer's timers are next due; the timer heap's entry with exactly this time is the
    /// live one (see [`crate::timers`]).
    deadline: Option<Instant>,
    /// When the gateway last started a handshake because the device's traffic arrived under a
    /// session it did not know (see [`Device::handle_network`]).
    prompted_at: Option<Instant>,
    roaming: Roaming,
}

impl Live {
    fn holds_tunn(&self) -> bool {
        self.tunn.is_some() || self.lent
    }

    /// An authenticated packet came from `src`: the endpoint follows it (roaming), and a move
    /// back to the address before is counted.
    fn moved_to(&mut self, src: SocketAddr) {
        if let Some(old) = self.endpoint.map(|e| e.ip()).filter(|ip| *ip != src.ip()) {
            if self.roaming.previous == Some(src.ip()) {
                self.roaming.returns += 1;
            }
            self.roaming.previous = Some(old);
        }
        self.endpoint = Some(src);
    }
}

/// The private key and what is derived from it.
struct Identity {
    secret: StaticSecret,
    public: PublicKey,
    /// Verifies mac1 only: never considers itself loaded (we decide load from the queue).
    normal: Arc<RateLimiter>,
    /// Always "under load": verifies mac2 and formats cookie replies.
    loaded: Arc<RateLimiter>,
}

impl Identity {
    fn new(private: Key) -> Identity {
        let secret = StaticSecret::from(private);
        let public = PublicKey::from(&secret);
        Identity {
            normal: Arc::new(RateLimiter::new(&public, u64::MAX)),
            loaded: Arc::new(RateLimiter::new(&public, 0)),
            secret,
            public,
        }
    }
}

/// The sans-IO WireGuard concentrator.
///
/// Packets go through `&self`: the tables that find a peer change only through `&mut self`
/// (adding, removing and configuring peers), and what packets change is behind each peer's own
/// lock, atomic counters, and small locks of their own for the timer heap, the handshake queue
/// and the list of peers to flush. So a driver keeps the device in a reader-writer lock:
/// workers share it and never wait for each other, only for a change of the peer set.
///
/// Calling contract (the quinn-proto model): the driver feeds datagrams from the UDP socket to
/// [`Device::handle_network`] and IP packets from the TUN to [`Device::handle_tun`], acting on the
/// returned [`Output`] each time. After a batch of input it drains [`Device::poll_transmit`]
/// (timers and packets that waited for a session) and calls [`Device::poll_handshake`] a bounded
/// number of times (queued handshake initiations). [`Device::poll_timeout`] says when to call again
/// if nothing arrives. Time only ever comes in as `now`; the device owns no socket, thread or
/// clock. (boringtun's `Tunn` reads the monotonic clock for its own protocol timers; everything
/// heimweg decides — admission, scheduling — uses `now`.)
///
/// Every `out` buffer must be at least [`MIN_OUT_LEN`] bytes and at least as large as the input
/// plus [`DATA_OVERHEAD`]; smaller ones make the packet a counted drop, never a panic.
pub struct Device {
    identity: Option<Identity>,
    peers: Vec<Option<Peer>>,
    free_slots: Vec<u32>,
    by_key: HashMap<Key, PeerId>,
    by_index: HashMap<u32, PeerId>,
    allowed_ips: AllowedIps<PeerId>,
    timers: Mutex<Timers>,
    /// Peers with a deadline: see [`Device::scheduled_peers`].
    scheduled: AtomicUsize,
    admission: Mutex<Admission>,
    /// What a handshake costs a worker, measured by the drivers.
    cost: Cost,
    /// Endpoint hints: where the store last saw a device (see [`Device::set_endpoint_hint`]).
    hints: HashMap<SocketAddr, PeerId>,
    counters: Tally,
    /// Peers whose `needs_flush` is set, so flushing never scans the table.
    flush: Mutex<Vec<PeerId>>,
    /// State of the xorshift generator for peer indices, seeded by the caller.
    rng: u64,
    /// Peers holding a `Tunn` (or lending it out): see [`Device::tunnels`].
    tunnels: AtomicUsize,
    /// How many may hold one while idle ([`RETAINED_TUNNELS`] unless set).
    retained_tunnels: usize,
    /// The last peer generation handed out.
    generation: u64,
}

impl Device {
    /// A device without peers. `seed` feeds the generator of peer indices (give it OS randomness
    /// in production, a constant in tests).
    pub fn new(private_key: Option<Key>, seed: u64, admission: AdmissionConfig) -> Device {
        Device {
            identity: private_key.map(Identity::new),
            peers: Vec::new(),
            free_slots: Vec::new(),
            by_key: HashMap::new(),
            by_index: HashMap::new(),
            allowed_ips: AllowedIps::new(),
            timers: Mutex::new(Timers::default()),
            scheduled: AtomicUsize::new(0),
            cost: Cost::new(admission.initial_handshake_cost),
            admission: Mutex::new(Admission::new(admission)),
            hints: HashMap::new(),
            counters: Tally::default(),
            flush: Mutex::new(Vec::new()),
            rng: seed | 1,
            tunnels: AtomicUsize::new(0),
            retained_tunnels: RETAINED_TUNNELS,
            generation: 0,
        }
    }

    /// The device's public key, if a private key is set.
    pub fn public_key(&self) -> Option<Key> {
        self.identity.as_ref().map(|i| i.public.to_bytes())
    }

    /// The private key, for the UAPI `get` that `wg showconf` relies on.
    pub fn private_key(&self) -> Option<Key> {
        self.identity.as_ref().map(|i| i.secret.to_bytes())
    }

    /// Sets or removes the private key. A change ends every session (they were keyed to the
    /// old identity); setting the same key again changes nothing, so `wg syncconf` is harmless.
    pub fn set_private_key(&mut self, key: Option<Key>) {
        if self.private_key() == key {
            return;
        }
        self.identity = key.map(Identity::new);
        // A peer whose public key equals our own would make WireGuard talk to itself; wireguard-go
        // removes it when the key changes, and so do we.
        if let Some(own) = self.public_key() {
            if let Some(id) = self.by_key.get(&own).copied() {
                self.remove_peer(id);
            }
        }
        let ids: Vec<PeerId> = self.by_key.values().copied().collect();
        for id in ids {
            self.rebuild_tunn(id);
        }
    }

    // The peer table: device/peers.rs; handshakes: device/handshake.rs.
}

impl Device {
    /// Handles one datagram received from `src`.
    pub fn handle_network(
        &self,
        now: Instant,
        src: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Output {
        self.counters.add(Count::RxDatagrams, 1);
        if datagram.len() < 4 {
            return self.dropped(DropReason::Malformed);
        }
        let mut head = [0u8; 4];
        head.copy_from_slice(&datagram[..4]);
        // The first byte is the type, the next three are reserved and must be zero.
        let msg_type = u32::from_le_bytes(head);
        let well_sized = match msg_type {
            MSG_INIT => datagram.len() == INIT_LEN,
            MSG_RESPONSE => datagram.len() == 92,
            MSG_COOKIE => datagram.len() == 64,
            MSG_DATA => datagram.len() >= DATA_OVERHEAD,
            _ => false,
        };
        if !well_sized {
            return self.dropped(DropReason::Malformed);
        }
        if out.len() < MIN_OUT_LEN.max(datagram.len()) {
            return self.dropped(DropReason::TooLarge);
        }
        if self.identity.is_none() {
            return self.dropped(DropReason::NoPrivateKey);
        }
        if msg_type == MSG_INIT {
            return self.admit_initiation(now, src, datagram, out);
        }
        // Our receiver index: a response carries the responder's sender index first (4..8) and
        // ours at 8..12; a cookie reply and data carry ours at 4..8.
        let at = if msg_type == MSG_RESPONSE { 8 } else { 4 };
        let receiver = u32::from_le_bytes([
            datagram[at],
            datagram[at + 1],
            datagram[at + 2],
            datagram[at + 3],
        ]);
        let Some(id) = self.by_index.get(&(receiver >> 8)).copied() else {
            // Still counted as a drop: this datagram itself cannot be decrypted here.
            self.counters.drop(DropReason::UnknownIndex);
            if msg_type == MSG_DATA {
                if let Some(t) = self.prompt_handshake(now, src, out) {
                    return Output::Network(t);
                }
            }
            return Output::Nothing;
        };
        self.decapsulate(now, id, src, datagram, out)
    }

    fn peer_ref(&self, id: PeerId) -> Option<&Peer> {
        self.peers.get(id.slot()).and_then(Option::as_ref)
    }

    /// Runs a datagram through the peer's `Tunn` and acts on the result.
    fn decapsulate(
        &self,
        now: Instant,
        id: PeerId,
        src: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Output {
        let Some(peer) = self.peer_ref(id) else {
            return self.dropped(DropReason::UnknownIndex);
        };
        let mut live = peer.live.lock();
        let rx = Received { now, src, datagram };
        self.decapsulate_locked(id, peer, &mut live, rx, out)
    }

    fn decapsulate_locked(
        &self,
        id: PeerId,
        peer: &Peer,
        live: &mut Live,
        rx: Received<'_>,
        out: &mut [u8],
    ) -> Output {
        let Some(tunn) = live.tunn.as_mut() else {
            // No `Tunn` (idle, or lent out for a handshake) means no session.
            let reason = if self.identity.is_none() {
                DropReason::NoPrivateKey
            } else {
                DropReason::NoSession
            };
            return self.dropped(reason);
        };
        let base = out.as_ptr() as usize;
        let result = locate(tunn.decapsulate(Some(rx.src.ip()), rx.datagram, out), base)
            .map(|l| l.settle(out));
        self.settle_decapsulation(id, peer, live, rx, result, out)
    }

    /// Acts on what the peer's `Tunn` made of `datagram`: counters, roaming, timers, and the
    /// source check of a decrypted packet.
    fn settle_decapsulation(
        &self,
        id: PeerId,
        peer: &Peer,
        live: &mut Live,
        rx: Received<'_>,
        result: Result<Span, WireGuardError>,
        out: &mut [u8],
    ) -> Output {
        let Received { now, src, datagram } = rx;
        let verdict = match result {
            Ok(Span::Done) => Output::Nothing,
            Ok(Span::Network(len)) => Output::Network(Transmit { dst: src, len }),
            Ok(Span::Tun(len)) => Output::Tun { len, peer: id },
            Err(e) => return self.dropped(drop_reason(&e, datagram)),
        };
        let is_init = datagram.len() == INIT_LEN && datagram[0] == MSG_INIT as u8;
        // Roaming: the endpoint follows the latest authenticated packet.
        live.moved_to(src);
        live.rx_bytes += datagram.len() as u64;
        if let Output::Network(t) = verdict {
            live.tx_bytes += t.len as u64;
        }
        if is_init && matches!(verdict, Output::Network(_)) {
            self.counters.add(Count::HandshakesOk, 1);
            // Only a configured peer gets this far: its address is known from now on.
            self.admission.lock().remember(now, src.ip());
        }
        // A session may now exist: packets boringtun queued while it had none can go out.
        if !live.needs_flush {
            live.needs_flush = true;
            self.flush.lock().push(id);
        }
        self.schedule(id, live, now + TIMER_TICK);
        match verdict {
            Output::Tun { len, peer: pid } => self.check_source(pid, peer, &out[..len], len),
            v => v,
        }
    }

    /// Crypto-key routing on the way in: the decrypted packet's source must be one of the
    /// sender's allowed IPs, or the packet is dropped.
    fn check_source(&self, id: PeerId, peer: &Peer, packet: &[u8], len: usize) -> Output {
        let Some((src, dst)) = packet::addresses(packet) else {
            return self.dropped(DropReason::InnerMalformed);
        };
        if self.allowed_ips.lookup(src) != Some(id) {
            return self.dropped(DropReason::SourceNotAllowed);
        }
        if !policy_allows(peer, dst) {
            return self.dropped(DropReason::PolicyDenied);
        }
        self.counters.add(Count::RxPackets, 1);
        self.counters.add(Count::RxBytes, len as u64);
        Output::Tun { len, peer: id }
    }

    /// Handles one IP packet read from the TUN.
    pub fn handle_tun(&self, now: Instant, ip_packet: &[u8], out: &mut [u8]) -> Output {
        let Some((src, dst)) = packet::addresses(ip_packet) else {
            return self.dropped(DropReason::InnerMalformed);
        };
        let Some(id) = self.allowed_ips.lookup(dst) else {
            return self.dropped(DropReason::NoRoute);
        };
        let Some(peer) = self.peer_ref(id) else {
            return self.dropped(DropReason::NoRoute);
        };
        // The return direction is filtered too, so a host the peer may not reach cannot open
        // a conversation with it either.
        if !policy_allows(peer, src) {
            return self.dropped(DropReason::PolicyDenied);
        }
        if out.len() < MIN_OUT_LEN.max(ip_packet.len() + DATA_OVERHEAD) {
            return self.dropped(DropReason::TooLarge);
        }
        let Some(identity) = self.identity.as_ref() else {
            return self.dropped(DropReason::NoPrivateKey);
        };
        let mut live = peer.live.lock();
        let live = &mut *live;
        if live.lent {
            return self.dropped(DropReason::NoSession);
        }
        let Some(endpoint) = live.endpoint else {
            return self.dropped(DropReason::NoEndpoint);
        };
        // An idle peer gets its `Tunn` now: the packet waits in it while it starts a handshake.
        let tunn = self.tunn_of(identity, peer, live);
        let base = out.as_ptr() as usize;
        let result = locate(tunn.encapsulate(ip_packet, out), base).map(|l| l.settle(out));
        if !matches!(result, Ok(Span::Network(_))) || out[0] != MSG_DATA as u8 {
            // No session: boringtun queued the packet (and made an initiation, unless one is
            // underway) until one exists.
            live.waiting = live.waiting.max(ip_packet.len());
        }
        let len = match result {
            Ok(Span::Network(len)) => len,
            // No session yet: boringtun queued the packet and a handshake is already underway.
            _ => {
                self.schedule(id, live, now + TIMER_TICK);
                return Output::Nothing;
            }
        };
        live.tx_bytes += len as u64;
        self.counters.add(Count::TxPackets, 1);
        self.counters.add(Count::TxBytes, ip_packet.len() as u64);
        self.schedule(id, live, now + TIMER_TICK);
        Output::Network(Transmit { dst: endpoint, len })
    }

    /// The peer's `Tunn`, made now (a Diffie-Hellman) if the peer is idle and holds none.
    fn tunn_of<'l>(&self, identity: &Identity, peer: &Peer, live: &'l mut Live) -> &'l mut Tunn {
        if live.tunn.is_none() {
            self.tunnels.fetch_add(1, Ordering::Relaxed);
        }
        live.tunn
            .get_or_insert_with(|| new_tunn(&tunn_spec(identity, peer)))
    }

    /// Makes sure the peer's timers are looked at no later than `at`. Usually it is due sooner
    /// already and this touches nothing shared: only a new, earlier deadline goes on the heap.
    fn schedule(&self, id: PeerId, live: &mut Live, at: Instant) {
        match live.deadline {
            Some(d) if d <= at => {}
            previous => {
                if previous.is_none() {
                    self.scheduled.fetch_add(1, Ordering::Relaxed);
                }
                live.deadline = Some(at);
                self.timers.lock().push(id, at);
            }
        }
    }

    /// Returns datagrams that are due: packets that waited for a session, then timer-driven
    /// handshakes and keepalives. Call until it returns `None`. A packet that waited goes out
    /// only into a buffer that holds it (its length plus [`DATA_OVERHEAD`]); a smaller buffer
    /// leaves it waiting for a later call.
    pub fn poll_transmit(&self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        if out.len() < MIN_OUT_LEN {
            return None;
        }
        // Peers whose waiting packets do not fit this buffer: they stay on the list for a call
        // with a larger one (only a caller with buffers below the packets it fed has any).
        let mut deferred = Vec::new();
        let sent = self.flush_waiting(out, &mut deferred);
        if !deferred.is_empty() {
            self.flush.lock().extend(deferred);
        }
        if sent.is_some() {
            return sent;
        }
        loop {
            let (at, id) = self.timers.lock().pop_due(now)?;
            let Some(peer) = self.peer_ref(id) else {
                continue;
            };
            let mut live = peer.live.lock();
            if live.deadline != Some(at) {
                // Stale: superseded by an earlier deadline, or the peer was reset or replaced.
                continue;
            }
            live.deadline = None;
            self.scheduled.fetch_sub(1, Ordering::Relaxed);
            let live = &mut *live;
            let Some(tunn) = live.tunn.as_mut() else {
                continue;
            };
            let base = out.as_ptr() as usize;
            let result = locate(tunn.update_timers(out), base).map(|l| l.settle(out));
            match result {
                // The session and any handshake have expired: the peer is idle and needs no
                // timer until it shows activity again. This keeps timer work proportional to
                // active peers, not configured ones.
                //
                // The `Tunn` itself stays: it remembers the newest initiation timestamp it
                // accepted, which is what refuses a replayed initiation.
                Err(WireGuardError::ConnectionExpired) => continue,
                Ok(Span::Network(len)) => {
                    self.schedule(id, live, now + TIMER_TICK);
                    if let Some(dst) = live.endpoint {
                        live.tx_bytes += len as u64;
                        return Some(Transmit { dst, len });
                    }
                }
                _ => self.schedule(id, live, now + TIMER_TICK),
            }
        }
    }

    /// The first packet that waited for a session and fits `out`, if any.
    fn flush_waiting(&self, out: &mut [u8], deferred: &mut Vec<PeerId>) -> Option<Transmit> {
        // The list's lock is never held while a peer's is taken (a `while let` would hold it
        // through the body).
        loop {
            let next = self.flush.lock().pop();
            let id = next?;
            let Some(peer) = self.peer_ref(id) else {
                continue;
            };
            let mut live = peer.live.lock();
            if !live.needs_flush {
                continue;
            }
            let live = &mut *live;
            let (Some(tunn), Some(endpoint)) = (live.tunn.as_mut(), live.endpoint) else {
                live.needs_flush = false;
                continue;
            };
            if out.len() < live.waiting + DATA_OVERHEAD {
                deferred.push(id);
                continue;
            }
            // An empty datagram asks boringtun for the next packet it queued.
            let base = out.as_ptr() as usize;
            let result = locate(tunn.decapsulate(None, &[], out), base).map(|l| l.settle(out));
            match result {
                Ok(Span::Network(len)) => {
                    live.tx_bytes += len as u64;
                    // It may hold more: back on the list, for the next call.
                    self.flush.lock().push(id);
                    return Some(Transmit { dst: endpoint, len });
                }
                _ => {
                    live.needs_flush = false;
                    live.waiting = 0;
                }
            }
        }
    }

    /// When `poll_transmit` next has timer work, if ever. Queued handshakes are not included:
    /// the driver drains them while `handshake_queue_depth() > 0`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.lock().next_deadline()
    }

    /// Number of peers with a pending timer (active peers).
    pub fn scheduled_peers(&self) -> usize {
        self.scheduled.load(Ordering::Relaxed)
    }

    /// Counts a packet the I/O layer discarded before the core saw it (a super-packet from the
    /// TUN that cannot be cut into packets), so that every drop stays counted once.
    pub fn count_drop(&self, reason: DropReason) {
        self.counters.drop(reason);
    }

    fn dropped(&self, reason: DropReason) -> Output {
        self.counters.drop(reason);
        Output::Nothing
    }

    fn dropped_none<T>(&self, reason: DropReason) -> Option<T> {
        self.counters.drop(reason);
        None
    }
}

fn policy_allows(peer: &Peer, addr: std::net::IpAddr) -> bool {
    peer.policy
        .as_ref()
        .is_none_or(|policy| policy.allows(addr))
}

/// What a `Tunn` for peer `p` under `identity` is made of.
fn tunn_spec(identity: &Identity, p: &Peer) -> TunnSpec {
    TunnSpec {
        secret: identity.secret.clone(),
        limiter: identity.normal.clone(),
        peer_public: p.public_key,
        preshared_key: p.preshared_key,
        persistent_keepalive: p.persistent_keepalive,
        index: p.index,
    }
}

/// A `Tunn` with a peer's settings. Costs a Diffie-Hellman (boringtun precomputes the
/// static-static secret).
fn new_tunn(spec: &TunnSpec) -> Box<Tunn> {
    Box::new(Tunn::new(
        spec.secret.clone(),
        PublicKey::from(spec.peer_public),
        spec.preshared_key,
        (spec.persistent_keepalive > 0).then_some(spec.persistent_keepalive),
        spec.index,
        Some(spec.limiter.clone()),
    ))
}

/// Everything [`new_tunn`] needs.
struct TunnSpec {
    secret: StaticSecret,
    limiter: Arc<RateLimiter>,
    peer_public: Key,
    preshared_key: Option<Key>,
    persistent_keepalive: u16,
    index: u32,
}

/// A datagram from the network, with when and from where it came.
#[derive(Clone, Copy)]
struct Received<'a> {
    now: Instant,
    src: SocketAddr,
    datagram: &'a [u8],
}

/// What a `Tunn` result asks for, as a length from the start of the output buffer.
enum Span {
    Done,
    Network(usize),
    Tun(usize),
}

/// Where inside the output buffer a `Tunn` result put its bytes. Taking the result by value ends
/// its borrow of the buffer, so the bytes can then be moved with [`Located::settle`].
struct Located {
    span: Span,
    off: usize,
}

fn locate(result: TunnResult<'_>, base: usize) -> Result<Located, WireGuardError> {
    let at = |b: &[u8]| b.as_ptr() as usize - base;
    Ok(match result {
        TunnResult::Done => Located {
            span: Span::Done,
            off: 0,
        },
        TunnResult::Err(e) => return Err(e),
        TunnResult::WriteToNetwork(b) => Located {
            off: at(b),
            span: Span::Network(b.len()),
        },
        TunnResult::WriteToTunnelV4(b, _) | TunnResult::WriteToTunnelV6(b, _) => Located {
            off: at(b),
            span: Span::Tun(b.len()),
        },
    })
}

impl Located {
    /// Moves the bytes to `out[0..]`, so callers never depend on where boringtun wrote them.
    fn settle(self, out: &mut [u8]) -> Span {
        let len = match self.span {
            Span::Done => return Span::Done,
            Span::Network(len) | Span::Tun(len) => len,
        };
        if self.off != 0 {
            out.copy_within(self.off..self.off + len, 0);
        }
        self.span
    }
}

fn drop_reason(e: &WireGuardError, datagram: &[u8]) -> DropReason {
    let is_init = datagram.first() == Some(&(MSG_INIT as u8));
    match e {
        WireGuardError::InvalidMac => DropReason::InvalidMac,
        WireGuardError::WrongTai64nTimestamp => DropReason::HandshakeReplay,
        WireGuardError::DuplicateCounter | WireGuardError::InvalidCounter => DropReason::Replay,
        WireGuardError::InvalidAeadTag if !is_init => DropReason::DecryptFailed,
        WireGuardError::NoCurrentSession | WireGuardError::WrongIndex => DropReason::NoSession,
        WireGuardError::InvalidPacket => DropReason::InnerMalformed,
        WireGuardError::DestinationBufferTooSmall => DropReason::TooLarge,
        _ if is_init => DropReason::HandshakeInvalid,
        _ => DropReason::Malformed,
    }
}

#[cfg(test)]
impl PeerId {
    pub(crate) fn for_test(n: u32) -> PeerId {
        PeerId(n)
    }
}
