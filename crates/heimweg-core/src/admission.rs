//! Handshake admission: who gets Diffie-Hellman, and when.
//!
//! A handshake initiation costs the responder several X25519 operations before it even knows
//! whether the sender is a configured peer, so initiations never run inline with data. They wait
//! in a bounded queue; a full queue drops, a loaded queue (depth above a threshold) makes the core
//! answer with cookie replies (mac2, WireGuard §5.4.7) instead, and every source address has a
//! token bucket so that one address cannot take the whole budget. Cookie replies have a
//! per-source budget of their own: a flood from a few addresses then costs a table lookup per
//! datagram instead of the MACs and the encryption of a cookie reply.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Size of a handshake initiation on the wire.
pub const INIT_LEN: usize = 148;

/// Tunables of admission. The defaults suit a 2-core gateway; see `Default`.
#[derive(Clone, Debug)]
pub struct AdmissionConfig {
    /// Initiations that may wait for Diffie-Hellman; more are dropped.
    pub queue_capacity: usize,
    /// Queue depth from which we consider ourselves under load and demand cookies.
    pub load_threshold: usize,
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
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            queue_capacity: 4096,
            // About a quarter second of Diffie-Hellman for two cores: a storm of real devices
            // is answered without a cookie round trip, a flood passes it within milliseconds.
            load_threshold: 2048,
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

pub(crate) struct Admission {
    pub config: AdmissionConfig,
    queue: VecDeque<QueuedInit>,
    /// Initiations admitted to the queue, per source.
    buckets: Buckets,
    /// Cookie replies sent, per source.
    cookies: Buckets,
    /// Handshakes answered in the current one-second window, and how many of them came from
    /// no configured peer.
    window: Option<(Instant, u32, u32)>,
    /// Cookies are demanded until then, however short the queue: see [`Admission::record`].
    flooded_until: Option<Instant>,
    /// Start of the current one-second window and the cookie replies granted in it.
    cookie_window: Option<(Instant, u32)>,
}

/// A second in which at least this many initiations came from unknown keys, and they were the
/// majority, is a flood (a storm of real devices has none).
const FLOOD_MIN_INVALID: u32 = 100;
/// How long a flood keeps the gateway demanding cookies after it was last seen.
const FLOOD_HOLD: Duration = Duration::from_secs(2);

impl Admission {
    pub fn new(config: AdmissionConfig) -> Self {
        Admission {
            queue: VecDeque::with_capacity(config.queue_capacity),
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
            window: None,
            flooded_until: None,
            cookie_window: None,
            config,
        }
    }

    /// Whether to demand cookies: the queue is deep, or a flood was seen in the last
    /// [`FLOOD_HOLD`]. Without the hold, a sustained flood would be let back into the queue
    /// (and cost a Diffie-Hellman each) every time the queue drained below the threshold; with
    /// it, the flood costs only cookie replies, and real devices come in with mac2.
    pub fn under_load(&self, now: Instant) -> bool {
        self.queue.len() >= self.config.load_threshold
            || self.flooded_until.is_some_and(|t| now < t)
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

    pub fn depth(&self) -> usize {
        self.queue.len()
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
        let granted = match self.cookie_window {
            Some((start, n)) if now.saturating_duration_since(start) < Duration::from_secs(1) => n,
            _ => {
                self.cookie_window = Some((now, 0));
                0
            }
        };
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
        if let Some((_, n)) = self.cookie_window.as_mut() {
            *n += 1;
        }
        Some(grant)
    }

    /// Gives back what [`Admission::allow_cookie`] granted to `src`, when no cookie was sent
    /// after all (its mac1 was wrong): to the budget that paid.
    pub fn refund_cookie(&mut self, src: IpAddr, grant: CookieGrant) {
        if let Some((_, n)) = self.cookie_window.as_mut() {
            *n = n.saturating_sub(1);
        }
        if grant == CookieGrant::Bucket {
            self.cookies.give_back(src);
        }
    }

    /// Queues an initiation; false if the queue is full.
    pub fn push(&mut self, src: SocketAddr, datagram: &[u8]) -> bool {
        if self.queue.len() >= self.config.queue_capacity {
            return false;
        }
        let Ok(bytes) = <[u8; INIT_LEN]>::try_from(datagram) else {
            return false;
        };
        self.queue.push_back(QueuedInit { src, bytes });
        true
    }

    /// Empties the queue; returns how many initiations it held.
    pub fn drain(&mut self) -> usize {
        let n = self.queue.len();
        self.queue.clear();
        n
    }

    pub fn pop(&mut self) -> Option<QueuedInit> {
        self.queue.pop_front()
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
            load_threshold: 2,
            per_source_rate: 10,
            per_source_burst: 3,
            free_cookie_rate: 0,
            max_cookie_rate: 100,
            per_source_cookie_rate: 10,
            per_source_cookie_burst: 2,
            max_sources: 2,
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
        a.refund_cookie(ip, CookieGrant::Bucket);
        assert_eq!(a.allow_cookie(t0, ip), Some(CookieGrant::Bucket));
        assert_eq!(a.allow_cookie(t0, ip), None);
        // A refund of a free cookie does not fill the bucket.
        a.refund_cookie(ip, CookieGrant::Free);
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

    #[test]
    fn queue_is_bounded_and_load_follows_depth() {
        let mut a = Admission::new(cfg());
        let src: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let now = Instant::now();
        assert!(!a.under_load(now));
        assert!(a.push(src, &[1; INIT_LEN]));
        assert!(a.push(src, &[2; INIT_LEN]));
        assert!(a.under_load(now));
        assert!(a.push(src, &[3; INIT_LEN]));
        assert!(a.push(src, &[4; INIT_LEN]));
        assert!(!a.push(src, &[5; INIT_LEN]), "full queue drops");
        assert!(!a.push(src, &[5; 10]), "wrong size is refused");
        assert_eq!(a.pop().unwrap().bytes[0], 1);
        assert_eq!(a.depth(), 3);
    }
}
