//! heimweg-loadgen: simulated WireGuard devices for load tests.
//!
//! Every simulated device is a real WireGuard peer (boringtun's `noise::Tunn`) with its own
//! key and its own UDP socket, so the server sees what it would see from stock apps.
//!
//! - `keys` prints the devices' peer sections (`wg setconf` format) for a seed, so the server
//!   can be configured with exactly the devices `storm` will simulate.
//! - `storm` is the Monday-morning storm: every device's first handshake initiation is
//!   computed before the clock starts and all are sent at once, spread over many source
//!   addresses; a device retries after 5 s (plus jitter) like the apps, and resends at once
//!   with mac2 after a cookie reply. It reports when each device had a session, and the
//!   cookies, retries and failures.
//!
//!   With `--flood-rate`, a flood runs alongside: handshake initiations from unknown keys,
//!   each with a valid mac1 (the costly kind: the server must do Diffie-Hellman before it
//!   knows the sender is nobody), from other source addresses, at a given rate.
//!
//! - `traffic` connects the devices as `storm` does, then sends UDP packets through every
//!   device's tunnel at a given rate (or as fast as it can), batched: the datagrams of up to
//!   64 devices that share a source address leave as one GSO message.
//! - `flood` runs only the flood, for a given time, so that a benchmark can measure what it
//!   does to established tunnels; `--junk-share` mixes in random datagrams.
//!
//! It deliberately receives nothing beyond handshakes (the server side counts what arrived) and
//! keeps no state beyond the run.

mod api;

use anyhow::{bail, Context, Result};
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use clap::{Parser, Subcommand};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The simulated devices and the server they connect to.
#[derive(clap::Args)]
struct Fleet {
    /// The server's UDP address.
    #[arg(long)]
    server: SocketAddr,
    /// The server's public key (base64).
    #[arg(long)]
    server_key: String,
    #[arg(long)]
    devices: u32,
    /// Simulate devices `first .. first + devices` of the seed's list (the server may know
    /// more devices than connect).
    #[arg(long, default_value_t = 0)]
    first: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// First source address; the devices are spread round-robin over `--sources`
    /// consecutive addresses from here (they must exist on an interface).
    #[arg(long)]
    source_base: Ipv4Addr,
    #[arg(long, default_value_t = 100)]
    sources: u32,
}

impl Fleet {
    /// The storm these devices make, without a flood unless one is added.
    fn storm(&self, retry: Duration, deadline: Duration) -> Result<Storm> {
        Ok(Storm {
            server: self.server,
            server_key: parse_key(&self.server_key)?,
            devices: self.devices,
            first: self.first,
            seed: self.seed,
            source_base: self.source_base,
            sources: self.sources.max(1),
            retry,
            deadline,
            flood: None,
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Print the peer sections of `--devices` simulated devices (`wg setconf` format).
    Keys {
        #[arg(long)]
        devices: u32,
        /// Keys are derived from this seed: the same seed gives the same devices.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// All devices start their handshakes at the same moment.
    Storm {
        #[command(flatten)]
        fleet: Fleet,
        /// Seconds until an unanswered device sends its initiation again (the apps: 5).
        #[arg(long, default_value_t = 5.0)]
        retry_secs: f64,
        /// Give up on devices without a session after this many seconds.
        #[arg(long, default_value_t = 40.0)]
        deadline_secs: f64,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
        /// Junk initiations per second sent during the storm (0: none).
        #[arg(long, default_value_t = 0)]
        flood_rate: u32,
        /// First source address of the flood; it uses `--flood-sources` consecutive ones.
        #[arg(long, default_value = "10.200.200.1")]
        flood_source_base: Ipv4Addr,
        #[arg(long, default_value_t = 50)]
        flood_sources: u32,
    },
    /// Devices connect, then send UDP packets through their tunnels.
    Traffic {
        #[command(flatten)]
        fleet: Fleet,
        /// Destination of the packets inside the tunnel (on or behind the server).
        #[arg(long)]
        target: SocketAddrV4,
        /// Size of each packet inside the tunnel (IPv4 and UDP headers included).
        #[arg(long, default_value_t = 1420, value_parser = clap::value_parser!(u16).range(28..=1420))]
        packet_size: u16,
        /// Megabits per second inside the tunnel, all devices together; 0: as fast as it can.
        #[arg(long, default_value_t = 0)]
        rate_mbit: u64,
        #[arg(long)]
        seconds: f64,
    },
    /// Many clients of the JSON API and the panel at once, while a prober times revocations
    /// until the peer leaves the data plane. Tokens and the panel password come from the
    /// environment (HEIMWEG_BENCH_ADMIN_TOKEN, HEIMWEG_BENCH_READ_TOKEN,
    /// HEIMWEG_BENCH_PANEL_PASSWORD), not the command line.
    Api {
        /// The gateway's API and panel listener.
        #[arg(long, default_value = "127.0.0.1:8080")]
        api: SocketAddr,
        /// A panel account (helpdesk is enough: its clients only read pages).
        #[arg(long)]
        panel_user: String,
        #[arg(long, default_value_t = 200)]
        clients: usize,
        #[arg(long, default_value_t = 200)]
        devices: usize,
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
        /// The gateway's UAPI socket, where the prober watches the peers.
        #[arg(long)]
        uapi_socket: std::path::PathBuf,
    },
    /// Only the flood: junk initiations (and optionally random datagrams) for a while.
    Flood {
        #[arg(long)]
        server: SocketAddr,
        #[arg(long)]
        server_key: String,
        /// Datagrams per second.
        #[arg(long)]
        rate: u32,
        #[arg(long, default_value = "10.200.200.1")]
        source_base: Ipv4Addr,
        #[arg(long, default_value_t = 50)]
        sources: u32,
        /// Percent of the datagrams that are random bytes of random length instead of
        /// initiations with a valid mac1.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
        junk_share: u8,
        #[arg(long)]
        seconds: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// Device `i`'s static key for `seed`.
fn device_secret(seed: u64, i: u32) -> StaticSecret {
    let mut h = Sha256::new();
    h.update(b"heimweg-loadgen device\0");
    h.update(seed.to_le_bytes());
    h.update(i.to_le_bytes());
    StaticSecret::from(<[u8; 32]>::from(h.finalize()))
}

/// Device `i`'s tunnel address: 10.64.0.0/10, one /32 each (room for four million devices).
fn device_address(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 1)) + i)
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// One arm per subcommand, each a few lines of setup around its own function.
#[allow(clippy::too_many_lines)]
fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Api {
            api,
            panel_user,
            clients,
            devices,
            seconds,
            uapi_socket,
        } => {
            let env = |k: &str| std::env::var(k).with_context(|| format!("{k} is not set"));
            let plan = api::Plan {
                api,
                admin_token: env("HEIMWEG_BENCH_ADMIN_TOKEN")?,
                read_token: env("HEIMWEG_BENCH_READ_TOKEN")?,
                panel_user,
                panel_password: env("HEIMWEG_BENCH_PANEL_PASSWORD")?,
                clients,
                devices: devices.max(1),
                duration: Duration::from_secs_f64(seconds),
                uapi_socket,
            };
            // One thread, as a client machine's browser or script would not share the
            // gateway's cores: the gateway keeps the rest.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            println!("{}", rt.block_on(api::run(plan))?);
            Ok(())
        }
        Command::Keys { devices, seed } => {
            use std::io::Write;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for i in 0..devices {
                let public = PublicKey::from(&device_secret(seed, i));
                writeln!(
                    out,
                    "[Peer]\nPublicKey = {}\nAllowedIPs = {}/32\n",
                    b64(public.as_bytes()),
                    device_address(i)
                )?;
            }
            out.flush()?;
            Ok(())
        }
        Command::Storm {
            fleet,
            retry_secs,
            deadline_secs,
            json,
            flood_rate,
            flood_source_base,
            flood_sources,
        } => {
            let mut plan = fleet.storm(
                Duration::from_secs_f64(retry_secs),
                Duration::from_secs_f64(deadline_secs),
            )?;
            plan.flood = (flood_rate > 0).then_some(Flood {
                rate: flood_rate,
                source_base: flood_source_base,
                sources: flood_sources.max(1),
            });
            // One thread: the storm must not take both cores from the server it measures.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (report, _) = rt.block_on(storm(plan))?;
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            if report.failed > 0 {
                std::process::exit(1);
            }
            Ok(())
        }

        Command::Traffic {
            fleet,
            target,
            packet_size,
            rate_mbit,
            seconds,
        } => {
            let plan = fleet.storm(Duration::from_secs(5), Duration::from_secs(30))?;
            let (server, source_base, sources, devices) =
                (plan.server, plan.source_base, plan.sources, plan.devices);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (report, mut connected) = rt.block_on(storm(plan))?;
            if report.failed > 0 {
                bail!("{} of {devices} devices got no session", report.failed);
            }
            connected.sort_by_key(|(i, _)| *i);
            let result = traffic(
                &mut connected,
                &TrafficPlan {
                    server,
                    target,
                    source_base,
                    sources,
                    packet_size: usize::from(packet_size),
                    bytes_per_second: rate_mbit * 125_000,
                    duration: Duration::from_secs_f64(seconds),
                },
            )?;
            println!("{result}");
            Ok(())
        }
        Command::Flood {
            server,
            server_key,
            rate,
            source_base,
            sources,
            junk_share,
            seconds,
            seed,
        } => {
            let f = Flood {
                rate,
                source_base,
                sources: sources.max(1),
            };
            let mut plan = plan_flood(&f, server, parse_key(&server_key)?, seed)?;
            plan.mix_junk(junk_share, seed);
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let cpu_before = own_cpu_s();
            let flooder = {
                let stop = stop.clone();
                std::thread::spawn(move || flood(&plan, &stop))
            };
            std::thread::sleep(Duration::from_secs_f64(seconds));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let (sent, refused) = flooder
                .join()
                .map_err(|_| anyhow::anyhow!("the flood thread panicked"))?;
            let cpu_s = cpu_since(cpu_before);
            println!(
                "{}",
                serde_json::json!({
                    "flood_sent": sent,
                    "flood_refused_locally": refused,
                    "flood_generator_cpu_s": cpu_s,
                })
            );
            Ok(())
        }
    }
}

struct TrafficPlan {
    server: SocketAddr,
    target: SocketAddrV4,
    source_base: Ipv4Addr,
    sources: u32,
    packet_size: usize,
    /// 0: as fast as it can.
    bytes_per_second: u64,
    duration: Duration,
}

/// An IPv4/UDP packet of `size` bytes from `src` to `dst` (UDP checksum 0: none, as IPv4
/// allows), written into `buf`.
fn udp_packet(src: Ipv4Addr, dst: SocketAddrV4, size: usize, buf: &mut [u8]) {
    let p = &mut buf[..size];
    p.fill(0);
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(size as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.ip().octets());
    let mut sum: u32 = p[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&dst.port().to_be_bytes());
    p[24..26].copy_from_slice(&((size - 20) as u16).to_be_bytes());
}

/// Sends packets through every connected device's tunnel, round-robin, for the planned time.
/// Devices that share a source address (as in the storm, device `i` uses address `i % sources`)
/// share one socket, and up to 64 of their datagrams leave as one GSO message.
fn traffic(devices: &mut [(u32, Tunn)], plan: &TrafficPlan) -> Result<serde_json::Value> {
    use heimweg_sys::udp::{Transmit, UdpSocket as BatchSocket};
    use std::io::IoSlice;
    const BATCH: usize = 64;
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); plan.sources as usize];
    for (pos, (i, _)) in devices.iter().enumerate() {
        groups[(*i % plan.sources) as usize].push(pos);
    }
    groups.retain(|g| !g.is_empty());
    let sockets = groups
        .iter()
        .map(|g| {
            let i = devices[g[0]].0;
            let source = Ipv4Addr::from(u32::from(plan.source_base) + i % plan.sources);
            BatchSocket::bind(SocketAddr::new(IpAddr::V4(source), 0), false, 4 << 20)
        })
        .collect::<std::io::Result<Vec<_>>>()
        .context("binding the traffic's sockets")?;
    // One GSO message carries at most 64 datagrams and must fit one UDP datagram's 64 KiB.
    let per_message = BATCH.min(65_000 / (plan.packet_size + 32));
    let mut cursors = vec![0usize; groups.len()];
    let mut packet = vec![0u8; plan.packet_size];
    let mut slots = vec![vec![0u8; plan.packet_size + 64]; BATCH];
    let (mut packets, mut unsent) = (0u64, 0u64);
    let cpu_before = own_cpu_s();
    let start = Instant::now();
    let mut group = 0;
    while start.elapsed() < plan.duration {
        let inner_bytes = packets * plan.packet_size as u64;
        if plan.bytes_per_second > 0
            && inner_bytes as f64 >= start.elapsed().as_secs_f64() * plan.bytes_per_second as f64
        {
            std::thread::sleep(Duration::from_micros(100));
            continue;
        }
        let members = &groups[group];
        let mut lens = [0usize; BATCH];
        let mut n = 0;
        for _ in 0..members.len().min(per_message) {
            let (i, tunn) = &mut devices[members[cursors[group]]];
            cursors[group] = (cursors[group] + 1) % members.len();
            udp_packet(
                device_address(*i),
                plan.target,
                plan.packet_size,
                &mut packet,
            );
            if let TunnResult::WriteToNetwork(d) = tunn.encapsulate(&packet, &mut slots[n]) {
                lens[n] = d.len();
                n += 1;
            }
        }
        let segments: Vec<IoSlice<'_>> =
            (0..n).map(|k| IoSlice::new(&slots[k][..lens[k]])).collect();
        unsent += sockets[group].send_batch(&[Transmit {
            dst: plan.server,
            segments: &segments,
        }]) as u64;
        packets += n as u64;
        group = (group + 1) % groups.len();
    }
    let seconds = start.elapsed().as_secs_f64();
    let delivered = packets - unsent;
    Ok(serde_json::json!({
        "devices": devices.len(),
        "seconds": seconds,
        "packets_sent": delivered,
        "packets_unsent": unsent,
        "inner_mbit_per_s": (delivered * plan.packet_size as u64) as f64 * 8.0 / seconds / 1e6,
        "generator_cpu_s": cpu_since(cpu_before),
    }))
}

/// This process's CPU time so far (all threads; clock ticks are 1/100 s on Linux): on a small
/// machine the generator competes with what it measures, so it reports what it took.
fn own_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// CPU seconds this process used since `before` (an [`own_cpu_s`] reading), to 1/100 s.
fn cpu_since(before: Option<f64>) -> Option<f64> {
    own_cpu_s()
        .zip(before)
        .map(|(after, before)| ((after - before) * 100.0).round() / 100.0)
}

fn parse_key(s: &str) -> Result<PublicKey> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .context("--server-key is not base64")?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("--server-key must be 32 bytes"))?;
    Ok(PublicKey::from(bytes))
}

struct Storm {
    server: SocketAddr,
    server_key: PublicKey,
    devices: u32,
    first: u32,
    seed: u64,
    source_base: Ipv4Addr,
    sources: u32,
    retry: Duration,
    deadline: Duration,
    flood: Option<Flood>,
}

struct Flood {
    rate: u32,
    source_base: Ipv4Addr,
    sources: u32,
}

/// Distinct junk initiations the flood cycles through (from as many unknown keys).
const FLOOD_KEYS: u32 = 4096;

/// The flood's datagrams and sockets, made before the clock starts.
struct FloodPlan {
    rate: u32,
    inits: Vec<Vec<u8>>,
    sockets: Vec<std::net::UdpSocket>,
}

fn plan_flood(
    f: &Flood,
    server: SocketAddr,
    server_key: PublicKey,
    seed: u64,
) -> Result<FloodPlan> {
    let inits: Vec<Vec<u8>> = (0..FLOOD_KEYS)
        .map(|j| {
            let mut t = Tunn::new(
                device_secret(seed ^ 0xf100d, j),
                server_key,
                None,
                None,
                j << 8,
                None,
            );
            let mut buf = vec![0u8; 256];
            match t.format_handshake_initiation(&mut buf, false) {
                TunnResult::WriteToNetwork(p) => p.to_vec(),
                _ => Vec::new(),
            }
        })
        .collect();
    let sockets: Vec<std::net::UdpSocket> = (0..f.sources)
        .map(|k| {
            let s = std::net::UdpSocket::bind(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from(f.source_base) + k)),
                0,
            ))?;
            s.set_nonblocking(true)?;
            s.connect(server)?;
            Ok(s)
        })
        .collect::<std::io::Result<_>>()
        .context("binding the flood's sockets (are its source addresses configured?)")?;
    Ok(FloodPlan {
        rate: f.rate,
        inits,
        sockets,
    })
}

impl FloodPlan {
    /// Replaces `share` percent of the datagrams the flood cycles through with random bytes of
    /// random length (1 to 1,500): what a scanner or a broken client sends.
    fn mix_junk(&mut self, share: u8, seed: u64) {
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
}

/// Sends the planned junk initiations at their rate until `stop` is set, on a thread of its
/// own. Returns how many it sent and how many its own sockets refused.
fn flood(p: &FloodPlan, stop: &std::sync::atomic::AtomicBool) -> (u64, u64) {
    use std::sync::atomic::Ordering;
    let (inits, sockets) = (&p.inits, &p.sockets);
    let (mut sent, mut refused, mut n) = (0u64, 0u64, 0usize);
    let start = Instant::now();
    // Paced by the clock: by time t, rate * t datagrams should have left.
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * f64::from(p.rate)) as u64;
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

/// What happened to one device.
struct Outcome {
    /// Time from the start until its session, `None` if it had none by the deadline.
    session_after: Option<Duration>,
    retries: u32,
    cookies: u32,
}

struct Report {
    devices: u32,
    failed: u32,
    /// Sorted times to a session.
    times: Vec<Duration>,
    retries: u64,
    cookies: u64,
    prepare: Duration,
    /// Junk initiations sent, and refused by the generator's own sockets.
    flood: Option<(u64, u64)>,
}

impl Report {
    fn percentile(&self, p: f64) -> Option<Duration> {
        (!self.times.is_empty())
            .then(|| self.times[((self.times.len() - 1) as f64 * p).round() as usize])
    }

    fn to_json(&self) -> String {
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        serde_json::json!({
            "devices": self.devices,
            "with_session": self.times.len(),
            "failed": self.failed,
            "all_within_s": if self.failed == 0 { secs(self.times.last().copied()) } else { None },
            "p50_s": secs(self.percentile(0.5)),
            "p90_s": secs(self.percentile(0.9)),
            "p99_s": secs(self.percentile(0.99)),
            "cookie_replies": self.cookies,
            "retries": self.retries,
            "prepare_s": self.prepare.as_secs_f64(),
            "flood_sent": self.flood.map(|f| f.0),
            "flood_refused_locally": self.flood.map(|f| f.1),
        })
        .to_string()
    }

    fn to_text(&self) -> String {
        let ms = |d: Option<Duration>| {
            d.map_or("-".to_string(), |d| {
                format!("{:.0} ms", d.as_secs_f64() * 1e3)
            })
        };
        format!(
            "devices {}: {} with a session, {} failed\n\
             time to a session: p50 {}, p90 {}, p99 {}, last {}\n\
             cookie replies {}, retries {} (initiations prepared in {:.1} s before the start)\n",
            self.devices,
            self.times.len(),
            self.failed,
            ms(self.percentile(0.5)),
            ms(self.percentile(0.9)),
            ms(self.percentile(0.99)),
            ms(self.times.last().copied()),
            self.cookies,
            self.retries,
            self.prepare.as_secs_f64(),
        )
    }
}

/// Runs the storm; returns the report and the devices that have a session, with their state.
// Preparing every device before the clock starts and the event loop after it are one piece:
// the timing of the whole depends on both.
#[allow(clippy::too_many_lines)]
async fn storm(s: Storm) -> Result<(Report, Vec<(u32, Tunn)>)> {
    let prepare_start = Instant::now();
    let (start_tx, start_rx) = tokio::sync::watch::channel(None::<Instant>);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..s.devices {
        let source = Ipv4Addr::from(u32::from(s.source_base) + i % s.sources);
        let socket = std::net::UdpSocket::bind(SocketAddr::new(IpAddr::V4(source), 0))
            .with_context(|| {
                format!(
                    "binding device {i}'s socket to {source} (is the address configured, and \
                     `ulimit -n` above the number of devices?)"
                )
            })?;
        socket.set_nonblocking(true)?;
        socket.connect(s.server)?;
        let socket = UdpSocket::from_std(socket)?;
        let mut tunn = Tunn::new(
            device_secret(s.seed, s.first + i),
            s.server_key,
            None,
            None,
            i << 8,
            None,
        );
        // The first initiation is computed now, before the clock starts, as the storm's
        // devices (woken laptops) all had theirs ready at once.
        let mut buf = vec![0u8; 256];
        let first = match tunn.format_handshake_initiation(&mut buf, false) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            _ => bail!("boringtun produced no handshake initiation"),
        };
        let mut start_rx = start_rx.clone();
        let (retry, deadline) = (s.retry, s.deadline);
        tasks.spawn(async move {
            let start = start_rx
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|s| *s)
                .unwrap_or_else(Instant::now);
            (
                i,
                device(i, tunn, socket, first, start, retry, deadline).await,
            )
        });
    }
    let prepare = prepare_start.elapsed();
    // The flood starts first and runs until every device is done.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooder = match &s.flood {
        Some(f) => {
            let plan = plan_flood(f, s.server, s.server_key, s.seed)?;
            let stop = stop.clone();
            Some(std::thread::spawn(move || flood(&plan, &stop)))
        }
        None => None,
    };
    if flooder.is_some() {
        // Let the flood reach its rate before the devices start.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Every device waits for this one start time, then sends at once.
    start_tx.send_replace(Some(Instant::now()));
    let mut report = Report {
        devices: s.devices,
        failed: 0,
        times: Vec::with_capacity(s.devices as usize),
        retries: 0,
        cookies: 0,
        prepare,
        flood: None,
    };
    let mut connected = Vec::with_capacity(s.devices as usize);
    while let Some(done) = tasks.join_next().await {
        let (i, (o, tunn)) = done.context("a device task failed")?;
        if o.session_after.is_some() {
            connected.push((i, tunn));
        }
        report.retries += u64::from(o.retries);
        report.cookies += u64::from(o.cookies);
        match o.session_after {
            Some(t) => report.times.push(t),
            None => report.failed += 1,
        }
    }
    report.times.sort();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(f) = flooder {
        report.flood = Some(
            f.join()
                .map_err(|_| anyhow::anyhow!("the flood thread panicked"))?,
        );
    }
    Ok((report, connected))
}

/// Message types of the WireGuard wire format (first byte).
const HANDSHAKE_RESPONSE: u8 = 2;
const COOKIE_REPLY: u8 = 3;

async fn device(
    i: u32,
    mut tunn: Tunn,
    socket: UdpSocket,
    first: Vec<u8>,
    start: Instant,
    retry: Duration,
    deadline: Duration,
) -> (Outcome, Tunn) {
    let mut outcome = Outcome {
        session_after: None,
        retries: 0,
        cookies: 0,
    };
    let mut buf = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    // A full send buffer loses the datagram, as a real network might; the retry covers it.
    let _ = socket.send(&first).await;
    // The apps wait 5 s plus up to a third of a second of jitter before they retry; spread
    // the same way here, by device number, so runs are repeatable.
    let jitter = Duration::from_millis(u64::from(i.wrapping_mul(2_654_435_761) % 334));
    let mut next_retry = start + retry + jitter;
    loop {
        let now = Instant::now();
        if now >= start + deadline {
            return (outcome, tunn);
        }
        let wait = next_retry
            .min(start + deadline)
            .saturating_duration_since(now);
        match tokio::time::timeout(wait, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let kind = buf.first().copied();
                match tunn.decapsulate(None, &buf[..n], &mut out) {
                    TunnResult::WriteToNetwork(keepalive) if kind == Some(HANDSHAKE_RESPONSE) => {
                        outcome.session_after = Some(start.elapsed());
                        // The keepalive confirms the session to the responder.
                        let _ = socket.send(keepalive).await;
                        return (outcome, tunn);
                    }
                    TunnResult::Done if kind == Some(COOKIE_REPLY) => {
                        // Under load the server answered with a cookie: resend at once, now
                        // with mac2, as the apps do.
                        outcome.cookies += 1;
                        if let TunnResult::WriteToNetwork(p) =
                            tunn.format_handshake_initiation(&mut out, true)
                        {
                            let _ = socket.send(p).await;
                        }
                    }
                    _ => {}
                }
            }
            // The socket is connected to the server: an error is an ICMP unreachable for
            // an earlier datagram. The retry covers it.
            Ok(Err(_)) => {}
            Err(_elapsed) => {
                if Instant::now() >= start + deadline {
                    return (outcome, tunn);
                }
                outcome.retries += 1;
                if let TunnResult::WriteToNetwork(p) =
                    tunn.format_handshake_initiation(&mut out, true)
                {
                    let _ = socket.send(p).await;
                }
                next_retry = Instant::now() + retry + jitter;
            }
        }
    }
}
