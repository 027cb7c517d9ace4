//! `heimweg device`: enroll, list, revoke, rotate and change devices.

use super::state::{gateway_public_key, open_service};
use super::{caller, existing_name, new_name, print_listing, Site};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use heimweg_control::mobileconfig::ApplePlatform;
use heimweg_control::{compact_for_qr, qr::Qr, ExpiryDays, Name, PublicKey, OWN_KEY_STEPS};
use heimweg_service::{DeviceQuery, DeviceUpdate, EnrollRequest, Enrollment, MdmExport, Service};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum DeviceCmd {
    /// Enroll a device. Prints its config (and, on a terminal, a QR code for phones and
    /// tablets) once: the private key is not stored anywhere.
    Add(AddArgs),
    /// List devices, newest first.
    List {
        /// Filter by name, owner or public key.
        #[arg(long)]
        search: Option<String>,
        #[arg(long)]
        group: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Revoke a device: the gateway drops it within a second.
    Revoke { name: String },
    /// Give a device a new key and print its new config once; the old key stops working
    /// within a second. Name, addresses and history stay.
    Rotate {
        name: String,
        /// The device's own new public key, if it generated the key itself.
        #[arg(long)]
        public_key: Option<String>,
        /// Write the config to this file (mode 0600) instead of printing it.
        #[arg(long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        qr: QrArgs,
    },
    /// Change a device's group, owner or expiry.
    Set(SetArgs),
    /// Give devices an MDM manages new keys and write their Apple profiles into one zip (mode
    /// 0600), one .mobileconfig per device. Each profile replaces the device's installed one;
    /// until the MDM has pushed it, the device's old key no longer works. All or none.
    MdmExport(MdmExportArgs),
}

#[derive(Args)]
pub struct MdmExportArgs {
    /// Every active device of this group.
    #[arg(long)]
    group: Option<String>,
    /// And these devices.
    names: Vec<String>,
    #[arg(long, value_enum, default_value_t = Platform::Ios)]
    platform: Platform,
    /// The zip to write.
    #[arg(long)]
    output: PathBuf,
    #[command(flatten)]
    signing: super::state::SigningArgs,
}

/// Whose WireGuard app the profiles are for.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Platform {
    Ios,
    Macos,
}

#[derive(Args)]
pub struct AddArgs {
    name: String,
    #[arg(long, default_value = "default")]
    group: String,
    /// The staff member the device belongs to.
    #[arg(long)]
    owner: Option<String>,
    /// The device's own public key, if it generated its key itself.
    #[arg(long)]
    public_key: Option<String>,
    /// Days until the device stops working.
    #[arg(long)]
    expires_in_days: Option<u32>,
    /// Write the config to this file (mode 0600) instead of printing it.
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    qr: QrArgs,
}

impl AddArgs {
    fn request(&self) -> Result<EnrollRequest> {
        Ok(EnrollRequest {
            name: new_name("device name", &self.name)?,
            group: existing_name("--group", &self.group)?,
            owner: self
                .owner
                .as_deref()
                .map(|o| new_name("--owner", o))
                .transpose()?,
            public_key: parse_public_key(self.public_key.as_deref())?,
            expires_in: self.expires_in_days.map(expiry_days).transpose()?,
        })
    }
}

#[derive(Args)]
pub struct SetArgs {
    name: String,
    #[arg(long)]
    group: Option<String>,
    #[arg(long, conflicts_with = "no_owner")]
    owner: Option<String>,
    #[arg(long)]
    no_owner: bool,
    /// Days from now until the device stops working.
    #[arg(long, conflicts_with = "never_expires")]
    expires_in_days: Option<u32>,
    #[arg(long)]
    never_expires: bool,
}

impl SetArgs {
    /// The change, with an expiry counted from `now`.
    fn update(&self, now: i64) -> Result<DeviceUpdate> {
        let owner = match (&self.owner, self.no_owner) {
            (_, true) => Some(None),
            (Some(o), false) => Some(Some(new_name("--owner", o)?)),
            (None, false) => None,
        };
        let expires_at = match (self.expires_in_days, self.never_expires) {
            (_, true) => Some(None),
            (Some(days), false) => Some(Some(now + expiry_days(days)?.as_secs())),
            (None, false) => None,
        };
        Ok(DeviceUpdate {
            group: self
                .group
                .as_deref()
                .map(|g| existing_name("--group", g))
                .transpose()?,
            owner,
            expires_at,
        })
    }
}

pub async fn run(site: &Site, cmd: DeviceCmd) -> Result<()> {
    let service = open_service(site, false).await?;
    match cmd {
        DeviceCmd::Add(args) => {
            let service = service.with_gateway_key(gateway_public_key(&site.state_dir)?);
            let enrolled = service.enroll(&caller(), args.request()?).await?;
            print_config(&enrolled, args.output.as_deref(), &args.qr)?;
        }
        DeviceCmd::List {
            search,
            group,
            limit,
            offset,
        } => {
            let query = DeviceQuery {
                search,
                group,
                limit,
                offset,
                ..Default::default()
            };
            list(&service, &query).await?;
        }
        DeviceCmd::Revoke { name } => {
            service
                .revoke(&caller(), &existing_name("device", &name)?)
                .await?;
            println!("revoked {name}; a running gateway drops it within a second");
        }
        DeviceCmd::Rotate {
            name,
            public_key,
            output,
            qr,
        } => {
            let service = service.with_gateway_key(gateway_public_key(&site.state_dir)?);
            let device = existing_name("device", &name)?;
            let rotated = service
                .rotate(&caller(), &device, parse_public_key(public_key.as_deref())?)
                .await?;
            print_config(&rotated, output.as_deref(), &qr)?;
            eprintln!("The old key of {name} stops working within a second.");
        }
        DeviceCmd::Set(args) => {
            let update = args.update(service.now())?;
            set(&service, &existing_name("device", &args.name)?, update).await?;
        }
        DeviceCmd::MdmExport(args) => {
            let service = args
                .signing
                .apply(service.with_gateway_key(gateway_public_key(&site.state_dir)?))?;
            mdm_export(&service, args).await?;
        }
    }
    Ok(())
}

/// New keys and profiles for the devices an MDM manages, written as one zip.
async fn mdm_export(service: &Service, args: MdmExportArgs) -> Result<()> {
    let MdmExportArgs {
        group,
        names,
        platform,
        output,
        ..
    } = args;
    let export = MdmExport {
        group: group
            .as_deref()
            .map(|g| existing_name("--group", g))
            .transpose()?,
        devices: names
            .iter()
            .map(|n| existing_name("device", n))
            .collect::<Result<_>>()?,
        platform: match platform {
            Platform::Ios => ApplePlatform::Ios,
            Platform::Macos => ApplePlatform::MacOs,
        },
    };
    let profiles = service.mdm_export(&caller(), export).await?;
    heimweg::files::write_private(&output, &profiles.archive)?;
    eprintln!(
        "wrote {} profiles{} to {}; the devices' old keys no longer work. This is the only \
         copy of their private keys.",
        profiles.devices.len(),
        service
            .profile_signer_subject()
            .map(|s| format!(" signed as {s}"))
            .unwrap_or_default(),
        output.display()
    );
    Ok(())
}

async fn list(service: &Service, query: &DeviceQuery) -> Result<()> {
    let page = service.devices(&caller(), query).await?;
    let now = service.now();
    let mut out = format!(
        "{:<24} {:<12} {:<16} {:<10} {:<16} public key\n",
        "name", "group", "ipv4", "state", "last handshake"
    );
    for d in &page.items {
        let seen = d.last_handshake_at.map_or("never".to_string(), |t| {
            format!("{} s ago", (now - t).max(0))
        });
        writeln!(
            out,
            "{:<24} {:<12} {:<16} {:<10} {:<16} {}",
            d.name.as_str(),
            d.group.as_str(),
            d.ipv4,
            d.status(now).as_str(),
            seen,
            d.public_key
        )?;
    }
    writeln!(out, "({} of {} shown)", page.items.len(), page.total)?;
    print_listing(&out)
}

async fn set(service: &Service, name: &Name, update: DeviceUpdate) -> Result<()> {
    let d = service.update_device(&caller(), name, update).await?;
    let now = service.now();
    println!(
        "{}: group {}, owner {}, expires {}",
        d.name,
        d.group,
        d.owner.as_ref().map_or("-", |o| o.as_str()),
        d.expires_at.map_or("never".to_string(), |t| format!(
            "in {} days",
            (t - now) / 86_400
        ))
    );
    Ok(())
}

fn parse_public_key(key: Option<&str>) -> Result<Option<PublicKey>> {
    key.map(|k| k.parse::<PublicKey>().context("--public-key"))
        .transpose()
}

fn expiry_days(days: u32) -> Result<ExpiryDays> {
    ExpiryDays::new(days).context("--expires-in-days")
}

/// How the QR code of a config is shown.
#[derive(Args, Clone)]
pub struct QrArgs {
    /// Do not show the QR code.
    #[arg(long, conflicts_with = "qr_file")]
    no_qr: bool,
    /// Write the QR code as an image instead (mode 0600: it holds the private key); PNG or
    /// SVG by the file's extension.
    #[arg(long, value_name = "FILE.png|FILE.svg")]
    qr_file: Option<PathBuf>,
}

/// Prints (or writes, mode 0600) a config that is shown once. Standard output gets only the
/// config unless it is a terminal, so `heimweg device add X > X.conf` is a file every app
/// imports; the QR code goes to whichever of standard output and standard error is a
/// terminal, and only when it fits there.
fn print_config(enrolled: &Enrollment, output: Option<&Path>, qr: &QrArgs) -> Result<()> {
    let conf = &enrolled.config;
    match output {
        Some(path) => {
            heimweg::files::write_private(path, conf.as_bytes())?;
            eprintln!("wrote {} ({})", path.display(), enrolled.file_name);
        }
        None => {
            println!("# {} — {}", enrolled.file_name, enrolled.device.ipv4);
            print!("{conf}");
        }
    }
    if !enrolled.has_private_key {
        eprintln!("{OWN_KEY_STEPS}");
    } else if let Some(path) = &qr.qr_file {
        write_qr_image(path, conf)?;
    } else if !qr.no_qr {
        show_qr(enrolled, output.is_none())?;
    }
    eprintln!("This is the only time this config is shown; it is not stored.");
    Ok(())
}

/// The QR code on a terminal: standard output if the config went there and it is one, else
/// standard error if that is one; nowhere when neither is (a script, a pipe).
fn show_qr(enrolled: &Enrollment, config_on_stdout: bool) -> Result<()> {
    let conf = &enrolled.config;
    let name = enrolled.device.name.as_str();
    let stem = enrolled.file_name.trim_end_matches(".conf");
    let qr = Qr::encode_smallest(&compact_for_qr(conf))?;
    let stdout_tty = config_on_stdout && std::io::stdout().is_terminal();
    let columns = if stdout_tty {
        terminal_size::terminal_size_of(std::io::stdout())
    } else if std::io::stderr().is_terminal() {
        terminal_size::terminal_size_of(std::io::stderr())
    } else {
        return Ok(());
    }
    .map_or(80, |(w, _)| usize::from(w.0));
    if qr.terminal_columns() > columns {
        eprintln!(
            "The QR code needs {} columns and this terminal has {columns}. Import the config \
             from the file, or get a new config with its code as an image: heimweg device rotate \
             {} --qr-file {}.png (or .svg).",
            qr.terminal_columns(),
            name,
            stem
        );
    } else if stdout_tty {
        print!("{}", qr.to_terminal());
    } else {
        eprint!("{}", qr.to_terminal());
    }
    Ok(())
}

fn write_qr_image(path: &Path, conf: &str) -> Result<()> {
    let qr = Qr::encode(conf)?;
    let image = match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("png") => qr.to_png(8),
        Some(e) if e.eq_ignore_ascii_case("svg") => qr.to_svg().into_bytes(),
        _ => anyhow::bail!("--qr-file: the file name must end in .png or .svg"),
    };
    heimweg::files::write_private(path, &image)?;
    eprintln!("wrote the QR code to {}", path.display());
    Ok(())
}
