//! The flood: handshake initiations from unknown keys, each with a valid mac1 (the costly kind:
//! the server must do Diffie-Hellman before it knows the sender is nobody), optionally mixed
//! with random datagrams, at a given rate, on a thread of its own.

use crate::keys::device_secret;
use anyhow::{Context, Result};
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::PublicKey;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a flood sends, and from where.
pub struct Flood {
    /// Datagrams per second.
    pub rate: u32,
    pub source_base: Ipv4Addr,
    pub sources: u32,
}

/// Distinct junk initiations the flood cycles through (from as many unknown keys).
const FLOOD_KEYS: u32 = 4096;

/// The flood's datagrams and sockets, made before the clock starts.
pub struct FloodPlan {
    rate: u32,
    inits: Vec<Vec<u8>>,
    sockets: Vec<std::net::UdpSocket>,
}

impl Flood {
    pub fn plan(&self, server: SocketAddr, server_key: PublicKey, seed: u64) -> Result<FloodPlan> {
        let inits: Vec<Vec<u8>> = (0..FLOOD_KEYS)
            .map(|j| {
                let mut t = Tunn::new(
                    device_secret(seed ^ 0xf100d, j),
                    server_key,
                    None,
                    None,
                    j,
                    None,
                );
                let mut buf = vec![0u8; 256];
                match t.format_handshake_initiation(&mut buf, false) {
                    TunnResult::WriteToNetwork(p) => p.to_vec(),
                    _ => Vec::new(),
                }
            })
            .collect();
        let sockets: Vec<std::net::UdpSocket> = (0..self.sources.max(1))
            .map(|k| {
                let s = std::net::UdpSocket::bind(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::from(u32::from(self.source_base) + k)),
                    0,
                ))?;
                s.set_nonblocking(true)?;
                s.connect(server)?;
                Ok(s)
            })
            .collect::<std::io::Result<_>>()
            .context("binding the flood's sockets (are its source addresses configured?)")?;
        Ok(FloodPlan {
            rate: self.rate,
            inits,
            sockets,
        })
    }
}

impl FloodPlan {
    /// Replaces `share` percent of the datagrams the flood cycles through with random bytes of
    /// random length (1 to 1,500): what a scanner or a broken client sends.
    pub fn mix_junk(&mut self, share: u8, seed: u64) {
        let mut state = seed ^ 0x6a75_6e6b;
        let mut next = move || {
            // xorshift64: reproducible junk, no quality needed.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let count = self.inits.len();
        for (i, d) in self.inits.iter_mut().enumerate() {
            if i * 100 < usize::from(share) * count {
                let len = 1 + (next() % 1500) as usize;
                *d = (0..len).map(|_| next() as u8).collect();
            }
        }
        // Interleave junk and initiations instead of sending all junk first.
        let mut order: Vec<usize> = (0..count).collect();
        for i in (1..count).rev() {
            order.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        self.inits = order
            .into_iter()
            .map(|i| std::mem::take(&mut self.inits[i]))
            .collect();
    }

    /// Starts sending on a thread of its own, until [`Flooding::finish`].
    pub fn start(self) -> Flooding {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || self.send_until(&stop))
        };
        Flooding { stop, thread }
    }

    /// Sends the planned datagrams at their rate until `stop` is set. Returns how many it sent
    /// and how many its own sockets refused.
    fn send_until(&self, stop: &AtomicBool) -> (u64, u64) {
        let (inits, sockets) = (&self.inits, &self.sockets);
        let (mut sent, mut refused, mut n) = (0u64, 0u64, 0usize);
        let start = Instant::now();
        // Paced by the clock: by time t, rate * t datagrams should have left.
        while !stop.load(Ordering::Relaxed) {
            let due = (start.elapsed().as_secs_f64() * f64::from(self.rate)) as u64;
            if sent + refused >= due {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            for _ in 0..(due - sent - refused).min(256) {
                match sockets[n % sockets.len()].send(&inits[n % inits.len()]) {
                    Ok(_) => sent += 1,
                    Err(_) => refused += 1,
                }
                n += 1;
            }
        }
        (sent, refused)
    }
}

/// A flood under way.
pub struct Flooding {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64)>,
}

impl Flooding {
    /// Stops the flood; returns the datagrams sent and those its own sockets refused.
    pub fn finish(self) -> Result<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the flood thread panicked"))
    }
}

/// The `flood` subcommand: only the flood, for `duration`; returns its report.
pub fn run(
    f: &Flood,
    server: SocketAddr,
    server_key: PublicKey,
    junk_share: u8,
    duration: Duration,
    seed: u64,
) -> Result<serde_json::Value> {
    let mut plan = f.plan(server, server_key, seed)?;
    plan.mix_junk(junk_share, seed);
    let cpu_before = crate::cpu::own_cpu_s();
    let flooding = plan.start();
    std::thread::sleep(duration);
    let (sent, refused) = flooding.finish()?;
    Ok(serde_json::json!({
        "flood_sent": sent,
        "flood_refused_locally": refused,
        "flood_generator_cpu_s": crate::cpu::cpu_since(cpu_before),
    }))
}
