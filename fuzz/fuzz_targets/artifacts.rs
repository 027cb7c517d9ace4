//! Everything heimweg renders for a device, from a fuzzed valid name and a fuzzed valid group
//! policy: the wg-quick config (`ClientConfig::render`), its download file name, the Apple
//! profile (`mobileconfig::render`), the markup escaper and the QR code.
//!
//! Checked: a config made of valid parts renders; it is INI every app reads (each line a
//! section header, `Key = Value` with a key of the portable subset once per section, or empty;
//! no control character, no comment sign) and reads back to what went in, the DNS servers
//! (as wg-quick tells servers from search domains) inside AllowedIPs; the file name is
//! `[a-zA-Z0-9_=+.-]{1,15}.conf` without a DOS device name or outer dots (Android, Windows); the
//! profile is well-formed XML whose strings are, unescaped, the name, the config, the endpoint
//! and the organisation; escaped text has no markup character left and unescapes to itself;
//! the QR code is made or refused, never a panic.
//!
//! The input is records (see the crate's docs): 0 the device name, 1 the group's networks
//! (lines), 2 its DNS entries (lines), 3 the endpoint, 4 the organisation, 5 numbers and flags
//! (see `Numbers`), 6 free text for the escaper and the QR code. Defaults stand in for what an
//! input leaves out; parts that do not parse end the input.

#![no_main]

use heimweg_control::mobileconfig::{self, ApplePlatform};
use heimweg_control::qr::Qr;
use heimweg_control::{
    config_file_name, escape_markup, PRIVATE_KEY_PLACEHOLDER, ClientConfig, Endpoint, GroupPolicy, Name, PresharedKey,
    PrivateKey, PublicKey, TunnelMode,
};
use heimweg_fuzz::Records;
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Record 5: `[flags][mtu u16][keepalive u16][IPv4 4][IPv6 16][key 32]`, little-endian.
/// Flags: 1 full tunnel, 2 preshared key, 4 a private key (else a template), 8 macOS,
/// 16 a keepalive.
struct Numbers<'a>(&'a [u8]);

impl Numbers<'_> {
    fn byte(&self, at: usize) -> u8 {
        self.0.get(at).copied().unwrap_or(0)
    }
    fn flag(&self, bit: u8) -> bool {
        self.byte(0) & bit != 0
    }
    fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.byte(at), self.byte(at + 1)])
    }
    fn array<const N: usize>(&self, at: usize) -> [u8; N] {
        std::array::from_fn(|i| self.byte(at + i))
    }
}

fn text(body: &[u8]) -> Option<&str> {
    std::str::from_utf8(body).ok()
}

fuzz_target!(|data: &[u8]| {
    let mut name = "anna-ipad";
    let mut networks = "10.20.0.0/16";
    let mut dns = "";
    let mut endpoint = "vpn.stadt.example:51820";
    let mut organisation = "heimweg";
    let mut numbers = Numbers(&[]);
    let mut free = "";
    for (tag, body) in Records::new(data).take(16) {
        match tag % 7 {
            0 => name = text(body).unwrap_or(name),
            1 => networks = text(body).unwrap_or(networks),
            2 => dns = text(body).unwrap_or(dns),
            3 => endpoint = text(body).unwrap_or(endpoint),
            4 => organisation = text(body).unwrap_or(organisation),
            5 => numbers = Numbers(body),
            _ => free = text(body).unwrap_or(free),
        }
    }
    escaping(free);
    file_name(free, i64::from(numbers.u16(11)) + 1);
    let _ = Qr::encode(free);
    escaping(name);

    let Ok(name) = Name::new(name) else {
        return;
    };
    let tunnel = TunnelMode::from_full(numbers.flag(1));
    let nets: Vec<&str> = networks.lines().collect();
    let dns: Vec<&str> = dns.lines().collect();
    let Ok(policy) = GroupPolicy::parse(&nets, tunnel, &dns) else {
        return;
    };
    let Ok(endpoint) = endpoint.parse::<Endpoint>() else {
        return;
    };
    // The organisation is a name someone chose, as valid as any other.
    let Ok(organisation) = Name::new(organisation) else {
        return;
    };

    let key = numbers.array::<32>(23);
    let gateway =
        PublicKey::from_bytes(key).unwrap_or_else(|_| PrivateKey::from_bytes([7; 32]).public_key());
    let conf = ClientConfig {
        private_key: numbers.flag(4).then(|| PrivateKey::from_bytes(key)),
        addresses: vec![
            IpNet::from(IpAddr::V4(Ipv4Addr::from(numbers.array::<4>(5)))),
            IpNet::from(IpAddr::V6(Ipv6Addr::from(numbers.array::<16>(9)))),
        ],
        dns: policy.resolvers().collect(),
        dns_search: policy.search_domains().map(String::from).collect(),
        mtu: 1280 + numbers.u16(1) % 221,
        gateway_public_key: gateway,
        preshared_key: numbers.flag(2).then(|| PresharedKey::from_bytes(key)),
        allowed_ips: if tunnel.is_full() {
            vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()]
        } else {
            policy.networks().to_vec()
        },
        endpoint: endpoint.clone(),
        persistent_keepalive: numbers
            .flag(16)
            .then(|| numbers.u16(3).max(1)),
    };
    let config = conf
        .render()
        .unwrap_or_else(|e| panic!("a config of valid parts was refused: {e}\n{conf:?}"));
    config_reads_back(&config, &conf, &policy);
    file_name(name.as_str(), i64::from(numbers.u16(7)) + 1);

    let platform = if numbers.flag(8) {
        ApplePlatform::MacOs
    } else {
        ApplePlatform::Ios
    };
    let profile = mobileconfig::render(
        name.as_str(),
        &config,
        &endpoint.to_string(),
        organisation.as_str(),
        platform,
        &mobileconfig::payload_identifier(&gateway, i64::from(numbers.u16(13))),
    );
    profile_reads_back(&profile, &name, &config, &endpoint, &organisation);

    match Qr::encode(&config) {
        Ok(qr) => {
            assert!((1..=40).contains(&qr.version()));
            assert_eq!(qr.width(), 17 + 4 * qr.version() as usize);
        }
        // Version 40 with the lowest error correction holds 2,953 bytes.
        Err(e) => assert!(config.len() > 2953, "{e}"),
    }
});

/// The config, read as the apps read it.
fn config_reads_back(config: &str, conf: &ClientConfig, policy: &GroupPolicy) {
    const INTERFACE: [&str; 5] = ["PrivateKey", "Address", "DNS", "MTU", "ListenPort"];
    const PEER: [&str; 5] = [
        "PublicKey",
        "PresharedKey",
        "AllowedIPs",
        "Endpoint",
        "PersistentKeepalive",
    ];
    assert!(config.ends_with('\n'));
    assert!(
        !config.chars().any(|c| c.is_control() && c != '\n'),
        "a control character in the config"
    );
    // wg-quick cuts a line at '#': the only '#' is the placeholder of a device's own key.
    let placeholder = format!("[Interface]\n{PRIVATE_KEY_PLACEHOLDER}\n");
    assert_eq!(config.starts_with(&placeholder), conf.private_key.is_none());
    let config = config.strip_prefix(&placeholder).map_or(config.to_string(), |rest| format!("[Interface]\n{rest}"));
    assert!(!config.contains('#'), "wg-quick cuts a line at '#'");
    let mut section = "";
    let mut seen: Vec<(&str, &str)> = Vec::new();
    let mut values = std::collections::HashMap::new();
    for line in config.lines() {
        if line.is_empty() {
            continue;
        }
        if line == "[Interface]" || line == "[Peer]" {
            assert!(section.is_empty() || (section == "[Interface]" && line == "[Peer]"));
            section = line;
            continue;
        }
        let (key, value) = line
            .split_once(" = ")
            .unwrap_or_else(|| panic!("{line:?} is not `Key = Value`"));
        let keys = match section {
            "[Interface]" => &INTERFACE[..],
            "[Peer]" => &PEER[..],
            _ => panic!("{line:?} outside a section"),
        };
        assert!(keys.contains(&key), "{key} in {section}");
        assert!(!seen.contains(&(section, key)), "{key} twice in {section}");
        seen.push((section, key));
        assert!(!value.is_empty() && value.trim() == value, "{line:?}");
        values.insert(key, value);
    }
    assert_eq!(section, "[Peer]");
    let list = |key: &str| -> Vec<&str> {
        values
            .get(key)
            .map(|v| v.split(", ").collect())
            .unwrap_or_default()
    };
    let addresses: Vec<IpNet> = list("Address").iter().map(|a| a.parse().unwrap()).collect();
    assert_eq!(addresses, conf.addresses);
    let allowed: Vec<IpNet> = list("AllowedIPs").iter().map(|a| a.parse().unwrap()).collect();
    for n in &conf.allowed_ips {
        assert!(allowed.contains(n), "{n} missing from AllowedIPs");
    }
    // wg-quick's rule: an entry of digits and dots, or with a colon, is a server.
    let mut search = Vec::new();
    for d in list("DNS") {
        if d.bytes().all(|b| b.is_ascii_digit() || b == b'.') || d.contains(':') {
            let ip: IpAddr = d
                .parse()
                .unwrap_or_else(|_| panic!("DNS entry {d:?} reads as a server but is none"));
            assert!(
                allowed.iter().any(|n| n.contains(&ip)),
                "DNS server {ip} outside AllowedIPs"
            );
            assert!(conf.dns.contains(&ip));
        } else {
            search.push(d);
        }
    }
    assert_eq!(search, policy.search_domains().collect::<Vec<_>>());
    assert_eq!(values["MTU"].parse::<u16>(), Ok(conf.mtu));
    assert_eq!(values["Endpoint"].parse::<Endpoint>().as_ref(), Ok(&conf.endpoint));
    assert_eq!(values["PublicKey"].parse::<PublicKey>(), Ok(conf.gateway_public_key));
    assert_eq!(
        values.get("PrivateKey").map(|k| k.parse::<PrivateKey>().unwrap().expose_bytes()),
        conf.private_key.as_ref().map(PrivateKey::expose_bytes)
    );
    assert_eq!(
        values.get("PresharedKey").map(|k| k.parse::<PresharedKey>().unwrap()),
        conf.preshared_key.clone()
    );
    assert_eq!(
        values.get("PersistentKeepalive").map(|k| k.parse::<u16>().unwrap()),
        conf.persistent_keepalive
    );
}

/// Android and wg-quick take the tunnel name from the file name; Windows refuses DOS device
/// names (before the first dot) and names with a dot at either end.
fn file_name(name: &str, id: i64) {
    const DOS: [&str; 22] = [
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
        "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    ];
    let file = config_file_name(name, id);
    let stem = file.strip_suffix(".conf").expect(".conf");
    assert!((1..=15).contains(&stem.len()), "{file:?}");
    assert!(
        stem.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_=+.-".contains(&b)),
        "{file:?}"
    );
    assert!(!stem.starts_with('.') && !stem.ends_with('.'), "{file:?}");
    let device = stem.split('.').next().unwrap_or("");
    assert!(
        !DOS.iter().any(|d| d.eq_ignore_ascii_case(device)),
        "{file:?} is a DOS device"
    );
}

fn profile_reads_back(
    profile: &str,
    name: &Name,
    config: &str,
    endpoint: &Endpoint,
    organisation: &Name,
) {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(profile, options)
        .unwrap_or_else(|e| panic!("the profile is not XML: {e}\n{profile}"));
    // Every <key> is followed by its value; the strings that matter, unescaped.
    let mut strings: Vec<(String, String)> = Vec::new();
    for key in doc.descendants().filter(|n| n.has_tag_name("key")) {
        let value = key
            .next_siblings()
            .skip(1)
            .find(roxmltree::Node::is_element)
            .expect("a value after every key");
        if value.has_tag_name("string") {
            let k = key.text().unwrap_or("").to_string();
            strings.push((k, value.text().unwrap_or("").to_string()));
        }
    }
    let get = |k: &str| -> Vec<&str> {
        strings
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("UserDefinedName"), [name.as_str()]);
    assert_eq!(get("WgQuickConfig"), [config]);
    assert_eq!(get("RemoteAddress"), [endpoint.to_string()]);
    assert_eq!(get("PayloadOrganization"), [organisation.as_str()]);
    assert_eq!(
        get("PayloadDisplayName")[0],
        format!("{organisation} VPN: {name}")
    );
    assert_eq!(
        strings.iter().filter(|(_, v)| v == config).count(),
        1,
        "the config once"
    );
}

/// Escaped text has no markup character left, and every `&` starts one of the five entities.
fn escaping(s: &str) {
    let e = escape_markup(s);
    assert!(!e.contains(['<', '>', '"', '\'']), "{e:?}");
    const ENTITIES: [(&str, &str); 5] = [
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", "\""),
        ("&apos;", "'"),
        ("&amp;", "&"),
    ];
    for (i, _) in e.match_indices('&') {
        assert!(
            ENTITIES.iter().any(|(ent, _)| e[i..].starts_with(ent)),
            "a bare & in {e:?}"
        );
    }
    let mut back = e.clone();
    for (ent, c) in ENTITIES {
        back = back.replace(ent, c);
    }
    assert_eq!(back, s);
}
