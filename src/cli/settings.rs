//! `heimweg settings`: the gateway-wide settings.

use super::state::{gateway_public_key, open_service};
use super::{caller, Site};
use anyhow::Result;
use clap::Subcommand;
use heimweg_control::Endpoint;

#[derive(Subcommand)]
pub enum SettingsCmd {
    /// Set the host:port clients dial, e.g. vpn.stadt.example:51820.
    Endpoint { endpoint: String },
    /// Show the settings and the gateway's public key.
    Show,
}

pub async fn run(site: &Site, cmd: SettingsCmd) -> Result<()> {
    let service = open_service(site, false).await?;
    match cmd {
        SettingsCmd::Endpoint { endpoint } => {
            let endpoint: Endpoint = endpoint.parse()?;
            service.set_endpoint(&caller(), endpoint.clone()).await?;
            println!("clients will dial {endpoint}");
        }
        SettingsCmd::Show => {
            let s = service.settings().await?;
            let key = gateway_public_key(&site.state_dir)?;
            println!(
                "endpoint:   {}",
                s.endpoint
                    .map_or("(not set)".to_string(), |e| e.to_string())
            );
            println!("public key: {key}");
            println!("pools:      {} {}", s.pool_v4, s.pool_v6);
            println!("client MTU: {}", s.mtu);
        }
    }
    Ok(())
}
