//! Client configs in the subset every stock WireGuard app accepts.
//!
//! The iOS app refuses any `[Interface]` key but PrivateKey, ListenPort, Address, DNS and MTU;
//! Android and iOS refuse `PersistentKeepalive = off`; every app refuses empty values. So we
//! emit only the five portable `[Peer]` keys and four `[Interface]` keys, each once, integers
//! only, no comments. The MTU is always explicit (home links behind PPPoE or DS-Lite black-hole
//! the 1420 a laptop would guess), and every DNS server is routed through the tunnel, because
//! iOS sends all queries to the tunnel's resolver once one is set.

use crate::keys::{PresharedKey, PrivateKey, PublicKey};
use ipnet::IpNet;
use std::fmt::Write;
use std::net::IpAddr;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("the endpoint must be HOST:PORT (IPv6 as [ADDRESS]:PORT), e.g. vpn.example.de:51820")]
    BadEndpoint,
    #[error("the MTU must be between 1280 (the IPv6 minimum) and 1500; got {0}")]
    BadMtu(u16),
    #[error("a device needs at least one tunnel address")]
    NoAddress,
    #[error("AllowedIPs must not be empty: the device would route nothing through the tunnel")]
    NoAllowedIps,
    #[error("DNS search domain {0:?} is not a valid host name")]
    BadSearchDomain(String),
    #[error("persistent keepalive must be 1 to 65535 seconds, or absent")]
    BadKeepalive,
}

/// The gateway's public address as clients dial it: a DNS name or an IP, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
    port: u16,
}

impl Endpoint {
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl FromStr for Endpoint {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let (host, port) = s.rsplit_once(':').ok_or(ConfigError::BadEndpoint)?;
        let port: u16 = port.parse().map_err(|_| ConfigError::BadEndpoint)?;
        if port == 0 {
            return Err(ConfigError::BadEndpoint);
        }
        let host = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            v6.parse::<std::net::Ipv6Addr>()
                .map_err(|_| ConfigError::BadEndpoint)?;
            v6.to_string()
        } else if host.contains(':') {
            // An unbracketed IPv6 address is ambiguous with the port separator.
            return Err(ConfigError::BadEndpoint);
        } else if host.parse::<std::net::Ipv4Addr>().is_ok() || is_hostname(host) {
            host.to_ascii_lowercase()
        } else {
            return Err(ConfigError::BadEndpoint);
        };
        Ok(Endpoint { host, port })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// RFC 1123 host name: labels of letters, digits and inner hyphens, at most 253 characters.
pub fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A search domain every app reads as one: a host name that is not only digits and dots.
/// wg-quick reads a `DNS` entry of digits and dots (or with a colon) as a resolver's address,
/// so `10.0.0` would be a broken nameserver on Linux and a search domain elsewhere.
pub fn is_search_domain(s: &str) -> bool {
    is_hostname(s) && !s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Everything a device's config holds.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `None` when the device supplied its own public key: the config is then a template the
    /// app completes with the key it generated.
    pub private_key: Option<PrivateKey>,
    /// The device's tunnel addresses (a /32 and a /128).
    pub addresses: Vec<IpNet>,
    pub dns: Vec<IpAddr>,
    pub dns_search: Vec<String>,
    pub mtu: u16,
    pub gateway_public_key: PublicKey,
    pub preshared_key: Option<PresharedKey>,
    /// Networks routed through the tunnel: the group's prefixes (split tunnel) or everything.
    pub allowed_ips: Vec<IpNet>,
    pub endpoint: Endpoint,
    pub persistent_keepalive: Option<u16>,
}

impl ClientConfig {
    /// Renders the wg-quick text. The DNS servers are added to AllowedIPs when not covered.
    pub fn render(&self) -> Result<String, ConfigError> {
        if self.addresses.is_empty() {
            return Err(ConfigError::NoAddress);
        }
        if self.allowed_ips.is_empty() {
            return Err(ConfigError::NoAllowedIps);
        }
        if !(1280..=1500).contains(&self.mtu) {
            return Err(ConfigError::BadMtu(self.mtu));
        }
        if self.persistent_keepalive == Some(0) {
            return Err(ConfigError::BadKeepalive);
        }
        if let Some(bad) = self.dns_search.iter().find(|d| !is_search_domain(d)) {
            return Err(ConfigError::BadSearchDomain(bad.clone()));
        }
        let mut allowed = self.allowed_ips.clone();
        for d in &self.dns {
            if !allowed.iter().any(|n| n.contains(d)) {
                allowed.push(IpNet::from(*d));
            }
        }
        let join = |items: Vec<String>| items.join(", ");
        let mut out = String::with_capacity(512);
        out.push_str("[Interface]\n");
        if let Some(k) = &self.private_key {
            let _ = writeln!(out, "PrivateKey = {}", k.expose_base64());
        }
        let _ = writeln!(
            out,
            "Address = {}",
            join(self.addresses.iter().map(|a| a.to_string()).collect())
        );
        let dns: Vec<String> = self
            .dns
            .iter()
            .map(|d| d.to_string())
            .chain(self.dns_search.iter().map(|s| s.to_ascii_lowercase()))
            .collect();
        if !dns.is_empty() {
            let _ = writeln!(out, "DNS = {}", join(dns));
        }
        let _ = writeln!(out, "MTU = {}", self.mtu);
        out.push_str("\n[Peer]\n");
        let _ = writeln!(out, "PublicKey = {}", self.gateway_public_key);
        if let Some(psk) = &self.preshared_key {
            let _ = writeln!(out, "PresharedKey = {}", psk.expose_base64());
        }
        let _ = writeln!(
            out,
            "AllowedIPs = {}",
            join(allowed.iter().map(|a| a.to_string()).collect())
        );
        let _ = writeln!(out, "Endpoint = {}", self.endpoint);
        if let Some(ka) = self.persistent_keepalive {
            let _ = writeln!(out, "PersistentKeepalive = {ka}");
        }
        Ok(out)
    }
}

/// A download file name every app imports: Android and wg-quick take the tunnel name from it
/// (`[a-zA-Z0-9_=+.-]{1,15}`), Windows also refuses DOS device names and leading/trailing dots.
pub fn config_file_name(wanted: &str) -> String {
    let mut name: String = wanted
        .chars()
        .map(|c| match c {
            'ä' => 'a',
            'ö' => 'o',
            'ü' => 'u',
            'Ä' => 'A',
            'Ö' => 'O',
            'Ü' => 'U',
            'ß' => 's',
            c if c.is_ascii_alphanumeric() || "_=+.-".contains(c) => c,
            _ => '-',
        })
        .collect();
    name = name.trim_matches(|c| c == '.' || c == '-').to_string();
    name.truncate(15);
    name = name.trim_end_matches(['.', '-']).to_string();
    const DOS: [&str; 22] = [
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
        "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    ];
    let stem = name.split('.').next().unwrap_or("").to_ascii_uppercase();
    if name.is_empty() || DOS.contains(&stem.as_str()) {
        name = format!("hw-{name}");
        name.truncate(15);
        name = name.trim_end_matches(['.', '-']).to_string();
    }
    format!("{name}.conf")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(private: bool) -> ClientConfig {
        ClientConfig {
            private_key: private.then(|| {
                "sC+4Y0X3Zt7GmG0y9Ck6nSy6jrxcJjA6Fz9QvH6bKFo="
                    .parse()
                    .unwrap()
            }),
            addresses: vec![
                "10.77.0.2/32".parse().unwrap(),
                "fd77::2/128".parse().unwrap(),
            ],
            dns: vec!["10.1.0.53".parse().unwrap()],
            dns_search: vec!["Verwaltung.example.de".into()],
            mtu: 1380,
            gateway_public_key: "hY2Fk1gUkDf57uQ44ws/hFrhBx8aP3AXJ9VZnkFZdTc="
                .parse()
                .unwrap(),
            preshared_key: None,
            allowed_ips: vec![
                "10.20.0.0/16".parse().unwrap(),
                "fd00:20::/48".parse().unwrap(),
            ],
            endpoint: "VPN.stadt.example:51820".parse().unwrap(),
            persistent_keepalive: Some(25),
        }
    }

    #[test]
    fn renders_the_portable_subset() {
        let text = sample(true).render().unwrap();
        assert_eq!(
            text,
            "[Interface]\n\
             PrivateKey = sC+4Y0X3Zt7GmG0y9Ck6nSy6jrxcJjA6Fz9QvH6bKFo=\n\
             Address = 10.77.0.2/32, fd77::2/128\n\
             DNS = 10.1.0.53, verwaltung.example.de\n\
             MTU = 1380\n\
             \n\
             [Peer]\n\
             PublicKey = hY2Fk1gUkDf57uQ44ws/hFrhBx8aP3AXJ9VZnkFZdTc=\n\
             AllowedIPs = 10.20.0.0/16, fd00:20::/48, 10.1.0.53/32\n\
             Endpoint = vpn.stadt.example:51820\n\
             PersistentKeepalive = 25\n"
        );
    }

    #[test]
    fn dns_inside_allowed_ips_is_not_repeated_and_psk_is_rendered() {
        let mut c = sample(true);
        c.allowed_ips = vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()];
        c.preshared_key = Some(PresharedKey::from_bytes([7; 32]));
        c.persistent_keepalive = None;
        let text = c.render().unwrap();
        assert!(text.contains("AllowedIPs = 0.0.0.0/0, ::/0\n"));
        assert!(text.contains("PresharedKey = BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n"));
        assert!(!text.contains("PersistentKeepalive"));
        let keys: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k))
            .collect();
        for k in &keys {
            assert!(
                [
                    "PrivateKey",
                    "Address",
                    "DNS",
                    "MTU",
                    "PublicKey",
                    "PresharedKey",
                    "AllowedIPs",
                    "Endpoint",
                    "PersistentKeepalive"
                ]
                .contains(k),
                "{k} is not in the portable subset"
            );
        }
    }

    #[test]
    fn refuses_what_some_app_would_reject() {
        let mut c = sample(true);
        c.mtu = 1420 + 200;
        assert_eq!(c.render(), Err(ConfigError::BadMtu(1620)));
        let mut c = sample(true);
        c.persistent_keepalive = Some(0);
        assert_eq!(c.render(), Err(ConfigError::BadKeepalive));
        let mut c = sample(true);
        c.allowed_ips.clear();
        assert_eq!(c.render(), Err(ConfigError::NoAllowedIps));
        let mut c = sample(true);
        c.dns_search = vec!["bad domain".into()];
        assert!(matches!(c.render(), Err(ConfigError::BadSearchDomain(_))));
        // wg-quick would read it as a resolver (a group stored by an older version).
        let mut c = sample(true);
        c.dns_search = vec!["10.0.0".into()];
        assert!(matches!(c.render(), Err(ConfigError::BadSearchDomain(_))));
        let mut c = sample(true);
        c.addresses.clear();
        assert_eq!(c.render(), Err(ConfigError::NoAddress));
    }

    #[test]
    fn endpoints_parse_strictly() {
        assert_eq!(
            "[2001:db8::1]:51820"
                .parse::<Endpoint>()
                .unwrap()
                .to_string(),
            "[2001:db8::1]:51820"
        );
        assert_eq!(
            "192.0.2.1:443".parse::<Endpoint>().unwrap().to_string(),
            "192.0.2.1:443"
        );
        for bad in [
            "vpn.example.de",
            "vpn.example.de:0",
            "vpn.example.de:70000",
            "2001:db8::1:51820",
            "[nonsense]:1",
            "bad host:1",
            "-x.de:1",
            ":51820",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn template_without_private_key_for_client_supplied_keys() {
        let text = sample(false).render().unwrap();
        assert!(!text.contains("PrivateKey"));
        assert!(text.starts_with("[Interface]\nAddress = "));
    }

    #[test]
    fn file_names_are_valid_on_every_platform() {
        assert_eq!(config_file_name("stadt-vpn"), "stadt-vpn.conf");
        assert_eq!(
            config_file_name("Jürgen's iPad (Büro)"),
            "Jurgen-s-iPad.conf"
        );
        assert_eq!(config_file_name("CON"), "hw-CON.conf");
        assert_eq!(config_file_name("nul.x"), "hw-nul.x.conf");
        assert_eq!(config_file_name("..."), "hw.conf");
        assert_eq!(config_file_name(""), "hw.conf");
        let re = |s: &str| {
            let stem = s.strip_suffix(".conf").unwrap();
            (1..=15).contains(&stem.len())
                && stem
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_=+.-".contains(&b))
                && !stem.starts_with('.')
                && !stem.ends_with('.')
        };
        for s in [
            "a".repeat(40),
            "ünïcödé ☃ name".into(),
            "x.y.z.".into(),
            " - ".into(),
        ] {
            assert!(
                re(&config_file_name(&s)),
                "{s:?} -> {}",
                config_file_name(&s)
            );
        }
    }
}
