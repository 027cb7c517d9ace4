//! The deployment kit in `deploy/` checked with the tools an admin would use: the example
//! environment file names exactly the settings `heimweg serve` reads, the Grafana dashboard is
//! valid JSON whose queries Prometheus's own parser accepts, and (with the packages
//! `tests/run.sh` installs, when `HEIMWEG_E2E=1`) `systemd-analyze verify` passes on the unit
//! and `nft -c -f` on both rulesets.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn e2e() -> bool {
    std::env::var("HEIMWEG_E2E").as_deref() == Ok("1")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_example_environment_file_documents_every_setting() {
    let help = Command::new(env!("CARGO_BIN_EXE_heimweg"))
        .env("HEIMWEG_ENV_FILE", "/dev/null")
        .args(["serve", "--help"])
        .output()
        .expect("heimweg runs");
    let help = String::from_utf8_lossy(&help.stdout);
    let mut read_by_serve: BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|s| s.split(['=', ']']).next())
        .map(String::from)
        .collect();
    // A secret serve reads from the environment only: no flag, so `--help` does not list it.
    read_by_serve.insert("HEIMWEG_SMTP_PASSWORD".into());
    read_by_serve.insert("HEIMWEG_LDAP_BIND_PASSWORD".into());
    read_by_serve.insert("HEIMWEG_OIDC_CLIENT_SECRET".into());
    assert!(read_by_serve.len() >= 10, "{help}");
    let documented: BTreeSet<String> = read("deploy/heimweg.env")
        .lines()
        .map(|l| l.trim_start_matches('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k.to_string())
        .filter(|k| k.starts_with("HEIMWEG_"))
        .collect();
    assert_eq!(documented, read_by_serve);
}

/// Every query of the dashboard, with its template variables filled in.
fn dashboard_queries() -> Vec<String> {
    let dash: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana-dashboard.json")).expect("valid JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            t["expr"]
                .as_str()
                .expect("expr")
                .replace("$instance", ".*")
                .replace("$job", ".*")
        })
        .collect()
}

#[test]
fn the_dashboard_queries_only_metrics_heimweg_exports() {
    let exported = [
        "heimweg_peers",
        "heimweg_bytes_total",
        "heimweg_reconciler_lag_seconds",
        "heimweg_handshakes_total",
        "heimweg_dropped_packets_total",
        "heimweg_handshake_queue_depth",
        "heimweg_worker_busy_seconds_total",
        "heimweg_dataplane_errors_total",
        "heimweg_api_requests_total",
        "heimweg_api_request_duration_seconds_bucket",
        "heimweg_devices_expiring",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ];
    let sources = read("src/metrics.rs")
        + &read("crates/heimweg-service/src/reconcile/mod.rs")
        + &read("crates/heimweg-api/src/metrics.rs");
    for name in exported.iter().filter(|n| n.starts_with("heimweg_")) {
        let base = name.trim_end_matches("_bucket");
        assert!(
            sources.contains(&format!("\"{base}\"")),
            "{base} is not registered"
        );
    }
    for q in dashboard_queries() {
        let names: Vec<&str> = q
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("heimweg_") || w.starts_with("process_"))
            .collect();
        assert!(!names.is_empty(), "{q}");
        for n in names {
            assert!(
                exported.contains(&n),
                "the dashboard queries {n}, which heimweg does not export"
            );
        }
    }
}

#[test]
fn promtool_parses_every_dashboard_query() {
    if !e2e() {
        eprintln!("skipped: needs promtool (HEIMWEG_E2E=1 via tests/run.sh)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("heimweg-dash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules: String = dashboard_queries()
        .iter()
        .enumerate()
        .map(|(i, q)| {
            format!(
                "      - record: heimweg:dashboard_{i}\n        expr: {}\n",
                serde_json::to_string(q).unwrap()
            )
        })
        .collect();
    let file = dir.join("rules.yml");
    std::fs::write(
        &file,
        format!("groups:\n  - name: dashboard\n    rules:\n{rules}"),
    )
    .unwrap();
    let out = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&file)
        .output()
        .expect("promtool");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr)
    );
}

/// The alerting rules load, and their unit tests pass: every alert fires on the series meant
/// to fire it, with its labels and annotations, and stays quiet on the near misses.
#[test]
fn the_alert_rules_pass_their_unit_tests() {
    let promtool = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !promtool {
        assert!(
            !e2e(),
            "HEIMWEG_E2E=1 needs promtool (Debian package prometheus)"
        );
        eprintln!("skipped: needs promtool (HEIMWEG_E2E=1 via tests/run.sh)");
        return;
    }
    for (command, file) in [
        ("check", "deploy/prometheus-alerts.yml"),
        ("test", "deploy/prometheus-alerts.test.yml"),
    ] {
        // The test file names the rules relative to itself: no working directory needed.
        let out = Command::new("promtool")
            .args([command, "rules"])
            .arg(root().join(file))
            .output()
            .expect("promtool");
        assert!(
            out.status.success(),
            "promtool {command} rules {file}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn systemd_accepts_the_unit() {
    if !e2e() {
        eprintln!("skipped: needs systemd-analyze (HEIMWEG_E2E=1 via tests/run.sh)");
        return;
    }
    // The unit names the installed path; verify it against the binary built here.
    let dir = std::env::temp_dir().join(format!("heimweg-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unit =
        read("deploy/heimweg.service").replace("/usr/bin/heimweg", env!("CARGO_BIN_EXE_heimweg"));
    let path = dir.join("heimweg.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("heimweg.service"),
        "{stderr}"
    );
}

#[test]
fn nft_accepts_both_rulesets() {
    if !e2e() {
        eprintln!("skipped: needs nft and root (HEIMWEG_E2E=1 via tests/run.sh)");
        return;
    }
    // A private network namespace: `nft -c` talks to the kernel, and must not touch the host.
    let ns = format!("hwnft-{}", std::process::id());
    assert!(Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap()
        .success());
    let mut failures = Vec::new();
    for file in ["deploy/nftables.conf", "deploy/nftables-masquerade.conf"] {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns, "nft", "-c", "-f"])
            .arg(root().join(file))
            .output()
            .expect("nft");
        if !out.status.success() {
            failures.push(format!("{file}: {}", String::from_utf8_lossy(&out.stderr)));
        }
    }
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    assert!(failures.is_empty(), "{failures:?}");
}
