//! What the panel shows of this gateway's data plane: counters now, and rates over about the
//! last minute from samples taken in the background.

use heimweg_api::{LiveStats, LiveTotals, PeerLive};
use heimweg_control::PublicKey;
use heimweg_dataplane::DataPlane;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often a sample is taken, and the window the rates cover.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const WINDOW: Duration = Duration::from_secs(60);

/// (when, rx bytes, tx bytes, handshakes)
type Sample = (Instant, u64, u64, u64);

pub struct Live {
    dataplane: Arc<DataPlane>,
    samples: Mutex<VecDeque<Sample>>,
}

impl Live {
    pub fn new(dataplane: Arc<DataPlane>) -> Arc<Live> {
        Arc::new(Live {
            dataplane,
            samples: Mutex::new(VecDeque::new()),
        })
    }

    fn sample(&self) -> Sample {
        let c = self.dataplane.metrics().counters;
        (Instant::now(), c.rx_bytes, c.tx_bytes, c.handshakes_ok)
    }

    /// Samples the counters until the runtime stops; keeps a little more than one window.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tick.tick().await;
            let s = self.sample();
            let mut q = self.samples.lock().unwrap_or_else(|p| p.into_inner());
            q.push_back(s);
            while q
                .front()
                .is_some_and(|f| s.0.duration_since(f.0) > WINDOW + SAMPLE_EVERY)
            {
                q.pop_front();
            }
        }
    }
}

impl LiveStats for Live {
    fn totals(&self) -> LiveTotals {
        let m = self.dataplane.metrics();
        let now = (
            Instant::now(),
            m.counters.rx_bytes,
            m.counters.tx_bytes,
            m.counters.handshakes_ok,
        );
        let oldest = self
            .samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .front()
            .copied();
        // Rates only once the oldest sample is nearly a window old, scaled to a minute.
        let per_minute = oldest
            .filter(|o| now.0.duration_since(o.0) >= WINDOW - SAMPLE_EVERY)
            .map(|o| {
                let secs = now.0.duration_since(o.0).as_secs_f64();
                let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 * 60.0 / secs;
                (rate(now.1, o.1), rate(now.2, o.2), rate(now.3, o.3))
            });
        LiveTotals {
            rx_bytes: m.counters.rx_bytes,
            tx_bytes: m.counters.tx_bytes,
            handshakes: m.counters.handshakes_ok,
            peers: m.peers as u64,
            connected_peers: m.active_peers as u64,
            per_minute,
        }
    }

    fn peer(&self, key: &PublicKey) -> Option<PeerLive> {
        let p = self.dataplane.peer(key.as_bytes())?;
        let now = SystemTime::now();
        Some(PeerLive {
            rx_bytes: p.rx_bytes,
            tx_bytes: p.tx_bytes,
            last_handshake_at: p
                .last_handshake_ago
                .and_then(|ago| now.checked_sub(ago))
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64),
            endpoint: p.endpoint,
        })
    }
}
