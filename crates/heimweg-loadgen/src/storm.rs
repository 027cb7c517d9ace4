//! `storm`: every device's first handshake initiation is computed before the clock starts and
//! all are sent at the same instant, spread over many source addresses; from then on each
//! device behaves as a stock client (`device`). Optionally the first devices connect once,
//! calmly, before the storm (they are known to the server when it starts, as woken laptops
//! are), and a flood of initiations from unknown keys runs alongside.
//!
//! Several processes can share one storm (a process cannot hold more sockets than its file
//! limit): each simulates a slice (`--first`, `--devices`), all start at one wall-clock instant
//! (`--start-at-unix-ms`), and `merge` joins their times files.

use crate::device::{Device, Model, Outcome, Rules};
use crate::flood::Flood;
use crate::keys::device_secret;
use crate::report::{DeviceResult, Report, Warmup};
use anyhow::{bail, Context, Result};
use boringtun::noise::Tunn;
use boringtun::x25519::PublicKey;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::UdpSocket;

/// A storm, as planned on the command line.
pub struct Plan {
    pub server: SocketAddr,
    pub server_key: PublicKey,
    pub devices: u32,
    /// This run's devices are `first .. first + devices` of the seed's list.
    pub first: u32,
    pub seed: u64,
    pub source_base: Ipv4Addr,
    pub sources: u32,
    pub model: Model,
    pub retry: Duration,
    /// From the start: a device without a session by then has failed.
    pub deadline: Duration,
    pub flood: Option<Flood>,
    /// The flood lasts at least this long after the devices start (zero: until they are done).
    pub flood_for: Duration,
    /// The first `known` devices connect once before the storm.
    pub known: u32,
    /// When the devices start (several processes, one storm); `None`: once prepared.
    pub start_at: Option<SystemTime>,
}

/// How long the flood runs before the devices start, to reach its rate.
const FLOOD_RAMP: Duration = Duration::from_millis(500);

/// Known devices start their connection before the storm at this rate: calm enough that no
/// server answers them with cookies.
const WARMUP_PER_SECOND: f64 = 1000.0;

impl Plan {
    /// Device `local`'s source address, round-robin over the sources. With known devices
    /// they take the first half of the addresses and the new ones the other half: a device
    /// enrolled this morning comes from an address the server has not seen, a laptop that was
    /// connected before from where it was (a gateway may favour those, as heimweg does).
    fn source(&self, local: u32) -> Ipv4Addr {
        let half = self.sources / 2;
        let (offset, count) = match (self.known, half) {
            (0, _) | (_, 0) => (0, self.sources),
            (known, _) if local < known => (0, half),
            _ => (half, self.sources - half),
        };
        Ipv4Addr::from(u32::from(self.source_base) + offset + local % count)
    }

    /// Device `local` of this run: its socket, bound to its source address and connected to
    /// the server, and a fresh tunnel. `generation` tells apart the tunnels one device has in
    /// a run (its sender indexes differ).
    fn device(&self, local: u32, generation: u32) -> Result<Device> {
        let source = self.source(local);
        let socket = std::net::UdpSocket::bind(SocketAddr::new(IpAddr::V4(source), 0))
            .with_context(|| {
                format!(
                    "binding device {local}'s socket to {source} (is the address configured, \
                     and `ulimit -n` above the number of devices?)"
                )
            })?;
        socket.set_nonblocking(true)?;
        socket.connect(self.server)?;
        Ok(Device {
            number: self.first + local,
            socket: UdpSocket::from_std(socket)?,
            tunn: self.tunn(local, generation),
        })
    }

    fn tunn(&self, local: u32, generation: u32) -> Tunn {
        Tunn::new(
            device_secret(self.seed, self.first + local),
            self.server_key,
            None,
            None,
            // boringtun keeps 24 bits of this; the top one tells the generations apart.
            local | (generation << 23),
            None,
        )
    }

    /// When the flood (if any) and the devices start: at `--start-at-unix-ms` (the flood
    /// earlier, to reach its rate; an error if that is already past), or as soon as everything
    /// is ready.
    fn schedule(&self) -> Result<(Instant, Instant)> {
        let ramp = if self.flood.is_some() {
            FLOOD_RAMP
        } else {
            Duration::ZERO
        };
        let now = Instant::now();
        let Some(at) = self.start_at else {
            return Ok((now, now + ramp));
        };
        let late = match at.duration_since(SystemTime::now()) {
            Ok(ahead) if ahead >= ramp => return Ok((now + ahead - ramp, now + ahead)),
            Ok(ahead) => ramp - ahead,
            Err(past) => past.duration() + ramp,
        };
        bail!(
            "ready {} ms too late for --start-at-unix-ms (the flood, if any, starts {} ms \
             before it): give the processes more time to prepare (PREP_S in benches/storm.sh)",
            late.as_millis(),
            ramp.as_millis()
        )
    }
}

/// What a storm leaves.
pub struct Storm {
    pub report: Report,
    /// Every device's result, by number.
    pub results: Vec<DeviceResult>,
    /// The devices that have a session (by their number in this run), with their tunnels.
    pub connected: Vec<(u32, Tunn)>,
}

/// Runs the storm.
pub async fn run(plan: Plan) -> Result<Storm> {
    let mut prepare = Duration::ZERO;
    let started = Instant::now();
    let mut devices = (0..plan.devices)
        .map(|i| plan.device(i, 0))
        .collect::<Result<Vec<Device>>>()?;
    prepare += started.elapsed();
    let known = plan.known.min(plan.devices) as usize;
    let warmup = if known > 0 {
        Some(warm_up(&plan, &mut devices, known).await?)
    } else {
        None
    };
    let started = Instant::now();
    let firsts = devices
        .iter_mut()
        .map(|d| {
            d.initiation()
                .context("boringtun produced no handshake initiation")
        })
        .collect::<Result<Vec<Vec<u8>>>>()?;
    let flood = match &plan.flood {
        Some(f) => Some(f.plan(plan.server, plan.server_key, plan.seed)?),
        None => None,
    };
    prepare += started.elapsed();
    let (flood_at, start) = plan.schedule()?;
    let rules = Rules {
        model: plan.model,
        retry: plan.retry,
        deadline: start + plan.deadline,
    };
    // The devices leave in the order their tasks were made. Mixed, so that the known devices
    // (the first ones) are not at the head of the queue: woken laptops and new devices arrive
    // interleaved. The order is fixed by the device numbers, so runs are repeatable.
    let mut order: Vec<(Device, Vec<u8>)> = devices.into_iter().zip(firsts).collect();
    order.sort_by_key(|(d, _)| u64::from(d.number).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut tasks = tokio::task::JoinSet::new();
    for (mut d, first) in order {
        tasks.spawn(async move {
            let o = d.handshake(&first, start, rules).await;
            (d, o)
        });
    }
    tokio::time::sleep_until(flood_at.into()).await;
    let flooding = flood.map(crate::flood::FloodPlan::start);
    let mut results = Vec::with_capacity(plan.devices as usize);
    let mut connected = Vec::with_capacity(plan.devices as usize);
    while let Some(done) = tasks.join_next().await {
        let (d, outcome) = done.context("a device task failed")?;
        let local = d.number - plan.first;
        results.push(DeviceResult {
            number: d.number,
            known: (local as usize) < known,
            outcome,
        });
        if outcome.session_after.is_some() {
            connected.push((local, d.tunn));
        }
    }
    results.sort_by_key(|r| r.number);
    let mut report = Report::new(plan.model.name(), &results);
    report.prepare = prepare;
    report.warmup = warmup;
    if let Some(f) = flooding {
        tokio::time::sleep_until((start + plan.flood_for).into()).await;
        report.flood = Some(f.finish()?);
    }
    Ok(Storm {
        report,
        results,
        connected,
    })
}

/// The first `known` devices connect before the storm, started at a calm rate, each as a stock
/// client until it has a session or the deadline passed; then each gets a new tunnel for the
/// storm. Returns how it went.
async fn warm_up(plan: &Plan, devices: &mut Vec<Device>, known: usize) -> Result<Warmup> {
    let started = Instant::now();
    let rules = Rules {
        model: Model::Stock,
        retry: plan.retry,
        deadline: started + plan.deadline,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (k, mut d) in devices.drain(..known).enumerate() {
        tasks.spawn(async move {
            let start = started + Duration::from_secs_f64(k as f64 / WARMUP_PER_SECOND);
            let o = match d.initiation() {
                Some(first) => d.handshake(&first, start, rules).await,
                None => Outcome::default(),
            };
            (d, o)
        });
    }
    let mut warm = Vec::with_capacity(known);
    let mut outcomes = Vec::with_capacity(known);
    while let Some(done) = tasks.join_next().await {
        let (d, o) = done.context("a device task failed")?;
        // The storm finds it with a new tunnel: the handshake starts afresh, and a cookie from
        // the warm-up would have expired (after 2 minutes) by the time a laptop wakes.
        warm.push(Device {
            tunn: plan.tunn(d.number - plan.first, 1),
            ..d
        });
        outcomes.push(o);
    }
    warm.sort_by_key(|d| d.number);
    devices.splice(..0, warm);
    Ok(Warmup::of(&outcomes, started.elapsed().as_secs_f64()))
}
