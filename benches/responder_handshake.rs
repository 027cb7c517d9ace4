//! A responder answering one handshake initiation the way heimweg's data plane does: learn the
//! sender from the initiation without any peer state, look the peer up by its key, then let that
//! peer's `Tunn` answer. Two ways, in the same run:
//!
//! - `decapsulate`: `parse_handshake_anon`, then `Tunn::decapsulate` of the datagram, which does
//!   the first Diffie-Hellman and the decryption of the sender's static key again (and mac1);
//! - `identified`: `identify_handshake_init`, then `Tunn::handle_identified_handshake_init`,
//!   which continues from the state the first step computed (third_party/boringtun).
//!
//! 256 initiators; the responder keeps a `Tunn` per peer, all sharing one rate limiter that
//! never considers itself loaded, as heimweg's do. The initiations are made before the clock
//! starts, round robin over the initiators. The clock is the thread's time on a CPU
//! (`CLOCK_THREAD_CPUTIME_ID`): on a shared machine wall time also counts the time other work
//! held the core. Method and results: BENCHMARKS.md.
//!
//! With `RESPONDER_HANDSHAKE_CALLS=N` in the environment it answers N initiations each way and
//! exits instead, for counting instructions under callgrind:
//! `valgrind --tool=callgrind --toggle-collect='*respond_*' target/release/deps/responder_handshake-*`.

use boringtun::noise::handshake::{identify_handshake_init, parse_handshake_anon};
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use criterion::{criterion_group, Criterion};
use nix::time::{clock_gettime, ClockId};
use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

const INITIATORS: u32 = 256;
const INIT_LEN: usize = 148;
const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// The gateway's side: its key, and a `Tunn` per peer found by the peer's public key.
struct Responder {
    secret: StaticSecret,
    public: PublicKey,
    by_key: HashMap<[u8; 32], usize>,
    tunnels: Vec<Tunn>,
}

/// The devices' side, each a `Tunn` that makes initiations to the responder.
struct Initiators {
    tunnels: Vec<Tunn>,
    next: usize,
}

fn secret(n: u32, tag: u8) -> StaticSecret {
    let mut k = [tag; 32];
    k[..4].copy_from_slice(&n.to_le_bytes());
    StaticSecret::from(k)
}

fn setup() -> (Responder, Initiators) {
    let responder_secret = secret(0, 0x99);
    let responder_public = PublicKey::from(&responder_secret);
    let limiter = Arc::new(RateLimiter::new(&responder_public, u64::MAX));
    let mut responder = Responder {
        secret: responder_secret,
        public: responder_public,
        by_key: HashMap::new(),
        tunnels: Vec::new(),
    };
    let mut initiators = Initiators {
        tunnels: Vec::new(),
        next: 0,
    };
    for i in 0..INITIATORS {
        let initiator = secret(i, 0x11);
        let initiator_public = PublicKey::from(&initiator);
        responder
            .by_key
            .insert(initiator_public.to_bytes(), i as usize);
        responder.tunnels.push(Tunn::new(
            responder.secret.clone(),
            initiator_public,
            None,
            None,
            i,
            Some(limiter.clone()),
        ));
        initiators
            .tunnels
            .push(Tunn::new(initiator, responder_public, None, None, i, None));
    }
    (responder, initiators)
}

impl Initiators {
    /// `n` fresh initiations, round robin over the initiators. Answered in this order, each
    /// carries a newer timestamp than the last one its peer's `Tunn` accepted.
    fn initiations(&mut self, n: u64) -> Vec<[u8; INIT_LEN]> {
        let mut out = [0u8; INIT_LEN];
        (0..n)
            .map(|_| {
                let i = self.next;
                self.next = (i + 1) % self.tunnels.len();
                match self.tunnels[i].format_handshake_initiation(&mut out, true) {
                    TunnResult::WriteToNetwork(p) => p.try_into().expect("an initiation"),
                    other => panic!("no initiation: {other:?}"),
                }
            })
            .collect()
    }
}

/// The way before: identify, then the peer's `Tunn` starts over from the datagram.
#[inline(never)]
fn respond_decapsulate(r: &mut Responder, datagram: &[u8], out: &mut [u8]) -> usize {
    let Ok(Packet::HandshakeInit(init)) = Tunn::parse_incoming_packet(datagram) else {
        panic!("not an initiation");
    };
    let half = parse_handshake_anon(&r.secret, &r.public, &init).expect("one for us");
    let peer = r.by_key[&half.peer_static_public];
    match r.tunnels[peer].decapsulate(Some(SRC), datagram, out) {
        TunnResult::WriteToNetwork(response) => response.len(),
        other => panic!("no response: {other:?}"),
    }
}

/// The patched way: identify, then the peer's `Tunn` continues from that state.
#[inline(never)]
fn respond_identified(r: &mut Responder, datagram: &[u8], out: &mut [u8]) -> usize {
    let Ok(Packet::HandshakeInit(init)) = Tunn::parse_incoming_packet(datagram) else {
        panic!("not an initiation");
    };
    let identified = identify_handshake_init(&r.secret, &r.public, &init).expect("one for us");
    let peer = r.by_key[&identified.peer_static_public()];
    match r.tunnels[peer].handle_identified_handshake_init(identified, out) {
        TunnResult::WriteToNetwork(response) => response.len(),
        other => panic!("no response: {other:?}"),
    }
}

type Respond = fn(&mut Responder, &[u8], &mut [u8]) -> usize;

/// This thread's time on a CPU so far.
fn on_cpu() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("a thread CPU clock")
        .into()
}

/// Answers `inits` one after another; returns the CPU time that took.
fn answer_all(r: &mut Responder, respond: Respond, inits: &[[u8; INIT_LEN]]) -> Duration {
    let mut out = [0u8; INIT_LEN];
    let start = on_cpu();
    for init in inits {
        black_box(respond(r, black_box(init), &mut out));
    }
    on_cpu() - start
}

fn responder_handshake(c: &mut Criterion) {
    let (mut responder, mut initiators) = setup();
    let mut g = c.benchmark_group("responder_handshake");
    let ways: [(&str, Respond); 2] = [
        ("decapsulate", respond_decapsulate),
        ("identified", respond_identified),
    ];
    for (name, respond) in ways {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let inits = initiators.initiations(iters);
                answer_all(&mut responder, respond, &inits)
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(40).measurement_time(Duration::from_secs(4));
    targets = responder_handshake
}

fn main() {
    let calls = std::env::var("RESPONDER_HANDSHAKE_CALLS").ok();
    if let Some(n) = calls.and_then(|v| v.parse::<u64>().ok()) {
        let (mut responder, mut initiators) = setup();
        let inits = initiators.initiations(2 * n);
        let (old, new) = inits.split_at(n as usize);
        answer_all(&mut responder, respond_decapsulate, old);
        answer_all(&mut responder, respond_identified, new);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
