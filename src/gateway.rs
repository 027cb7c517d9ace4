//! Runs one data plane with its UAPI socket until a signal, the loss of the socket file or the
//! loss of the TUN interface says to stop.

use anyhow::{bail, Context, Result};
use heimweg_dataplane::uapi::{UapiHandler, UapiServer};
use heimweg_dataplane::{Config, DataPlane};
use rand_core::{OsRng, RngCore};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// Where the stock `wg` tool looks for userspace implementations' sockets.
pub const UAPI_DIR: &str = "/var/run/wireguard";

/// Interface names as the kernel and wg-quick accept them: 1 to 15 of `[a-zA-Z0-9_=+.-]`.
pub fn validate_interface_name(name: &str) -> Result<()> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_=+.-".contains(&b));
    if name.is_empty() || name.len() > 15 || !ok_chars || name == "." || name == ".." {
        bail!("invalid interface name {name:?}: use 1 to 15 characters of [a-zA-Z0-9_=+.-]");
    }
    Ok(())
}

enum Stop {
    Signal(i32),
    SocketGone,
}

/// A running data plane with its UAPI socket and signal handling.
pub struct Running {
    pub dataplane: Arc<DataPlane>,
    uapi: UapiServer,
    stop: mpsc::Receiver<Stop>,
}

/// Whether the UAPI socket takes changes (`wg set`, `wg syncconf`) or only answers `get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UapiWrites {
    /// The standalone modes: the socket is how peers are configured.
    Allowed,
    /// `heimweg serve`: the database is the source of truth, and a change made over the socket
    /// would hold only until the next reconcile, while `/readyz` says all is well. Refused,
    /// with a message that says where to make it.
    Refused,
}

/// The data plane's UAPI, with `set` refused.
struct ReadOnly(Arc<DataPlane>);

impl UapiHandler for ReadOnly {
    fn get(&self) -> heimweg_dataplane::uapi::DeviceSnapshot {
        UapiHandler::get(&*self.0)
    }

    fn set(
        &self,
        _: heimweg_dataplane::uapi::SetRequest,
    ) -> Result<(), heimweg_dataplane::uapi::UapiError> {
        tracing::warn!(
            "refused a change over the UAPI socket: this gateway's peers come from its database"
        );
        Err(heimweg_dataplane::uapi::UapiError::NotPermitted(
            "this gateway's peers come from its database; use heimweg or its API".into(),
        ))
    }

    fn stats(&self) -> Vec<(String, u64)> {
        UapiHandler::stats(&*self.0)
    }
}

/// Starts the data plane and the UAPI socket; [`Running::wait`] then blocks until told to stop.
pub fn start(config: Config, uapi_dir: &Path, writes: UapiWrites) -> Result<Running> {
    validate_interface_name(&config.interface)?;
    let name = config.interface.clone();
    let dataplane = Arc::new(
        DataPlane::start(config, OsRng.next_u64())
            .with_context(|| format!("starting the data plane on {name}"))?,
    );
    let (tx, rx) = mpsc::channel::<Stop>();
    let gone_tx = tx.clone();
    let handler: Arc<dyn UapiHandler> = match writes {
        UapiWrites::Allowed => dataplane.clone(),
        UapiWrites::Refused => Arc::new(ReadOnly(dataplane.clone())),
    };
    let uapi = UapiServer::start(
        uapi_dir,
        dataplane.interface(),
        handler,
        Box::new(move || {
            let _ = gone_tx.send(Stop::SocketGone);
        }),
    )
    .with_context(|| format!("creating the UAPI socket in {}", uapi_dir.display()))?;
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("hw-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let _ = tx.send(Stop::Signal(sig));
            }
        })
        .context("starting the signal thread")?;
    tracing::info!(interface = dataplane.interface(), socket = %uapi.path().display(), "ready");
    Ok(Running {
        dataplane,
        uapi,
        stop: rx,
    })
}

impl Running {
    /// Blocks until a signal, the loss of the socket file or of the interface, then shuts the
    /// data plane down.
    pub fn wait(self) {
        // The TUN can vanish under us (`ip link del`); like wireguard-go we then exit.
        let reason = loop {
            match self.stop.recv_timeout(Duration::from_millis(500)) {
                Ok(Stop::Signal(sig)) => break format!("signal {sig}"),
                Ok(Stop::SocketGone) => break "UAPI socket removed".to_string(),
                Err(mpsc::RecvTimeoutError::Timeout) if self.dataplane.tun_gone() => {
                    break "interface removed".to_string()
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break "internal channel closed".into()
                }
            }
        };
        tracing::info!(%reason, "shutting down");
        drop(self.uapi);
        self.dataplane.shutdown();
    }
}

/// Starts the data plane and blocks until told to stop.
pub fn run(config: Config, uapi_dir: &Path) -> Result<()> {
    start(config, uapi_dir, UapiWrites::Allowed)?.wait();
    Ok(())
}

/// Logging: `RUST_LOG` if set, else wireguard-go's `LOG_LEVEL` (verbose, error, silent).
/// Log output: lines for people (the default) or one JSON object per line for journald
/// with a JSON parser, Loki or similar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(match std::env::var("LOG_LEVEL").as_deref() {
            Ok("verbose") | Ok("debug") => "debug",
            Ok("error") => "error",
            Ok("silent") => "off",
            _ => "info",
        })
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_wg_quick_rules() {
        for ok in ["wg0", "hw-gw_1", "a.b=c+d", "fifteen-chars15"] {
            assert!(validate_interface_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "sixteen-chars-16", "wg 0", "wg/0", "wg\0", "..", "ä"] {
            assert!(validate_interface_name(bad).is_err(), "{bad:?}");
        }
    }
}
