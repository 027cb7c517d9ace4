//! What the fuzz targets share: fixed keys and addresses, the record framing of their inputs,
//! a gateway `Device` with one client (a boringtun `Tunn`, protocol-wise a stock app) that the
//! targets drive, and the checks every output of the device must pass.
//!
//! Inputs are records, so that one file can hold a conversation and the seed files can be real
//! packets: `[tag][length, u16 little-endian][length bytes]`, the length cut to what is left.
//! `examples/seeds.rs` writes the seed corpus in this framing.

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use heimweg_core::{packet, AdmissionConfig, Device, IpNetwork, Output, PeerId, Policy, Transmit};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The gateway's and the client's private keys: fixed, so that seeds made once (real handshake
/// messages, with a valid mac1) keep meaning the same thing to every run.
pub const GATEWAY_SECRET: [u8; 32] = [0x11; 32];
pub const CLIENT_SECRET: [u8; 32] = [0x22; 32];
pub const PRESHARED: [u8; 32] = [0x33; 32];
/// The peer index generator's seed: the client's sessions get receiver indices derived from
/// it, so a captured transport packet finds the peer again in another run.
pub const DEVICE_SEED: u64 = 0x5eed;

pub const GATEWAY_ADDR: SocketAddr = sock([203, 0, 113, 1], 51820);
pub const CLIENT_ADDR: SocketAddr = sock([198, 51, 100, 2], 40000);
/// The client after roaming (another network).
pub const CLIENT_ROAMED: SocketAddr = sock([198, 51, 100, 77], 40001);
/// Somebody on the internet who has no key.
pub const STRANGER: SocketAddr = sock([192, 0, 2, 99], 1234);

pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2);
/// A host on the LAN the client's policy lets it reach, and one it does not.
pub const LAN_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const LAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 10);
pub const FORBIDDEN_V4: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
pub const FORBIDDEN_V6: Ipv6Addr = Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 1);

/// Output buffers as large as the workers' (the largest packet plus WireGuard's overhead).
pub const BIG_OUT: usize = 65535 + 96;

const fn sock(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3])), port)
}

pub fn public(secret: [u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(secret)).to_bytes()
}

/// The gateway's public key, computed once (a scalar multiplication per input adds up).
pub fn gateway_public() -> [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    *KEY.get_or_init(|| public(GATEWAY_SECRET))
}

pub fn client_public() -> [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    *KEY.get_or_init(|| public(CLIENT_SECRET))
}

/// One point in time all runs start from: only differences matter to the core.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

// ---- framing --------------------------------------------------------------------------------

/// Reads `[tag][len u16 le][bytes]` records off an input.
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Records<'a> {
    pub fn new(input: &'a [u8]) -> Records<'a> {
        Records { rest: input }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.rest.split_first()?;
        let (len, rest) = match rest {
            [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
            _ => (rest.len(), &[][..]),
        };
        let (body, rest) = rest.split_at(len.min(rest.len()));
        self.rest = rest;
        Some((tag, body))
    }
}

/// Appends one record to `out` (for the seed writer).
pub fn record(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(body);
}

// ---- WireGuard message helpers ----------------------------------------------------------------

/// Puts a valid mac1 on a handshake initiation (148 bytes) or response (92 bytes) addressed to
/// the holder of `receiver_public`: `MAC(HASH("mac1----" || key), msg[..mac1])`. Without it a
/// fuzzed handshake message never gets past the first check.
pub fn set_mac1(msg: &mut [u8], receiver_public: &[u8; 32]) {
    use blake2::digest::{FixedOutput, KeyInit, Update};
    use blake2::{Blake2s256, Blake2sMac, Digest};
    if msg.len() < 32 {
        return;
    }
    let key: [u8; 32] = Blake2s256::new()
        .chain_update(b"mac1----")
        .chain_update(receiver_public)
        .finalize()
        .into();
    let at = msg.len() - 32;
    let mut mac = <Blake2sMac<blake2::digest::consts::U16> as KeyInit>::new_from_slice(&key)
        .expect("a 32-byte key");
    Update::update(&mut mac, &msg[..at]);
    let tag: [u8; 16] = mac.finalize_fixed().into();
    msg[at..at + 16].copy_from_slice(&tag);
}

// ---- IP packets -------------------------------------------------------------------------------

/// An IPv4 or IPv6 packet with a TCP (proto 6) or UDP (17) header and `payload`; checksums are
/// not filled in (the core does not look at them).
pub fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let l4 = if proto == 6 { 20 } else { 8 };
    let mut t = vec![0u8; l4];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&443u16.to_be_bytes());
    if proto == 6 {
        t[4..8].copy_from_slice(&1000u32.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = 0x18; // ACK, PSH
        t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    } else {
        t[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    }
    t.extend_from_slice(payload);
    let mut p = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = vec![0u8; 20];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&((20 + t.len()) as u16).to_be_bytes());
            h[6] = 0x40;
            h[8] = 64;
            h[9] = proto;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            h
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut h = vec![0u8; 40];
            h[0] = 0x60;
            h[4..6].copy_from_slice(&(t.len() as u16).to_be_bytes());
            h[6] = proto;
            h[7] = 64;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            h
        }
        _ => panic!("mixed address families"),
    };
    p.extend_from_slice(&t);
    p
}

/// Overwrites the addresses of an IPv4 or IPv6 packet (if its header is there), so that fuzzed
/// packets reach the checks behind the routing lookup.
pub fn set_addresses(p: &mut [u8], v4: (Ipv4Addr, Ipv4Addr), v6: (Ipv6Addr, Ipv6Addr)) {
    match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= 20 => {
            p[12..16].copy_from_slice(&v4.0.octets());
            p[16..20].copy_from_slice(&v4.1.octets());
        }
        Some(6) if p.len() >= 40 => {
            p[8..24].copy_from_slice(&v6.0.octets());
            p[24..40].copy_from_slice(&v6.1.octets());
        }
        _ => {}
    }
}

// ---- the gateway and its client ---------------------------------------------------------------

/// Which state a target's input starts from: bits of its first byte.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    /// 0: no peer; 1: the client is a peer, no session; 2: a live session; 3: the client is a
    /// peer but the gateway has no private key.
    pub state: u8,
    /// Tiny admission limits, so that queues fill and cookies are demanded within a few records.
    pub tight_admission: bool,
    /// An access policy on the peer (LAN_V4/24 and LAN_V6/64 only).
    pub policy: bool,
    pub preshared: bool,
    /// The gateway knows the client's endpoint before it hears from it (the wg-quick role).
    pub endpoint: bool,
    /// No idle peer keeps a `Tunn` (the path of gateways with more than 10,000 peers).
    pub no_retained: bool,
}

impl Setup {
    pub fn from_byte(b: u8) -> Setup {
        Setup {
            state: b & 3,
            tight_admission: b & 4 != 0,
            policy: b & 8 != 0,
            preshared: b & 16 != 0,
            endpoint: b & 32 != 0,
            no_retained: b & 64 != 0,
        }
    }
}

fn tight() -> AdmissionConfig {
    // Cookies from a queue of two (1 ms a handshake, one worker, 3 ms of wait), a known lane
    // of two, and every table at its limit within a few datagrams.
    AdmissionConfig {
        queue_capacity: 3,
        known_capacity: 2,
        cookie_after: Duration::from_millis(3),
        workers: 1,
        initial_handshake_cost: Duration::from_millis(1),
        per_source_rate: 2,
        per_source_burst: 3,
        free_cookie_rate: 1,
        max_cookie_rate: 4,
        per_source_cookie_rate: 1,
        per_source_cookie_burst: 2,
        max_sources: 2,
        max_known: 2,
        known_for: Duration::from_secs(60),
        max_prompts_per_second: 2,
    }
}

fn host(ip: IpAddr) -> IpNetwork {
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    IpNetwork::new_truncate(ip, bits).expect("a host prefix")
}

/// A gateway `Device`, the client's `Tunn`, a virtual clock, and checks on everything the
/// device returns.
pub struct Gateway {
    pub device: Device,
    pub setup: Setup,
    pub peer: Option<PeerId>,
    /// Made on first use: a `Tunn` costs a Diffie-Hellman, and many inputs never need one.
    client: Option<Tunn>,
    /// Where the client sends from now.
    pub client_addr: SocketAddr,
    pub now: Instant,
    out: Vec<u8>,
    cbuf: Vec<u8>,
    /// Datagrams in flight: (from, to, bytes).
    pub wire: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
}

impl Gateway {
    pub fn new(setup: Setup) -> Gateway {
        let key = (setup.state != 3).then_some(GATEWAY_SECRET);
        let admission = if setup.tight_admission {
            tight()
        } else {
            AdmissionConfig::default()
        };
        let mut device = Device::new(key, DEVICE_SEED, admission);
        if setup.no_retained {
            device.set_retained_tunnels(0);
        }
        let psk = setup.preshared.then_some(PRESHARED);
        let peer = (setup.state != 0).then(|| {
            let id = device.add_peer(client_public());
            device.add_allowed_ip(id, host(CLIENT_V4.into()));
            device.add_allowed_ip(id, host(CLIENT_V6.into()));
            device.set_preshared_key(id, psk);
            if setup.policy {
                let lan = [
                    IpNetwork::new_truncate(IpAddr::V4(LAN_V4), 24).expect("prefix"),
                    IpNetwork::new_truncate(IpAddr::V6(LAN_V6), 64).expect("prefix"),
                ];
                device.set_policy(id, Some(Arc::new(Policy::new(lan))));
            }
            if setup.endpoint {
                device.set_endpoint(id, CLIENT_ADDR);
            }
            id
        });
        let mut g = Gateway {
            device,
            setup,
            peer,
            client: None,
            client_addr: CLIENT_ADDR,
            now: epoch(),
            out: vec![0u8; BIG_OUT],
            cbuf: vec![0u8; BIG_OUT],
            wire: VecDeque::new(),
        };
        if setup.state == 2 {
            g.client_initiate(false);
            g.settle();
            assert!(
                g.device
                    .peer(g.peer.expect("a peer"))
                    .and_then(|p| p.last_handshake_ago)
                    .is_some(),
                "harness: the client's handshake did not make a session"
            );
        }
        g
    }

    /// The client's `Tunn`: a stock app, protocol-wise.
    pub fn client(&mut self) -> &mut Tunn {
        let psk = self.setup.preshared.then_some(PRESHARED);
        self.client.get_or_insert_with(|| {
            Tunn::new(
                StaticSecret::from(CLIENT_SECRET),
                PublicKey::from(gateway_public()),
                psk,
                None,
                0x42,
                None,
            )
        })
    }

    /// The client starts a handshake, as an app does when it is switched on.
    pub fn client_initiate(&mut self, force: bool) {
        self.client();
        let client = self.client.as_mut().expect("made above");
        if let TunnResult::WriteToNetwork(b) =
            client.format_handshake_initiation(&mut self.cbuf, force)
        {
            let b = b.to_vec();
            self.wire.push_back((self.client_addr, GATEWAY_ADDR, b));
        }
    }

    /// The client's app sends `plaintext` (normally an IP packet) into its tunnel.
    pub fn client_send(&mut self, plaintext: &[u8]) {
        if plaintext.len() + 32 > self.cbuf.len() {
            return;
        }
        self.client();
        let client = self.client.as_mut().expect("made above");
        if let TunnResult::WriteToNetwork(b) = client.encapsulate(plaintext, &mut self.cbuf) {
            let b = b.to_vec();
            self.wire.push_back((self.client_addr, GATEWAY_ADDR, b));
        }
    }

    /// The client's own timers (retries, keepalives, rekeys).
    pub fn client_timers(&mut self) {
        self.client();
        let client = self.client.as_mut().expect("made above");
        if let TunnResult::WriteToNetwork(b) = client.update_timers(&mut self.cbuf) {
            let b = b.to_vec();
            self.wire.push_back((self.client_addr, GATEWAY_ADDR, b));
        }
    }

    /// A datagram from `src` reaches the gateway, with an output buffer of `out_len` bytes.
    pub fn network(&mut self, src: SocketAddr, datagram: &[u8], out_len: usize) {
        let out_len = out_len.min(self.out.len());
        let before = self.device.counters();
        let o = self
            .device
            .handle_network(self.now, src, datagram, &mut self.out[..out_len]);
        let after = self.device.counters();
        let drops = after.total_drops() - before.total_drops();
        assert!(drops <= 1, "one datagram counted as {drops} drops");
        if o != Output::Nothing {
            assert_eq!(drops, 0, "a datagram was both dropped and answered: {o:?}");
        }
        self.output(o, out_len);
    }

    /// An IP packet from the LAN reaches the gateway's TUN.
    pub fn tun(&mut self, packet: &[u8], out_len: usize) {
        let out_len = out_len.min(self.out.len());
        let before = self.device.counters().total_drops();
        let o = self
            .device
            .handle_tun(self.now, packet, &mut self.out[..out_len]);
        let drops = self.device.counters().total_drops() - before;
        assert!(drops <= 1, "one packet counted as {drops} drops");
        if let Output::Network(t) = o {
            assert_eq!(drops, 0, "a packet was both dropped and sent");
            let peer = self.peer.and_then(|id| self.device.peer(id));
            assert_eq!(
                Some(t.dst),
                peer.and_then(|p| p.endpoint),
                "sent somewhere else than the peer's endpoint"
            );
        }
        assert!(
            !matches!(o, Output::Tun { .. }),
            "a packet from the TUN went back to the TUN"
        );
        self.output(o, out_len);
    }

    /// Checks one output of the device and puts a datagram for the client on the wire.
    fn output(&mut self, o: Output, out_len: usize) {
        match o {
            Output::Nothing => {}
            Output::Network(t) => self.transmit(t, out_len),
            Output::Tun { len, peer } => {
                assert!(len <= out_len, "a packet longer than the buffer");
                let p = &self.out[..len];
                let (src, dst) = packet::addresses(p).expect("only IP packets go to the TUN");
                assert_eq!(
                    Some(peer),
                    self.peer,
                    "a packet from a peer that is not ours"
                );
                let info = self.device.peer(peer).expect("the peer exists");
                assert!(
                    info.allowed_ips.iter().any(|n| n.contains(src)),
                    "source {src} is not the peer's (source validation)"
                );
                if self.setup.policy {
                    assert!(
                        matches!(dst, IpAddr::V4(a) if a.octets()[..3] == LAN_V4.octets()[..3])
                            || matches!(dst, IpAddr::V6(a) if a.segments()[..4] == LAN_V6.segments()[..4]),
                        "destination {dst} is outside the peer's policy"
                    );
                }
            }
        }
    }

    fn transmit(&mut self, t: Transmit, out_len: usize) {
        assert!(t.len > 0 && t.len <= out_len, "datagram of {} bytes", t.len);
        self.wire
            .push_back((GATEWAY_ADDR, t.dst, self.out[..t.len].to_vec()));
    }

    /// What the gateway does between batches: timers, queued packets, queued handshakes.
    pub fn housekeeping(&mut self, out_len: usize) {
        let out_len = out_len.min(self.out.len());
        for _ in 0..64 {
            match self
                .device
                .poll_transmit(self.now, &mut self.out[..out_len])
            {
                Some(t) => self.transmit(t, out_len),
                None => break,
            }
        }
        for _ in 0..16 {
            if self.device.handshake_queue_depth() == 0 {
                break;
            }
            if let Some(t) = self
                .device
                .poll_handshake(self.now, &mut self.out[..out_len])
            {
                self.transmit(t, out_len);
            }
        }
    }

    /// Answers one queued initiation step by step, as a worker does, and lets `meddle` change
    /// the peer while its `Tunn` is lent out.
    pub fn stepwise_handshake(&mut self, meddle: u8, out_len: usize) {
        let out_len = out_len.min(self.out.len());
        let mut pending = match self
            .device
            .take_handshake(self.now, &mut self.out[..out_len])
        {
            Some(heimweg_core::Taken::Pending(p)) => p,
            Some(heimweg_core::Taken::Reply(Some(t))) => return self.transmit(t, out_len),
            Some(heimweg_core::Taken::Reply(None)) | None => return,
        };
        pending.identify();
        let step = self
            .device
            .begin_handshake(self.now, pending, &mut self.out[..out_len]);
        let answer = match step {
            heimweg_core::HandshakeStep::Done(t) => t,
            heimweg_core::HandshakeStep::Lent(mut lent) => {
                if meddle & 1 != 0 {
                    lent.run(&mut self.out[..out_len]);
                }
                self.change_peer(meddle >> 1);
                self.device
                    .finish_handshake(self.now, lent, &mut self.out[..out_len])
            }
        };
        if let Some(t) = answer {
            self.transmit(t, out_len);
        }
    }

    /// A change of the peer set or of the peer, as the reconciler or `wg set` makes it.
    pub fn change_peer(&mut self, what: u8) {
        let client = client_public();
        match what % 8 {
            0 => {}
            1 => {
                if let Some(id) = self.peer.take() {
                    self.device.remove_peer(id);
                }
            }
            2 => {
                let id = self.device.add_peer(client);
                self.device.add_allowed_ip(id, host(CLIENT_V4.into()));
                self.device.add_allowed_ip(id, host(CLIENT_V6.into()));
                self.peer = Some(id);
            }
            3 => {
                if let Some(id) = self.peer {
                    let psk = (what & 8 != 0).then_some(PRESHARED);
                    self.device.set_preshared_key(id, psk);
                }
            }
            4 => {
                if let Some(id) = self.peer {
                    self.device
                        .set_persistent_keepalive(id, u16::from(what >> 3));
                }
            }
            5 => {
                if let Some(id) = self.peer {
                    self.device.set_endpoint(id, CLIENT_ROAMED);
                }
            }
            6 => {
                let key = match what >> 3 & 3 {
                    0 => None,
                    1 => Some([0x44; 32]),
                    // The client's own key: the gateway would be its own peer.
                    2 => Some(CLIENT_SECRET),
                    _ => Some(GATEWAY_SECRET),
                };
                self.device.set_private_key(key);
                if self.peer.is_some() && self.device.peer_id(&client).is_none() {
                    self.peer = None;
                }
            }
            _ => {
                if let Some(id) = self.peer {
                    self.device.clear_allowed_ips(id);
                }
            }
        }
    }

    /// The client moves to the other network (or back): it sends from another address.
    pub fn roam(&mut self) {
        self.client_addr = if self.client_addr == CLIENT_ADDR {
            CLIENT_ROAMED
        } else {
            CLIENT_ADDR
        };
    }

    /// Moves time on (the core's; boringtun reads its own clock).
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Delivers what is on the wire now (one hop: answers stay on the wire), without the
    /// gateway's housekeeping.
    pub fn deliver(&mut self) {
        let hop: Vec<_> = self.wire.drain(..).collect();
        for (from, to, bytes) in hop {
            self.arrive(from, to, &bytes);
        }
    }

    fn arrive(&mut self, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        if to == GATEWAY_ADDR {
            self.network(from, bytes, BIG_OUT);
        } else if to == CLIENT_ADDR || to == CLIENT_ROAMED {
            self.client_receives(from, bytes);
        }
    }

    /// Delivers what is on the wire (the client answers what reaches it) and lets the gateway
    /// do its housekeeping, until nothing moves or a bound is reached: a ping-pong between two
    /// state machines must not make an input run forever.
    pub fn settle(&mut self) {
        for _ in 0..16 {
            self.housekeeping(BIG_OUT);
            if self.wire.is_empty() {
                return;
            }
            self.deliver();
        }
        self.wire.clear();
    }

    fn client_receives(&mut self, from: SocketAddr, bytes: &[u8]) {
        self.client();
        let client = self.client.as_mut().expect("made above");
        let mut res = client.decapsulate(Some(from.ip()), bytes, &mut self.cbuf);
        for _ in 0..64 {
            match res {
                TunnResult::WriteToNetwork(b) => {
                    let b = b.to_vec();
                    self.wire.push_back((self.client_addr, GATEWAY_ADDR, b));
                    res = client.decapsulate(None, &[], &mut self.cbuf);
                }
                _ => return,
            }
        }
    }
}
