//! Writes the seed corpus, `fuzz/seeds/<target>/`: real handshake messages with the harness's
//! fixed keys, transport packets, a cookie reply, IPv4/IPv6 TCP/UDP packets, TUN reads with
//! virtio-net headers, UAPI requests as `wg setconf` sends them, key texts, names, policies,
//! endpoints and states as people type them, device artifacts' parts, panel form bodies. Rerun
//! it when the
//! harness's keys or framing change: `cargo run --example seeds` in `fuzz/`.

use boringtun::noise::TunnResult;
use heimweg_fuzz::{
    ip_packet, public, record, Gateway, Setup, CLIENT_SECRET, CLIENT_V4, CLIENT_V6, FORBIDDEN_V4,
    GATEWAY_ADDR, GATEWAY_SECRET, LAN_V4, LAN_V6, PRESHARED,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    network(&root.join("network_datagram"));
    tun(&root.join("tun_packet"));
    segment(&root.join("offload_segment"));
    coalesce(&root.join("offload_coalesce"));
    uapi(&root.join("uapi_request"));
    keys(&root.join("keys"));
    domain_text(&root.join("domain_text"));
    artifacts(&root.join("artifacts"));
    panel_forms(&root.join("panel_forms"));
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// Setup byte bits (see `Setup::from_byte`).
const NO_PEER: u8 = 0;
const PEER: u8 = 1;
const LIVE: u8 = 2;
const NO_KEY: u8 = 3;
const TIGHT: u8 = 4;
const POLICY: u8 = 8;
const PSK: u8 = 16;
const ENDPOINT: u8 = 32;
const NO_RETAINED: u8 = 64;

fn v4(src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    ip_packet(IpAddr::V4(src), IpAddr::V4(dst), proto, payload)
}

fn v6(src: std::net::Ipv6Addr, dst: std::net::Ipv6Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    ip_packet(IpAddr::V6(src), IpAddr::V6(dst), proto, payload)
}

/// What the client puts on the wire after `f` runs on a gateway set up with `setup`.
fn captured(setup: u8, f: impl FnOnce(&mut Gateway)) -> Vec<Vec<u8>> {
    let mut g = Gateway::new(Setup::from_byte(setup));
    g.wire.clear();
    f(&mut g);
    g.wire.iter().map(|(_, _, b)| b.clone()).collect()
}

fn network(dir: &Path) {
    let init = captured(PEER, |g| g.client_initiate(false)).remove(0);
    assert_eq!((init[0], init.len()), (1, 148));
    let transport = captured(LIVE, |g| {
        g.client_send(&v4(CLIENT_V4, LAN_V4, 17, b"hello"));
    })
    .remove(0);
    assert_eq!(transport[0], 4);
    let keepalive = captured(LIVE, |g| g.client_send(&[])).remove(0);

    // The gateway's own initiation (wg-quick role), the client's real response to it, and a
    // cookie reply shaped for it.
    let mut g = Gateway::new(Setup::from_byte(PEER | ENDPOINT));
    g.tun(&v4(LAN_V4, CLIENT_V4, 17, b"first"), heimweg_fuzz::BIG_OUT);
    let (_, _, gw_init) = g.wire.pop_front().expect("the gateway initiates");
    let mut buf = vec![0u8; 2048];
    let response = match g
        .client()
        .decapsulate(Some(GATEWAY_ADDR.ip()), &gw_init, &mut buf)
    {
        TunnResult::WriteToNetwork(b) => b.to_vec(),
        _ => panic!("the client answers the gateway's initiation"),
    };
    assert_eq!((response[0], response.len()), (2, 92));
    let mut cookie = vec![0u8; 64];
    cookie[0] = 3;
    cookie[4..8].copy_from_slice(&gw_init[4..8]);
    cookie[8..]
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = i as u8);

    let seed = |setup: u8, records: &[(u8, &[u8])]| {
        let mut s = vec![setup];
        for (tag, body) in records {
            record(&mut s, *tag, body);
        }
        s
    };
    write(dir, "initiation", &seed(PEER, &[(0, &init), (15, &[])]));
    write(
        dir,
        "initiation-stranger",
        &seed(PEER, &[(1, &init), (14, &[])]),
    );
    write(
        dir,
        "initiation-no-peer",
        &seed(NO_PEER, &[(0, &init), (15, &[])]),
    );
    write(
        dir,
        "initiation-no-key",
        &seed(NO_KEY, &[(0, &init), (15, &[])]),
    );
    write(
        dir,
        "initiation-idle-peer",
        &seed(PEER | NO_RETAINED, &[(0, &init), (15, &[])]),
    );
    write(
        dir,
        "initiation-stepwise",
        &seed(PEER, &[(0, &init), (10, &[0x03]), (15, &[])]),
    );
    write(
        dir,
        "initiation-stepwise-removed",
        &seed(PEER, &[(0, &init), (10, &[0x02]), (15, &[])]),
    );
    write(
        dir,
        "initiations-tight",
        &seed(
            PEER | TIGHT,
            &[(0, &init), (0, &init), (0, &init), (0, &init), (15, &[])],
        ),
    );
    write(
        dir,
        "initiation-mac1-fixed",
        &seed(PEER, &[(2, &init[..]), (14, &[])]),
    );
    write(dir, "transport", &seed(LIVE, &[(0, &transport)]));
    write(
        dir,
        "transport-roamed",
        &seed(LIVE, &[(1, &transport), (15, &[])]),
    );
    write(dir, "keepalive", &seed(LIVE, &[(0, &keepalive)]));
    write(
        dir,
        "response",
        &seed(PEER | ENDPOINT, &[(0, &response), (15, &[])]),
    );
    write(
        dir,
        "response-mac1-fixed",
        &seed(PEER | ENDPOINT, &[(2, &response), (15, &[])]),
    );
    write(
        dir,
        "cookie-reply",
        &seed(PEER | ENDPOINT, &[(0, &cookie), (15, &[])]),
    );
    write(
        dir,
        "handshake-live",
        &seed(LIVE | PSK, &[(6, &[]), (15, &[])]),
    );
    write(
        dir,
        "handshake-tight",
        &seed(
            PEER | TIGHT | PSK,
            &[
                (6, &[]),
                (6 | 0x80, &[]),
                (6 | 0x80, &[]),
                (13, &[]),
                (13, &[]),
                (15, &[]),
            ],
        ),
    );
    write(
        dir,
        "gateway-initiates",
        &seed(
            PEER | ENDPOINT,
            &[(9, &v4(LAN_V4, CLIENT_V4, 17, b"x")), (15, &[])],
        ),
    );
    write(
        dir,
        "timers",
        &seed(
            LIVE | ENDPOINT,
            &[(5 | 0x80, &[200, 0]), (7, &[]), (14, &[]), (15, &[])],
        ),
    );
    write(
        dir,
        "rekey-and-change",
        &seed(
            LIVE,
            &[
                (6 | 0x80, &[]),
                (13, &[]),
                (10, &[0x07]),
                (11, &[0x03]),
                (15, &[]),
            ],
        ),
    );
    write(
        dir,
        "small-buffer",
        &seed(
            LIVE,
            &[(12, &[64, 0, 4, 0, 0, 0]), (12 | 0x80, &[100, 0, 0x45])],
        ),
    );
    // A packet waits for the session the gateway starts; the session comes; the gateway's
    // housekeeping then has a buffer of the minimum size, shorter than the packet.
    let waiting = v4(LAN_V4, CLIENT_V4, 17, &[7; 600]);
    write(
        dir,
        "small-buffer-flush",
        &seed(
            PEER | ENDPOINT,
            &[(9, &waiting), (13, &[]), (13, &[]), (12, &[148, 0])],
        ),
    );
    for (name, p) in [
        ("plain-udp4", v4(CLIENT_V4, LAN_V4, 17, b"dns?")),
        (
            "plain-tcp4",
            v4(CLIENT_V4, LAN_V4, 6, b"GET / HTTP/1.1\r\n\r\n"),
        ),
        ("plain-udp6", v6(CLIENT_V6, LAN_V6, 17, b"ntp")),
        ("plain-tcp6", v6(CLIENT_V6, LAN_V6, 6, b"ssh")),
        ("plain-forbidden", v4(CLIENT_V4, FORBIDDEN_V4, 17, b"no")),
        ("plain-spoofed", v4(LAN_V4, LAN_V4, 17, b"spoof")),
    ] {
        write(dir, name, &seed(LIVE | POLICY, &[(3, &p), (15, &[])]));
    }
    write(
        dir,
        "plain-fixed",
        &seed(LIVE | POLICY, &[(4, &[0x45; 28]), (4 | 0x80, &[0x60; 48])]),
    );
    write(
        dir,
        "junk",
        &seed(
            LIVE,
            &[
                (0, &[4, 0, 0, 0, 1, 2, 3]),
                (0, &[1; 148]),
                (0, &[2; 92]),
                (0, &[3; 64]),
            ],
        ),
    );
}

fn tun(dir: &Path) {
    let seed = |setup: u8, records: &[(u8, &[u8])]| {
        let mut s = vec![setup];
        for (tag, body) in records {
            record(&mut s, *tag, body);
        }
        s
    };
    for (name, p) in [
        ("udp4", v4(LAN_V4, CLIENT_V4, 17, b"reply")),
        ("tcp4", v4(LAN_V4, CLIENT_V4, 6, b"HTTP/1.1 200 OK\r\n")),
        ("udp6", v6(LAN_V6, CLIENT_V6, 17, b"reply")),
        ("tcp6", v6(LAN_V6, CLIENT_V6, 6, b"ssh")),
        ("forbidden", v4(FORBIDDEN_V4, CLIENT_V4, 17, b"no")),
    ] {
        write(
            dir,
            &format!("live-{name}"),
            &seed(LIVE | POLICY, &[(0, &p), (7, &[])]),
        );
        write(
            dir,
            &format!("initiate-{name}"),
            &seed(PEER | ENDPOINT, &[(0, &p), (0, &p), (7, &[])]),
        );
    }
    write(
        dir,
        "no-route",
        &seed(LIVE, &[(0, &v4(LAN_V4, LAN_V4, 17, b"x"))]),
    );
    write(
        dir,
        "no-endpoint",
        &seed(PEER, &[(0, &v4(LAN_V4, CLIENT_V4, 17, b"x"))]),
    );
    write(
        dir,
        "no-key",
        &seed(NO_KEY, &[(1, &v4(LAN_V4, CLIENT_V4, 17, b"x"))]),
    );
    write(
        dir,
        "fixed",
        &seed(LIVE, &[(1, &[0x45; 40]), (1 | 0x80, &[0x60; 60])]),
    );
    write(
        dir,
        "small-buffer",
        &seed(LIVE, &[(3, &[100, 0, 0x45, 0, 0, 20]), (3, &[0, 0])]),
    );
    write(
        dir,
        "timers",
        &seed(LIVE | ENDPOINT, &[(4 | 0x80, &[30, 0]), (5, &[]), (7, &[])]),
    );
    let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    for (name, read) in tso_reads(&payload) {
        write(
            dir,
            &format!("read-{name}"),
            &seed(LIVE, &[(2, &read), (7, &[])]),
        );
    }
}

/// TUN reads: a virtio-net header and a packet or super-packet from the LAN to the client.
fn tso_reads(payload: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let hdr = |flags: u8,
               gso_type: u8,
               hdr_len: u16,
               gso_size: u16,
               csum_start: u16,
               csum_offset: u16| {
        let mut h = vec![flags, gso_type];
        for v in [hdr_len, gso_size, csum_start, csum_offset] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h
    };
    let with = |h: Vec<u8>, p: Vec<u8>| {
        let mut r = h;
        r.extend_from_slice(&p);
        r
    };
    let tcp4 = v4(LAN_V4, CLIENT_V4, 6, payload);
    let tcp6 = v6(LAN_V6, CLIENT_V6, 6, payload);
    let udp4 = v4(LAN_V4, CLIENT_V4, 17, payload);
    let udp6 = v6(LAN_V6, CLIENT_V6, 17, payload);
    vec![
        (
            "plain",
            with(hdr(0, 0, 0, 0, 0, 0), v4(LAN_V4, CLIENT_V4, 17, b"one")),
        ),
        (
            "csum",
            with(
                hdr(1, 0, 0, 0, 20, 6),
                v4(LAN_V4, CLIENT_V4, 17, b"partial"),
            ),
        ),
        ("tso4", with(hdr(1, 1, 40, 1380, 20, 16), tcp4)),
        (
            "tso4-ecn",
            with(
                hdr(1, 0x81, 40, 1000, 20, 16),
                v4(LAN_V4, CLIENT_V4, 6, &payload[..2500]),
            ),
        ),
        ("tso6", with(hdr(1, 4, 60, 1360, 40, 16), tcp6)),
        ("uso4", with(hdr(1, 5, 28, 1392, 20, 6), udp4)),
        ("uso6", with(hdr(1, 5, 48, 1372, 40, 6), udp6)),
        (
            "tiny-mss",
            with(
                hdr(1, 1, 40, 1, 20, 16),
                v4(LAN_V4, CLIENT_V4, 6, b"abcdef"),
            ),
        ),
    ]
}

fn segment(dir: &Path) {
    let payload: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    for (name, read) in tso_reads(&payload) {
        write(dir, name, &read);
    }
}

fn coalesce(dir: &Path) {
    let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let mut ack4 = v4(CLIENT_V4, LAN_V4, 6, &payload);
    ack4[20 + 13] = 0x10; // ACK only
    let mut ack6 = v6(CLIENT_V6, LAN_V6, 6, &payload);
    ack6[40 + 13] = 0x10;
    let udp = v4(CLIENT_V4, LAN_V4, 17, b"between");
    let mut s = Vec::new();
    record(&mut s, 0, &ack4);
    for _ in 0..4 {
        record(&mut s, 2, &payload);
    }
    record(&mut s, 2, &payload[..300]);
    write(dir, "tcp4-run", &s);
    let mut s = Vec::new();
    record(&mut s, 0, &ack6);
    for _ in 0..3 {
        record(&mut s, 2, &payload);
    }
    write(dir, "tcp6-run", &s);
    let mut s = Vec::new();
    record(&mut s, 0, &ack4);
    record(&mut s, 2, &payload);
    record(&mut s, 0, &udp);
    record(&mut s, 0, &ack6);
    record(&mut s, 3, &[33, 1, 2, 3]);
    record(&mut s, 2, &payload[..10]);
    record(&mut s, 1, &[0x45; 40]);
    write(dir, "mixed", &s);
    let mut s = Vec::new();
    record(&mut s, 0, &ack4);
    for i in 0..70u8 {
        record(&mut s, 2, &[i; 8]);
    }
    write(dir, "many-small", &s);
    let mut s = Vec::new();
    for _ in 0..3 {
        record(&mut s, 0, &ack4);
    }
    write(dir, "duplicates", &s);
}

fn uapi(dir: &Path) {
    let key = |k: [u8; 32]| hex::encode(k);
    let client = key(heimweg_fuzz::client_public());
    let other = key(public([0x55; 32]));
    let setconf = format!(
        "set=1\nprivate_key={}\nlisten_port=51820\nfwmark=0\nreplace_peers=true\n\
         public_key={client}\npreshared_key={}\nendpoint=198.51.100.2:40000\n\
         persistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=10.77.0.2/32\n\
         allowed_ip=fd77::2/128\npublic_key={other}\nendpoint=[2001:db8::1]:51820\n\
         replace_allowed_ips=true\nallowed_ip=10.77.0.3/32\n\n",
        key(GATEWAY_SECRET),
        key(PRESHARED),
    );
    write(dir, "setconf", setconf.as_bytes());
    write(dir, "setconf-get", format!("{setconf}get=1\n\n").as_bytes());
    write(dir, "get", b"get=1\n\n");
    write(dir, "stats", b"stats=1\n\n");
    write(
        dir,
        "set-remove",
        format!("set=1\npublic_key={client}\nallowed_ip=10.77.0.2/32\n\nset=1\npublic_key={client}\nremove=true\n\nget=1\n\n").as_bytes(),
    );
    write(
        dir,
        "set-update-only",
        format!("set=1\npublic_key={other}\nupdate_only=true\nallowed_ip=-10.0.0.0/8\nprotocol_version=1\n\nget=1\n\n").as_bytes(),
    );
    write(
        dir,
        "set-crlf",
        format!("set=1\r\nprivate_key={}\r\n\r\nget=1\n\n", key([0; 32])).as_bytes(),
    );
    write(dir, "set-bad", b"set=1\nlisten_port=65536\n\nget=1\n\n");
    write(dir, "set-port-in-use", b"set=1\nlisten_port=1\n\n");
    write(
        dir,
        "set-eof",
        format!("set=1\npublic_key={client}\nallowed_ip=0.0.0.0/0").as_bytes(),
    );
    write(dir, "get-trailing", b"get=1\nx");
    write(dir, "unknown", b"put=1\n\n");
}

fn keys(dir: &Path) {
    use base64::Engine;
    let b64 = |k: &[u8]| base64::engine::general_purpose::STANDARD.encode(k);
    write(
        dir,
        "public",
        b64(&heimweg_fuzz::client_public()).as_bytes(),
    );
    write(
        dir,
        "private-pasted",
        format!("  {}\n", b64(&CLIENT_SECRET)).as_bytes(),
    );
    write(dir, "zero", b64(&[0; 32]).as_bytes());
    write(dir, "short", b64(&[1; 31]).as_bytes());
    write(dir, "long", b64(&[1; 33]).as_bytes());
    write(
        dir,
        "trailing-bits",
        b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=",
    );
    write(
        dir,
        "urlsafe",
        b64(&[0xfb; 32])
            .replace('+', "-")
            .replace('/', "_")
            .as_bytes(),
    );
    write(dir, "raw", &[0x9a; 32]);
}

fn domain_text(dir: &Path) {
    for (name, text) in [
        ("name", "anna-ipad"),
        ("name-umlaut", "Stadtkämmerei Laptop 3"),
        ("name-decomposed", "Ka\u{308}mmerei"),
        // Upper-case J and a combining caron have no precomposed form; lower case they do
        // (U+01F0): the key must be normalised after lower-casing.
        ("name-j-caron", "J\u{30C}osef"),
        // A tag character: invisible, so "anna" and this would look the same.
        ("name-tag", "anna\u{E0041}"),
        ("name-hangul-filler", "\u{3164}"),
        ("name-long", &"ä".repeat(64)),
        ("name-outer-space", " anna"),
        ("name-bidi", "a\u{202e}b"),
        ("name-stored", "anna\u{200b} "),
        ("email", " anna@stadt.example "),
        (
            "policy",
            "10.20.1.7/16\n10.20.0.0/16\nfd00:20::1/48\n\n10.20.0.53\nRathaus.Example",
        ),
        ("policy-numeric-domain", "10.0.0.0/8\n\n10.0.0"),
        ("endpoint", "VPN.stadt.example:51820"),
        ("endpoint-v6", "[2001:db8::1]:51820"),
        ("endpoint-v4", "192.0.2.1:443"),
        ("scopes", "devices:read devices:write,audit:read\ndevices:read"),
        ("state-audit", "settings.endpoint"),
        ("state-device", "active"),
        ("state-link", "expired"),
        ("actor-link", "link:2:admin:anna"),
        ("actor-cli", "cli:root"),
        ("numbers", "\u{1}\u{0}\u{0}\u{0}\u{d0}\u{2}\u{0}\u{0}"),
    ] {
        write(dir, name, text.as_bytes());
    }
}

fn artifacts(dir: &Path) {
    // Record 5: flags, MTU, keepalive, IPv4, IPv6, key (see the target).
    let numbers = |flags: u8, mtu: u16, keepalive: u16| {
        let mut n = vec![flags];
        n.extend_from_slice(&mtu.to_le_bytes());
        n.extend_from_slice(&keepalive.to_le_bytes());
        n.extend_from_slice(&[10, 77, 0, 2]);
        n.extend_from_slice(&[0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        n.extend_from_slice(&[0x5a; 32]);
        n
    };
    let seed = |parts: &[(u8, &[u8])]| {
        let mut out = Vec::new();
        for (tag, body) in parts {
            record(&mut out, *tag, body);
        }
        out
    };
    write(
        dir,
        "split",
        &seed(&[
            (0, "Jürgen's iPad (Büro)".as_bytes()),
            (1, b"10.20.0.0/16\nfd00:20::/48"),
            (2, b"10.1.0.53\nverwaltung.example.de"),
            (3, b"vpn.stadt.example:51820"),
            (5, &numbers(4 | 16, 100, 25)),
        ]),
    );
    write(
        dir,
        "full-psk-macos",
        &seed(&[
            (0, b"Anna & Co <iPad>"),
            (1, b"10.0.0.0/8"),
            (2, b"2001:db8::53\n10.0.0.53"),
            (3, b"[2001:db8::1]:443"),
            (4, "Stadt Musterhausen \"IT\"".as_bytes()),
            (5, &numbers(1 | 2 | 4 | 8, 220, 0)),
        ]),
    );
    write(
        dir,
        "template",
        &seed(&[(0, b"CON"), (1, b"192.168.7.0/24"), (5, &numbers(0, 0, 0))]),
    );
    write(
        dir,
        "numeric-search-domain",
        &seed(&[(0, b"laptop"), (2, b"10.0.0"), (5, &numbers(4, 120, 0))]),
    );
    write(
        dir,
        "many-networks",
        &seed(&[(
            1,
            (0..64)
                .map(|i| format!("fd00:{i:x}::/48"))
                .collect::<Vec<_>>()
                .join("\n")
                .as_bytes(),
        )]),
    );
    write(
        dir,
        "markup",
        &seed(&[(6, b"<a href=\"x\">&amp; 'y'</a> &#x26; &"), (0, b"nul.x")]),
    );
}

fn panel_forms(dir: &Path) {
    let csrf = "_csrf=vJ4yq3Jk0n8bq3Jk0n8bq3Jk0n8bq3Jk0n8bq3J";
    for (name, body) in [
        (
            "enroll",
            format!("{csrf}&name=ipad-mueller&group=Default&owner=&public_key=&expires_in_days=30"),
        ),
        (
            "enroll-key",
            format!(
                "{csrf}&name=Anna%27s+iPad&group=Default&owner=Anna+M%C3%BCller\
                 &public_key=hY2Fk1gUkDf57uQ44ws%2FhFrhBx8aP3AXJ9VZnkFZdTc%3D&expires_in_days=3650"
            ),
        ),
        (
            "group",
            format!(
                "{csrf}&name=Verwaltung&allowed_prefixes=10.20.0.0%2F16%0D%0Afd00%3A20%3A%3A%2F48\
                 &dns=10.20.0.53%2C+rathaus.example&full_tunnel=on&peer_to_peer=on"
            ),
        ),
        (
            "group-update",
            format!("{csrf}&allowed_prefixes=10.0.0.0%2F8&dns="),
        ),
        (
            "link",
            format!("{csrf}&device_name=laptop&group=Default&owner=&expires_in_hours=24"),
        ),
        ("approve", format!("{csrf}&group=Default&expires_in_hours=")),
        (
            "device-edit",
            format!("{csrf}&group=Default&owner=anna&expires_on=2026-11-30"),
        ),
        ("settings", format!("{csrf}&endpoint=vpn.example.de%3A51820")),
        (
            "login",
            format!("{csrf}&name=admin&password=correct+horse&next=%2Fdevices%3Fq%3Dx"),
        ),
        ("totp", format!("{csrf}&code=123456&next=%2F%2Fevil.example")),
        (
            "password",
            format!("{csrf}&current=old&new=twelve+chars+long&repeat=twelve+chars+long"),
        ),
        (
            "totp-confirm",
            format!("{csrf}&sealed=abc&code=123456&password=pw"),
        ),
        ("admin", format!("{csrf}&name=heidi&role=helpdesk")),
        (
            "user",
            format!("{csrf}&name=Anna+M%C3%BCller&email=anna%40stadt.example"),
        ),
        (
            "access",
            format!("{csrf}&requester=Petra&contact=p%40x&device_name=ipad&reason=Homeoffice%0A"),
        ),
        ("device-list", "q=ipad&group=&owner=&status=all&page=2".into()),
        ("audit", "subject=anna&page=4294967295".into()),
        ("no-csrf", "name=x&group=y&_csrf=&_csrf=z".into()),
    ] {
        write(dir, name, body.as_bytes());
    }
}
