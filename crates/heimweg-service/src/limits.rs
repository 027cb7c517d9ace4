//! Token buckets: bounds on what the public and the logged-in may ask for per second, so
//! that no client (and not all of them together) can keep the gateway's cores or the store's
//! write lock busy.

/// A token bucket's state: tokens left and when they were counted.
type Bucket = (f64, std::time::Instant);

/// How a token bucket refills: `burst` at once, then `per_second`.
#[derive(Clone, Copy)]
struct Rate {
    per_second: f64,
    burst: f64,
}

impl Rate {
    /// Tokens in `bucket` at `now`; a bucket not seen before is full.
    fn level(self, bucket: Option<Bucket>, now: std::time::Instant) -> f64 {
        bucket.map_or(self.burst, |(tokens, last)| {
            (tokens + now.duration_since(last).as_secs_f64() * self.per_second).min(self.burst)
        })
    }

    /// Takes a token if there is one; returns whether it did and the bucket's new state.
    fn take(self, bucket: Option<Bucket>, now: std::time::Instant) -> (bool, Bucket) {
        let tokens = self.level(bucket, now);
        let admitted = tokens >= 1.0;
        (
            admitted,
            (if admitted { tokens - 1.0 } else { tokens }, now),
        )
    }
}

/// One token bucket: a process-wide bound on costly public operations (filings of access
/// requests, password checks), whoever sends them.
pub struct RateLimit {
    rate: Rate,
    state: std::sync::Mutex<Option<Bucket>>,
}

impl RateLimit {
    pub const fn new(per_second: f64, burst: f64) -> RateLimit {
        RateLimit {
            rate: Rate { per_second, burst },
            state: std::sync::Mutex::new(None),
        }
    }

    pub fn admit(&self) -> bool {
        let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (admitted, state) = self.rate.take(*b, std::time::Instant::now());
        *b = Some(state);
        admitted
    }
}

/// The unit that counts as one client: an IPv4 address, or an IPv6 /64. A subscriber gets a
/// whole /64 (or more) and can send from any address in it, so keying by the address would
/// give one attacker 2^64 buckets, and fill the table for everyone.
fn client_unit(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip.to_canonical() {
        std::net::IpAddr::V6(a) => {
            let mut o = a.octets();
            o[8..].fill(0);
            std::net::IpAddr::V6(o.into())
        }
        v4 => v4,
    }
}

/// One token bucket per client address, for what a single client must not monopolise (login
/// attempts). The table is bounded: when full, buckets that have refilled (clients gone
/// quiet) are forgotten, and if none has, the newcomer shares one overflow bucket.
pub struct KeyedRateLimit {
    rate: Rate,
    buckets: std::sync::Mutex<std::collections::HashMap<Option<std::net::IpAddr>, Bucket>>,
}

impl KeyedRateLimit {
    const MAX_CLIENTS: usize = 4096;

    pub fn new(per_second: f64, burst: f64) -> KeyedRateLimit {
        KeyedRateLimit {
            rate: Rate { per_second, burst },
            buckets: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    pub fn admit(&self, client: Option<std::net::IpAddr>) -> bool {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        let mut key = client.map(client_unit);
        if !b.contains_key(&key) && b.len() >= Self::MAX_CLIENTS {
            b.retain(|_, v| self.rate.level(Some(*v), now) < self.rate.burst);
            if b.len() >= Self::MAX_CLIENTS {
                key = None;
            }
        }
        let (admitted, state) = self.rate.take(b.get(&key).copied(), now);
        b.insert(key, state);
        admitted
    }
}

/// Wrong passwords per login name, counted before a password goes to the city's directory:
/// the directory locks an account after a few wrong ones (Active Directory's lockout policy),
/// and that lock also keeps its owner out of their PC. Anyone can type a colleague's login, so
/// heimweg stops passing passwords for a login on after `max` wrong ones within `window`,
/// below the thresholds directories are set to; a right one starts the count again. The table
/// is bounded: a full one forgets logins whose window is over, and refuses while still full
/// (the process-wide bound on checks keeps it from filling within a window).
pub struct LoginFailures {
    max: u32,
    window: std::time::Duration,
    seen: std::sync::Mutex<std::collections::HashMap<String, (u32, std::time::Instant)>>,
}

impl LoginFailures {
    const MAX_LOGINS: usize = 50_000;

    pub fn new(max: u32, window: std::time::Duration) -> LoginFailures {
        LoginFailures {
            max,
            window,
            seen: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn table(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (u32, std::time::Instant)>>
    {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a password for `login` may go to the directory now.
    pub fn admits(&self, login: &str) -> bool {
        let now = std::time::Instant::now();
        let mut t = self.table();
        let key = login.to_lowercase();
        match t.get(&key) {
            Some(&(n, since)) if now.duration_since(since) < self.window => n < self.max,
            Some(_) => {
                t.remove(&key);
                true
            }
            None if t.len() >= Self::MAX_LOGINS => {
                t.retain(|_, (_, since)| now.duration_since(*since) < self.window);
                t.len() < Self::MAX_LOGINS
            }
            None => true,
        }
    }

    /// A wrong password for `login`; the window starts at the first.
    pub fn failed(&self, login: &str) {
        let now = std::time::Instant::now();
        let mut t = self.table();
        let entry = t.entry(login.to_lowercase()).or_insert((0, now));
        if now.duration_since(entry.1) >= self.window {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    /// A right password for `login`: its count starts again.
    pub fn succeeded(&self, login: &str) {
        self.table().remove(&login.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::{KeyedRateLimit, LoginFailures};

    #[test]
    fn wrong_passwords_for_a_login_stop_at_the_maximum_and_a_right_one_resets() {
        let f = LoginFailures::new(3, std::time::Duration::from_secs(900));
        for _ in 0..3 {
            assert!(f.admits("Anna"));
            f.failed("anna");
        }
        assert!(!f.admits("ANNA"), "logins compare without case");
        assert!(f.admits("bob"), "another login is not held up");
        f.succeeded("anna");
        assert!(f.admits("anna"));
        let brief = LoginFailures::new(1, std::time::Duration::ZERO);
        brief.failed("anna");
        assert!(brief.admits("anna"), "the window is over");
    }
    use std::net::IpAddr;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        // No refill to speak of: a burst of 3 per client.
        let limit = KeyedRateLimit::new(1e-9, 3.0);
        for host in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9"] {
            assert!(limit.admit(ip(host)), "{host}");
        }
        // Another address of the same /64 finds the bucket empty.
        assert!(!limit.admit(ip("2001:db8:1:2:dead:beef::1")));
        // The next /64 and IPv4 clients have their own.
        assert!(limit.admit(ip("2001:db8:1:3::1")));
        assert!(limit.admit(ip("192.0.2.7")));
        assert!(limit.admit(ip("192.0.2.8")));
        // An IPv4 client seen as an IPv4-mapped IPv6 address is the same client.
        assert!(limit.admit(ip("192.0.2.7")));
        assert!(limit.admit(ip("::ffff:192.0.2.7")));
        assert!(!limit.admit(ip("192.0.2.7")));
    }
}
