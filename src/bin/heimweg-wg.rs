//! `heimweg-wg [-f|--foreground] INTERFACE`: heimweg's data plane with wireguard-go's command
//! line, so `wg-quick` (WG_QUICK_USERSPACE_IMPLEMENTATION=heimweg-wg) and test beds can use it in
//! place of wireguard-go. Configuration arrives over the UAPI socket from the stock `wg` tool.

use anyhow::{bail, Context, Result};
use heimweg::gateway;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: heimweg-wg [-f|--foreground] INTERFACE-NAME";
/// Marks the re-executed child of the non-foreground mode.
const DAEMON_ENV: &str = "HEIMWEG_WG_DAEMONIZED";

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heimweg-wg: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let mut foreground = false;
    let mut name = None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-f" | "--foreground" => foreground = true,
            "--version" => {
                println!("heimweg-wg v{}", env!("CARGO_PKG_VERSION"));
                return Ok(());
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            s if s.starts_with('-') => bail!("unknown option {s}\n{USAGE}"),
            s if name.is_none() => name = Some(s.to_string()),
            _ => bail!("{USAGE}"),
        }
    }
    let Some(name) = name else { bail!("{USAGE}") };
    gateway::validate_interface_name(&name)?;
    let uapi_dir = Path::new(gateway::UAPI_DIR);

    if !foreground && std::env::var_os(DAEMON_ENV).is_none() {
        return daemonize(&name, uapi_dir);
    }
    gateway::init_logging(gateway::LogFormat::Human);
    gateway::run(heimweg_dataplane::Config::new(name), uapi_dir)
}

/// wireguard-go's non-foreground contract: return once the interface and its socket exist, with
/// the device running on in the background. We re-execute ourselves in a new process group
/// (so the caller's terminal signals do not reach it) rather than fork a threaded process.
fn daemonize(name: &str, uapi_dir: &Path) -> Result<()> {
    let exe = std::env::current_exe().context("locating our own executable")?;
    let mut child = Command::new(exe)
        .arg("-f")
        .arg(name)
        .env(DAEMON_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting the background process")?;
    let socket = uapi_dir.join(format!("{name}.sock"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            bail!("the background process exited early ({status}); run with -f to see why");
        }
        if socket.exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("the interface did not come up within 10 s")
}
