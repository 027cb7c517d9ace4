//! One simulated device's handshake, timed as the stock WireGuard clients time theirs.
//!
//! wireguard-go (the engine of the iOS, macOS and Android apps and of userspace wg-quick), the
//! Linux kernel and wireguard-nt behave alike here:
//! - A cookie reply is only stored (wireguard-go `device/receive.go`, `RoutineHandshake`: the
//!   reply is consumed, nothing is sent). The next initiation carries mac2 with it.
//! - That next initiation leaves when the retransmit timer fires: REKEY_TIMEOUT (5 s) plus a
//!   jitter drawn afresh for every initiation, 0 to 333 ms (`device/timers.go`,
//!   `timersHandshakeInitiated`, `fastrandn(334)`).
//! - When the timer fires with more than MAX_TIMER_HANDSHAKES (90 s / 5 s = 18) retransmits
//!   behind it, the client gives up (`expiredRetransmitHandshake`): 19 retransmits, 20
//!   initiations in all, about 103 s after the first.
//!
//! They would start afresh (and reset the count) if the device had data to send; a simulated
//! device has none before its session. `Model::ResendOnCookie` is the old behaviour of this
//! generator, an immediate resend with mac2 on every cookie reply, which no stock client does.

use boringtun::noise::{Tunn, TunnResult};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// What a device does when a cookie reply arrives.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Model {
    /// Store the cookie; the retransmit timer sends the next initiation, with mac2.
    Stock,
    /// Resend at once, with mac2 (not what the stock clients do).
    ResendOnCookie,
}

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::Stock => "stock",
            Model::ResendOnCookie => "resend-on-cookie",
        }
    }
}

/// Retransmits a client makes before it gives up: wireguard-go and the kernel retry while
/// fewer than MAX_TIMER_HANDSHAKES + 1 are behind them.
const MAX_RETRANSMITS: u32 = 90 / 5 + 1;

/// The jitter on the retransmit timer for a device's `attempt`-th initiation (0: the first):
/// 0 to 333 ms like the clients' fresh random draw, but a hash of the device's number and the
/// attempt, so that runs are repeatable.
pub fn jitter(device: u32, attempt: u32) -> Duration {
    let h = ((u64::from(device) << 32) | u64::from(attempt)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    Duration::from_millis((h >> 32) % 334)
}

/// How a device behaves, and until when it tries.
#[derive(Clone, Copy)]
pub struct Rules {
    pub model: Model,
    /// REKEY_TIMEOUT: 5 s in the clients.
    pub retry: Duration,
    /// The end of the run: a device without a session by then has failed.
    pub deadline: Instant,
}

/// A simulated device: its number in the seed's list, its own socket (connected to the server)
/// and its tunnel state.
pub struct Device {
    pub number: u32,
    pub socket: UdpSocket,
    pub tunn: Tunn,
}

/// What happened to one device's handshake.
#[derive(Clone, Copy, Default, Debug)]
pub struct Outcome {
    /// Time from its start until the handshake response was accepted; `None`: no session.
    pub session_after: Option<Duration>,
    /// Initiations sent by the retransmit timer.
    pub retries: u32,
    pub cookies: u32,
    /// It stopped trying before the deadline, as the clients do after 20 initiations.
    pub gave_up: bool,
}

/// Message types of the WireGuard wire format (first byte).
const HANDSHAKE_RESPONSE: u8 = 2;
const COOKIE_REPLY: u8 = 3;

impl Device {
    /// A fresh initiation (with mac2 while a stored cookie is fresh), or `None` if boringtun
    /// produced none.
    pub fn initiation(&mut self) -> Option<Vec<u8>> {
        let mut buf = [0u8; 256];
        match self.tunn.format_handshake_initiation(&mut buf, true) {
            TunnResult::WriteToNetwork(p) => Some(p.to_vec()),
            _ => None,
        }
    }

    /// Sends `first` (an initiation computed before the clock started) at `start`, then
    /// handles what comes back under `rules` until a session, the clients' give-up or the
    /// deadline.
    pub async fn handshake(&mut self, first: &[u8], start: Instant, rules: Rules) -> Outcome {
        let mut outcome = Outcome::default();
        let mut buf = vec![0u8; 2048];
        let mut out = vec![0u8; 2048];
        tokio::time::sleep_until(start.into()).await;
        // A full send buffer loses the datagram, as a real network might; the retry covers it.
        let _ = self.socket.send(first).await;
        let mut retransmit_at = start + rules.retry + jitter(self.number, 0);
        loop {
            let wake = retransmit_at.min(rules.deadline);
            match tokio::time::timeout_at(wake.into(), self.socket.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    let kind = buf.first().copied();
                    match self.tunn.decapsulate(None, &buf[..n], &mut out) {
                        TunnResult::WriteToNetwork(keepalive)
                            if kind == Some(HANDSHAKE_RESPONSE) =>
                        {
                            outcome.session_after = Some(start.elapsed());
                            // The keepalive confirms the session to the responder.
                            let _ = self.socket.send(keepalive).await;
                            return outcome;
                        }
                        // boringtun stored the cookie; mac2 goes with the next initiation.
                        TunnResult::Done if kind == Some(COOKIE_REPLY) => {
                            outcome.cookies += 1;
                            if rules.model == Model::ResendOnCookie {
                                if let Some(p) = self.initiation() {
                                    let _ = self.socket.send(&p).await;
                                }
                            }
                        }
                        _ => {}
                    }
                }
                // The socket is connected to the server: an error is an ICMP unreachable for
                // an earlier datagram. The retransmit covers it.
                Ok(Err(_)) => {}
                Err(_elapsed) if Instant::now() >= rules.deadline => return outcome,
                Err(_elapsed) if outcome.retries >= MAX_RETRANSMITS => {
                    outcome.gave_up = true;
                    return outcome;
                }
                Err(_elapsed) => {
                    outcome.retries += 1;
                    if let Some(p) = self.initiation() {
                        let _ = self.socket.send(&p).await;
                    }
                    retransmit_at =
                        Instant::now() + rules.retry + jitter(self.number, outcome.retries);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boringtun::noise::rate_limiter::RateLimiter;
    use boringtun::x25519::{PublicKey, StaticSecret};
    use std::sync::Arc;

    #[test]
    fn jitter_stays_within_the_clients_third_of_a_second_and_varies() {
        let draws: Vec<Duration> = (0..1000).map(|a| jitter(7, a)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_millis(333)));
        assert!(draws.iter().any(|d| *d < Duration::from_millis(30)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(300)));
        assert_eq!(jitter(7, 3), jitter(7, 3));
    }

    /// A server that demands a cookie from every initiation without a valid mac2 (boringtun's
    /// rate limiter at a limit of 0), answers the rest with a handshake response, and records
    /// when each initiation arrived and whether it carried a mac2.
    fn cookie_demanding_server(
        server_secret: StaticSecret,
        device_public: PublicKey,
    ) -> (
        std::net::SocketAddr,
        std::thread::JoinHandle<Vec<(Instant, bool)>>,
    ) {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let limiter = Arc::new(RateLimiter::new(&PublicKey::from(&server_secret), 0));
        let mut tunn = Tunn::new(server_secret, device_public, None, None, 1, Some(limiter));
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let (mut buf, mut out) = ([0u8; 2048], [0u8; 2048]);
            loop {
                let (n, from) = socket.recv_from(&mut buf).unwrap();
                if buf[0] != 1 {
                    continue;
                }
                seen.push((Instant::now(), buf[n - 16..n] != [0u8; 16]));
                if let TunnResult::WriteToNetwork(reply) =
                    tunn.decapsulate(Some(from.ip()), &buf[..n], &mut out)
                {
                    let response = reply[0] == HANDSHAKE_RESPONSE;
                    socket.send_to(reply, from).unwrap();
                    if response {
                        return seen;
                    }
                }
            }
        });
        (addr, thread)
    }

    /// Device `number` with key `secret`, its socket connected to `server`.
    async fn device(
        number: u32,
        secret: StaticSecret,
        server_secret: &StaticSecret,
        server: std::net::SocketAddr,
    ) -> Device {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(server).await.unwrap();
        let server_public = PublicKey::from(server_secret);
        let tunn = Tunn::new(secret, server_public, None, None, number, None);
        Device {
            number,
            socket,
            tunn,
        }
    }

    /// One device against [`cookie_demanding_server`]: its outcome, what the server saw, and
    /// when the device started.
    async fn against_a_cookie_demanding_server(
        model: Model,
        retry: Duration,
    ) -> (Outcome, Vec<(Instant, bool)>, Instant) {
        let server_secret = StaticSecret::from([7u8; 32]);
        let device_secret = StaticSecret::from([9u8; 32]);
        let (server, thread) =
            cookie_demanding_server(server_secret.clone(), PublicKey::from(&device_secret));
        let mut device = device(3, device_secret, &server_secret, server).await;
        let first = device.initiation().unwrap();
        let start = Instant::now();
        let rules = Rules {
            model,
            retry,
            deadline: start + Duration::from_secs(10),
        };
        let outcome = device.handshake(&first, start, rules).await;
        (outcome, thread.join().unwrap(), start)
    }

    #[tokio::test]
    async fn a_stock_device_stores_the_cookie_and_sends_mac2_when_its_retransmit_timer_fires() {
        let retry = Duration::from_millis(300);
        let (outcome, seen, start) = against_a_cookie_demanding_server(Model::Stock, retry).await;
        assert!(outcome.session_after.is_some());
        assert_eq!((outcome.cookies, outcome.retries), (1, 1));
        assert_eq!(
            seen.len(),
            2,
            "the cookie reply made the device send nothing"
        );
        assert!(!seen[0].1 && seen[1].1, "only the retransmit carries mac2");
        assert!(seen[1].0 - start >= retry + jitter(3, 0));
    }

    #[tokio::test]
    async fn resend_on_cookie_sends_mac2_at_once() {
        let (outcome, seen, _) =
            against_a_cookie_demanding_server(Model::ResendOnCookie, Duration::from_secs(5)).await;
        assert!(outcome.session_after.is_some());
        assert_eq!((outcome.cookies, outcome.retries), (1, 0));
        assert!(!seen[0].1 && seen[1].1);
    }

    #[tokio::test]
    async fn an_unanswered_device_gives_up_after_nineteen_retransmits_as_the_clients_do() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let server_secret = StaticSecret::from([7u8; 32]);
        let (secret, server) = (StaticSecret::from([9u8; 32]), silent.local_addr().unwrap());
        let mut device = device(5, secret, &server_secret, server).await;
        let first = device.initiation().unwrap();
        let start = Instant::now();
        let rules = Rules {
            model: Model::Stock,
            retry: Duration::from_millis(1),
            deadline: start + Duration::from_secs(60),
        };
        let outcome = device.handshake(&first, start, rules).await;
        assert!(outcome.gave_up && outcome.session_after.is_none());
        assert_eq!(outcome.retries, 19);
    }
}
