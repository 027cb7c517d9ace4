//! The gateway's state on this machine: the settings file, the state directory with the
//! gateway key, and the database behind the service.

use super::Site;
use anyhow::{bail, Context, Result};
use heimweg_control::{PrivateKey, PublicKey};
use heimweg_service::Service;
use std::path::Path;

/// The settings file the systemd unit reads. The CLI reads it too, so that `heimweg device add`
/// in a root shell uses the same database, state directory and interface as the service.
pub const ENV_FILE: &str = "/etc/heimweg/env";

/// Applies `KEY=VALUE` lines of the settings file (`HEIMWEG_*` and `RUST_LOG` only) that the
/// environment does not set already. Runs before any thread exists.
pub fn load_env_file() {
    let path = std::env::var_os("HEIMWEG_ENV_FILE").unwrap_or_else(|| ENV_FILE.into());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            eprintln!(
                "heimweg: not reading {}: {e}; its settings do not apply",
                Path::new(&path).display()
            );
            return;
        }
    };
    for line in text.lines().map(str::trim) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let known = key.starts_with("HEIMWEG_") || key == "RUST_LOG";
        if line.starts_with('#') || !known || std::env::var_os(key).is_some() {
            continue;
        }
        std::env::set_var(key, value.trim_matches('"'));
    }
}

fn create_state_dir(state_dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))
}

/// Reads a WireGuard key in base64, as `wg genkey` writes it.
pub fn read_key(path: &Path) -> Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)?;
    let key: PrivateKey = text
        .trim()
        .parse()
        .context("the file holds no WireGuard key")?;
    Ok(key.expose_bytes())
}

/// The gateway key lives in the state directory; the first start creates it with mode 0600 so
/// that a restart keeps the identity every client config refers to.
pub fn load_or_create_key(state_dir: &Path) -> Result<[u8; 32]> {
    let path = state_dir.join("server.key");
    if path.exists() {
        return read_key(&path).with_context(|| format!("reading {}", path.display()));
    }
    create_state_dir(state_dir)?;
    let key = PrivateKey::generate();
    heimweg::files::write_private(&path, format!("{}\n", key.expose_base64()).as_bytes())?;
    tracing::info!(path = %path.display(), "generated the gateway key");
    Ok(key.expose_bytes())
}

/// The gateway's public key for configs. Never generated here: a CLI that made up a key would
/// hand out configs no gateway answers.
pub fn gateway_public_key(state_dir: &Path) -> Result<PublicKey> {
    let path = state_dir.join("server.key");
    if !path.exists() {
        bail!(
            "no gateway key at {}: start `heimweg serve` once first (it creates the key), or \
             copy the gateway's server.key there",
            path.display()
        );
    }
    Ok(PrivateKey::from_bytes(
        read_key(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .public_key())
}

/// Opens the service on the configured database, or the SQLite file in the state directory.
/// Only `serve` (`create`) makes a new SQLite file: a CLI command that found none would
/// otherwise start a private database no gateway reads. A new database gets its defaults.
pub async fn open_service(site: &Site, create: bool) -> Result<Service> {
    let state_dir = &site.state_dir;
    let path = state_dir.join("heimweg.db");
    if !create && site.database.is_none() && !path.exists() {
        bail!(
            "no database at {}: start `heimweg serve` once first, or give the database of a \
             gateway with HEIMWEG_DATABASE_URL (as in {ENV_FILE})",
            path.display()
        );
    }
    create_state_dir(state_dir)?;
    let service = match &site.database {
        // The URL may carry a password: errors name the backend, never the URL.
        Some(url) => Service::connect(url)
            .await
            .context("opening the database given by --database / HEIMWEG_DATABASE_URL")?,
        None => {
            if !path.exists() {
                // The database holds preshared keys and staff names: create it private, and
                // SQLite gives its -wal and -shm files the same mode.
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
            }
            Service::open_sqlite(&path)
                .await
                .with_context(|| format!("opening {}", path.display()))?
        }
    };
    let mut ula = [0u8; 5];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut ula);
    if service.init_defaults(ula).await? {
        tracing::info!("created the database with a default group and pools");
    }
    Ok(service)
}

/// The organisation certificate that signs exported Apple profiles (optional).
#[derive(clap::Args, Clone, Default)]
pub struct SigningArgs {
    /// PEM file with the organisation's certificate (then its intermediates) that signs the
    /// Apple profiles of MDM exports, so that iOS and macOS show them as verified.
    #[arg(
        long,
        env = "HEIMWEG_PROFILE_SIGNING_CERT",
        requires = "profile_signing_key"
    )]
    pub profile_signing_cert: Option<std::path::PathBuf>,
    /// PEM file (mode 0600) with that certificate's private key (ECDSA P-256 or RSA).
    #[arg(
        long,
        env = "HEIMWEG_PROFILE_SIGNING_KEY",
        requires = "profile_signing_cert"
    )]
    pub profile_signing_key: Option<std::path::PathBuf>,
}

impl SigningArgs {
    /// `service`, signing profiles when a certificate is given; a certificate that does not
    /// fit its key, has expired or may not sign is refused here, not at the first export.
    pub fn apply(&self, service: Service) -> Result<Service> {
        let (Some(cert), Some(key)) = (&self.profile_signing_cert, &self.profile_signing_key)
        else {
            return Ok(service);
        };
        let read = |p: &Path| {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        let signer = heimweg_control::signing::ProfileSigner::from_pem(
            &read(cert)?,
            &read(key)?,
            service.now(),
        )
        .with_context(|| format!("the profile signing certificate {}", cert.display()))?;
        Ok(service.with_profile_signer(signer))
    }
}
