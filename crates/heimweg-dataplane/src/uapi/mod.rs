//! WireGuard's cross-platform userspace API (UAPI): the UNIX socket `wg` talks to.
//!
//! [`protocol`] is the pure text protocol (parse `set`, render `get`); [`server`] owns the socket
//! in `/var/run/wireguard/<ifname>.sock` and hands parsed requests to a [`UapiHandler`].
//! Behaviour follows wireguard-go, except that a set request is parsed and validated completely
//! before anything is applied, so bad input changes nothing.

pub mod protocol;
pub mod server;

pub use protocol::{
    format_get, format_stats, parse_set, DeviceSnapshot, Key, PeerChange, PeerSnapshot, SetRequest,
    UapiError,
};
pub use server::{UapiHandler, UapiServer};
