//! `heimweg`: the WireGuard remote-access concentrator.
//!
//! Today it runs the data plane as a gateway that configures its own interface (`heimweg up`);
//! provisioning, the API and the panel join this binary in later steps.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use heimweg::gateway;
use heimweg_dataplane::InterfaceAddress;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "heimweg",
    version,
    about = "WireGuard remote-access concentrator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway data plane: create the interface, set its addresses, MTU and link state,
    /// listen on UDP, and accept peer configuration over the UAPI socket (`wg set`, `wg syncconf`).
    Up {
        /// Interface name.
        #[arg(long, default_value = "heimweg0")]
        interface: String,
        /// UDP listen port.
        #[arg(long, default_value_t = 51820)]
        listen_port: u16,
        /// File holding the gateway's private key in base64 (as `wg genkey` writes it).
        /// Default: `STATE_DIR/server.key`, generated (mode 0600) on first start.
        #[arg(long)]
        private_key_file: Option<PathBuf>,
        /// Directory for the gateway's state.
        #[arg(long, default_value = "/var/lib/heimweg")]
        state_dir: PathBuf,
        /// Address of the gateway inside the tunnel, with prefix (repeatable), e.g. 10.77.0.1/24.
        #[arg(long = "address")]
        addresses: Vec<InterfaceAddress>,
        /// Interface MTU.
        #[arg(long, default_value_t = 1420)]
        mtu: u32,
        /// Worker threads; 0 = one per core.
        #[arg(long, default_value_t = 0)]
        workers: usize,
        /// Directory of the UAPI socket.
        #[arg(long, default_value = gateway::UAPI_DIR)]
        uapi_dir: PathBuf,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    gateway::init_logging();
    match cli.command {
        Command::Up {
            interface,
            listen_port,
            private_key_file,
            state_dir,
            addresses,
            mtu,
            workers,
            uapi_dir,
        } => {
            let private_key = match private_key_file {
                Some(p) => read_key(&p).with_context(|| format!("reading {}", p.display()))?,
                None => load_or_create_key(&state_dir)?,
            };
            let mut config = heimweg_dataplane::Config::new(interface);
            config.listen_port = listen_port;
            config.private_key = Some(private_key);
            config.addresses = addresses;
            config.mtu = mtu;
            config.workers = workers;
            config.set_up = true;
            gateway::run(config, &uapi_dir)
        }
    }
}

/// Reads a WireGuard key in base64, as `wg genkey` writes it.
fn read_key(path: &std::path::Path) -> Result<[u8; 32]> {
    use base64::Engine;
    let text = std::fs::read_to_string(path)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .context("the key is not base64")?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| anyhow::anyhow!("the key is {} bytes, not 32", bytes.len()))
}

/// The gateway key lives in the state directory; the first start creates it with mode 0600 so
/// that a restart keeps the identity every client config refers to.
fn load_or_create_key(state_dir: &std::path::Path) -> Result<[u8; 32]> {
    use base64::Engine;
    use rand_core::{OsRng, RngCore};
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let path = state_dir.join("server.key");
    if path.exists() {
        return read_key(&path).with_context(|| format!("reading {}", path.display()));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    // Written to a temporary name and renamed, so a crash never leaves a half-written key.
    let tmp = state_dir.join(".server.key.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    writeln!(
        f,
        "{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("creating {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated the gateway key");
    Ok(key)
}
