//! Handshake admission: who gets Diffie-Hellman, and when.
//!
//! A handshake initiation costs the responder several X25519 operations before it even knows
//! whether the sender is a configured peer, so initiations never run inline with data. They wait
//! in bounded queues, and every source address has a token bucket so that one address cannot
//! take the whole budget.
//!
//! A cookie reply (mac2, WireGuard §5.4.7) is what protects the cores, but it costs a stock
//! device a whole retransmit: wireguard-go, the kernel and wireguard-nt only store the cookie
//! and send their next initiation, with mac2, when their 5-second retransmit timer fires. So a
//! cookie is demanded only where it pays:
//!
//! - when the queue's expected drain time (depth × measured cost of a handshake ÷ workers)
//!   exceeds [`AdmissionConfig::cookie_after`]: the device would wait about as long anyway, and
//!   its retransmit would find the queue shorter;
//! - during a detected flood (most initiations of the last second came from no configured
//!   peer): then initiations still waiting without mac2 are answered with a cookie instead of a
//!   Diffie-Hellman as well, so a flood that got into the queue before it was detected costs a
//!   cookie each, not a Diffie-Hellman.
//!
//! A storm of real devices is answered from the queue without cookies; entries are 192 bytes,
//! so the default 32,768 hold the largest storm a 2-core gateway drains within the limit.
//!
//! Addresses that completed a handshake recently ("known" addresses: only a configured peer
//! completes one) have a lane of their own, without cookies while it drains in time, and the
//! workers alternate between the lanes, so half the handshake work is reserved for devices
//! that were here before, whatever the flood does to the other lane. An initiation that waited
//! longer than the client's retransmit interval is dropped unanswered: the client has sent a
//! new one, and its answer to the old one would be discarded.
//!
//! Cookie replies have a per-source budget of their own: a flood from a few addresses then
//! costs a table lookup per datagram instead of the MACs and the encryption of a cookie reply.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Size of a handshake initiation on the wire.
pub const INIT_LEN: usize = 148;

/// The stock clients' handshake retransmit interval (REKEY_TIMEOUT): a queued initiation older
/// than this has been replaced by the client's next one.
pub const RETRANSMIT: Duration = Duration::from_secs(5);

/// Tunables of admission. The defaults suit a 2-core gateway; see `Default`.
#[derive(Clone, Debug)]
pub struct AdmissionConfig {
    /// Initiations from addresses not known that may wait for Diffie-Hellman; more are dropped.
    pub queue_capacity: usize,
    /// Initiations from known addresses that may wait.
    pub known_capacity: usize,
    /// Expected wait beyond which an initiation without mac2 gets a cookie reply instead of a
    /// place in the queue. `Duration::ZERO` demands cookies always, `Duration::MAX` never
    /// (outside a flood).
    pub cookie_after: Duration,
    /// Threads answering handshakes in parallel: the drain-time estimate divides by it.
    pub workers: usize,
    /// What one handshake costs a worker, until the drivers have measured it (see
    /// [`crate::Device::record_handshake_cost`]).
    pub initial_handshake_cost: Duration,
    /// Sustained initiations per second admitted per source address.
    pub per_source_rate: u32,
    /// Burst of initiations a source may send at once.
    pub per_source_burst: u32,
    /// Cookie replies per second sent without asking who gets them. Beyond that (a flood
    /// spending a noticeable share of a core on cookies), each source address gets
    /// `per_source_cookie_rate` per second, and `per_source_cookie_burst` at once.
    pub free_cookie_rate: u32,
    /// Cookie replies per second at most, whoever asks: spoofed random addresses each come
    /// with a full bucket, so the buckets alone do not bound a flood's cost.
    pub max_cookie_rate: u32,
    pub per_source_cookie_rate: u32,
    pub per_source_cookie_burst: u32,
    /// Source addresses tracked at most; beyond that the least recently seen are forgotten.
    pub max_sources: usize,
    /// Known addresses remembered at most, and for how long after their last handshake.
    pub max_known: usize,
    pub known_for: Duration,
    /// Handshakes the gateway starts itself towards devices whose traffic reached it with a
    /// session it does not know (a failover), per second at most.
    pub max_prompts_per_second: u32,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            // 20,000 devices at once fit; each entry is 192 bytes, allocated as it fills.
            queue_capacity: 32_768,
            known_capacity: 8_192,
            // The stock clients retransmit after 5 s, and a cookie costs them that retransmit.
            // An answer the estimate promised in time but that comes later costs them the
            // same, no more: the initiation is dropped unanswered (stale) and the retransmit
            // finds a shorter queue. An error of the estimate costs alike in both directions,
            // so cookies start just short of the retransmit, leaving a quarter second for the
            // answer's way back. (With 3 s, 4 s and 4.5 s, 500-1,700 of 20,000 devices got a
            // cookie they paid 5 s for, on a queue that drained in 4.3 s: the estimate is
            // made while the storm's own arrival slows the workers.)
            cookie_after: RETRANSMIT - Duration::from_millis(250),
            workers: 2,
            // About what a 2-core gateway measures per responder handshake.
            initial_handshake_cost: Duration::from_micros(250),
            // A carrier-grade NAT can put hundreds of staff behind one address on Monday at 8:00;
            // the queue and cookies protect the CPU, this only stops one address from hogging it.
            per_source_rate: 500,
            per_source_burst: 1000,
            // About 5% of a core. A storm of real devices stays below it; above it is a
            // flood, and rationing by address keeps the flood from taking the cores.
            free_cookie_rate: 20_000,
            // About a quarter of a core.
            max_cookie_rate: 100_000,
            // Each device behind an address needs one cookie per attempt under load: the
            // burst covers a few hundred devices behind one NAT reconnecting at once.
            per_source_cookie_rate: 200,
            per_source_cookie_burst: 400,
            max_sources: 65_536,
            // A week: Monday's devices were here last week.
            max_known: 65_536,
            known_for: Duration::from_secs(7 * 24 * 3600),
            max_prompts_per_second: 1_000,
        }
    }
}

/// Which budget paid for a cookie reply (see [`Admission::allow_cookie`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CookieGrant {
    /// The free rate.
    Free,
    /// The source's bucket.
    Bucket,
    /// A source new to a full table.
    Untracked,
}

/// A queued initiation: its bytes are copied into a fixed array so queueing never allocates.
pub(crate) struct QueuedInit {
    pub src: SocketAddr,
    pub bytes: [u8; INIT_LEN],
    /// When it arrived.
    pub at: Instant,
    /// It carried a valid mac2 (the sender proved its address) or came from a known address:
    /// a flood does not turn it into a cookie reply.
    pub proven: bool,
}

/// Where an initiation goes, decided before its MACs are checked (see [`Admission::lane`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    /// The queue, without a cookie.
    Open,
    /// The known addresses' queue, without a cookie.
    Known,
    /// Only with a valid mac2; otherwise a cookie reply.
    Guarded,
}

/// What [`Admission::pop`] hands out.
pub(crate) enum Popped {
    /// Do the Diffie-Hellman.
    Work(QueuedInit),
    /// Answer with a cookie reply: it has no mac2 and a flood was detected after it arrived.
    Cookie(QueuedInit),
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets per source address (per /64 for IPv6), at most `max` of them.
struct Buckets {
    map: HashMap<IpAddr, Bucket>,
    last_prune: Option<Instant>,
    rate: f64,
    burst: f64,
    max: usize,
}

impl Buckets {
    fn new(rate: u32, burst: u32, max: usize) -> Buckets {
        Buckets {
            map: HashMap::new(),
            last_prune: None,
            rate: f64::from(rate),
            burst: f64::from(burst),
            max,
        }
    }

    /// Takes one token from `src`'s bucket: whether it had one, or `None` when `src` is new
    /// and the table is full of sources that are still refilling.
    fn take(&mut self, now: Instant, src: IpAddr) -> Option<bool> {
        let key = source_key(src);
        if !self.map.contains_key(&key) && self.map.len() >= self.max {
            self.prune(now);
            if self.map.len() >= self.max {
                return None;
            }
        }
        let b = self.map.entry(key).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Some(true)
        } else {
            Some(false)
        }
    }

    /// Gives back a token `take` took from `src` (it was not spent after all).
    fn give_back(&mut self, src: IpAddr) {
        if let Some(b) = self.map.get_mut(&source_key(src)) {
            b.tokens = (b.tokens + 1.0).min(self.burst);
        }
    }

    /// Forgets sources whose bucket has refilled completely: they behave like new ones anyway.
    /// Runs at most once a second, so its cost is bounded by `max` per second.
    fn prune(&mut self, now: Instant) {
        if self
            .last_prune
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_prune = Some(now);
        let refill = Duration::from_secs_f64(self.burst / self.rate.max(1.0));
        self.map
            .retain(|_, b| now.saturating_duration_since(b.last) < refill);
    }
}

/// Addresses (per /64 for IPv6) from which a configured peer completed a handshake, and when
/// it last did. Only a completed handshake adds one, so nobody without a device's key can.
struct Known {
    map: HashMap<IpAddr, Instant>,
    last_prune: Option<Instant>,
    max: usize,
    keep: Duration,
}

impl Known {
    fn contains(&self, now: Instant, ip: IpAddr) -> bool {
        self.map
            .get(&source_key(ip))
            .is_some_and(|t| now.saturating_duration_since(*t) < self.keep)
    }

    fn remember(&mut self, now: Instant, ip: IpAddr) {
        let key = source_key(ip);
        if !self.map.contains_key(&key) && self.map.len() >= self.max {
            // At most once a second: forget the expired ones; if that makes no room, the
            // newcomer waits (the ones here are real devices too).
            if self
                .last_prune
                .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
            {
                return;
            }
            self.last_prune = Some(now);
            let keep = self.keep;
            self.map
                .retain(|_, t| now.saturating_duration_since(*t) < keep);
            if self.map.len() >= self.max {
                return;
            }
        }
        self.map.insert(key, now);
    }
}

/// A count per one-second window.
#[derive(Default)]
struct Window(Option<(Instant, u32)>);

impl Window {
    /// The count of the current window (a new one if the last is over).
    fn current(&mut self, now: Instant) -> &mut u32 {
        match &mut self.0 {
            Some((start, _)) if now.saturating_duration_since(*start) < Duration::from_secs(1) => {}
            w => *w = Some((now, 0)),
        }
        &mut self.0.as_mut().expect("set above").1
    }
}

pub(crate) struct Admission {
    pub config: AdmissionConfig,
    queue: VecDeque<QueuedInit>,
    known_queue: VecDeque<QueuedInit>,
    /// Whose turn it is when both queues hold initiations.
    known_turn: bool,
    /// Initiations admitted to the queue, per source.
    buckets: Buckets,
    /// Cookie replies sent, per source.
    cookies: Buckets,
    known: Known,
    /// Handshakes answered in the current one-second window, and how many of them came from
    /// no configured peer.
    window: Option<(Instant, u32, u32)>,
    /// Cookies are demanded until then, however short the queue: see [`Admission::record`].
    flooded_until: Option<Instant>,
    /// Cookie replies granted in the current second.
    cookie_window: Window,
    /// Handshakes started towards devices in the current second.
    prompt_window: Window,
}

/// A second in which at least this many initiations came from unknown keys, and they were the
/// majority, is a flood (a storm of real devices has none).
const FLOOD_MIN_INVALID: u32 = 100;
/// How long a flood keeps the gateway demanding cookies after it was last seen.
const FLOOD_HOLD: Duration = Duration::from_secs(2);

impl Admission {
    pub fn new(config: AdmissionConfig) -> Self {
        Admission {
            queue: VecDeque::new(),
            known_queue: VecDeque::new(),
            known_turn: true,
            buckets: Buckets::new(
                config.per_source_rate,
                config.per_source_burst,
                config.max_sources,
            ),
            cookies: Buckets::new(
                config.per_source_cookie_rate,
                config.per_source_cookie_burst,
                config.max_sources,
            ),
            known: Known {
                map: HashMap::new(),
                last_prune: None,
                max: config.max_known,
                keep: config.known_for,
            },
            window: None,
            flooded_until: None,
            cookie_window: Window::default(),
            prompt_window: Window::default(),
            config,
        }
    }

    /// Whether a flood was seen in the last [`FLOOD_HOLD`]. Without the hold, a sustained
    /// flood would be let back into the queue (and cost a Diffie-Hellman each) every time the
    /// last second's sample looked clean; with it, the flood costs only cookie replies, and
    /// real devices come in with mac2 or from known addresses.
    pub fn flooded(&self, now: Instant) -> bool {
        self.flooded_until.is_some_and(|t| now < t)
    }

    /// How long an initiation queued behind `depth` others waits, with `cost` per handshake
    /// and `workers` answering in parallel (`share` of them for this queue).
    fn wait(&self, depth: usize, cost: Duration, share: f64) -> Duration {
        let workers = (self.config.workers.max(1) as f64 * share).max(1.0);
        cost.mul_f64((depth + 1) as f64 / workers)
    }

    /// Where an initiation from `src` goes, given the measured `cost` of a handshake. Known
    /// addresses skip the cookie while their lane, served by half the workers when both lanes
    /// are busy, drains in time; everyone else skips it while the whole backlog does and no
    /// flood is on.
    pub fn lane(&self, now: Instant, src: IpAddr, cost: Duration) -> Lane {
        let limit = self.config.cookie_after;
        if self.known.contains(now, src) {
            let share = if self.queue.is_empty() { 1.0 } else { 0.5 };
            if self.known_queue.len() < self.config.known_capacity
                && self.wait(self.known_queue.len(), cost, share) < limit
            {
                return Lane::Known;
            }
            return Lane::Guarded;
        }
        let backlog = self.queue.len() + self.known_queue.len();
        if self.flooded(now) || self.wait(backlog, cost, 1.0) >= limit {
            Lane::Guarded
        } else {
            Lane::Open
        }
    }

    /// Initiations waiting, in both lanes.
    pub fn depth(&self) -> usize {
        self.queue.len() + self.known_queue.len()
    }

    /// Records the outcome of one Diffie-Hellman on an initiation: `valid` when it came from
    /// a configured peer.
    pub fn record(&mut self, now: Instant, valid: bool) {
        let (start, total, invalid) = match self.window {
            Some((s, t, i)) if now.saturating_duration_since(s) < Duration::from_secs(1) => {
                (s, t, i)
            }
            _ => (now, 0, 0),
        };
        let (total, invalid) = (total + 1, invalid + u32::from(!valid));
        self.window = Some((start, total, invalid));
        if invalid >= FLOOD_MIN_INVALID && invalid * 2 > total {
            self.flooded_until = Some(now + FLOOD_HOLD);
        }
    }

    /// Remembers that a configured peer completed a handshake from `ip`.
    pub fn remember(&mut self, now: Instant, ip: IpAddr) {
        self.known.remember(now, ip);
    }

    /// Takes one token from `src`'s bucket; false if it has none. A new source finding the
    /// table full of busy ones is refused rather than let the table grow: only senders that
    /// proved their address (mac2 under load) get here, so spoofers cannot fill it.
    pub fn allow_source(&mut self, now: Instant, src: IpAddr) -> bool {
        self.buckets.take(now, src).unwrap_or(false)
    }

    /// Whether `src` may have a cookie reply, and which budget paid for it. Up to
    /// `free_cookie_rate` per second everyone gets one; beyond, a source's budget decides, and
    /// nobody gets more than `max_cookie_rate` in total. The senders are unproven here:
    /// whoever can spoof an address can spend its budget, and devices behind it then get no
    /// cookie while the flood lasts. That is the price of not letting a flood take the cores;
    /// other addresses are not affected, and spoofed addresses filling the table cannot lock
    /// anyone out (a source new to a full table gets its cookie, within the total).
    pub fn allow_cookie(&mut self, now: Instant, src: IpAddr) -> Option<CookieGrant> {
        let granted = *self.cookie_window.current(now);
        let grant = if granted < self.config.free_cookie_rate {
            CookieGrant::Free
        } else if granted >= self.config.max_cookie_rate {
            return None;
        } else {
            match self.cookies.take(now, src) {
                Some(true) => CookieGrant::Bucket,
                Some(false) => return None,
                None => CookieGrant::Untracked,
            }
        };
        *self.cookie_window.current(now) += 1;
        Some(grant)
    }

    /// Gives back what [`Admission::allow_cookie`] granted to `src`, when no cookie was sent
    /// after all (its mac1 was wrong): to the budget that paid.
    pub fn refund_cookie(&mut self, now: Instant, src: IpAddr, grant: CookieGrant) {
        let n = self.cookie_window.current(now);
        *n = n.saturating_sub(1);
        if grant == CookieGrant::Bucket {
            self.cookies.give_back(src);
        }
    }

    /// Whether the gateway may start one more handshake of its own this second.
    pub fn allow_prompt(&mut self, now: Instant) -> bool {
        let n = self.prompt_window.current(now);
        if *n >= self.config.max_prompts_per_second {
            return false;
        }
        *n += 1;
        true
    }

    /// Queues an initiation in `lane` (`Guarded` ones got here with a valid mac2); false if
    /// that queue is full.
    pub fn push(&mut self, lane: Lane, src: SocketAddr, datagram: &[u8], now: Instant) -> bool {
        let Ok(bytes) = <[u8; INIT_LEN]>::try_from(datagram) else {
            return false;
        };
        let (queue, capacity) = match lane {
            Lane::Known => (&mut self.known_queue, self.config.known_capacity),
            Lane::Open | Lane::Guarded => (&mut self.queue, self.config.queue_capacity),
        };
        if queue.len() >= capacity {
            return false;
        }
        queue.push_back(QueuedInit {
            src,
            bytes,
            at: now,
            proven: lane != Lane::Open,
        });
        true
    }

    /// Empties the queues; returns how many initiations they held.
    pub fn drain(&mut self) -> usize {
        let n = self.depth();
        self.queue.clear();
        self.known_queue.clear();
        n
    }

    /// The next initiation to answer, alternating between the lanes while both hold some.
    /// Those older than the client's retransmit interval are dropped on the way (counted in
    /// `stale`): the client has sent another, and would discard an answer to this one.
    pub fn pop(&mut self, now: Instant, stale: &mut u64) -> Option<Popped> {
        loop {
            let known = !self.known_queue.is_empty() && (self.known_turn || self.queue.is_empty());
            self.known_turn = !known;
            let init = if known {
                self.known_queue.pop_front()
            } else {
                self.queue.pop_front()
            }?;
            if now.saturating_duration_since(init.at) >= RETRANSMIT {
                *stale += 1;
                continue;
            }
            if !init.proven && self.flooded(now) {
                return Some(Popped::Cookie(init));
            }
            return Some(Popped::Work(init));
        }
    }
}

/// The measured cost of one handshake to a worker, as a moving average in nanoseconds: written
/// by every worker after each handshake, read on every initiation, without a lock (a lost
/// update among racing writers only delays the average by one sample).
pub(crate) struct Cost(AtomicU64);

impl Cost {
    pub fn new(initial: Duration) -> Cost {
        Cost(AtomicU64::new(initial.as_nanos() as u64))
    }

    pub fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    /// Folds in one sample with weight 1/256: about a thousand handshakes (a fifth of a second
    /// on two busy cores) follow a change of load. The samples are wall times, so one that
    /// the scheduler preempted counts a whole time slice; with a weight of 1/16 each such
    /// sample lifted the estimate by a quarter for the devices arriving just then.
    pub fn record(&self, sample: Duration) {
        let old = self.0.load(Ordering::Relaxed);
        let sample = sample.as_nanos().min(u128::from(u64::MAX / 2)) as u64;
        self.0
            .store(old - old / 256 + sample / 256, Ordering::Relaxed);
    }
}

/// IPv6 clients get a /64 each from their provider, so an IPv6 source is limited per /64:
/// otherwise one host could rotate through 2^64 addresses to escape its bucket.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::from(o)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AdmissionConfig {
        AdmissionConfig {
            queue_capacity: 4,
            known_capacity: 2,
            cookie_after: Duration::from_millis(3),
            workers: 1,
            initial_handshake_cost: Duration::from_millis(1),
            per_source_rate: 10,
            per_source_burst: 3,
            free_cookie_rate: 0,
            max_cookie_rate: 100,
            per_source_cookie_rate: 10,
            per_source_cookie_burst: 2,
            max_sources: 2,
            max_known: 2,
            known_for: Duration::from_secs(60),
            max_prompts_per_second: 2,
        }
    }

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let mut a = Admission::new(cfg());
        let t0 = Instant::now();
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        assert!((0..3).all(|_| a.allow_source(t0, ip)));
        assert!(!a.allow_source(t0, ip));
        // 10 per second: after 100 ms one more token.
        assert!(a.allow_source(t0 + Duration::from_millis(100), ip));
        assert!(!a.allow_source(t0 + Duration::from_millis(100), ip));
    }

    #[test]
    fn ipv6_sources_share_a_bucket_per_64() {
        let mut a = Admission::new(cfg());
        let t0 = Instant::now();
        for i in 0..3u16 {
            let ip = IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, i]);
            assert!(a.allow_source(t0, ip));
        }
        assert!(!a.allow_source(t0, "2001:db8:0:1::ffff".parse().unwrap()));
        assert!(a.allow_source(t0, "2001:db8:0:2::1".parse().unwrap()));
    }

    #[test]
    fn source_table_is_bounded() {
        let mut a = Admission::new(cfg());
        let t0 = Instant::now();
        assert!(a.allow_source(t0, "192.0.2.1".parse().unwrap()));
        assert!(a.allow_source(t0, "192.0.2.2".parse().unwrap()));
        // Table full of sources that are still refilling: a third is refused.
        assert!(!a.allow_source(t0, "192.0.2.3".parse().unwrap()));
        // Once the others have refilled they are forgotten and room is made.
        assert!(a.allow_source(t0 + Duration::from_secs(2), "192.0.2.3".parse().unwrap()));
    }

    #[test]
    fn a_full_table_lets_new_sources_have_cookies_but_not_handshakes() {
        let mut a = Admission::new(cfg());
        let t0 = Instant::now();
        for last in 1..=2u8 {
            let ip = IpAddr::from([192, 0, 2, last]);
            assert_eq!(a.allow_cookie(t0, ip), Some(CookieGrant::Bucket));
            assert_eq!(a.allow_cookie(t0, ip), Some(CookieGrant::Bucket));
            assert_eq!(a.allow_cookie(t0, ip), None, "the budget of two is spent");
            assert!(a.allow_source(t0, ip));
        }
        let newcomer = IpAddr::from([192, 0, 2, 3]);
        assert_eq!(
            a.allow_cookie(t0, newcomer),
            Some(CookieGrant::Untracked),
            "spoofers must not lock out real devices"
        );
        assert!(!a.allow_source(t0, newcomer));
        // 10 per second: a spent source gets its next cookie 100 ms later.
        let ip = IpAddr::from([192, 0, 2, 1]);
        assert!(a
            .allow_cookie(t0 + Duration::from_millis(100), ip)
            .is_some());
    }

    #[test]
    fn cookies_are_rationed_beyond_the_free_rate_and_capped_in_total() {
        let mut a = Admission::new(AdmissionConfig {
            free_cookie_rate: 5,
            max_cookie_rate: 8,
            max_sources: 100,
            ..cfg()
        });
        let t0 = Instant::now();
        let ip = IpAddr::from([192, 0, 2, 1]);
        // Five free, then the source's burst of two, then nothing within this second.
        let grants: Vec<_> = (0..10).map(|_| a.allow_cookie(t0, ip)).collect();
        assert_eq!(
            grants
                .iter()
                .filter(|g| **g == Some(CookieGrant::Free))
                .count(),
            5
        );
        assert_eq!(
            grants
                .iter()
                .filter(|g| **g == Some(CookieGrant::Bucket))
                .count(),
            2
        );
        // A refund goes to the budget that paid: the bucket gets its token back.
        a.refund_cookie(t0, ip, CookieGrant::Bucket);
        assert_eq!(a.allow_cookie(t0, ip), Some(CookieGrant::Bucket));
        assert_eq!(a.allow_cookie(t0, ip), None);
        // A refund of a free cookie does not fill the bucket.
        a.refund_cookie(t0, ip, CookieGrant::Free);
        assert_eq!(a.allow_cookie(t0, ip), None, "the bucket is still empty");
        // Fresh addresses, each with a full bucket, still stop at the total of eight.
        let fresh =
            (10..20u8).filter(|&i| a.allow_cookie(t0, IpAddr::from([192, 0, 2, i])).is_some());
        assert_eq!(
            fresh.count(),
            2,
            "fresh addresses stop at the total of eight"
        );
        // A new second: free again, whatever the source's bucket says.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            (0..5)
                .filter(|_| a.allow_cookie(t1, ip) == Some(CookieGrant::Free))
                .count(),
            5
        );
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn cookies_are_demanded_once_the_expected_wait_passes_the_limit() {
        // 1 ms per handshake, one worker, cookies from 3 ms of expected wait.
        let mut a = Admission::new(cfg());
        let src: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let now = Instant::now();
        let lane = |a: &Admission| a.lane(now, src.ip(), MS);
        assert_eq!(lane(&a), Lane::Open);
        assert!(a.push(Lane::Open, src, &[1; INIT_LEN], now));
        assert_eq!(lane(&a), Lane::Open, "the next would wait 2 ms");
        assert!(a.push(Lane::Open, src, &[2; INIT_LEN], now));
        assert_eq!(lane(&a), Lane::Guarded, "the next would wait 3 ms");
        // Twice the workers halve the wait.
        a.config.workers = 2;
        assert_eq!(lane(&a), Lane::Open);
        // A cheaper handshake, measured, shortens it as well.
        a.config.workers = 1;
        assert_eq!(a.lane(now, src.ip(), MS / 2), Lane::Open);
        assert!(a.push(Lane::Guarded, src, &[3; INIT_LEN], now));
        assert!(a.push(Lane::Guarded, src, &[4; INIT_LEN], now));
        assert!(
            !a.push(Lane::Guarded, src, &[5; INIT_LEN], now),
            "full queue drops"
        );
        assert!(
            !a.push(Lane::Open, src, &[5; 10], now),
            "wrong size is refused"
        );
        assert_eq!(a.depth(), 4);
    }

    #[test]
    fn known_addresses_have_a_lane_that_a_flood_does_not_close() {
        let mut a = Admission::new(cfg());
        let now = Instant::now();
        let device: SocketAddr = "198.51.100.7:4000".parse().unwrap();
        let stranger: SocketAddr = "203.0.113.9:4000".parse().unwrap();
        a.remember(now, device.ip());
        for _ in 0..FLOOD_MIN_INVALID {
            a.record(now, false);
        }
        assert!(a.flooded(now));
        assert_eq!(a.lane(now, stranger.ip(), MS), Lane::Guarded);
        assert_eq!(
            a.lane(now, "198.51.100.7".parse().unwrap(), MS),
            Lane::Known,
            "any port of a known address"
        );
        // A stranger's initiation that got in before the flood was seen is answered with a
        // cookie; one with mac2, and the known device's, get their Diffie-Hellman.
        assert!(a.push(Lane::Open, stranger, &[1; INIT_LEN], now));
        assert!(a.push(Lane::Guarded, stranger, &[2; INIT_LEN], now));
        assert!(a.push(Lane::Known, device, &[3; INIT_LEN], now));
        let mut stale = 0;
        let order: Vec<(u8, bool)> = std::iter::from_fn(|| a.pop(now, &mut stale))
            .map(|p| match p {
                Popped::Work(i) => (i.bytes[0], true),
                Popped::Cookie(i) => (i.bytes[0], false),
            })
            .collect();
        assert_eq!(
            order,
            [(3, true), (1, false), (2, true)],
            "the lanes alternate"
        );
        // A known lane that would not drain in time is guarded too.
        assert!(a.push(Lane::Known, device, &[4; INIT_LEN], now));
        assert!(a.push(Lane::Known, device, &[5; INIT_LEN], now));
        assert_eq!(a.lane(now, device.ip(), MS), Lane::Guarded);
        // Forgotten after `known_for`: then it is a stranger (the flood is over by then).
        assert!(a.pop(now, &mut stale).is_some() && a.pop(now, &mut stale).is_some());
        assert_eq!(a.lane(now, device.ip(), MS), Lane::Known);
        let later = now + Duration::from_secs(61);
        assert_eq!(a.lane(later, device.ip(), MS), Lane::Open);
    }

    #[test]
    fn the_lanes_share_the_work_while_both_are_busy() {
        let mut a = Admission::new(AdmissionConfig {
            queue_capacity: 100,
            known_capacity: 100,
            ..cfg()
        });
        let now = Instant::now();
        let src: SocketAddr = "192.0.2.1:1".parse().unwrap();
        for i in 0..6 {
            assert!(a.push(Lane::Guarded, src, &[i; INIT_LEN], now));
        }
        for i in 10..12 {
            assert!(a.push(Lane::Known, src, &[i; INIT_LEN], now));
        }
        let mut stale = 0;
        let order: Vec<u8> = std::iter::from_fn(|| a.pop(now, &mut stale))
            .map(|p| match p {
                Popped::Work(i) | Popped::Cookie(i) => i.bytes[0],
            })
            .collect();
        assert_eq!(order, [10, 0, 11, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn initiations_older_than_a_retransmit_are_dropped_unanswered() {
        let mut a = Admission::new(cfg());
        let t0 = Instant::now();
        let src: SocketAddr = "192.0.2.1:1".parse().unwrap();
        assert!(a.push(Lane::Open, src, &[1; INIT_LEN], t0));
        assert!(a.push(Lane::Open, src, &[2; INIT_LEN], t0 + Duration::from_secs(1)));
        let mut stale = 0;
        let next = a.pop(t0 + RETRANSMIT, &mut stale);
        assert!(matches!(next, Some(Popped::Work(i)) if i.bytes[0] == 2));
        assert_eq!(stale, 1);
        assert!(a.pop(t0 + RETRANSMIT, &mut stale).is_none());
    }

    #[test]
    fn the_known_table_is_bounded_and_forgets_the_expired() {
        let mut a = Admission::new(cfg());
        let t0 = Instant::now();
        let ip = |n: u8| IpAddr::from([198, 51, 100, n]);
        a.remember(t0, ip(1));
        a.remember(t0 + Duration::from_secs(30), ip(2));
        a.remember(t0 + Duration::from_secs(30), ip(3));
        let t = t0 + Duration::from_secs(30);
        assert!(
            !a.known.contains(t, ip(3)),
            "full of live entries: the newcomer waits"
        );
        let t = t0 + Duration::from_secs(61);
        a.remember(t, ip(3));
        assert!(a.known.contains(t, ip(3)), "the expired one made room");
        assert!(a.known.contains(t, ip(2)));
        assert!(!a.known.contains(t, ip(1)));
    }

    #[test]
    fn prompts_are_capped_per_second() {
        let mut a = Admission::new(cfg());
        let t0 = Instant::now();
        assert!(a.allow_prompt(t0) && a.allow_prompt(t0));
        assert!(!a.allow_prompt(t0));
        assert!(a.allow_prompt(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn the_cost_average_follows_the_samples() {
        let c = Cost::new(Duration::from_micros(250));
        for _ in 0..2_000 {
            c.record(Duration::from_micros(100));
        }
        let got = c.get().as_micros();
        assert!((99..=101).contains(&got), "{got} µs");
    }

    #[test]
    fn one_preempted_handshake_barely_moves_the_cost() {
        let c = Cost::new(Duration::from_micros(200));
        // A worker descheduled for a 4 ms time slice in the middle of one handshake.
        c.record(Duration::from_millis(4));
        let got = c.get().as_micros();
        assert!(got < 220, "{got} µs");
    }
}
