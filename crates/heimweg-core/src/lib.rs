//! heimweg-core: the sans-IO heart of the heimweg data plane.
//!
//! It keeps the table of WireGuard peers around boringtun's `noise::Tunn` state machine and makes
//! every per-packet decision of a concentrator: which peer a datagram belongs to (receiver
//! index, one hash lookup), which peer an IP packet from the TUN goes to (longest-prefix match on
//! allowed IPs), whether a decrypted packet's source belongs to its sender, whether the peer's
//! access policy lets it reach that destination (both directions), where a roaming peer
//! now is, which handshakes get Diffie-Hellman and which get a cookie, and when each active peer's
//! timers are due. Every dropped packet is counted by reason.
//!
//! It deliberately does **not** do I/O: no sockets, files, threads, clocks or randomness of its
//! own. Bytes come in, [`Output`]s go out, time arrives as `now` (see [`Device`] for the calling
//! contract). It knows nothing of the store, the API or the panel.

pub mod admission;
pub mod allowed_ips;
pub mod counters;
mod device;
pub mod packet;
pub mod policy;
mod timers;

pub use admission::AdmissionConfig;
pub use counters::{Counters, DropReason};
pub use device::{
    answer_next_handshake, short_key, Answered, Device, HandshakeStep, Key, LentHandshake, Output,
    PeerId, PeerInfo, PeerSettings, PendingHandshake, Roaming, Taken, Transmit, DATA_OVERHEAD,
    MIN_OUT_LEN,
};
pub use ip_network::IpNetwork;
pub use policy::Policy;
