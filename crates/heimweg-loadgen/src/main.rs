//! heimweg-loadgen: simulated WireGuard devices for load tests.
//!
//! Every simulated device is a real WireGuard peer (boringtun's `noise::Tunn`) with its own
//! key and its own UDP socket, so the server sees what it would see from stock apps; each
//! handles cookies and retransmits as the stock clients do (`device`).
//!
//! - `keys` prints the devices' peer sections (`wg setconf` format) for a seed, so the server
//!   can be configured with exactly the devices `storm` will simulate.
//! - `storm` is the Monday-morning storm: every device's first handshake initiation is
//!   computed before the clock starts and all are sent at once, spread over many source
//!   addresses. It reports when each device had a session, and the cookies, retries and
//!   failures. `--known-devices` connects the first devices once before it, `--flood-rate`
//!   runs a flood of initiations from unknown keys alongside, and `--start-at-unix-ms` with
//!   `--times-file` lets several processes share one storm (`merge` joins their reports).
//! - `traffic` connects the devices as `storm` does, then sends UDP packets through every
//!   device's tunnel at a given rate (or as fast as it can), batched: the datagrams of up to
//!   64 devices that share a source address leave as one GSO message.
//! - `flood` runs only the flood, for a given time, so that a benchmark can measure what it
//!   does to established tunnels; `--junk-share` mixes in random datagrams.
//! - `api` runs many API and panel clients at once while a prober times revocations.
//!
//! It deliberately receives nothing beyond handshakes (the server side counts what arrived) and
//! keeps no state beyond the run.

mod api;
mod cpu;
mod device;
mod flood;
mod keys;
mod report;
mod storm;
mod traffic;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use device::Model;
use flood::Flood;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

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
    /// Resend the initiation with mac2 the moment a cookie reply arrives. This is NOT what
    /// the stock apps do: wireguard-go, the Linux kernel and wireguard-nt only store the
    /// cookie and send mac2 with their next retransmit, 5 s and up to 333 ms after the last
    /// initiation. It is the old behaviour of this generator, kept for comparisons.
    #[arg(long)]
    resend_on_cookie: bool,
}

impl Fleet {
    /// The storm these devices make: no flood, no known devices, no fixed start unless added.
    fn storm(&self, retry: Duration, deadline: Duration) -> Result<storm::Plan> {
        Ok(storm::Plan {
            server: self.server,
            server_key: keys::parse_server_key(&self.server_key)?,
            devices: self.devices,
            first: self.first,
            seed: self.seed,
            source_base: self.source_base,
            sources: self.sources.max(1),
            model: if self.resend_on_cookie {
                Model::ResendOnCookie
            } else {
                Model::Stock
            },
            retry,
            deadline,
            flood: None,
            flood_for: Duration::ZERO,
            known: 0,
            start_at: None,
        })
    }
}

/// Where the flood comes from.
#[derive(clap::Args)]
struct FloodSources {
    /// First source address of the flood; it uses `--flood-sources` consecutive ones.
    #[arg(long = "flood-source-base", default_value = "10.200.200.1")]
    base: Ipv4Addr,
    #[arg(long = "flood-sources", default_value_t = 50)]
    count: u32,
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
    Storm(StormArgs),
    /// Join the reports of processes that each simulated a slice of one storm.
    Merge {
        /// A process's report (`storm --json`); once per process.
        #[arg(long = "report", required = true)]
        reports: Vec<PathBuf>,
        /// A process's times file (`storm --times-file`); once per process.
        #[arg(long = "times", required = true)]
        times: Vec<PathBuf>,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
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
        uapi_socket: PathBuf,
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

#[derive(clap::Args)]
struct StormArgs {
    #[command(flatten)]
    fleet: Fleet,
    /// Seconds until an unanswered device sends a new initiation (the apps: 5, plus a jitter
    /// of up to 333 ms).
    #[arg(long, default_value_t = 5.0)]
    retry_secs: f64,
    /// Give up on devices without a session this many seconds after the start (the apps
    /// give up after 20 initiations, about 103 s).
    #[arg(long, default_value_t = 40.0)]
    deadline_secs: f64,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// Junk initiations per second sent during the storm (0: none); the flood starts 0.5 s
    /// before the devices.
    #[arg(long, default_value_t = 0)]
    flood_rate: u32,
    #[command(flatten)]
    flood_sources: FloodSources,
    /// Keep the flood going until this many seconds after the devices started, however soon
    /// they are done, so that every server meets the same flood (0: until the last device
    /// is done).
    #[arg(long, default_value_t = 0.0)]
    flood_secs: f64,
    /// The first K devices connect once before the storm (and before the flood), calmly;
    /// then they start a fresh handshake with the others, from the same sockets. They use the
    /// first half of the source addresses, the new devices the other half. The report gives
    /// them (`known`) and the others (`new`) apart.
    #[arg(long, default_value_t = 0)]
    known_devices: u32,
    /// Start the devices at this wall-clock time (milliseconds since 1970), so that several
    /// processes, each with a slice of the devices, start one storm; it fails if it is not
    /// ready by then.
    #[arg(long)]
    start_at_unix_ms: Option<u64>,
    /// Write every device's time to a session here (for `merge`).
    #[arg(long)]
    times_file: Option<PathBuf>,
}

/// A runtime on this thread alone: the generator must not take both cores from the server it
/// measures (the flood has a thread of its own).
fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Keys { devices, seed } => keys::print(devices, seed),
        Command::Storm(args) => run_storm(args),
        Command::Merge {
            reports,
            times,
            json,
        } => {
            let report = report::merge(&reports, &times)?;
            print_report(&report, json);
            Ok(())
        }
        Command::Traffic {
            fleet,
            target,
            packet_size,
            rate_mbit,
            seconds,
        } => run_traffic(&fleet, target, packet_size, rate_mbit, seconds),
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
            println!("{}", runtime()?.block_on(api::run(plan))?);
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
                sources,
            };
            let key = keys::parse_server_key(&server_key)?;
            let duration = Duration::from_secs_f64(seconds);
            println!(
                "{}",
                flood::run(&f, server, key, junk_share, duration, seed)?
            );
            Ok(())
        }
    }
}

fn run_storm(args: StormArgs) -> Result<()> {
    let mut plan = args.fleet.storm(
        Duration::from_secs_f64(args.retry_secs),
        Duration::from_secs_f64(args.deadline_secs),
    )?;
    plan.flood = (args.flood_rate > 0).then_some(Flood {
        rate: args.flood_rate,
        source_base: args.flood_sources.base,
        sources: args.flood_sources.count,
    });
    plan.flood_for = Duration::from_secs_f64(args.flood_secs);
    plan.known = args.known_devices;
    plan.start_at = args
        .start_at_unix_ms
        .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
    let storm = runtime()?.block_on(storm::run(plan))?;
    if let Some(path) = &args.times_file {
        report::write_times(path, &storm.results)?;
    }
    print_report(&storm.report, args.json);
    if storm.report.all.failed() > 0 {
        std::process::exit(1);
    }
    Ok(())
}

fn run_traffic(
    fleet: &Fleet,
    target: SocketAddrV4,
    packet_size: u16,
    rate_mbit: u64,
    seconds: f64,
) -> Result<()> {
    let plan = fleet.storm(Duration::from_secs(5), Duration::from_secs(30))?;
    let traffic = traffic::TrafficPlan {
        server: plan.server,
        target,
        source_base: plan.source_base,
        sources: plan.sources,
        first: plan.first,
        packet_size: usize::from(packet_size),
        bytes_per_second: rate_mbit * 125_000,
        duration: Duration::from_secs_f64(seconds),
    };
    let devices = plan.devices;
    let mut storm = runtime()?.block_on(storm::run(plan))?;
    let failed = storm.report.all.failed();
    if failed > 0 {
        bail!("{failed} of {devices} devices got no session");
    }
    storm.connected.sort_by_key(|(i, _)| *i);
    println!("{}", traffic::traffic(&mut storm.connected, &traffic)?);
    Ok(())
}

fn print_report(report: &report::Report, json: bool) {
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
}
