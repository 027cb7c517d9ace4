//! Peer changes at 100,000 peers, and how long they keep the workers waiting.
//!
//! A running data plane (a TUN, one worker) gets 100,000 peers from `sync_peers`, as the
//! reconciler hands them over at start; then one more (a reconcile after an enrollment); then
//! 10,000 fewer. Meanwhile a thread takes the peer table for reading over and over, as a worker
//! does per batch, and records how long each wait was: the longest wait is the longest stall a
//! worker would have seen. Needs root (the TUN). Run: `cargo bench --bench peer_churn`.

use heimweg_core::allowed_ips::parse_network;
use heimweg_dataplane::{Config, DataPlane, PeerSpec};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PEERS: u32 = 100_000;

fn spec(i: u32) -> PeerSpec {
    let mut key = [0u8; 32];
    key[..4].copy_from_slice(&i.to_le_bytes());
    key[31] = 0x5a;
    let ip = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 64, 0, 1)) + i);
    PeerSpec {
        public_key: key,
        preshared_key: None,
        allowed_ips: vec![parse_network(&format!("{ip}/32")).expect("a /32")],
        policy: None,
    }
}

/// Runs `change` while a prober takes the peer table back to back (reading the counters);
/// returns (duration of the change, longest wait, 99th percentile wait).
fn measure(dp: &Arc<DataPlane>, change: impl FnOnce()) -> (Duration, Duration, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (dp, stop) = (Arc::clone(dp), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut waits = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let _ = dp.stats();
                waits.push(t.elapsed());
            }
            waits
        })
    };
    let t = Instant::now();
    change();
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut waits = prober.join().expect("the prober panicked");
    waits.sort();
    let p99 = waits[(waits.len() - 1) * 99 / 100];
    (took, *waits.last().unwrap_or(&Duration::ZERO), p99)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let mut config = Config::new(format!("hwchurn{}", std::process::id() % 100_000));
    config.workers = 1;
    config.private_key = Some([7; 32]);
    let dp = Arc::new(DataPlane::start(config, 1).expect("root is needed for a TUN"));
    let mut desired: Vec<PeerSpec> = (0..PEERS).map(spec).collect();
    let report = |what: &str, (took, longest, p99): (Duration, Duration, Duration)| {
        println!(
            "{what:<44} {:>9.1} ms   longest wait for the lock {:>7.2} ms   p99 {:>6.3} ms",
            took.as_secs_f64() * 1e3,
            longest.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    };
    report(
        "add 100,000 peers (first sync)",
        measure(&dp, || {
            dp.sync_peers(&desired);
        }),
    );
    report(
        "unchanged 100,000 (a no-op reconcile)",
        measure(&dp, || {
            dp.sync_peers(&desired);
        }),
    );
    desired.push(spec(PEERS));
    report(
        "one more peer (a reconcile after enrolling)",
        measure(&dp, || {
            dp.sync_peers(&desired);
        }),
    );
    desired.truncate(desired.len() - 10_001);
    report(
        "remove 10,000 peers",
        measure(&dp, || {
            dp.sync_peers(&desired);
        }),
    );
    let peers = dp
        .stats()
        .into_iter()
        .find(|(k, _)| k == "peers")
        .map(|(_, n)| n);
    assert_eq!(peers, Some(desired.len() as u64));
    dp.shutdown();
}
