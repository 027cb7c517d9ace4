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
    /// The access review: devices not seen for this many days lose their access (0: off;
    /// else 14 to 3650). The panel announces it a week before.
    Review {
        #[arg(long)]
        unseen_days: u32,
    },
    /// One key, one device: a device whose key is used from two places at once is flagged;
    /// with hours above 0 also suspended that long (at most 720).
    SharedKey {
        #[arg(long)]
        suspend_hours: u32,
    },
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
        SettingsCmd::Review { unseen_days } => {
            service.set_review(&caller(), unseen_days).await?;
            if unseen_days == 0 {
                println!("access review off: devices keep their access however long unseen");
            } else {
                println!("devices not seen for {unseen_days} days lose their access");
            }
        }
        SettingsCmd::SharedKey { suspend_hours } => {
            service
                .set_shared_key_suspend(&caller(), suspend_hours)
                .await?;
            match suspend_hours {
                0 => println!("a key used on two devices at once is flagged"),
                h => {
                    println!("a key used on two devices at once is flagged and suspended for {h} h")
                }
            }
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
            println!(
                "review:     {}",
                match s.review_unseen_days {
                    0 => "off".to_string(),
                    d => format!("devices unseen for {d} days lose their access"),
                }
            );
            println!(
                "shared key: flagged{}",
                match s.shared_key_suspend_hours {
                    0 => String::new(),
                    h => format!(", suspended for {h} h"),
                }
            );
        }
    }
    Ok(())
}
