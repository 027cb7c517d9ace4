//! `heimweg token`: bearer tokens for the JSON API.

use super::state::open_service;
use super::{caller, existing_name, new_name, print_listing, Site};
use anyhow::Result;
use clap::Subcommand;
use heimweg_control::Scopes;
use std::fmt::Write as _;

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create a bearer token for the JSON API; it is printed once and only its hash is stored.
    Create {
        name: String,
        /// A scope the token holds (repeatable): devices:read|write, groups:read|write,
        /// users:read|write, tokens:read|write, audit:read.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// List tokens (never their secrets).
    List,
    Revoke {
        name: String,
    },
}

pub async fn run(site: &Site, cmd: TokenCmd) -> Result<()> {
    let service = open_service(site, false).await?;
    match cmd {
        TokenCmd::Create { name, scopes } => {
            let name = new_name("token name", &name)?;
            let scopes = Scopes::parse(&scopes)?;
            let minted = service.create_token(&caller(), &name, &scopes).await?;
            println!("{}", minted.secret);
            eprintln!("This is the only time the token is shown; only its hash is stored.");
        }
        TokenCmd::List => {
            let mut out = String::new();
            for t in service.tokens(&caller()).await? {
                writeln!(
                    out,
                    "{:<24} {:<8} {}",
                    t.name.as_str(),
                    if t.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "live"
                    },
                    t.scopes.to_stored()
                )?;
            }
            print_listing(&out)?;
        }
        TokenCmd::Revoke { name } => {
            let token = existing_name("token", &name)?;
            let minted = service.revoke_token(&caller(), &token).await?;
            println!("revoked token {name} and {minted} tokens minted from it");
        }
    }
    Ok(())
}
