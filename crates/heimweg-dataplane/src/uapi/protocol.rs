//! The text protocol of WireGuard's cross-platform UAPI, without any I/O.
//!
//! [`parse_set`] turns the body of a `set=1` request into a [`SetRequest`]; it validates the whole
//! request before anything is applied, so a bad line anywhere changes nothing (wireguard-go applies
//! line by line and leaves a half-applied configuration behind). [`format_get`] renders a
//! [`DeviceSnapshot`] as the reply to `get=1`, in wireguard-go's key order.
//!
//! Semantics follow wireguard-go's `device/uapi.go`:
//! - device keys (`private_key`, `listen_port`, `fwmark`, `replace_peers`) only before the first
//!   `public_key`; every later key is a peer key, so a device key after it is "invalid UAPI peer
//!   key" (-EINVAL), and a peer key before any `public_key` is "invalid UAPI device key" (-EINVAL);
//! - a line without `=` is -EPROTO, everything else that does not parse is -EINVAL;
//! - `remove`, `update_only`, `replace_peers`, `replace_allowed_ips` accept only `true`;
//! - an all-zero `private_key` or `preshared_key` removes the key;
//! - `allowed_ip=-a/b` removes one prefix from the peer (wireguard-go 2025-05, wg >= v1.0.20250521).

use ip_network::IpNetwork;
use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

/// A WireGuard key (private, public or preshared), raw bytes.
pub type Key = [u8; 32];

/// Longest line accepted in a set request (without the newline). The longest legitimate line,
/// `endpoint=[<v6>%<scope>]:65535` or `allowed_ip=-<v6>/128`, is well under 100 bytes.
pub const MAX_LINE_LEN: usize = 1024;

/// A fully parsed and validated `set=1` request.
#[derive(Default, Clone, PartialEq)]
pub struct SetRequest {
    /// `Some(None)` = all-zero hex = remove the private key.
    pub private_key: Option<Option<Key>>,
    pub listen_port: Option<u16>,
    pub fwmark: Option<u32>,
    /// Remove all peers before the peer changes are applied.
    pub replace_peers: bool,
    /// In request order. The same public key may occur more than once; apply them in order.
    pub peers: Vec<PeerChange>,
}

/// The changes to one peer, in the order they have to be applied: create the peer unless
/// `update_only` (or stop here if `remove`), set PSK/endpoint/keepalive, clear the allowed IPs if
/// `replace_allowed_ips`, then remove `allowed_ips_remove` and add `allowed_ips_add`.
///
/// The parser folds the order of `allowed_ip` lines into the two lists: they are disjoint and
/// free of duplicates, and whatever came before a `replace_allowed_ips=true` line is already
/// dropped, so applying removals before additions gives wireguard-go's line-by-line result.
#[derive(Clone, PartialEq)]
pub struct PeerChange {
    pub public_key: Key,
    /// Remove the peer; all other fields are then empty/false and meaningless.
    pub remove: bool,
    /// Do not create the peer if it does not exist (wgctrl uses this; `wg` does not).
    pub update_only: bool,
    /// `Some(None)` = all-zero key = no PSK.
    pub preshared_key: Option<Option<Key>>,
    pub endpoint: Option<SocketAddr>,
    pub persistent_keepalive: Option<u16>,
    pub replace_allowed_ips: bool,
    /// Host bits are masked (`IpNetwork::new_truncate`), as wireguard-go's allowed-IPs trie does.
    pub allowed_ips_add: Vec<IpNetwork>,
    /// From `allowed_ip=-a/b`: remove this prefix if it belongs to this peer.
    pub allowed_ips_remove: Vec<IpNetwork>,
}

impl PeerChange {
    /// A change that only names the peer (creates it if missing).
    pub fn new(public_key: Key) -> Self {
        PeerChange {
            public_key,
            remove: false,
            update_only: false,
            preshared_key: None,
            endpoint: None,
            persistent_keepalive: None,
            replace_allowed_ips: false,
            allowed_ips_add: Vec::new(),
            allowed_ips_remove: Vec::new(),
        }
    }
}

/// What `get=1` reports.
#[derive(Clone, Default)]
pub struct DeviceSnapshot {
    pub private_key: Option<Key>,
    /// Omitted from the reply when 0, like wireguard-go.
    pub listen_port: u16,
    /// Omitted from the reply when 0.
    pub fwmark: u32,
    pub peers: Vec<PeerSnapshot>,
}

/// One peer in a [`DeviceSnapshot`].
#[derive(Clone)]
pub struct PeerSnapshot {
    pub public_key: Key,
    pub preshared_key: Option<Key>,
    pub endpoint: Option<SocketAddr>,
    pub persistent_keepalive: u16,
    pub allowed_ips: Vec<IpNetwork>,
    /// Rendered as Unix epoch seconds + nanoseconds, 0/0 when `None`.
    pub last_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// A failed UAPI request; [`UapiError::errno`] is what goes on the `errno=` line.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum UapiError {
    /// Bad value or key: -EINVAL.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Malformed framing (line without `=`, overlong line/request): -EPROTO.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The listen port could not be bound: -EADDRINUSE.
    #[error("address in use")]
    AddrInUse,
    /// Anything else that went wrong while applying: -EIO.
    #[error("I/O error: {0}")]
    Io(String),
    /// Changes are not taken over this socket (a gateway whose peers come from its database):
    /// -EPERM, which `wg` reports as "Operation not permitted".
    #[error("changes are not taken here: {0}")]
    NotPermitted(String),
}

impl UapiError {
    /// The negative errno.h value for the `errno=` line, like wireguard-go sends it.
    pub fn errno(&self) -> i32 {
        -match self {
            UapiError::Invalid(_) => libc::EINVAL,
            UapiError::Protocol(_) => libc::EPROTO,
            UapiError::AddrInUse => libc::EADDRINUSE,
            UapiError::Io(_) => libc::EIO,
            UapiError::NotPermitted(_) => libc::EPERM,
        }
    }
}

fn invalid(msg: impl Into<String>) -> UapiError {
    UapiError::Invalid(msg.into())
}

// ---------------------------------------------------------------------------------------------
// Debug impls that never print secrets.

const REDACTED: &str = "[redacted]";

struct Redacted<'a, T>(&'a Option<T>);
impl<T> fmt::Debug for Redacted<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("None"),
            Some(_) => write!(f, "Some({REDACTED})"),
        }
    }
}

struct HexKey<'a>(&'a Key);
impl fmt::Debug for HexKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SetRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetRequest")
            .field("private_key", &Redacted(&self.private_key))
            .field("listen_port", &self.listen_port)
            .field("fwmark", &self.fwmark)
            .field("replace_peers", &self.replace_peers)
            .field("peers", &self.peers)
            .finish()
    }
}

impl fmt::Debug for PeerChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerChange")
            .field("public_key", &HexKey(&self.public_key))
            .field("remove", &self.remove)
            .field("update_only", &self.update_only)
            .field("preshared_key", &Redacted(&self.preshared_key))
            .field("endpoint", &self.endpoint)
            .field("persistent_keepalive", &self.persistent_keepalive)
            .field("replace_allowed_ips", &self.replace_allowed_ips)
            .field("allowed_ips_add", &self.allowed_ips_add)
            .field("allowed_ips_remove", &self.allowed_ips_remove)
            .finish()
    }
}

impl fmt::Debug for DeviceSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceSnapshot")
            .field("private_key", &Redacted(&self.private_key))
            .field("listen_port", &self.listen_port)
            .field("fwmark", &self.fwmark)
            .field("peers", &self.peers)
            .finish()
    }
}

impl fmt::Debug for PeerSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerSnapshot")
            .field("public_key", &HexKey(&self.public_key))
            .field("preshared_key", &Redacted(&self.preshared_key))
            .field("endpoint", &self.endpoint)
            .field("persistent_keepalive", &self.persistent_keepalive)
            .field("allowed_ips", &self.allowed_ips)
            .field("last_handshake", &self.last_handshake)
            .field("rx_bytes", &self.rx_bytes)
            .field("tx_bytes", &self.tx_bytes)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// set

/// Parses the body of a `set=1` request: the lines after `set=1\n`, up to but excluding the
/// terminating blank line (a final `\n` after the last line is allowed; a `\r` before a `\n` is
/// dropped like Go's `bufio.ScanLines` does). Nothing is applied here; on error the whole request
/// must be discarded.
pub fn parse_set(body: &str) -> Result<SetRequest, UapiError> {
    let body = body.strip_suffix('\n').unwrap_or(body);
    let mut req = SetRequest::default();
    if body.is_empty() {
        return Ok(req);
    }
    for raw in body.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.len() > MAX_LINE_LEN {
            return Err(UapiError::Protocol(format!(
                "line longer than {MAX_LINE_LEN} bytes"
            )));
        }
        if line.is_empty() {
            return Err(UapiError::Protocol(
                "blank line inside a set request".into(),
            ));
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(UapiError::Protocol(format!(
                "failed to parse line {:?}",
                line
            )));
        };
        if key == "public_key" {
            let public_key =
                parse_key(value).map_err(|e| invalid(format!("invalid public_key: {e}")))?;
            req.peers.push(PeerChange::new(public_key));
            continue;
        }
        match req.peers.last_mut() {
            None => parse_device_line(&mut req, key, value)?,
            Some(peer) => parse_peer_line(peer, key, value)?,
        }
    }
    Ok(req)
}

fn parse_device_line(req: &mut SetRequest, key: &str, value: &str) -> Result<(), UapiError> {
    match key {
        "private_key" => {
            let k = parse_key(value).map_err(|e| invalid(format!("invalid private_key: {e}")))?;
            req.private_key = Some(nonzero(k));
        }
        "listen_port" => {
            let port = parse_uint(value, u16::MAX.into())
                .ok_or_else(|| invalid(format!("invalid listen_port {value:?}")))?;
            req.listen_port = Some(port as u16);
        }
        "fwmark" => {
            let mark = parse_uint(value, u32::MAX.into())
                .ok_or_else(|| invalid(format!("invalid fwmark {value:?}")))?;
            req.fwmark = Some(mark as u32);
        }
        "replace_peers" => {
            expect_true(key, value)?;
            req.replace_peers = true;
        }
        _ => return Err(invalid(format!("invalid UAPI device key: {key:?}"))),
    }
    Ok(())
}

fn parse_peer_line(peer: &mut PeerChange, key: &str, value: &str) -> Result<(), UapiError> {
    // After remove=true wireguard-go turns the peer into a placeholder: later lines are still
    // validated but change nothing. We validate them and then keep the change a pure removal.
    let mut scratch;
    let target = if peer.remove {
        scratch = PeerChange::new(peer.public_key);
        &mut scratch
    } else {
        &mut *peer
    };
    match key {
        "remove" => {
            expect_true(key, value)?;
            let public_key = peer.public_key;
            *peer = PeerChange::new(public_key);
            peer.remove = true;
        }
        "update_only" => {
            expect_true(key, value)?;
            target.update_only = true;
        }
        "preshared_key" => {
            let k = parse_key(value).map_err(|e| invalid(format!("invalid preshared_key: {e}")))?;
            target.preshared_key = Some(nonzero(k));
        }
        "endpoint" => {
            let ep = parse_endpoint(value)
                .ok_or_else(|| invalid(format!("invalid endpoint {value:?}")))?;
            target.endpoint = Some(ep);
        }
        "persistent_keepalive_interval" => {
            let secs = parse_uint(value, u16::MAX.into()).ok_or_else(|| {
                invalid(format!("invalid persistent_keepalive_interval {value:?}"))
            })?;
            target.persistent_keepalive = Some(secs as u16);
        }
        "replace_allowed_ips" => {
            expect_true(key, value)?;
            target.replace_allowed_ips = true;
            // Everything earlier in this peer's section is wiped by the replace.
            target.allowed_ips_add.clear();
            target.allowed_ips_remove.clear();
        }
        "allowed_ip" => {
            let (remove, prefix) = match value.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, value),
            };
            let net = parse_prefix(prefix)
                .ok_or_else(|| invalid(format!("invalid allowed_ip {value:?}")))?;
            target.allowed_ips_add.retain(|n| *n != net);
            target.allowed_ips_remove.retain(|n| *n != net);
            if remove {
                target.allowed_ips_remove.push(net);
            } else {
                target.allowed_ips_add.push(net);
            }
        }
        "protocol_version" => {
            if value != "1" {
                return Err(invalid(format!("invalid protocol version {value:?}")));
            }
        }
        _ => return Err(invalid(format!("invalid UAPI peer key: {key:?}"))),
    }
    Ok(())
}

fn expect_true(key: &str, value: &str) -> Result<(), UapiError> {
    if value == "true" {
        Ok(())
    } else {
        Err(invalid(format!("invalid value for {key}: {value:?}")))
    }
}

fn nonzero(k: Key) -> Option<Key> {
    if k == [0u8; 32] {
        None
    } else {
        Some(k)
    }
}

/// Exactly 64 hex digits (either case, like Go's `hex.DecodeString`).
fn parse_key(value: &str) -> Result<Key, &'static str> {
    if value.len() != 64 {
        return Err("expected 64 hex characters");
    }
    let mut k = [0u8; 32];
    hex::decode_to_slice(value, &mut k).map_err(|_| "not hex")?;
    Ok(k)
}

/// Decimal digits only (no sign, no spaces, leading zeros allowed), like Go's
/// `strconv.ParseUint(v, 10, bits)`.
fn parse_uint(value: &str, max: u64) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = value.parse().ok()?;
    (n <= max).then_some(n)
}

/// Numeric `ip:port` or `[ipv6]:port`; host names are not resolved (wg resolves them before
/// sending). IPv6 zones (`%eth0`) are not supported.
fn parse_endpoint(value: &str) -> Option<SocketAddr> {
    // std's parser is strict enough (no hostnames, no leading-zero octets, port in range) but
    // accepts a '+' before the port; rule that out.
    let port = value.rsplit_once(':')?.1;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// `addr/bits` like Go's `netip.ParsePrefix`: the `/bits` part is required, bits are decimal
/// without leading zeros; host bits are masked.
fn parse_prefix(value: &str) -> Option<IpNetwork> {
    let (addr, bits) = value.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    if bits.is_empty()
        || bits.len() > 3
        || !bits.bytes().all(|b| b.is_ascii_digit())
        || (bits.len() > 1 && bits.starts_with('0'))
    {
        return None;
    }
    let bits: u8 = bits.parse().ok()?;
    IpNetwork::new_truncate(addr, bits).ok()
}

// ---------------------------------------------------------------------------------------------
// get

/// Renders the reply to `get=1`: `key=value` lines in wireguard-go's order, then `errno=0` and
/// the terminating blank line.
pub fn format_get(snapshot: &DeviceSnapshot, out: &mut String) {
    // Writing to a String cannot fail; the `let _` keeps clippy quiet about it.
    if let Some(k) = snapshot.private_key.filter(|k| *k != [0u8; 32]) {
        push_key(out, "private_key", &k);
    }
    if snapshot.listen_port != 0 {
        let _ = writeln!(out, "listen_port={}", snapshot.listen_port);
    }
    if snapshot.fwmark != 0 {
        let _ = writeln!(out, "fwmark={}", snapshot.fwmark);
    }
    for p in &snapshot.peers {
        push_key(out, "public_key", &p.public_key);
        push_key(out, "preshared_key", &p.preshared_key.unwrap_or([0u8; 32]));
        out.push_str("protocol_version=1\n");
        if let Some(ep) = p.endpoint {
            // SocketAddr's Display already brackets IPv6: [addr]:port.
            let _ = writeln!(out, "endpoint={ep}");
        }
        let (sec, nsec) = p
            .last_handshake
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or((0, 0), |d| (d.as_secs(), d.subsec_nanos()));
        let _ = writeln!(out, "last_handshake_time_sec={sec}");
        let _ = writeln!(out, "last_handshake_time_nsec={nsec}");
        let _ = writeln!(out, "tx_bytes={}", p.tx_bytes);
        let _ = writeln!(out, "rx_bytes={}", p.rx_bytes);
        let _ = writeln!(
            out,
            "persistent_keepalive_interval={}",
            p.persistent_keepalive
        );
        for net in &p.allowed_ips {
            let _ = writeln!(out, "allowed_ip={net}");
        }
    }
    out.push_str("errno=0\n\n");
}

/// Renders the reply to heimweg's extra `stats=1` command: `name=value` lines, then `errno=0`
/// and a blank line. Characters that would break the framing (`=`, CR, LF) in names become `_`.
pub fn format_stats(stats: &[(String, u64)], out: &mut String) {
    for (name, value) in stats {
        let name: String = name
            .chars()
            .map(|c| {
                if matches!(c, '=' | '\n' | '\r') {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        let _ = writeln!(out, "{name}={value}");
    }
    out.push_str("errno=0\n\n");
}

fn push_key(out: &mut String, name: &str, key: &Key) {
    out.reserve(name.len() + 66);
    out.push_str(name);
    out.push('=');
    out.push_str(&hex::encode(key));
    out.push('\n');
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};
    use std::time::Duration;

    const K1: &str = "58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376";
    const K2: &str = "662e14fd594556f522604703340351258903b64f35553763f19426ab2a515c58";
    const PSK: &str = "188515093e952f5f22e865cef3012e72f8b5f0b598ac0309d5dacce3b70fcf52";
    const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    fn key(s: &str) -> Key {
        parse_key(s).unwrap()
    }
    fn net(s: &str) -> IpNetwork {
        parse_prefix(s).unwrap()
    }

    #[test]
    fn wg_set_peer_allowed_ips() {
        // `wg set wg0 peer K1 allowed-ips 10.0.0.0/24,fd00::/64` (wireguard-tools ipc-uapi.h)
        let body = format!(
            "public_key={K1}\nreplace_allowed_ips=true\nallowed_ip=10.0.0.0/24\nallowed_ip=fd00::/64\n"
        );
        let req = parse_set(&body).unwrap();
        let mut p = PeerChange::new(key(K1));
        p.replace_allowed_ips = true;
        p.allowed_ips_add = vec![net("10.0.0.0/24"), net("fd00::/64")];
        assert_eq!(
            req,
            SetRequest {
                peers: vec![p],
                ..Default::default()
            }
        );
    }

    #[test]
    fn wg_set_device_and_peer_with_everything() {
        // `wg set wg0 private-key k listen-port 51820 fwmark 0x10 peer K1 preshared-key p
        //  endpoint [2001:db8::1]:51820 persistent-keepalive 25 allowed-ips 10.0.0.7/32`
        let body = format!(
            "private_key={K2}\nlisten_port=51820\nfwmark=16\npublic_key={K1}\npreshared_key={PSK}\n\
             endpoint=[2001:db8::1]:51820\npersistent_keepalive_interval=25\nreplace_allowed_ips=true\n\
             allowed_ip=10.0.0.7/32\n"
        );
        let req = parse_set(&body).unwrap();
        assert_eq!(req.private_key, Some(Some(key(K2))));
        assert_eq!(req.listen_port, Some(51820));
        assert_eq!(req.fwmark, Some(16));
        assert!(!req.replace_peers);
        let p = &req.peers[0];
        assert_eq!(p.preshared_key, Some(Some(key(PSK))));
        assert_eq!(
            p.endpoint,
            Some(SocketAddr::V6(SocketAddrV6::new(
                "2001:db8::1".parse().unwrap(),
                51820,
                0,
                0
            )))
        );
        assert_eq!(p.persistent_keepalive, Some(25));
        assert_eq!(p.allowed_ips_add, vec![net("10.0.0.7/32")]);
    }

    #[test]
    fn wg_set_private_key_dev_null_and_zero_psk() {
        // `wg set wg0 private-key /dev/null peer K1 preshared-key /dev/null`
        let body = format!("private_key={ZERO}\npublic_key={K1}\npreshared_key={ZERO}\n");
        let req = parse_set(&body).unwrap();
        assert_eq!(req.private_key, Some(None));
        assert_eq!(req.peers[0].preshared_key, Some(None));
    }

    #[test]
    fn wg_set_remove_peer() {
        // `wg set wg0 peer K1 remove`
        let req = parse_set(&format!("public_key={K1}\nremove=true\n")).unwrap();
        let mut p = PeerChange::new(key(K1));
        p.remove = true;
        assert_eq!(req.peers, vec![p]);
    }

    #[test]
    fn wg_setconf_transcript() {
        // `wg setconf wg0 f` with two peers: replace_peers, then each peer with
        // replace_allowed_ips (exact bytes as wireguard-tools writes them, blank line excluded).
        let body = format!(
            "private_key={K2}\nlisten_port=51820\nreplace_peers=true\n\
             public_key={K1}\npreshared_key={PSK}\nendpoint=192.0.2.1:51820\n\
             persistent_keepalive_interval=0\nreplace_allowed_ips=true\nallowed_ip=10.0.0.2/32\n\
             public_key={ZERO_PK}\nreplace_allowed_ips=true\nallowed_ip=10.0.0.3/32\nallowed_ip=fd00::3/128\n",
            ZERO_PK = K2.replace('6', "7")
        );
        let req = parse_set(&body).unwrap();
        assert!(req.replace_peers);
        assert_eq!(req.listen_port, Some(51820));
        assert_eq!(req.peers.len(), 2);
        assert_eq!(
            req.peers[0].endpoint,
            Some(SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 51820)))
        );
        assert_eq!(req.peers[0].persistent_keepalive, Some(0));
        assert!(req.peers[1].replace_allowed_ips);
        assert_eq!(
            req.peers[1].allowed_ips_add,
            vec![net("10.0.0.3/32"), net("fd00::3/128")]
        );
    }

    #[test]
    fn wg_syncconf_transcript() {
        // `wg syncconf`: no replace_peers; vanished peer removed, kept peer updated in place.
        let body = format!(
            "private_key={K2}\nlisten_port=51820\n\
             public_key={K1}\nremove=true\n\
             public_key={K2}\npreshared_key={ZERO}\npersistent_keepalive_interval=0\n\
             replace_allowed_ips=true\nallowed_ip=10.0.0.9/32\n"
        );
        let req = parse_set(&body).unwrap();
        assert!(!req.replace_peers);
        assert!(req.peers[0].remove);
        assert!(!req.peers[1].remove);
        assert_eq!(req.peers[1].preshared_key, Some(None));
        assert_eq!(req.peers[1].allowed_ips_add, vec![net("10.0.0.9/32")]);
    }

    #[test]
    fn minus_prefix_removes_and_order_is_folded() {
        // wg >= v1.0.20250521: `wg set wg0 peer K1 allowed-ips +10.1.0.0/16,-10.0.0.0/24`
        let body = format!(
            "public_key={K1}\nallowed_ip=10.1.0.0/16\nallowed_ip=-10.0.0.0/24\nallowed_ip=-fd00::1/64\n"
        );
        let p = &parse_set(&body).unwrap().peers[0];
        assert!(!p.replace_allowed_ips);
        assert_eq!(p.allowed_ips_add, vec![net("10.1.0.0/16")]);
        assert_eq!(
            p.allowed_ips_remove,
            vec![net("10.0.0.0/24"), net("fd00::/64")]
        );

        // add, remove, add again = added; remove then add = added; add then remove = removed.
        let body = format!(
            "public_key={K1}\nallowed_ip=10.0.0.0/24\nallowed_ip=-10.0.0.0/24\nallowed_ip=10.0.0.0/24\n\
             allowed_ip=10.2.0.0/16\nallowed_ip=-10.2.0.0/16\nallowed_ip=10.0.0.0/24\n"
        );
        let p = &parse_set(&body).unwrap().peers[0];
        assert_eq!(p.allowed_ips_add, vec![net("10.0.0.0/24")]);
        assert_eq!(p.allowed_ips_remove, vec![net("10.2.0.0/16")]);

        // replace_allowed_ips discards whatever came before it in the section.
        let body = format!(
            "public_key={K1}\nallowed_ip=10.3.0.0/16\nallowed_ip=-10.4.0.0/16\nreplace_allowed_ips=true\n\
             allowed_ip=10.5.0.0/16\n"
        );
        let p = &parse_set(&body).unwrap().peers[0];
        assert_eq!(p.allowed_ips_add, vec![net("10.5.0.0/16")]);
        assert!(p.allowed_ips_remove.is_empty());
    }

    #[test]
    fn host_bits_are_masked() {
        let p = &parse_set(&format!("public_key={K1}\nallowed_ip=10.0.0.77/24\n"))
            .unwrap()
            .peers[0];
        assert_eq!(p.allowed_ips_add[0].to_string(), "10.0.0.0/24");
    }

    #[test]
    fn remove_wins_and_later_lines_change_nothing_but_are_validated() {
        let body =
            format!("public_key={K1}\nendpoint=192.0.2.1:1\nremove=true\nallowed_ip=10.0.0.0/8\n");
        let p = &parse_set(&body).unwrap().peers[0];
        assert!(p.remove);
        assert!(p.endpoint.is_none() && p.allowed_ips_add.is_empty());
        let bad = format!("public_key={K1}\nremove=true\nallowed_ip=10.0.0.0/99\n");
        assert_eq!(parse_set(&bad).unwrap_err().errno(), -libc::EINVAL);
    }

    #[test]
    fn update_only_and_protocol_version_and_crlf() {
        let body = format!("public_key={K1}\r\nupdate_only=true\r\nprotocol_version=1\r\n");
        let p = &parse_set(&body).unwrap().peers[0];
        assert!(p.update_only);
        assert_eq!(parse_set("").unwrap(), SetRequest::default());
        assert_eq!(
            parse_set(&format!("public_key={}\n", K1.to_uppercase()))
                .unwrap()
                .peers[0]
                .public_key,
            key(K1)
        );
    }

    fn errno_of(body: &str) -> i32 {
        match parse_set(body) {
            Ok(r) => panic!("accepted {body:?}: {r:?}"),
            Err(e) => e.errno(),
        }
    }

    #[test]
    fn rejections_and_their_errno() {
        let inval = -libc::EINVAL;
        let cases: Vec<String> = vec![
            "bogus=1".into(),
            format!("public_key={K1}\nbogus=1"),
            "endpoint=192.0.2.1:1".into(), // peer key before public_key
            "allowed_ip=10.0.0.0/8".into(),
            "remove=true".into(),
            format!("public_key={K1}\nlisten_port=1"), // device key after public_key
            format!("public_key={K1}\nprivate_key={K2}"),
            format!("public_key={K1}\nreplace_peers=true"),
            "private_key=zz".into(),
            format!("private_key={}", &K1[..62]),
            format!("private_key={K1}00"),
            format!("private_key={}g", &K1[..63]),
            "public_key=".into(),
            format!("public_key={K1}\npreshared_key=xyz"),
            "listen_port=65536".into(),
            "listen_port=-1".into(),
            "listen_port=+1".into(),
            "listen_port= 1".into(),
            "listen_port=".into(),
            "listen_port=0x10".into(),
            "fwmark=4294967296".into(),
            "fwmark=0x10".into(),
            format!("public_key={K1}\npersistent_keepalive_interval=65536"),
            format!("public_key={K1}\nprotocol_version=2"),
            format!("public_key={K1}\nprotocol_version="),
            format!("public_key={K1}\nremove=false"),
            format!("public_key={K1}\nremove=1"),
            format!("public_key={K1}\nupdate_only=yes"),
            format!("public_key={K1}\nreplace_allowed_ips=TRUE"),
            "replace_peers=false".into(),
            format!("public_key={K1}\nendpoint=example.com:51820"),
            format!("public_key={K1}\nendpoint=192.0.2.1"),
            format!("public_key={K1}\nendpoint=192.0.2.1:65536"),
            format!("public_key={K1}\nendpoint=192.0.2.1:+5"),
            format!("public_key={K1}\nendpoint=2001:db8::1:51820"),
            format!("public_key={K1}\nendpoint=[2001:db8::1]"),
            format!("public_key={K1}\nallowed_ip=10.0.0.0"),
            format!("public_key={K1}\nallowed_ip=10.0.0.0/33"),
            format!("public_key={K1}\nallowed_ip=fd00::/129"),
            format!("public_key={K1}\nallowed_ip=10.0.0.0/024"),
            format!("public_key={K1}\nallowed_ip=10.0.0.0/"),
            format!("public_key={K1}\nallowed_ip=--10.0.0.0/8"),
            format!("public_key={K1}\nallowed_ip=host/8"),
            format!("public_key={K1}\nallowed_ip= 10.0.0.0/8"),
        ];
        for c in &cases {
            assert_eq!(errno_of(c), inval, "{c:?}");
        }
        let proto = -libc::EPROTO;
        assert_eq!(errno_of("listen_port"), proto);
        assert_eq!(errno_of(&format!("public_key={K1}\nremove")), proto);
        assert_eq!(errno_of("listen_port=1\n\nfwmark=1"), proto);
        assert_eq!(
            errno_of(&format!(
                "public_key={K1}\nendpoint={}",
                "1".repeat(MAX_LINE_LEN)
            )),
            proto
        );
        // The rejection happens even when the bad line is the last one: nothing to apply.
        assert_eq!(
            errno_of(&format!("private_key={K2}\npublic_key={K1}\nallowed_ip=x")),
            inval
        );
    }

    #[test]
    fn errno_values() {
        assert_eq!(UapiError::Invalid(String::new()).errno(), -22);
        assert_eq!(UapiError::Protocol(String::new()).errno(), -71);
        assert_eq!(UapiError::AddrInUse.errno(), -98);
        assert_eq!(UapiError::Io(String::new()).errno(), -5);
    }

    #[test]
    fn debug_never_prints_secrets() {
        let body = format!("private_key={K2}\npublic_key={K1}\npreshared_key={PSK}\n");
        let req = parse_set(&body).unwrap();
        let s = format!("{req:?}");
        assert!(!s.contains(K2) && !s.contains(PSK), "{s}");
        assert!(s.contains("[redacted]") && s.contains(K1), "{s}");
        let snap = DeviceSnapshot {
            private_key: Some(key(K2)),
            peers: vec![PeerSnapshot {
                public_key: key(K1),
                preshared_key: Some(key(PSK)),
                endpoint: None,
                persistent_keepalive: 0,
                allowed_ips: vec![],
                last_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
            }],
            ..Default::default()
        };
        let s = format!("{snap:?}");
        assert!(!s.contains(K2) && !s.contains(PSK), "{s}");
    }

    #[test]
    fn format_get_golden() {
        let snap = DeviceSnapshot {
            private_key: Some(key(K2)),
            listen_port: 51820,
            fwmark: 0,
            peers: vec![
                PeerSnapshot {
                    public_key: key(K1),
                    preshared_key: Some(key(PSK)),
                    endpoint: Some("[2001:db8::1]:51821".parse().unwrap()),
                    persistent_keepalive: 25,
                    allowed_ips: vec![net("10.0.0.2/32"), net("fd00::2/128")],
                    last_handshake: Some(UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789)),
                    rx_bytes: 1024,
                    tx_bytes: 2048,
                },
                PeerSnapshot {
                    public_key: key(PSK),
                    preshared_key: None,
                    endpoint: Some(SocketAddr::from((Ipv4Addr::new(192, 0, 2, 7), 4500))),
                    persistent_keepalive: 0,
                    allowed_ips: vec![],
                    last_handshake: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                },
            ],
        };
        let mut out = String::new();
        format_get(&snap, &mut out);
        let want = format!(
            "private_key={K2}\nlisten_port=51820\n\
             public_key={K1}\npreshared_key={PSK}\nprotocol_version=1\nendpoint=[2001:db8::1]:51821\n\
             last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=123456789\n\
             tx_bytes=2048\nrx_bytes=1024\npersistent_keepalive_interval=25\n\
             allowed_ip=10.0.0.2/32\nallowed_ip=fd00::2/128\n\
             public_key={PSK}\npreshared_key={ZERO}\nprotocol_version=1\nendpoint=192.0.2.7:4500\n\
             last_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\n\
             persistent_keepalive_interval=0\nerrno=0\n\n"
        );
        assert_eq!(out, want);

        let mut out = String::new();
        format_get(
            &DeviceSnapshot {
                fwmark: 7,
                ..Default::default()
            },
            &mut out,
        );
        assert_eq!(out, "fwmark=7\nerrno=0\n\n");
    }

    #[test]
    fn format_stats_sanitises_names() {
        let mut out = String::new();
        format_stats(&[("a=b\nc".into(), 3), ("drops".into(), 0)], &mut out);
        assert_eq!(out, "a_b_c=3\ndrops=0\nerrno=0\n\n");
    }

    fn arb_net() -> impl Strategy<Value = IpNetwork> {
        prop_oneof![
            (any::<u32>(), 0u8..=32).prop_map(|(a, b)| IpNetwork::new_truncate(
                Ipv4Addr::from(a),
                b
            )
            .unwrap()),
            (any::<u128>(), 0u8..=128).prop_map(|(a, b)| IpNetwork::new_truncate(
                Ipv6Addr::from(a),
                b
            )
            .unwrap()),
        ]
    }

    fn arb_peer() -> impl Strategy<Value = PeerSnapshot> {
        (
            any::<Key>(),
            proptest::option::of(any::<Key>()),
            proptest::option::of(prop_oneof![
                (any::<u32>(), any::<u16>())
                    .prop_map(|(a, p)| SocketAddr::from((Ipv4Addr::from(a), p))),
                (any::<u128>(), any::<u16>())
                    .prop_map(|(a, p)| SocketAddr::from((Ipv6Addr::from(a), p))),
            ]),
            any::<u16>(),
            proptest::collection::vec(arb_net(), 0..5),
        )
            .prop_map(|(pk, psk, ep, ka, ips)| PeerSnapshot {
                public_key: pk,
                preshared_key: psk,
                endpoint: ep,
                persistent_keepalive: ka,
                allowed_ips: ips,
                last_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
            })
    }

    proptest! {
        /// What get emits for a peer is accepted by set and means the same thing, once the
        /// get-only counters are dropped.
        #[test]
        fn get_output_round_trips_through_set(peers in proptest::collection::vec(arb_peer(), 0..4)) {
            let snap = DeviceSnapshot { private_key: None, listen_port: 0, fwmark: 0, peers: peers.clone() };
            let mut out = String::new();
            format_get(&snap, &mut out);
            let body: String = out
                .lines()
                .filter(|l| !l.is_empty())
                .filter(|l| {
                    let k = l.split('=').next().unwrap();
                    !matches!(k, "last_handshake_time_sec" | "last_handshake_time_nsec"
                        | "tx_bytes" | "rx_bytes" | "errno")
                })
                .map(|l| format!("{l}\n"))
                .collect();
            let req = parse_set(&body).unwrap();
            prop_assert_eq!(req.peers.len(), peers.len());
            for (c, p) in req.peers.iter().zip(&peers) {
                prop_assert_eq!(c.public_key, p.public_key);
                let psk = p.preshared_key.filter(|k| *k != [0u8; 32]);
                prop_assert_eq!(c.preshared_key, Some(psk));
                prop_assert_eq!(c.endpoint, p.endpoint);
                prop_assert_eq!(c.persistent_keepalive, Some(p.persistent_keepalive));
                let mut dedup: Vec<IpNetwork> = Vec::new();
                for n in &p.allowed_ips { dedup.retain(|x| x != n); dedup.push(*n); }
                prop_assert_eq!(&c.allowed_ips_add, &dedup);
                prop_assert!(c.allowed_ips_remove.is_empty());
                prop_assert!(!c.remove && !c.update_only && !c.replace_allowed_ips);
            }
        }
    }
}
