//! `heimweg status`: a `wg show`-like summary of the running gateway, read over its UAPI
//! socket (the same protocol `wg` speaks) and joined with the store for device names.

use anyhow::{bail, Context, Result};
use heimweg_control::human_bytes;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One peer as `get=1` reports it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Peer {
    pub public_key_hex: String,
    pub endpoint: Option<String>,
    pub last_handshake: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// What the gateway reports: its listen port, peers, and the `stats=1` counters.
#[derive(Debug, Default)]
pub struct Report {
    pub listen_port: u16,
    pub peers: Vec<Peer>,
    pub stats: HashMap<String, u64>,
}

fn request(socket: &Path, command: &str) -> Result<Vec<(String, String)>> {
    let mut stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "connecting to {}; is `heimweg serve` running on this interface?",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("{command}=1\n\n").as_bytes())?;
    let mut pairs = Vec::new();
    for line in BufReader::new(stream).lines() {
        let line = line?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line
            .split_once('=')
            .with_context(|| format!("unexpected line from the gateway: {line:?}"))?;
        pairs.push((k.to_string(), v.to_string()));
    }
    match pairs.last() {
        Some((k, v)) if k == "errno" && v == "0" => {
            pairs.pop();
            Ok(pairs)
        }
        Some((k, v)) if k == "errno" => bail!("the gateway answered {command} with errno {v}"),
        _ => bail!("the gateway's answer to {command} ended early"),
    }
}

/// Parses `get=1` output.
pub fn parse_get(pairs: &[(String, String)]) -> (u16, Vec<Peer>) {
    let mut port = 0;
    let mut peers: Vec<Peer> = Vec::new();
    for (k, v) in pairs {
        match (k.as_str(), peers.last_mut()) {
            ("listen_port", _) => port = v.parse().unwrap_or(0),
            ("public_key", _) => peers.push(Peer {
                public_key_hex: v.clone(),
                ..Peer::default()
            }),
            ("endpoint", Some(p)) => p.endpoint = Some(v.clone()),
            ("last_handshake_time_sec", Some(p)) => {
                p.last_handshake = v.parse().ok().filter(|s| *s != 0)
            }
            ("rx_bytes", Some(p)) => p.rx_bytes = v.parse().unwrap_or(0),
            ("tx_bytes", Some(p)) => p.tx_bytes = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    (port, peers)
}

pub fn query(socket: &Path) -> Result<Report> {
    let (listen_port, peers) = parse_get(&request(socket, "get")?);
    let stats = request(socket, "stats")?
        .into_iter()
        .filter_map(|(k, v)| v.parse().ok().map(|n| (k, n)))
        .collect();
    Ok(Report {
        listen_port,
        peers,
        stats,
    })
}

fn ago(t: Option<u64>, now: u64) -> String {
    match t {
        None => "never".into(),
        Some(t) => format!("{} s ago", now.saturating_sub(t)),
    }
}

/// Renders the summary; `names` maps a peer's hex public key to "device (group)".
pub fn render(
    interface: &str,
    report: &Report,
    names: &HashMap<String, String>,
    top: usize,
) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let stat = |k: &str| report.stats.get(k).copied().unwrap_or(0);
    let active = report
        .peers
        .iter()
        .filter(|p| {
            p.last_handshake
                .is_some_and(|t| now.saturating_sub(t) < 180)
        })
        .count();
    let mut out = format!(
        "interface: {interface}\n  listening port: {}\n  peers: {} configured, {active} active \
         (handshake in the last 180 s)\n  traffic: {} received, {} sent\n  handshakes: {} ok, \
         {} cookie replies, {} rate-limited, queue {}\n  dropped: {}",
        report.listen_port,
        report.peers.len(),
        human_bytes(stat("rx_bytes")),
        human_bytes(stat("tx_bytes")),
        stat("handshakes_ok"),
        stat("cookies_sent"),
        stat("drop_handshake_rate_limited") + stat("drop_handshake_queue_full"),
        stat("handshake_queue_depth"),
        stat("drops_total"),
    );
    let mut reasons: Vec<(&str, u64)> = report
        .stats
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("drop_").map(|r| (r, *v)))
        .filter(|(_, v)| *v > 0)
        .collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    if !reasons.is_empty() {
        let list: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
        out.push_str(&format!(" ({})", list.join(", ")));
    }
    out.push('\n');
    let mut talkers: Vec<&Peer> = report.peers.iter().collect();
    talkers.sort_by_key(|p| std::cmp::Reverse(p.rx_bytes + p.tx_bytes));
    talkers.retain(|p| p.rx_bytes + p.tx_bytes > 0);
    if top == 0 {
        return out;
    }
    if talkers.is_empty() {
        out.push_str("\nno traffic yet\n");
        return out;
    }
    out.push_str(&format!(
        "\ntop talkers:\n  {:<32} {:>12} {:>12}  {:<16} endpoint\n",
        "device", "received", "sent", "last handshake"
    ));
    for p in talkers.into_iter().take(top) {
        let name = names
            .get(&p.public_key_hex)
            .cloned()
            // The socket may belong to another implementation: no slicing of what it sent.
            .unwrap_or_else(|| {
                let short: String = p.public_key_hex.chars().take(8).collect();
                format!("(unknown {short}…)")
            });
        out.push_str(&format!(
            "  {:<32} {:>12} {:>12}  {:<16} {}\n",
            name,
            human_bytes(p.rx_bytes),
            human_bytes(p.tx_bytes),
            ago(p.last_handshake, now),
            p.endpoint.as_deref().unwrap_or("-"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_get_output_and_ranks_talkers() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let (port, peers) = parse_get(&pairs(&format!(
            "private_key=aa\nlisten_port=51820\npublic_key={a}\nendpoint=198.51.100.7:4000\n\
             last_handshake_time_sec={now}\nlast_handshake_time_nsec=0\nrx_bytes=2048\n\
             tx_bytes=1048576\nallowed_ip=10.77.0.2/32\npublic_key={b}\n\
             last_handshake_time_sec=0\nrx_bytes=0\ntx_bytes=0\n",
            a = "a".repeat(64),
            b = "b".repeat(64)
        )));
        assert_eq!(port, 51820);
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].rx_bytes, 2048);
        assert_eq!(peers[1].last_handshake, None, "0 means never");
        let report = Report {
            listen_port: port,
            peers,
            stats: [("rx_bytes".to_string(), 2048), ("drop_no_route".into(), 3)]
                .into_iter()
                .collect(),
        };
        let names = [("a".repeat(64), "anna-ipad (rathaus)".to_string())]
            .into_iter()
            .collect();
        let text = render("heimweg0", &report, &names, 10);
        assert!(text.contains("2 configured, 1 active"), "{text}");
        assert!(text.contains("anna-ipad (rathaus)"));
        assert!(text.contains("1.0 MiB"));
        assert!(text.contains("no_route 3"));
        assert!(!text.contains("bbbbbbbb"), "idle peers are not talkers");
    }

    #[test]
    fn a_short_or_odd_key_from_another_socket_renders_without_panicking() {
        let (_, peers) = parse_get(&pairs(
            "public_key=ab\ntx_bytes=5\npublic_key=äöü\ntx_bytes=9\n",
        ));
        let report = Report {
            listen_port: 0,
            peers,
            stats: Default::default(),
        };
        let text = render("heimweg0", &report, &HashMap::new(), 10);
        assert!(text.contains("(unknown ab…)"), "{text}");
        assert!(text.contains("(unknown äöü…)"), "{text}");
    }
}
