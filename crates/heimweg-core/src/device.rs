//! The concentrator state machine: many peers behind one key, one port and one TUN.

use crate::admission::{Admission, AdmissionConfig, INIT_LEN};
use crate::allowed_ips::AllowedIps;
use crate::counters::{Count, Counters, DropReason, Tally};
use crate::packet;
use crate::policy::Policy;
use crate::timers::Timers;
use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use ip_network::IpNetwork;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// A handshake initiation taken off the queue (see [`Device::take_handshake`]).
pub struct PendingHandshake {
    init: crate::admission::QueuedInit,
    secret: StaticSecret,
    public: PublicKey,
}

impl PendingHandshake {
    /// The sender's static public key, if the initiation decrypts for us: one Diffie-Hellman,
    /// with no device state, so callers run it without holding the device.
    pub fn identify(&self) -> Option<Key> {
        match Tunn::parse_incoming_packet(&self.init.bytes) {
            Ok(Packet::HandshakeInit(p)) => parse_handshake_anon(&self.secret, &self.public, &p)
                .ok()
                .map(|half| half.peer_static_public),
            _ => None,
        }
    }
}

/// What [`Device::begin_handshake`] did with an initiation.
pub enum HandshakeStep {
    /// Answered (the datagram to send) or dropped, under the lock.
    Done(Option<Transmit>),
    /// The peer has no session, so its `Tunn` was lent out: [`LentHandshake::run`] it without
    /// holding the device, then hand it to [`Device::finish_handshake`]. (Boxed: it carries
    /// the initiation; one allocation per handshake is nothing beside its Diffie-Hellmans.)
    Lent(Box<LentHandshake>),
}

/// A peer's `Tunn`, lent out to answer one initiation. Hand it back with
/// [`Device::finish_handshake`] even if [`LentHandshake::run`] was not called: until then the
/// peer cannot handshake.
#[must_use]
pub struct LentHandshake {
    id: PeerId,
    generation: u64,
    tunn: Lent,
    init: crate::admission::QueuedInit,
    result: Option<Result<Span, WireGuardError>>,
}

/// The state lent out: the peer's `Tunn`, or, for an idle peer that has none, what makes one
/// (making one costs a Diffie-Hellman too, so it also happens without the lock).
enum Lent {
    Tunn(Box<Tunn>),
    Make(TunnSpec),
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

impl LentHandshake {
    /// Computes the answer (the handshake's Diffie-Hellmans) into `out`.
    pub fn run(&mut self, out: &mut [u8]) {
        if let Lent::Make(spec) = &self.tunn {
            self.tunn = Lent::Tunn(new_tunn(spec));
        }
        let Lent::Tunn(tunn) = &mut self.tunn else {
            return;
        };
        let base = out.as_ptr() as usize;
        let result = tunn.decapsulate(Some(self.init.src.ip()), &self.init.bytes, out);
        self.result = Some(locate(result, base).map(|l| l.settle(out)));
    }
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
}

impl Live {
    fn holds_tunn(&self) -> bool {
        self.tunn.is_some() || self.lent
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
            admission: Mutex::new(Admission::new(admission)),
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

    /// The counters as they are now.
    pub fn counters(&self) -> Counters {
        self.counters.read()
    }

    /// Initiations waiting for Diffie-Hellman.
    pub fn handshake_queue_depth(&self) -> usize {
        self.admission.lock().depth()
    }

    pub fn peer_count(&self) -> usize {
        self.by_key.len()
    }

    /// Peers holding a `Tunn` (WireGuard session state, about 11 KB each): the active ones.
    /// Idle peers get theirs on first use and lose it when their session has expired.
    pub fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::Relaxed)
    }

    /// Sets how many peers may hold session state while idle (default [`RETAINED_TUNNELS`]),
    /// trading memory for handshakes that need no extra Diffie-Hellman.
    pub fn set_retained_tunnels(&mut self, n: usize) {
        self.retained_tunnels = n;
    }

    /// Peers whose current session was established less than `window` ago. Walks the table
    /// without building a [`PeerInfo`] per peer, taking each peer's lock only for a moment.
    pub fn peers_with_handshake_within(&self, window: Duration) -> usize {
        self.peers
            .iter()
            .flatten()
            .filter(|p| {
                p.live
                    .lock()
                    .tunn
                    .as_ref()
                    .and_then(|t| t.time_since_last_handshake())
                    .is_some_and(|ago| ago < window)
            })
            .count()
    }

    pub fn peer_id(&self, key: &Key) -> Option<PeerId> {
        self.by_key.get(key).copied()
    }

    /// Makes room for `additional` more peers at once. Growing the tables moves every entry,
    /// which takes milliseconds at tens of thousands of peers; done for a whole set while the
    /// tables are still small (a gateway starting), that copying never happens.
    pub fn reserve_peers(&mut self, additional: usize) {
        let free = self.free_slots.len();
        self.peers.reserve(additional.saturating_sub(free));
        self.by_key.reserve(additional);
        self.by_index.reserve(additional);
    }

    /// Adds a peer with no allowed IPs, or returns the existing one.
    pub fn add_peer(&mut self, public_key: Key) -> PeerId {
        if let Some(id) = self.by_key.get(&public_key) {
            return *id;
        }
        let index = self.fresh_index();
        let peer = Peer {
            public_key,
            preshared_key: None,
            persistent_keepalive: 0,
            index,
            allowed_ips: Vec::new(),
            generation: self.next_generation(),
            policy: None,
            live: Mutex::new(Live {
                tunn: None,
                endpoint: None,
                rx_bytes: 0,
                tx_bytes: 0,
                needs_flush: false,
                waiting: 0,
                lent: false,
                deadline: None,
            }),
        };
        let id = match self.free_slots.pop() {
            Some(slot) => {
                self.peers[slot as usize] = Some(peer);
                PeerId(slot)
            }
            None => {
                self.peers.push(Some(peer));
                PeerId((self.peers.len() - 1) as u32)
            }
        };
        self.by_key.insert(public_key, id);
        self.by_index.insert(index, id);
        self.rebuild_tunn(id);
        id
    }

    /// Removes a peer with its sessions, allowed IPs and timers. Other peers are untouched.
    pub fn remove_peer(&mut self, id: PeerId) -> bool {
        let Some(mut peer) = self.peers.get_mut(id.slot()).and_then(Option::take) else {
            return false;
        };
        let live = peer.live.get_mut();
        if live.holds_tunn() {
            *self.tunnels.get_mut() -= 1;
        }
        if live.deadline.is_some() {
            *self.scheduled.get_mut() -= 1;
        }
        self.by_key.remove(&peer.public_key);
        self.by_index.remove(&peer.index);
        for net in &peer.allowed_ips {
            self.allowed_ips.remove(*net, id);
        }
        // Its heap entries are stale now: a slot reused by a new peer has its own deadline.
        self.free_slots.push(id.0);
        true
    }

    /// Removes every peer (UAPI `replace_peers`).
    pub fn clear_peers(&mut self) {
        let ids: Vec<PeerId> = self.by_key.values().copied().collect();
        for id in ids {
            self.remove_peer(id);
        }
    }

    /// Sets the preshared key. Changing it restarts only this peer's session.
    pub fn set_preshared_key(&mut self, id: PeerId, psk: Option<Key>) {
        if let Some(p) = self.peer_mut(id) {
            if p.preshared_key != psk {
                p.preshared_key = psk;
                self.rebuild_tunn(id);
            }
        }
    }

    /// Sets the persistent keepalive interval in seconds (0 = off). boringtun fixes it at
    /// construction, so a change restarts only this peer's session.
    pub fn set_persistent_keepalive(&mut self, id: PeerId, seconds: u16) {
        if let Some(p) = self.peer_mut(id) {
            if p.persistent_keepalive != seconds {
                p.persistent_keepalive = seconds;
                self.rebuild_tunn(id);
            }
        }
    }

    /// Sets the peer's access policy (usually its group's, shared). Takes effect with the next
    /// packet; the session is untouched. Returns whether the allowed prefixes changed, since a
    /// reconciler resends every peer's policy on each pass.
    pub fn set_policy(&mut self, id: PeerId, policy: Option<Arc<Policy>>) -> bool {
        let Some(p) = self.peer_mut(id) else {
            return false;
        };
        let same = Policy::same(p.policy.as_ref(), policy.as_ref());
        p.policy = policy;
        !same
    }

    pub fn set_endpoint(&mut self, id: PeerId, endpoint: SocketAddr) {
        if let Some(p) = self.peer_mut(id) {
            p.live.get_mut().endpoint = Some(endpoint);
        }
    }

    /// Gives `net` to the peer; if another peer held exactly this prefix it loses it.
    pub fn add_allowed_ip(&mut self, id: PeerId, net: IpNetwork) {
        if self.peer_mut(id).is_none() {
            return;
        }
        if let Some(prev) = self.allowed_ips.insert(net, id) {
            if let Some(p) = self.peer_mut(prev) {
                p.allowed_ips.retain(|n| *n != net);
            }
        }
        if let Some(p) = self.peer_mut(id) {
            if !p.allowed_ips.contains(&net) {
                p.allowed_ips.push(net);
            }
        }
    }

    pub fn remove_allowed_ip(&mut self, id: PeerId, net: IpNetwork) {
        if self.allowed_ips.remove(net, id) {
            if let Some(p) = self.peer_mut(id) {
                p.allowed_ips.retain(|n| *n != net);
            }
        }
    }

    pub fn clear_allowed_ips(&mut self, id: PeerId) {
        let nets = self
            .peer_mut(id)
            .map(|p| std::mem::take(&mut p.allowed_ips))
            .unwrap_or_default();
        for net in nets {
            self.allowed_ips.remove(net, id);
        }
    }

    /// A view of one peer.
    pub fn peer(&self, id: PeerId) -> Option<PeerInfo> {
        let p = self.peers.get(id.slot())?.as_ref()?;
        let live = p.live.lock();
        Some(PeerInfo {
            id,
            public_key: p.public_key,
            preshared_key: p.preshared_key,
            endpoint: live.endpoint,
            persistent_keepalive: p.persistent_keepalive,
            allowed_ips: p.allowed_ips.clone(),
            last_handshake_ago: live
                .tunn
                .as_ref()
                .and_then(|t| t.time_since_last_handshake()),
            rx_bytes: live.rx_bytes,
            tx_bytes: live.tx_bytes,
        })
    }

    /// What the control plane sets on a peer, without copying it.
    pub fn peer_settings(&self, id: PeerId) -> Option<PeerSettings<'_>> {
        let p = self.peers.get(id.slot())?.as_ref()?;
        Some(PeerSettings {
            preshared_key: p.preshared_key,
            allowed_ips: &p.allowed_ips,
            policy: p.policy.as_ref(),
        })
    }

    /// Number of peer slots (occupied or free): the bound for [`Device::peer_keys`].
    pub fn peer_slots(&self) -> usize {
        self.peers.len()
    }

    /// The peers in `slots`, by public key: lets a caller walk a large table a piece at a time.
    pub fn peer_keys(
        &self,
        slots: std::ops::Range<usize>,
    ) -> impl Iterator<Item = (PeerId, Key)> + '_ {
        let end = slots.end.min(self.peers.len());
        let start = slots.start.min(end);
        self.peers[start..end]
            .iter()
            .zip(start..)
            .filter_map(|(p, s)| Some((PeerId(s as u32), p.as_ref()?.public_key)))
    }

    /// Every peer, in slot order.
    pub fn peers(&self) -> impl Iterator<Item = PeerInfo> + '_ {
        (0..self.peers.len() as u32).filter_map(|s| self.peer(PeerId(s)))
    }

    fn peer_mut(&mut self, id: PeerId) -> Option<&mut Peer> {
        self.peers.get_mut(id.slot()).and_then(Option::as_mut)
    }

    /// Applies a new identity or new settings to the peer's `Tunn`, ending its session. A peer
    /// gets one if it had one, needs one all the time (a persistent keepalive), or while fewer
    /// than [`RETAINED_TUNNELS`] peers hold one; others get theirs on first use (see
    /// [`Device::handle_tun`], [`Device::begin_handshake`]).
    fn rebuild_tunn(&mut self, id: PeerId) {
        let room = *self.tunnels.get_mut() < self.retained_tunnels;
        let generation = self.next_generation();
        let Some(p) = self.peers.get_mut(id.slot()).and_then(Option::as_mut) else {
            return;
        };
        let wanted = p.live.get_mut().holds_tunn() || room || p.persistent_keepalive > 0;
        let tunn = match &self.identity {
            Some(identity) if wanted => Some(new_tunn(&tunn_spec(identity, p))),
            _ => None,
        };
        p.generation = generation;
        let live = p.live.get_mut();
        let tunnels = self.tunnels.get_mut();
        *tunnels = *tunnels + usize::from(tunn.is_some()) - usize::from(live.holds_tunn());
        // A `Tunn` lent out for a handshake was made with the old settings: its answer is
        // dropped when it comes back (see `finish_handshake`).
        live.lent = false;
        live.tunn = tunn;
        live.needs_flush = false;
        live.waiting = 0;
        if live.deadline.take().is_some() {
            *self.scheduled.get_mut() -= 1;
        }
    }

    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// A random 24-bit peer index not in use. boringtun shifts it left by 8 and numbers the
    /// sessions in the low byte, so `receiver_index >> 8` finds the peer in one hash lookup.
    fn fresh_index(&mut self) -> u32 {
        loop {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let idx = (self.rng as u32) & 0x00ff_ffff;
            if !self.by_index.contains_key(&idx) {
                return idx;
            }
        }
    }

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
            return self.dropped(DropReason::UnknownIndex);
        };
        self.decapsulate(now, id, src, datagram, out)
    }

    fn admit_initiation(
        &self,
        now: Instant,
        src: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Output {
        let Some(identity) = self.identity.as_ref() else {
            return self.dropped(DropReason::NoPrivateKey);
        };
        // Under load, an initiation without mac2 can only earn a cookie reply, which costs
        // several MACs and an encryption. It is charged to its address's cookie budget first,
        // so that past the budget it is dropped before any MAC is computed; if its mac1 then
        // turns out wrong the charge is given back, so a sender who does not know our public
        // key cannot spend an address's budget. One with a mac2 goes on to be checked: it may
        // be a real device coming back with its cookie.
        let (loaded, charged) = {
            let mut admission = self.admission.lock();
            let loaded = admission.under_load(now);
            let charged = if loaded && datagram[INIT_LEN - 16..].iter().all(|&b| b == 0) {
                match admission.allow_cookie(now, src.ip()) {
                    Some(grant) => Some(grant),
                    None => {
                        drop(admission);
                        return self.dropped(DropReason::HandshakeRateLimited);
                    }
                }
            } else {
                None
            };
            (loaded, charged)
        };
        let limiter = if loaded {
            &identity.loaded
        } else {
            &identity.normal
        };
        // The MACs are checked without the admission lock: workers check them in parallel.
        match limiter.verify_packet(Some(src.ip()), datagram, out) {
            Ok(_) => {}
            Err(TunnResult::WriteToNetwork(cookie)) => {
                let len = cookie.len();
                // A wrong but non-zero mac2 was not charged beforehand; it is now. Its cost
                // is spent, but past the budget it gets no reply, so the gateway does not
                // reflect a flood without limit.
                if charged.is_none() && self.admission.lock().allow_cookie(now, src.ip()).is_none()
                {
                    return self.dropped(DropReason::HandshakeRateLimited);
                }
                self.counters.add(Count::CookiesSent, 1);
                return Output::Network(Transmit { dst: src, len });
            }
            Err(_) => {
                if let Some(grant) = charged {
                    self.admission.lock().refund_cookie(src.ip(), grant);
                }
                return self.dropped(DropReason::InvalidMac);
            }
        }
        let mut admission = self.admission.lock();
        // Only senders that proved mac1 (and, under load, their address via mac2) spend tokens,
        // so spoofed junk cannot exhaust a real address's budget.
        if !admission.allow_source(now, src.ip()) {
            drop(admission);
            return self.dropped(DropReason::HandshakeRateLimited);
        }
        if !admission.push(src, datagram) {
            drop(admission);
            return self.dropped(DropReason::HandshakeQueueFull);
        }
        Output::Nothing
    }

    /// Processes queued handshake initiations until one produces a response to send, the queue
    /// is empty, or a small work budget is spent. Call it a bounded number of times per loop.
    pub fn poll_handshake(&self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        if out.len() < MIN_OUT_LEN {
            return None;
        }
        for _ in 0..HANDSHAKE_WORK_PER_POLL {
            let pending = self.take_handshake()?;
            let sender = pending.identify();
            match self.begin_handshake(now, pending, sender, out) {
                HandshakeStep::Done(Some(t)) => return Some(t),
                HandshakeStep::Done(None) => continue,
                HandshakeStep::Lent(mut lent) => {
                    lent.run(out);
                    if let Some(t) = self.finish_handshake(now, lent, out) {
                        return Some(t);
                    }
                }
            }
        }
        None
    }

    /// Takes the next admitted initiation off the queue. The expensive part of answering it
    /// then runs without holding any lock, so several threads answer handshakes at once:
    /// [`PendingHandshake::identify`] (one Diffie-Hellman), then [`Device::begin_handshake`],
    /// then, for a peer without a session, [`LentHandshake::run`] (the handshake's own
    /// Diffie-Hellmans) and [`Device::finish_handshake`]. [`Device::poll_handshake`] does all
    /// of it in one call.
    pub fn take_handshake(&self) -> Option<PendingHandshake> {
        let Some(identity) = self.identity.as_ref() else {
            // The key was removed after these were queued: nothing can answer them. Left in the
            // queue they would keep its depth above zero, and the workers polling without pause.
            let stale = self.admission.lock().drain();
            for _ in 0..stale {
                self.counters.drop(DropReason::NoPrivateKey);
            }
            return None;
        };
        let init = self.admission.lock().pop()?;
        Some(PendingHandshake {
            init,
            secret: identity.secret.clone(),
            public: identity.public,
        })
    }

    /// Finds the peer `sender` (from [`PendingHandshake::identify`]) names. A peer with a live
    /// session answers at once, under its own lock, so its traffic pauses only for its own
    /// handshake; a peer without one (the Monday-morning case) lends its `Tunn` out to be
    /// answered without any lock.
    pub fn begin_handshake(
        &self,
        now: Instant,
        pending: PendingHandshake,
        sender: Option<Key>,
        out: &mut [u8],
    ) -> HandshakeStep {
        let known = sender.and_then(|k| self.by_key.get(&k).copied());
        self.admission.lock().record(now, known.is_some());
        let Some((id, peer)) = known.and_then(|id| Some((id, self.peer_ref(id)?))) else {
            return HandshakeStep::Done(self.dropped_none(DropReason::HandshakeInvalid));
        };
        let Some(identity) = &self.identity else {
            return HandshakeStep::Done(self.dropped_none(DropReason::NoPrivateKey));
        };
        let mut live = peer.live.lock();
        if live.lent {
            return HandshakeStep::Done(self.dropped_none(DropReason::HandshakeBusy));
        }
        let lent = match live.tunn.take() {
            // An idle peer: its `Tunn` is made outside the lock, too.
            None => {
                self.tunnels.fetch_add(1, Ordering::Relaxed);
                Some(Lent::Make(tunn_spec(identity, peer)))
            }
            Some(t)
                if t.time_since_last_handshake()
                    .is_none_or(|ago| ago >= SESSION_LIFETIME) =>
            {
                Some(Lent::Tunn(t))
            }
            Some(t) => {
                live.tunn = Some(t);
                None
            }
        };
        if let Some(tunn) = lent {
            live.lent = true;
            return HandshakeStep::Lent(Box::new(LentHandshake {
                id,
                generation: peer.generation,
                tunn,
                init: pending.init,
                result: None,
            }));
        }
        let init = &pending.init;
        let rx = Received {
            now,
            src: init.src,
            datagram: &init.bytes,
        };
        match self.decapsulate_locked(id, peer, &mut live, rx, out) {
            Output::Network(t) => HandshakeStep::Done(Some(t)),
            _ => HandshakeStep::Done(None),
        }
    }

    /// Gives a lent `Tunn` back and sends what it answered. If the peer was removed or
    /// rebuilt meanwhile, its new state wins and the answer is dropped.
    pub fn finish_handshake(
        &self,
        now: Instant,
        lent: Box<LentHandshake>,
        out: &mut [u8],
    ) -> Option<Transmit> {
        let LentHandshake {
            id,
            generation,
            tunn,
            init,
            result,
        } = *lent;
        let Some(peer) = self.peer_ref(id).filter(|p| p.generation == generation) else {
            return self.dropped_none(DropReason::HandshakeBusy);
        };
        let mut live = peer.live.lock();
        if !live.lent {
            return self.dropped_none(DropReason::HandshakeBusy);
        }
        live.lent = false;
        if live.tunn.is_some() {
            return self.dropped_none(DropReason::HandshakeBusy);
        }
        // Timers that came due while it was lent were skipped: look again soon.
        self.schedule(id, &mut live, now + TIMER_TICK);
        match tunn {
            Lent::Tunn(t) => live.tunn = Some(t),
            // Never run: the peer stays idle.
            Lent::Make(_) => {
                self.tunnels.fetch_sub(1, Ordering::Relaxed);
                return None;
            }
        }
        let result = result.unwrap_or(Err(WireGuardError::UnexpectedPacket));
        let rx = Received {
            now,
            src: init.src,
            datagram: &init.bytes,
        };
        match self.settle_decapsulation(id, peer, &mut live, rx, result, out) {
            Output::Network(t) => Some(t),
            _ => None,
        }
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
        live.endpoint = Some(src);
        live.rx_bytes += datagram.len() as u64;
        if let Output::Network(t) = verdict {
            live.tx_bytes += t.len as u64;
        }
        if is_init && matches!(verdict, Output::Network(_)) {
            self.counters.add(Count::HandshakesOk, 1);
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
        let tunn = match live.tunn {
            Some(ref mut t) => t,
            None => {
                let t = new_tunn(&tunn_spec(identity, peer));
                self.tunnels.fetch_add(1, Ordering::Relaxed);
                live.tunn.insert(t)
            }
        };
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
