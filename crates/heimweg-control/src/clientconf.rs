//! Client configs in the subset every stock WireGuard app accepts.
//!
//! The iOS app refuses any `[Interface]` key but PrivateKey, ListenPort, Address, DNS and MTU;
//! Android and iOS refuse `PersistentKeepalive = off`; every app refuses empty values. So we
//! emit only the five portable `[Peer]` keys and four `[Interface]` keys, each once, integers
//! only. The one comment is the placeholder of a device that made its own key: every app
//! (wg-quick, Android, Apple, Windows) drops everything after `#`, and every app refuses a
//! config without `PrivateKey`, so the line marks where the device's key goes. The MTU is always explicit (home links behind PPPoE or DS-Lite black-hole
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

/// The `[Interface]` line of a config whose device made its own key: a comment every app
/// ignores, where the device's private key goes. Replacing it with `PrivateKey = <key>` gives
/// exactly the config heimweg would have rendered with that key.
pub const PRIVATE_KEY_PLACEHOLDER: &str =
    "# PrivateKey = <this device's own private key: heimweg never had it; write it here and delete the \"# \">";

/// What to do with such a template, for the command line and the API.
pub const OWN_KEY_STEPS: &str =
    "This device made its own key, so its config has no private key and no QR code (no app \
imports a config without one). On the device, replace the line starting with \"# PrivateKey\" by \
\"PrivateKey = \" and the device's private key, then import the file (wg-quick up, or the app's \
import from file); in an app whose empty tunnel made the key, keep its PrivateKey line and paste \
the rest of this config below it.";

/// Everything a device's config holds.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `None` when the device supplied its own public key: the config is then a template with
    /// [`PRIVATE_KEY_PLACEHOLDER`] where the key it generated goes.
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
        match &self.private_key {
            Some(k) => {
                let _ = writeln!(out, "PrivateKey = {}", k.expose_base64());
            }
            None => {
                let _ = writeln!(out, "{PRIVATE_KEY_PLACEHOLDER}");
            }
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

/// The same config without the optional spaces around `=` and after `,`, which every app's
/// parser trims anyway: about 30 bytes less, one QR version smaller, so a terminal QR code of a
/// typical config fits 80 columns. Only for a QR code: the file keeps the usual spelling.
pub fn compact_for_qr(config: &str) -> String {
    let mut out = String::with_capacity(config.len());
    for line in config.lines() {
        let line = if line.starts_with('#') {
            line.to_string()
        } else {
            line.replacen(" = ", "=", 1).replace(", ", ",")
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The longest tunnel name Android and wg-quick accept (Linux's interface name limit).
const TUNNEL_NAME_MAX: usize = 15;

/// A download file name every app imports, different for every device: Android and wg-quick
/// take the tunnel name from it (`[a-zA-Z0-9_=+.-]{1,15}`), Windows also refuses DOS device
/// names and leading or trailing dots.
///
/// A name that already is such a tunnel name (without `=`) is used as it is; names are unique
/// without case, so two devices never share one. Any other name (umlauts, spaces, other
/// scripts, too long) is spelled with the permitted characters but no dot, cut, and ends in `=` and the
/// device's id: only these names contain `=`, and the id differs, so `日本語` and `----` no
/// longer both become `hw.conf`. (Ids are the store's row ids; up to 12 digits fit.)
pub fn config_file_name(wanted: &str, device_id: i64) -> String {
    const DOS: [&str; 22] = [
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
        "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    ];
    let plain = |c: char| c.is_ascii_alphanumeric() || "_+.-".contains(c);
    let edge = |c: char| c == '.' || c == '-';
    let stem = wanted.split('.').next().unwrap_or("").to_ascii_uppercase();
    let usable_as_is = (1..=TUNNEL_NAME_MAX).contains(&wanted.len())
        && wanted.chars().all(plain)
        && !wanted.starts_with(edge)
        && !wanted.ends_with(edge)
        && !DOS.contains(&stem.as_str());
    if usable_as_is {
        return format!("{wanted}.conf");
    }
    let suffix = format!("={device_id}");
    let spelled: String = wanted
        .chars()
        .map(|c| match c {
            'ä' => 'a',
            'ö' => 'o',
            'ü' => 'u',
            'Ä' => 'A',
            'Ö' => 'O',
            'Ü' => 'U',
            'ß' => 's',
            // No dot: Windows reads what precedes the first one as the device name (`nul.x`
            // is NUL), and without a dot the stem always holds the `=` of the suffix.
            '.' => '-',
            c if plain(c) => c,
            _ => '-',
        })
        .collect();
    let room = TUNNEL_NAME_MAX.saturating_sub(suffix.len());
    let mut prefix: String = spelled.trim_matches(edge).chars().take(room).collect();
    prefix = prefix.trim_end_matches(edge).to_string();
    if prefix.is_empty() {
        prefix = "hw".into();
    }
    format!("{prefix}{suffix}.conf")
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
    fn a_template_becomes_the_full_config_once_the_key_is_written_in() {
        let template = sample(false).render().unwrap();
        assert!(template.starts_with(&format!(
            "[Interface]\n{PRIVATE_KEY_PLACEHOLDER}\nAddress = "
        )));
        // Every app strips from `#` on: the placeholder is no key line until someone writes one.
        let uncommented = template.lines().filter(|l| !l.starts_with('#'));
        assert!(!uncommented.clone().any(|l| l.contains("PrivateKey")));
        let key = "sC+4Y0X3Zt7GmG0y9Ck6nSy6jrxcJjA6Fz9QvH6bKFo=";
        let completed = template.replace(PRIVATE_KEY_PLACEHOLDER, &format!("PrivateKey = {key}"));
        assert_eq!(completed, sample(true).render().unwrap());
    }

    #[test]
    fn the_compact_spelling_reads_as_the_same_config() {
        // As the apps read a line: the key before the first '=', list items split at ',',
        // both trimmed.
        let read = |text: &str| -> Vec<(String, Vec<String>)> {
            text.lines()
                .map(|l| match l.split_once('=') {
                    Some((k, v)) => (
                        k.trim().to_string(),
                        v.split(',').map(|i| i.trim().to_string()).collect(),
                    ),
                    None => (l.to_string(), vec![]),
                })
                .collect()
        };
        for private in [true, false] {
            let full = sample(private).render().unwrap();
            let compact = compact_for_qr(&full);
            assert_eq!(read(&compact), read(&full));
            assert!(compact.len() < full.len());
            assert!(compact
                .lines()
                .filter(|l| !l.starts_with('#'))
                .all(|l| !l.contains(' ')));
        }
    }

    fn is_tunnel_file_name(s: &str) -> bool {
        let Some(stem) = s.strip_suffix(".conf") else {
            return false;
        };
        (1..=15).contains(&stem.len())
            && stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_=+.-".contains(&b))
            && !stem.starts_with(['.', '-'])
            && !stem.ends_with(['.', '-'])
    }

    #[test]
    fn file_names_are_valid_on_every_platform() {
        assert_eq!(config_file_name("stadt-vpn", 7), "stadt-vpn.conf");
        assert_eq!(
            config_file_name("Jürgen's iPad (Büro)", 12),
            "Jurgen-s-iPa=12.conf"
        );
        assert_eq!(config_file_name("CON", 3), "CON=3.conf");
        assert_eq!(config_file_name("nul.x", 4), "nul-x=4.conf");
        // Found by the artifacts fuzz target: a spelled-out name kept its dot, and Windows
        // reads `nul.…` as the device NUL.
        assert_eq!(config_file_name("nul.___--a-hä", 1), "nul-___--a-ha=1.conf");
        assert_eq!(config_file_name("...", 5), "hw=5.conf");
        assert_eq!(config_file_name("", 6), "hw=6.conf");
        for s in [
            "a".repeat(40),
            "ünïcödé ☃ name".into(),
            "x.y.z.".into(),
            " - ".into(),
            "a=b".into(),
        ] {
            let f = config_file_name(&s, 999_999_999_999);
            assert!(is_tunnel_file_name(&f), "{s:?} -> {f}");
        }
    }

    #[test]
    fn different_devices_get_different_file_names() {
        // What collided before: other scripts, only punctuation, a shared long prefix, a name
        // that looks like another's spelled-out form.
        let names = [
            "日本語",
            "----",
            "Rathaus-Laptop-001",
            "Rathaus-Laptop-002",
            "Büro",
            "Buro",
            "hw=1",
            "hw",
            "Bu-ro",
            "Bü ro",
        ];
        let files: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| config_file_name(n, i as i64 + 1))
            .collect();
        for (i, a) in files.iter().enumerate() {
            assert!(is_tunnel_file_name(a), "{a}");
            for b in &files[i + 1..] {
                assert_ne!(a.to_ascii_lowercase(), b.to_ascii_lowercase());
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn no_two_devices_share_a_file_name(
            a in "[a-zA-Z0-9_=+. äöüß日-]{0,24}",
            b in "[a-zA-Z0-9_=+. äöüß日-]{0,24}",
            ids in (1i64..1_000_000_000_000, 1i64..1_000_000_000_000),
        ) {
            // Two devices: names that differ without case, ids that differ.
            proptest::prop_assume!(a.to_lowercase() != b.to_lowercase() && ids.0 != ids.1);
            let (fa, fb) = (config_file_name(&a, ids.0), config_file_name(&b, ids.1));
            proptest::prop_assert!(is_tunnel_file_name(&fa), "{} -> {}", a, fa);
            proptest::prop_assert_ne!(fa.to_ascii_lowercase(), fb.to_ascii_lowercase());
        }
    }
}
