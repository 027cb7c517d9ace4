//! Why packets were dropped and how handshakes ended, counted without locks.
//!
//! Every packet the core refuses is counted under exactly one [`DropReason`]; the data plane
//! exports the counters (UAPI `stats=1`, Prometheus) so that junk from the internet is
//! visible instead of silent.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Why a packet was dropped. The names are stable: they become metric label values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum DropReason {
    /// Too short, unknown message type, non-zero reserved bytes, or a message of the wrong size.
    Malformed,
    /// A handshake message whose mac1 does not match our public key.
    InvalidMac,
    /// A handshake initiation from a key that is not a configured peer, or that failed to decrypt.
    HandshakeInvalid,
    /// A replayed handshake initiation (old TAI64N timestamp).
    HandshakeReplay,
    /// The source address exceeded its handshake rate, or under load its budget of cookie
    /// replies.
    HandshakeRateLimited,
    /// The bounded handshake queue was full.
    HandshakeQueueFull,
    /// A queued initiation that waited longer than the client's retransmit interval: the client
    /// has sent a new one since, and would discard an answer to this.
    HandshakeStale,
    /// An initiation from a peer whose previous initiation another worker is answering right
    /// now (the client's retry gets through), or an answer computed while the peer was changed
    /// or removed.
    HandshakeBusy,
    /// A data, response or cookie message for a receiver index we do not know.
    UnknownIndex,
    /// The peer is known but has no session for that index (expired or never established).
    NoSession,
    /// Authentication of a data packet failed.
    DecryptFailed,
    /// A data packet counter that was already seen or is too old for the replay window.
    Replay,
    /// A decrypted packet whose inner source address is not one of the sender's allowed IPs.
    SourceNotAllowed,
    /// A packet to or from a peer that its access policy does not allow.
    PolicyDenied,
    /// A decrypted payload that is not a well-formed IPv4 or IPv6 packet.
    InnerMalformed,
    /// A packet from the TUN whose destination matches no peer's allowed IPs.
    NoRoute,
    /// A packet for a peer whose endpoint is not known yet.
    NoEndpoint,
    /// No private key is configured, so nothing can be encrypted or decrypted.
    NoPrivateKey,
    /// A packet larger than the buffers the caller supplied.
    TooLarge,
}

impl DropReason {
    /// Every reason, in declaration order.
    pub const ALL: [DropReason; 19] = [
        DropReason::Malformed,
        DropReason::InvalidMac,
        DropReason::HandshakeInvalid,
        DropReason::HandshakeReplay,
        DropReason::HandshakeRateLimited,
        DropReason::HandshakeQueueFull,
        DropReason::HandshakeStale,
        DropReason::HandshakeBusy,
        DropReason::UnknownIndex,
        DropReason::NoSession,
        DropReason::DecryptFailed,
        DropReason::Replay,
        DropReason::SourceNotAllowed,
        DropReason::PolicyDenied,
        DropReason::InnerMalformed,
        DropReason::NoRoute,
        DropReason::NoEndpoint,
        DropReason::NoPrivateKey,
        DropReason::TooLarge,
    ];

    /// Stable snake_case name, used as a metric label and in the UAPI `stats` reply.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::InvalidMac => "invalid_mac",
            DropReason::HandshakeInvalid => "handshake_invalid",
            DropReason::HandshakeReplay => "handshake_replay",
            DropReason::HandshakeRateLimited => "handshake_rate_limited",
            DropReason::HandshakeQueueFull => "handshake_queue_full",
            DropReason::HandshakeStale => "handshake_stale",
            DropReason::HandshakeBusy => "handshake_busy",
            DropReason::UnknownIndex => "unknown_index",
            DropReason::NoSession => "no_session",
            DropReason::DecryptFailed => "decrypt_failed",
            DropReason::Replay => "replay",
            DropReason::SourceNotAllowed => "source_not_allowed",
            DropReason::PolicyDenied => "policy_denied",
            DropReason::InnerMalformed => "inner_malformed",
            DropReason::NoRoute => "no_route",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::NoPrivateKey => "no_private_key",
            DropReason::TooLarge => "too_large",
        }
    }
}

/// Aggregate counters of one [`crate::Device`], as read at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    drops: [u64; DropReason::ALL.len()],
    /// Handshake responses sent (a peer completed the first half of a session).
    pub handshakes_ok: u64,
    /// Cookie replies sent instead of doing Diffie-Hellman, because we were under load.
    pub cookies_sent: u64,
    /// Handshakes the gateway started because a device's traffic arrived under a session it
    /// did not know, from where the store last saw the device (a failover).
    pub handshakes_prompted: u64,
    /// Datagrams received from the network, of any kind.
    pub rx_datagrams: u64,
    /// Data packets decrypted and handed to the TUN.
    pub rx_packets: u64,
    /// Bytes of decrypted IP packets handed to the TUN.
    pub rx_bytes: u64,
    /// Data packets encrypted for the network.
    pub tx_packets: u64,
    /// Bytes of IP packets taken from the TUN and encrypted.
    pub tx_bytes: u64,
}

impl Counters {
    /// How many packets were dropped for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// All drop counters with their names, in declaration order.
    pub fn drop_counts(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.drops[*r as usize]))
    }

    /// Sum of all drop counters.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// What the core counts besides drops.
#[derive(Clone, Copy)]
pub(crate) enum Count {
    HandshakesOk,
    CookiesSent,
    HandshakesPrompted,
    RxDatagrams,
    RxPackets,
    RxBytes,
    TxPackets,
    TxBytes,
}

const COUNTS: usize = 8;
const CELLS: usize = COUNTS + DropReason::ALL.len();
/// More than the cores a gateway runs workers on is not needed: threads beyond share a shard,
/// which stays correct (the adds are atomic), only slower.
const SHARDS: usize = 8;

/// The live counters. Workers on several cores count every packet at once, so each thread adds
/// to a shard of its own, on its own cache lines; reading sums the shards.
pub(crate) struct Tally {
    shards: [Shard; SHARDS],
}

#[repr(align(128))]
struct Shard([AtomicU64; CELLS]);

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            shards: std::array::from_fn(|_| Shard(std::array::from_fn(|_| AtomicU64::new(0)))),
        }
    }
}

/// This thread's shard: threads take them in turn as they first count.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS);
    SHARD.with(|s| *s)
}

impl Tally {
    pub fn add(&self, what: Count, n: u64) {
        self.shards[shard()].0[what as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn drop(&self, reason: DropReason) {
        self.shards[shard()].0[COUNTS + reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The sums. Each counter is exact; counters read while packets flow may be a packet
    /// apart from each other.
    pub fn read(&self) -> Counters {
        let sum = |cell: usize| {
            self.shards
                .iter()
                .map(|s| s.0[cell].load(Ordering::Relaxed))
                .sum::<u64>()
        };
        Counters {
            drops: std::array::from_fn(|r| sum(COUNTS + r)),
            handshakes_ok: sum(Count::HandshakesOk as usize),
            cookies_sent: sum(Count::CookiesSent as usize),
            handshakes_prompted: sum(Count::HandshakesPrompted as usize),
            rx_datagrams: sum(Count::RxDatagrams as usize),
            rx_packets: sum(Count::RxPackets as usize),
            rx_bytes: sum(Count::RxBytes as usize),
            tx_packets: sum(Count::TxPackets as usize),
            tx_bytes: sum(Count::TxBytes as usize),
        }
    }
}
