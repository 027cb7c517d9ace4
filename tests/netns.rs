//! End-to-end tests with real WireGuard peers (wireguard-go brought up by wg-quick) in network
//! namespaces, against the `heimweg-wg` binary built with this package. They need root and the
//! packages `tests/run.sh` installs, so they run only when `HEIMWEG_E2E=1` (CI sets it).

use std::path::Path;
use std::process::Command;

fn enabled() -> bool {
    std::env::var("HEIMWEG_E2E").as_deref() == Ok("1")
}

fn run_script(script: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("bash")
        .arg(root.join(script))
        .current_dir(root)
        .env("HEIMWEG_WG", env!("CARGO_BIN_EXE_heimweg-wg"))
        .env("GATEWAY_IS_HEIMWEG", "1")
        .status()
        .expect("bash runs");
    assert!(status.success(), "{script} failed: {status}");
}

#[test]
fn stock_clients_reach_a_host_behind_the_gateway() {
    if !enabled() {
        eprintln!("skipped: set HEIMWEG_E2E=1 (as root) to run the network-namespace tests");
        return;
    }
    run_script("tests/netns/dataplane.sh");
}
