//! System tests with the real WireGuard tools: wireguard-go peers brought up by wg-quick in
//! network namespaces, `wg-quick strip` and `wg setconf` on the configs heimweg renders, all
//! against the `heimweg-wg` binary built with this package. They need root and the packages
//! `tests/run.sh` installs, so they run only when `HEIMWEG_E2E=1` (CI sets it).

use heimweg_control::{ClientConfig, PresharedKey, PrivateKey};
use std::path::Path;
use std::process::{Child, Command, Stdio};

fn enabled() -> bool {
    std::env::var("HEIMWEG_E2E").as_deref() == Ok("1")
}

fn run_script(script: &str) {
    run_script_with(script, &[]);
}

fn run_script_with(script: &str, env: &[(&str, &str)]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("bash")
        .arg(root.join(script))
        .current_dir(root)
        // Never the settings file of the machine running the tests.
        .env("HEIMWEG_ENV_FILE", "/dev/null")
        .envs(env.iter().copied())
        .env("HEIMWEG_WG", env!("CARGO_BIN_EXE_heimweg-wg"))
        .env("HEIMWEG", env!("CARGO_BIN_EXE_heimweg"))
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

#[test]
fn enrolled_devices_connect_and_revocation_cuts_them_off_within_a_second() {
    if !enabled() {
        eprintln!("skipped: set HEIMWEG_E2E=1 (as root) to run the network-namespace tests");
        return;
    }
    run_script("tests/netns/provisioning.sh");
}

/// The same end-to-end run with the gateway and the CLI on a PostgreSQL database instead of
/// the SQLite file: the second backend carries a real gateway, not just the store tests. It
/// also runs with per-peer metrics switched on.
#[tokio::test]
async fn the_gateway_runs_on_postgresql_too() {
    if !enabled() {
        eprintln!("skipped: set HEIMWEG_E2E=1 (as root) to run the network-namespace tests");
        return;
    }
    let db = heimweg_store::testing::Scratch::new(heimweg_store::Backend::Postgres, "e2e")
        .await
        .expect("HEIMWEG_E2E implies a PostgreSQL server");
    let url = db.url().to_string();
    tokio::task::spawn_blocking(move || {
        run_script_with(
            "tests/netns/provisioning.sh",
            // This run also opts into per-peer metrics; the SQLite run checks they stay off.
            &[
                ("HEIMWEG_DATABASE_URL", url.as_str()),
                ("HEIMWEG_METRICS_PER_PEER", "100"),
            ],
        )
    })
    .await
    .unwrap();
}

/// The admin panel in headless Chromium: first login, enrolling with the QR code read back off
/// the screen, the downloaded config connecting, revocation, links, requests, CSRF, lockout, the
/// second factor and the helpdesk role (tests/panel/panel.mjs). Saves screenshots of the main
/// pages in target/panel-screenshots.
#[test]
fn the_admin_panel_works_in_a_real_browser() {
    if !enabled() {
        eprintln!("skipped: set HEIMWEG_E2E=1 (as root) to run the network-namespace tests");
        return;
    }
    run_script("tests/netns/panel.sh");
}

/// Invitations by mail end to end: a real SMTP server with STARTTLS and AUTH, the mail read
/// back, its link opened in headless Chromium, the config up with wg-quick and reaching the
/// group's network, the rollout view and its one-click reminder (tests/netns/mail.sh).
#[test]
fn a_mailed_invitation_puts_a_device_online() {
    if !enabled() {
        eprintln!("skipped: set HEIMWEG_E2E=1 (as root) to run the network-namespace tests");
        return;
    }
    run_script("tests/netns/mail.sh");
}

/// The directory sync end to end: a real slapd read every 10 s; a stock client whose account
/// is locked in the directory is cut off within the interval, the others not; a directory
/// that is down or emptied revokes nothing (tests/netns/directory.sh).
#[test]
fn a_locked_directory_account_is_cut_off_within_the_interval() {
    if !enabled() {
        eprintln!("skipped: set HEIMWEG_E2E=1 (as root) to run the network-namespace tests");
        return;
    }
    run_script("tests/netns/directory.sh");
}

/// Sign-in through a real OpenID provider (oidc-provider from npm) in headless Chromium: staff
/// enroll their own devices on /my within their group and device limit, admins and the
/// helpdesk get their role from the provider's groups; tampered, replayed and expired answers
/// are refused and a key rotation is followed; the laptop a staff member enrolled herself
/// comes up under wg-quick; once her group requires sign in to connect it passes traffic only
/// after a fresh sign-in with her second factor, and is cut off when an admin or she ends it,
/// and when she is disabled (tests/netns/oidc.sh).
#[test]
fn staff_sign_in_through_the_provider_and_put_their_own_device_online() {
    if !enabled() {
        eprintln!("skipped: set HEIMWEG_E2E=1 (as root) to run the network-namespace tests");
        return;
    }
    run_script("tests/netns/oidc.sh");
}

/// Access in time with stock clients: a group's usage window (Berlin time) closes in the middle
/// of an iperf3 transfer and cuts the device off within a second, answers none of its
/// handshakes while closed and lets it reconnect by itself when it opens; an absence entered
/// over the API cuts the owner's device off at once and ends by itself
/// (tests/netns/timewindow.sh).
#[test]
fn a_usage_window_cuts_off_at_its_edge_and_an_absence_ends_by_itself() {
    if !enabled() {
        eprintln!("skipped: set HEIMWEG_E2E=1 (as root) to run the network-namespace tests");
        return;
    }
    run_script("tests/netns/timewindow.sh");
}

/// The load generator against `heimweg-wg`: a small storm (500 devices from 20 addresses,
/// all starting at once, timed as the stock clients time their handshakes) where every device
/// must get a session without a single retransmit: the gateway answers such a storm from its
/// queue, never with a cookie that would cost a device 5 s. The full-size comparison
/// with the other servers is `benches/storm.sh` (BENCHMARKS.md).
#[test]
fn every_device_of_a_handshake_storm_gets_a_session() {
    if !enabled() {
        eprintln!("skipped: set HEIMWEG_E2E=1 (as root) to run the network-namespace tests");
        return;
    }
    // Built by `cargo build --workspace` (tests/run.sh) next to this package's binaries.
    let loadgen = Path::new(env!("CARGO_BIN_EXE_heimweg-wg")).with_file_name("heimweg-loadgen");
    assert!(
        loadgen.exists(),
        "build the workspace first: {}",
        loadgen.display()
    );
    run_script_with(
        "benches/storm.sh",
        &[
            ("IMPLS", "heimweg"),
            ("N", "500"),
            ("SOURCES", "20"),
            ("STRICT", "1"),
            ("MAX_RETRIES", "0"),
            ("HWG", env!("CARGO_BIN_EXE_heimweg-wg")),
            ("LOADGEN", loadgen.to_str().expect("UTF-8 path")),
        ],
    );
}

/// A `heimweg-wg -f` process, killed (by PID) when dropped.
struct Gateway {
    child: Child,
    name: String,
}

impl Gateway {
    fn start(name: &str) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_heimweg-wg"))
            .args(["-f", name])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("heimweg-wg starts");
        wait_for_socket(&mut child, name);
        Gateway {
            child,
            name: name.to_string(),
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sample_configs() -> Vec<(&'static str, ClientConfig)> {
    let gateway = PrivateKey::generate().public_key();
    let base = ClientConfig {
        private_key: Some(PrivateKey::generate()),
        addresses: vec![
            "10.77.0.2/32".parse().unwrap(),
            "fd77::2/128".parse().unwrap(),
        ],
        dns: vec!["10.1.0.53".parse().unwrap(), "fd00:1::53".parse().unwrap()],
        dns_search: vec!["verwaltung.example.de".into()],
        mtu: 1280,
        gateway_public_key: gateway,
        preshared_key: None,
        allowed_ips: vec![
            "10.20.0.0/16".parse().unwrap(),
            "fd00:20::/48".parse().unwrap(),
        ],
        endpoint: "192.0.2.1:51820".parse().unwrap(),
        persistent_keepalive: Some(25),
    };
    let mut full = base.clone();
    full.allowed_ips = vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()];
    full.preshared_key = Some(PresharedKey::generate());
    full.persistent_keepalive = None;
    full.endpoint = "[2001:db8::1]:443".parse().unwrap();
    let mut minimal = base.clone();
    minimal.dns.clear();
    minimal.dns_search.clear();
    minimal.addresses.truncate(1);
    vec![("split", base), ("full", full), ("minimal", minimal)]
}

#[test]
fn rendered_configs_pass_wg_quick_strip_and_wg_setconf() {
    if !enabled() {
        eprintln!("skipped: set HEIMWEG_E2E=1 (as root) to run the system tests");
        return;
    }
    let name = format!("hwcfg{}", std::process::id() % 100_000);
    let gw = Gateway::start(&name);
    let dir = std::env::temp_dir().join(format!("heimweg-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (label, cfg) in sample_configs() {
        let text = cfg.render().unwrap();
        // wg-quick takes the interface name from the file name and insists on a valid one.
        let file = dir.join(format!("{name}.conf"));
        std::fs::write(&file, &text).unwrap();
        let strip = Command::new("wg-quick")
            .arg("strip")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            strip.status.success(),
            "{label}: wg-quick strip failed: {}",
            String::from_utf8_lossy(&strip.stderr)
        );
        let stripped = dir.join("stripped.conf");
        std::fs::write(&stripped, &strip.stdout).unwrap();
        let set = Command::new("wg")
            .args(["setconf", &gw.name])
            .arg(&stripped)
            .output()
            .unwrap();
        assert!(
            set.status.success(),
            "{label}: wg setconf failed: {}\n{text}",
            String::from_utf8_lossy(&set.stderr)
        );
        let shown = Command::new("wg")
            .args(["showconf", &gw.name])
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&shown.stdout);
        let key = cfg.private_key.as_ref().unwrap().expose_base64();
        assert!(
            shown.contains(&format!("PrivateKey = {key}")),
            "{label}: {shown}"
        );
        assert!(
            shown.contains(&format!("PublicKey = {}", cfg.gateway_public_key)),
            "{label}: {shown}"
        );
        assert!(
            shown.contains(&format!("Endpoint = {}", cfg.endpoint)),
            "{label}: {shown}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until `child` has created the UAPI socket of `ifname` (it does so right after the
/// TUN), failing if it exits first or takes more than 10 s.
fn wait_for_socket(child: &mut Child, ifname: &str) -> std::path::PathBuf {
    let sock = Path::new("/var/run/wireguard").join(format!("{ifname}.sock"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no UAPI socket for {ifname} after 10 s"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the gateway for {ifname} exited early: {status}");
        }
        std::thread::yield_now();
    }
    sock
}

/// Runs a command, returning stdout; panics with stderr on failure.
fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn heimweg_up_configures_its_interface_and_keeps_its_key() {
    if !enabled() {
        eprintln!("skipped: set HEIMWEG_E2E=1 (as root) to run the system tests");
        return;
    }
    let id = std::process::id() % 100_000;
    let ns = Netns(format!("hwup-{id}"));
    sh("ip", &["netns", "add", &ns.0]);
    let ifname = format!("hwup{id}");
    let state = std::env::temp_dir().join(format!("heimweg-up-{id}"));
    let _ = std::fs::remove_dir_all(&state);
    let state_arg = state.to_str().unwrap().to_string();

    let public_key = |run: u32| -> String {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.0, env!("CARGO_BIN_EXE_heimweg")])
            .env("HEIMWEG_ENV_FILE", "/dev/null")
            .args(["up", "--interface", &ifname, "--listen-port", "0"])
            .args(["--address", "10.88.0.1/24", "--address", "fd88::1/64"])
            .args(["--mtu", "1380", "--state-dir", &state_arg])
            .stdout(Stdio::null())
            .spawn()
            .expect("heimweg starts");
        let sock = wait_for_socket(&mut child, &ifname);
        let link = sh("ip", &["-n", &ns.0, "-o", "link", "show", "dev", &ifname]);
        assert!(link.contains("mtu 1380"), "run {run}: {link}");
        assert!(link.contains(",UP"), "run {run}: link not up: {link}");
        let addrs = sh("ip", &["-n", &ns.0, "-o", "addr", "show", "dev", &ifname]);
        assert!(addrs.contains("inet 10.88.0.1/24"), "run {run}: {addrs}");
        assert!(addrs.contains("inet6 fd88::1/64"), "run {run}: {addrs}");
        let key = sh(
            "ip",
            &["netns", "exec", &ns.0, "wg", "show", &ifname, "public-key"],
        );
        // SIGTERM (not SIGKILL) so the clean shutdown path is what we test.
        sh("kill", &["-TERM", &child.id().to_string()]);
        let status = child.wait().unwrap();
        assert!(status.success(), "run {run}: exit status {status}");
        assert!(!sock.exists(), "run {run}: socket left behind");
        key.trim().to_string()
    };
    let first = public_key(1);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.join("server.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the gateway key is private");
    assert_eq!(first.len(), 44);
    assert_eq!(
        public_key(2),
        first,
        "a restart keeps the gateway's identity"
    );
    let _ = std::fs::remove_dir_all(&state);
}

/// An MDM export's archive as an MDM and the devices read it: every entry is well-formed XML
/// (xmllint) and a plist (Python's plistlib, an independent, strict parser of Apple's format)
/// carrying the config, under the device's stable identifier.
#[test]
fn mobileconfig_archives_hold_plists_carrying_the_config() {
    if !enabled() {
        eprintln!("skipped: set HEIMWEG_E2E=1 to run the system tests (needs python3, xmllint)");
        return;
    }
    use heimweg_control::mobileconfig::{payload_identifier, render, zip, ApplePlatform};
    let (_, cfg) = sample_configs().remove(0);
    let text = cfg.render().unwrap();
    let profiles: Vec<(String, String)> = [
        ("Anna's iPad & more", ApplePlatform::Ios, 7),
        ("Büro-Mac <2>", ApplePlatform::MacOs, 8),
    ]
    .into_iter()
    .map(|(name, platform, id)| {
        let profile = render(
            name,
            &text,
            "vpn.stadt.example:51820",
            "Stadt <Beispiel>",
            platform,
            &payload_identifier(&cfg.gateway_public_key, id),
        );
        (format!("{id}.mobileconfig"), profile)
    })
    .collect();
    let dir = std::env::temp_dir().join(format!("heimweg-plist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("profiles.zip");
    std::fs::write(&file, zip(&profiles).unwrap()).unwrap();
    let out = Command::new("python3")
        .args([
            "-c",
            "import plistlib, subprocess, sys, zipfile\n\
             z = zipfile.ZipFile(sys.argv[1])\n\
             assert sorted(z.namelist()) == ['7.mobileconfig', '8.mobileconfig'], z.namelist()\n\
             for n, name, sub in [('7', \"Anna's iPad & more\", 'ios'), ('8', 'Büro-Mac <2>', 'macos')]:\n\
             \x20   data = z.read(n + '.mobileconfig')\n\
             \x20   subprocess.run(['xmllint', '--noout', '-'], input=data, check=True)\n\
             \x20   p = plistlib.loads(data)\n\
             \x20   v = p['PayloadContent'][0]\n\
             \x20   assert p['PayloadType'] == 'Configuration'\n\
             \x20   assert p['PayloadIdentifier'].endswith('.device.' + n), p['PayloadIdentifier']\n\
             \x20   assert v['PayloadIdentifier'] == p['PayloadIdentifier'] + '.vpn'\n\
             \x20   assert v['PayloadType'] == 'com.apple.vpn.managed'\n\
             \x20   assert v['VPNSubType'] == 'com.wireguard.' + sub\n\
             \x20   assert v['UserDefinedName'] == name\n\
             \x20   sys.stdout.write(v['VendorConfig']['WgQuickConfig'])",
        ])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), text.repeat(2));
}

/// The instruction sheets, printed by a real browser (headless Chromium, as an admin prints or
/// saves them as a PDF): one A4 page per device, even for long names and a long helpdesk line.
/// The PDF's pages are rendered by poppler (`pdftoppm`) into target/panel-screenshots.
#[test]
fn instruction_sheets_print_one_a4_page_each() {
    if !enabled() {
        eprintln!("skipped: set HEIMWEG_E2E=1 to run the system tests (needs chromium)");
        return;
    }
    use heimweg_api::sheets::{render, Sheet};
    let long = "Dr. Maximiliane Mustermann-Schwarzenberger-Oberhuber-Weißenfels";
    let links: Vec<String> = (0..3)
        .map(|i| {
            format!(
                "https://vpn.stadt-beispiel.example/enroll/hw_{}",
                "x".repeat(40 + i)
            )
        })
        .collect();
    let sheets: Vec<Sheet<'_>> = links
        .iter()
        .map(|link| Sheet {
            user: long,
            device: "Dienst-iPad Bürgerbüro Außenstelle Nord 2",
            link,
            expires_at: 1_800_000_000,
        })
        .collect();
    let helpdesk = "IT-Service der Stadtverwaltung, Mo–Fr 7–18 Uhr, Tel. 0761 201-1234, it-service@stadt-beispiel.example";
    let dir = std::env::temp_dir().join(format!("heimweg-sheets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let html = dir.join("sheets.html");
    let pdf = dir.join("sheets.pdf");
    std::fs::write(&html, render(&sheets, helpdesk)).unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
        ])
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&pdf).unwrap();
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/panel-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let png = Command::new("pdftoppm")
        .args(["-png", "-r", "60"])
        .arg(&pdf)
        .arg(shots.join("sheet"))
        .output()
        .unwrap();
    assert!(
        png.status.success(),
        "{}",
        String::from_utf8_lossy(&png.stderr)
    );
    let rendered = std::fs::read_dir(&shots)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.starts_with("sheet-") && name.ends_with(".png")
        })
        .count();
    assert_eq!(rendered, sheets.len(), "poppler renders one page per sheet");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&bytes);
    let pages = text
        .match_indices("/Type /Page")
        .filter(|(i, _)| !text[i + 11..].starts_with('s'))
        .count();
    assert_eq!(pages, sheets.len(), "one page per sheet");
    let a4 = text.matches("/MediaBox [0 0 594.95996 841.91998]").count();
    assert_eq!(a4, pages, "every page A4");
}

/// Two gateways on one PostgreSQL database (active/standby with a shared key): a change made
/// through either reaches both within a second, and the client fails over with its config.
#[tokio::test]
async fn two_gateways_share_one_postgresql_database() {
    if !enabled() {
        eprintln!("skipped: set HEIMWEG_E2E=1 (as root) to run the network-namespace tests");
        return;
    }
    let db = heimweg_store::testing::Scratch::new(heimweg_store::Backend::Postgres, "multigw")
        .await
        .expect("HEIMWEG_E2E implies a PostgreSQL server");
    let url = db.url().to_string();
    tokio::task::spawn_blocking(move || {
        run_script_with(
            "tests/netns/multigateway.sh",
            &[("HEIMWEG_DATABASE_URL", url.as_str())],
        )
    })
    .await
    .unwrap();
}

/// The store on a PostgreSQL server across a network (tests/netns/pgtls.sh): a real server
/// with TLS and a certificate from a CA made for the test; heimweg refuses URLs without a
/// verified TLS connection before connecting, works with `sslmode=verify-full` and the CA (the
/// server logs TLS), and fails on another CA or a host name the certificate does not hold.
#[test]
fn a_remote_database_is_reached_over_verified_tls_only() {
    if !enabled() {
        eprintln!("skipped: set HEIMWEG_E2E=1 (as root) to run the network-namespace tests");
        return;
    }
    run_script("tests/netns/pgtls.sh");
}

/// Backup and restore: `heimweg backup` while the gateway serves, `heimweg restore` refused
/// while it runs, then a fresh gateway (new state directory, the old server.key) restored from
/// the backup before its first start; both devices connect again with their unchanged configs.
#[test]
fn a_gateway_restored_from_a_backup_serves_every_device_again() {
    if !enabled() {
        eprintln!("skipped: set HEIMWEG_E2E=1 (as root) to run the network-namespace tests");
        return;
    }
    run_script("tests/netns/backup.sh");
}

/// Crash safety on both backends (tests/netns/crash.sh): the gateway killed with SIGKILL 20
/// times at random moments while concurrent API and CLI clients (some CLI processes killed
/// too) enroll, rotate, change, revoke, create and change groups, and redeem enrollment links;
/// after the last restart nothing acknowledged is lost, nothing half-written exists, no address
/// is doubled, and the gateway's peers are exactly the active devices. Once on SQLite, once on
/// a fresh PostgreSQL database.
#[tokio::test]
async fn nothing_acknowledged_is_lost_when_the_gateway_is_killed() {
    if !enabled() {
        eprintln!("skipped: set HEIMWEG_E2E=1 (as root) to run the network-namespace tests");
        return;
    }
    tokio::task::spawn_blocking(|| run_script("tests/netns/crash.sh"))
        .await
        .unwrap();
    let db = heimweg_store::testing::Scratch::new(heimweg_store::Backend::Postgres, "crash")
        .await
        .expect("HEIMWEG_E2E implies a PostgreSQL server");
    let url = db.url().to_string();
    tokio::task::spawn_blocking(move || {
        run_script_with(
            "tests/netns/crash.sh",
            &[("HEIMWEG_DATABASE_URL", url.as_str())],
        )
    })
    .await
    .unwrap();
}
