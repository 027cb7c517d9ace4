//! `heimweg admin`: accounts of the web panel. The first one can only be made here.

use super::state::open_service;
use super::{caller, existing_name, new_name, print_listing, Site};
use anyhow::{Context, Result};
use clap::Subcommand;
use heimweg_control::Role;
use heimweg_service::Service;
use std::fmt::Write as _;

#[derive(Subcommand)]
pub enum AdminCmd {
    /// Create a panel account. Prints a random first password unless one comes on stdin.
    Add {
        name: String,
        /// admin (everything) or helpdesk (read-only).
        #[arg(long, default_value = "admin")]
        role: String,
        /// Read the password from the first line of stdin instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List panel accounts.
    List,
    /// Set a new password (printed, or read with --password-stdin); ends the account's sessions.
    ResetPassword {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Turn off the account's second factor (a lost phone and no recovery codes left).
    ResetTotp { name: String },
    /// Lift a lockout after failed logins.
    Unlock { name: String },
    /// Disable an account; its sessions end at once.
    Disable { name: String },
}

pub async fn run(site: &Site, cmd: AdminCmd) -> Result<()> {
    let service = open_service(site, false).await?;
    match cmd {
        AdminCmd::Add {
            name,
            role,
            password_stdin,
        } => {
            let account = new_name("account name", &name)?;
            let role: Role = role.parse()?;
            let password = password_from_stdin(password_stdin)?;
            let (_, generated) = service
                .create_admin(&caller(), &account, role, password)
                .await?;
            match generated {
                Some(password) => {
                    println!("{password}");
                    eprintln!(
                        "Created {name} ({}). This is the only time the password is shown; log \
                         in to the panel and change it under your account, then set up a second \
                         factor.",
                        role.as_str()
                    );
                }
                None => eprintln!("Created {name} ({}).", role.as_str()),
            }
        }
        AdminCmd::List => list(&service).await?,
        AdminCmd::ResetPassword {
            name,
            password_stdin,
        } => {
            let account = existing_name("account", &name)?;
            let password = password_from_stdin(password_stdin)?;
            let generated = service
                .reset_admin_password(&caller(), &account, password)
                .await?;
            if let Some(password) = generated {
                println!("{password}");
                eprintln!("The new password is shown only now; {name}'s sessions have ended.");
            }
        }
        AdminCmd::ResetTotp { name } => {
            let account = existing_name("account", &name)?;
            service.reset_admin_totp(&caller(), &account).await?;
            eprintln!(
                "{name} logs in with the password alone until they set up a new second factor."
            );
        }
        AdminCmd::Unlock { name } => {
            let account = existing_name("account", &name)?;
            service.unlock_admin(&caller(), &account).await?;
        }
        AdminCmd::Disable { name } => {
            let account = existing_name("account", &name)?;
            service.disable_admin(&caller(), &account).await?;
        }
    }
    Ok(())
}

async fn list(service: &Service) -> Result<()> {
    let now = service.now();
    let mut out = String::new();
    for a in service.admins(&caller()).await? {
        let state = if a.disabled_at.is_some() {
            "disabled"
        } else if a.locked_until.is_some_and(|u| u > now) {
            "locked"
        } else {
            "active"
        };
        writeln!(
            out,
            "{:<24} {:<9} {:<9} totp={}",
            a.name.as_str(),
            a.role.as_str(),
            state,
            if a.totp_sealed.is_some() { "on" } else { "off" }
        )?;
    }
    print_listing(&out)
}

/// The first line of stdin when asked to read the password there; `None` lets the service
/// make a random one (which it checks against the password rules either way).
fn password_from_stdin(from_stdin: bool) -> Result<Option<String>> {
    if !from_stdin {
        return Ok(None);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()))
}
