//! `heimweg user`: staff who own devices, and disabling a leaver.

use super::state::open_service;
use super::{caller, existing_name, new_name, print_listing, Site};
use anyhow::{Context, Result};
use clap::Subcommand;
use heimweg_control::Email;
use std::fmt::Write as _;

#[derive(Subcommand)]
pub enum UserCmd {
    Add {
        name: String,
        #[arg(long)]
        email: Option<String>,
    },
    List {
        #[arg(long)]
        search: Option<String>,
    },
    /// Disable a user who left: every device of theirs is revoked at once.
    Disable { name: String },
}

pub async fn run(site: &Site, cmd: UserCmd) -> Result<()> {
    let service = open_service(site, false).await?;
    match cmd {
        UserCmd::Add { name, email } => {
            let user = new_name("user name", &name)?;
            let email = email
                .map(|e| Email::new(&e).context("--email"))
                .transpose()?;
            service
                .create_user(&caller(), &user, email.as_ref())
                .await?;
            println!("created user {name}");
        }
        UserCmd::List { search } => {
            let page = service.users(&caller(), search.as_deref(), 500, 0).await?;
            let mut out = format!("{:<24} {:<32} {:>8} state\n", "name", "e-mail", "devices");
            for u in &page.items {
                writeln!(
                    out,
                    "{:<24} {:<32} {:>8} {}",
                    u.name.as_str(),
                    u.email.as_ref().map_or("-", Email::as_str),
                    u.active_devices,
                    if u.disabled_at.is_some() {
                        "disabled"
                    } else {
                        "enabled"
                    }
                )?;
            }
            writeln!(out, "({} of {} shown)", page.items.len(), page.total)?;
            print_listing(&out)?;
        }
        UserCmd::Disable { name } => {
            let user = existing_name("user", &name)?;
            let n = service.disable_user(&caller(), &user).await?;
            println!("disabled {name}; {n} devices revoked");
        }
    }
    Ok(())
}
