//! One UAPI connection: whatever a client writes to the socket (`get=1`, `set=1` with its lines,
//! `stats=1`, any number of them in a row), served by the socket's own framing code and applied
//! to a real in-memory `Device` the way the data plane's handler does (the listen port is only
//! recorded: binding it is I/O). Checked: every answer is framed; a set that succeeded changes
//! nothing when applied again (`wg syncconf` resends everything; requests with `update_only`
//! aside); and what `get=1` reports, given back as a set (`wg showconf | wg setconf`), parses
//! and makes the same device.

#![no_main]

use heimweg_core::{AdmissionConfig, Device, IpNetwork};
use heimweg_dataplane::fuzzing::{apply_set, snapshot, uapi_session};
use heimweg_dataplane::uapi::{
    format_get, parse_set, DeviceSnapshot, SetRequest, UapiError, UapiHandler,
};
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::SystemTime;

struct Handler {
    device: Mutex<Device>,
    port: Mutex<(u16, u32)>,
}

/// A peer as `get=1` reports it, in a form that compares regardless of order.
type PeerView = (
    [u8; 32],
    Option<[u8; 32]>,
    Option<SocketAddr>,
    u16,
    Vec<IpNetwork>,
);

fn new_device() -> Device {
    let mut d = Device::new(None, 7, AdmissionConfig::default());
    // No session state for idle peers: a peer then costs no Diffie-Hellman, and an input can
    // add many.
    d.set_retained_tunnels(0);
    d
}

fn view(s: &DeviceSnapshot) -> (Option<[u8; 32]>, Vec<PeerView>) {
    let mut peers: Vec<PeerView> = s
        .peers
        .iter()
        .map(|p| {
            let mut ips = p.allowed_ips.clone();
            ips.sort_by_key(|n| (n.network_address(), n.netmask()));
            (
                p.public_key,
                p.preshared_key,
                p.endpoint,
                p.persistent_keepalive,
                ips,
            )
        })
        .collect();
    peers.sort_by_key(|p| p.0);
    (s.private_key, peers)
}

impl UapiHandler for Handler {
    fn get(&self) -> DeviceSnapshot {
        let d = self.device.lock().unwrap();
        let mut s = snapshot(&d, SystemTime::now());
        (s.listen_port, s.fwmark) = *self.port.lock().unwrap();
        s
    }

    fn set(&self, req: SetRequest) -> Result<(), UapiError> {
        if req.listen_port == Some(1) {
            // The one step that can fail (binding the port) fails: nothing else may change.
            return Err(UapiError::AddrInUse);
        }
        let mut port = self.port.lock().unwrap();
        if let Some(p) = req.listen_port {
            port.0 = p;
        }
        if let Some(m) = req.fwmark {
            port.1 = m;
        }
        let mut d = self.device.lock().unwrap();
        apply_set(&mut d, &req);
        // `update_only` depends on what exists, so a request that names a peer with it and
        // then creates that peer does more the second time, in wireguard-go too; what `wg`
        // sends never carries it.
        if req.peers.iter().all(|p| !p.update_only) {
            let once = view(&snapshot(&d, SystemTime::now()));
            apply_set(&mut d, &req);
            let twice = view(&snapshot(&d, SystemTime::now()));
            assert_eq!(
                once, twice,
                "applying a set again changed the device: {req:?}"
            );
        }
        Ok(())
    }

    fn stats(&self) -> Vec<(String, u64)> {
        let d = self.device.lock().unwrap();
        d.counters()
            .drop_counts()
            .map(|(r, n)| (format!("drop_{}", r.as_str()), n))
            .collect()
    }
}

fuzz_target!(|data: &[u8]| {
    let h = Handler {
        device: Mutex::new(new_device()),
        port: Mutex::new((0, 0)),
    };
    let reply = uapi_session(data, &h);
    assert!(
        reply.is_empty() || reply.ends_with(b"\n\n"),
        "an answer without its blank line"
    );

    // `wg showconf | wg setconf`: the report, without the read-only lines, is a set request
    // that makes the same device.
    let before = h.get();
    let mut text = String::new();
    format_get(&before, &mut text);
    let conf: String = text
        .lines()
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("errno=")
                && !l.starts_with("last_handshake_time_")
                && !l.starts_with("tx_bytes=")
                && !l.starts_with("rx_bytes=")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let req = parse_set(&conf).unwrap_or_else(|e| panic!("showconf does not parse: {e}\n{conf}"));
    let mut fresh = new_device();
    apply_set(&mut fresh, &req);
    assert_eq!(
        view(&snapshot(&fresh, SystemTime::now())),
        view(&before),
        "setconf of showconf made another device"
    );
    assert_eq!(req.listen_port.unwrap_or(0), before.listen_port);
    assert_eq!(req.fwmark.unwrap_or(0), before.fwmark);
});
