//! A deterministic in-memory simulator for the core: one gateway `Device` (and, for failovers,
//! a standby sharing its key), clients that are plain boringtun `Tunn`s (what the stock apps run,
//! protocol-wise), and a virtual network with a virtual clock, loss, reordering, duplication and
//! roaming.
//!
//! The clock is virtual for boringtun too: the core is built with `simulated-clock`, which makes
//! boringtun read `mock_instant`, and the simulator advances that clock with its own. So the
//! clients' retransmits (5 s), stored cookies, session expiry and rekeys happen in simulated time,
//! and handshake messages can be lost like any others.
//!
//! Handshakes go through [`answer_next_handshake`], the same steps the data plane's workers take,
//! and can be given a cost in simulated time, answered by one worker: a storm then builds a
//! queue as it does on a real gateway, and the admission policy sees the same drain times.

// Each test is one scenario that reads top to bottom; splitting it would hide the story.
#![allow(clippy::too_many_lines)]

mod handshakes;
mod sessions;
mod storms;

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use heimweg_core::{
    answer_next_handshake, AdmissionConfig, Device, DropReason, HandshakeStep, IpNetwork, Output,
    PeerId, Policy, Roaming, Taken, MIN_OUT_LEN,
};
use mock_instant::MockClock;
use rand_core::{OsRng, RngCore};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SERVER: &str = "203.0.113.1:51820";
const LAN_HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..].copy_from_slice(payload);
    p
}

fn keypair() -> ([u8; 32], [u8; 32]) {
    let mut k = [0u8; 32];
    OsRng.fill_bytes(&mut k);
    let s = StaticSecret::from(k);
    (k, PublicKey::from(&s).to_bytes())
}

struct Client {
    tunn: Tunn,
    addr: SocketAddr,
    inner: Ipv4Addr,
    peer: PeerId,
    /// IP packets the client's TUN received.
    received: Vec<Vec<u8>>,
    /// When the client first had a session (it received a handshake response), since
    /// [`Sim::mark`].
    connected_at: Option<Instant>,
    /// Initiations it sent, and cookie replies it received.
    initiations: u32,
    cookies: u32,
    /// When [`initiation`] last made one.
    last_initiation: Option<Instant>,
}

struct InFlight {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// Message types of the WireGuard wire format (first byte).
const MSG_INIT: u8 = 1;
const MSG_RESPONSE: u8 = 2;
const MSG_COOKIE: u8 = 3;
const MSG_DATA: u8 = 4;

struct Sim {
    now: Instant,
    server: Device,
    server_public: [u8; 32],
    server_private: [u8; 32],
    /// A second gateway with the same key (an active/standby pair), and whether the server's
    /// address has moved to it: then datagrams to the server's address reach the standby.
    standby: Option<Device>,
    failed_over: bool,
    clients: Vec<Client>,
    net: Vec<InFlight>,
    seq: u64,
    rng: u64,
    /// Probability (per mille) that a data message is lost.
    loss_permille: u64,
    /// Probability (per mille) that a handshake message (initiation, response, cookie reply)
    /// is lost.
    handshake_loss_permille: u64,
    /// Extra random delay of data messages, which reorders them.
    jitter_ms: u64,
    /// Probability (per mille) that a data message is delivered twice.
    dup_permille: u64,
    /// What a handshake's Diffie-Hellman costs the gateway's one worker in simulated time
    /// (zero: answered at once), and until when that worker is busy.
    handshake_cost: Duration,
    busy_until: Instant,
    /// Whether the clients run their timers (retransmits, keepalives) while the simulation
    /// runs; a test that times a run wants them, one that steps by hand does not.
    client_timers: bool,
    /// What the gateway wrote to its TUN: (peer, packet); the standby's likewise.
    server_tun: Vec<(PeerId, Vec<u8>)>,
    standby_tun: Vec<(PeerId, Vec<u8>)>,
    /// Every datagram the gateway sent, for eavesdropping assertions.
    server_sent: Vec<(SocketAddr, Vec<u8>)>,
    /// When the current scenario started, for [`Client::connected_at`].
    mark: Instant,
}

/// How often the clients' timers are looked at when they run (boringtun's own tick).
const CLIENT_TICK: Duration = Duration::from_millis(100);

impl Sim {
    fn new(admission: AdmissionConfig) -> Sim {
        // boringtun's clock is per thread and starts at zero: every test starts alike.
        MockClock::set_time(Duration::ZERO);
        let (sk, spk) = keypair();
        let now = Instant::now();
        Sim {
            now,
            server: Device::new(Some(sk), 0x5eed, admission),
            server_public: spk,
            server_private: sk,
            standby: None,
            failed_over: false,
            clients: Vec::new(),
            net: Vec::new(),
            seq: 0,
            rng: 0x1234_5678_9abc_def1,
            loss_permille: 0,
            handshake_loss_permille: 0,
            jitter_ms: 0,
            dup_permille: 0,
            handshake_cost: Duration::ZERO,
            busy_until: now,
            client_timers: false,
            server_tun: Vec::new(),
            standby_tun: Vec::new(),
            server_sent: Vec::new(),
            mark: now,
        }
    }

    /// splitmix64: reproducible, and without the patterns a plain xorshift shows when the same
    /// sequence of sends repeats every retransmit round.
    fn rand(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn server_addr() -> SocketAddr {
        SERVER.parse().unwrap()
    }

    /// Moves both clocks, the simulator's and boringtun's, forward.
    fn advance(&mut self, by: Duration) {
        self.now += by;
        MockClock::advance(by);
    }

    fn advance_to(&mut self, t: Instant) {
        if t > self.now {
            self.advance(t - self.now);
        }
    }

    /// Adds a client with its own key, outer address and inner /32.
    fn add_client(&mut self) -> usize {
        let i = self.clients.len();
        let addr: SocketAddr = format!("198.51.{}.{}:{}", 100 + i / 250, 2 + i % 250, 40000 + i)
            .parse()
            .unwrap();
        self.add_client_at(addr)
    }

    /// Adds a client sending from `addr` (several may share an address's IP, as behind a NAT).
    fn add_client_at(&mut self, addr: SocketAddr) -> usize {
        let i = self.clients.len();
        let (ck, cpk) = keypair();
        let inner = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 77, 0, 2)) + i as u32);
        let allowed = IpNetwork::new_truncate(IpAddr::V4(inner), 32).unwrap();
        let peer = self.server.add_peer(cpk);
        self.server.add_allowed_ip(peer, allowed);
        if let Some(standby) = self.standby.as_mut() {
            let id = standby.add_peer(cpk);
            standby.add_allowed_ip(id, allowed);
        }
        let tunn = Tunn::new(
            StaticSecret::from(ck),
            PublicKey::from(self.server_public),
            None,
            None,
            OsRng.next_u32() >> 8,
            None,
        );
        self.clients.push(Client {
            tunn,
            addr,
            inner,
            peer,
            received: Vec::new(),
            connected_at: None,
            initiations: 0,
            cookies: 0,
            last_initiation: None,
        });
        i
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        let is_data = bytes.first() == Some(&MSG_DATA);
        let loss = if is_data {
            self.loss_permille
        } else {
            self.handshake_loss_permille
        };
        if loss > 0 && self.rand() % 1000 < loss {
            return;
        }
        let mut delay = Duration::from_millis(1);
        if is_data {
            if self.jitter_ms > 0 {
                delay += Duration::from_millis(self.rand() % self.jitter_ms);
            }
            if self.dup_permille > 0 && self.rand() % 1000 < self.dup_permille {
                self.seq += 1;
                self.net.push(InFlight {
                    at: self.now + delay + Duration::from_millis(1),
                    seq: self.seq,
                    from,
                    to,
                    bytes: bytes.clone(),
                });
            }
        }
        self.seq += 1;
        self.net.push(InFlight {
            at: self.now + delay,
            seq: self.seq,
            from,
            to,
            bytes,
        });
    }

    /// The client's app sends an IP packet into its tunnel.
    fn client_send_ip(&mut self, i: usize, packet: &[u8]) {
        let mut out = vec![0u8; 2048];
        let res = self.clients[i].tunn.encapsulate(packet, &mut out);
        if let TunnResult::WriteToNetwork(b) = res {
            let b = b.to_vec();
            self.client_out(i, b);
        }
    }

    fn client_out(&mut self, i: usize, bytes: Vec<u8>) {
        if bytes.first() == Some(&MSG_INIT) {
            self.clients[i].initiations += 1;
        }
        let from = self.clients[i].addr;
        self.send(from, Self::server_addr(), bytes);
    }

    /// Starts the client's handshake explicitly (as the apps do when brought up).
    fn client_handshake(&mut self, i: usize) {
        let b = initiation(self, i);
        self.client_out(i, b);
    }

    /// A host behind the gateway sends an IP packet towards the tunnel.
    fn server_send_ip(&mut self, packet: &[u8]) -> Output {
        let mut out = vec![0u8; 2048];
        let o = self.server.handle_tun(self.now, packet, &mut out);
        if let Output::Network(t) = o {
            self.server_out(t.dst, out[..t.len].to_vec());
        }
        o
    }

    fn server_out(&mut self, dst: SocketAddr, bytes: Vec<u8>) {
        self.server_sent.push((dst, bytes.clone()));
        self.send(Self::server_addr(), dst, bytes);
    }

    /// The gateway that answers at the server's address now.
    fn serving(&self) -> &Device {
        match (&self.standby, self.failed_over) {
            (Some(standby), true) => standby,
            _ => &self.server,
        }
    }

    /// What the gateway does between batches: timers and waiting packets, then the queued
    /// handshakes, as a worker answers them, while its simulated time allows.
    fn drain_server(&mut self) {
        let mut out = vec![0u8; 2048];
        loop {
            let mut progress = false;
            while let Some(t) = self.serving().poll_transmit(self.now, &mut out) {
                self.server_out(t.dst, out[..t.len].to_vec());
                progress = true;
            }
            while self.serving().handshake_queue_depth() > 0 && self.busy_until <= self.now {
                let now = self.now;
                let Some(answered) = answer_next_handshake(|| self.serving(), now, &mut out) else {
                    break;
                };
                let mut at = now;
                if answered.diffie_hellman && !self.handshake_cost.is_zero() {
                    self.serving().record_handshake_cost(self.handshake_cost);
                    self.busy_until = self.busy_until.max(now) + self.handshake_cost;
                    at = self.busy_until;
                }
                if let Some(t) = answered.transmit {
                    // Sent when the worker is done with it.
                    let bytes = out[..t.len].to_vec();
                    self.server_sent.push((t.dst, bytes.clone()));
                    let seq = self.seq;
                    self.send(Self::server_addr(), t.dst, bytes);
                    if self.seq != seq {
                        if let Some(m) = self.net.last_mut() {
                            m.at += at - now;
                        }
                    }
                }
                progress = true;
            }
            if !progress {
                break;
            }
        }
    }

    /// The clients' timers: retransmits of unanswered initiations (with mac2 once a cookie was
    /// stored), keepalives and rekeys, as boringtun, like the stock apps, runs them.
    fn tick_clients(&mut self) {
        let mut out = vec![0u8; 2048];
        for i in 0..self.clients.len() {
            if let TunnResult::WriteToNetwork(b) = self.clients[i].tunn.update_timers(&mut out) {
                let b = b.to_vec();
                self.client_out(i, b);
            }
        }
    }

    fn deliver(&mut self, m: InFlight) {
        let mut out = vec![0u8; 2048];
        if m.to == Self::server_addr() {
            let o = self
                .serving()
                .handle_network(self.now, m.from, &m.bytes, &mut out);
            match o {
                Output::Network(t) => self.server_out(t.dst, out[..t.len].to_vec()),
                Output::Tun { len, peer } if self.failed_over => {
                    self.standby_tun.push((peer, out[..len].to_vec()));
                }
                Output::Tun { len, peer } => self.server_tun.push((peer, out[..len].to_vec())),
                Output::Nothing => {}
            }
            return;
        }
        let Some(i) = self.clients.iter().position(|c| c.addr == m.to) else {
            return; // the client has moved away: the datagram is lost
        };
        let kind = m.bytes.first().copied();
        let mut res = self.clients[i]
            .tunn
            .decapsulate(Some(m.from.ip()), &m.bytes, &mut out)
            .into_owned();
        if kind == Some(MSG_COOKIE) && matches!(res, Owned::None) {
            // Stored, nothing sent: the retransmit will carry mac2 (wireguard-go, the kernel).
            self.clients[i].cookies += 1;
        }
        if kind == Some(MSG_RESPONSE) && matches!(res, Owned::Net(_)) {
            let c = &mut self.clients[i];
            c.connected_at.get_or_insert(self.now);
        }
        loop {
            match res {
                Owned::Net(b) => {
                    self.client_out(i, b);
                    // Drain what boringtun queued while it had no session.
                    res = self.clients[i]
                        .tunn
                        .decapsulate(None, &[], &mut out)
                        .into_owned();
                }
                Owned::Tun(p) => {
                    self.clients[i].received.push(p);
                    break;
                }
                Owned::None => break,
            }
        }
    }

    /// Advances virtual time, delivering everything due and answering queued handshakes as
    /// the worker gets to them. Without client timers it stops as soon as the network is quiet
    /// (at most `for_at_most`); with them it runs the whole time, ticking the clients.
    fn run(&mut self, for_at_most: Duration) {
        let end = self.now + for_at_most;
        let mut next_tick = self.now;
        loop {
            self.drain_server();
            if self.client_timers && next_tick <= self.now {
                self.tick_clients();
                next_tick = self.now + CLIENT_TICK;
                continue;
            }
            self.net.sort_by_key(|m| (m.at, m.seq));
            let mut next = self.net.first().map(|m| m.at);
            if self.serving().handshake_queue_depth() > 0 {
                next = Some(next.map_or(self.busy_until, |t| t.min(self.busy_until)));
            }
            if self.client_timers {
                next = Some(next.map_or(next_tick, |t| t.min(next_tick)));
            }
            let Some(next) = next.filter(|t| *t <= end) else {
                if self.client_timers {
                    self.advance_to(end);
                }
                break;
            };
            self.advance_to(next);
            if self.net.first().is_some_and(|m| m.at <= self.now) {
                let m = self.net.remove(0);
                self.deliver(m);
            }
        }
    }

    fn connect_all(&mut self) {
        for i in 0..self.clients.len() {
            self.client_handshake(i);
        }
        self.run(Duration::from_secs(1));
    }

    /// Adds the standby gateway: the same private key, every current client as a peer.
    fn add_standby(&mut self, admission: AdmissionConfig) {
        let mut standby = Device::new(Some(self.server_private), 0x5eee, admission);
        for c in &self.clients {
            let info = self.server.peer(c.peer).unwrap();
            let id = standby.add_peer(info.public_key);
            for net in info.allowed_ips {
                standby.add_allowed_ip(id, net);
            }
        }
        self.standby = Some(standby);
    }
}

enum Owned {
    Net(Vec<u8>),
    Tun(Vec<u8>),
    None,
}

trait IntoOwned {
    fn into_owned(self) -> Owned;
}

impl IntoOwned for TunnResult<'_> {
    fn into_owned(self) -> Owned {
        match self {
            TunnResult::WriteToNetwork(b) => Owned::Net(b.to_vec()),
            TunnResult::WriteToTunnelV4(b, _) | TunnResult::WriteToTunnelV6(b, _) => {
                Owned::Tun(b.to_vec())
            }
            _ => Owned::None,
        }
    }
}

/// The initiation client `i` would send now. If it sent one at this very moment, the clock moves
/// on by a millisecond first: its TAI64N timestamp must be newer than the client's last, or the
/// gateway takes it for a replay.
fn initiation(sim: &mut Sim, i: usize) -> Vec<u8> {
    if sim.clients[i].last_initiation == Some(sim.now) {
        sim.advance(Duration::from_millis(1));
    }
    sim.clients[i].last_initiation = Some(sim.now);
    let mut out = vec![0u8; 2048];
    match sim.clients[i]
        .tunn
        .format_handshake_initiation(&mut out, true)
    {
        TunnResult::WriteToNetwork(b) => b.to_vec(),
        _ => panic!("no initiation"),
    }
}

/// An initiation from an unknown key that knows the gateway's public key (valid mac1).
fn junk_initiation(sim: &Sim) -> Vec<u8> {
    let (k, _) = keypair();
    let mut t = Tunn::new(
        StaticSecret::from(k),
        PublicKey::from(sim.server_public),
        None,
        None,
        1,
        None,
    );
    let mut out = vec![0u8; 2048];
    match t.format_handshake_initiation(&mut out, false) {
        TunnResult::WriteToNetwork(b) => b.to_vec(),
        _ => panic!("no initiation"),
    }
}
