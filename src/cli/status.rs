//! `heimweg status`: the running gateway over its UAPI socket, with device names from the
//! store.

use super::state::open_service;
use super::Site;
use anyhow::Result;
use clap::Args;
use heimweg::gateway;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Args)]
pub struct StatusArgs {
    #[arg(long, env = "HEIMWEG_INTERFACE", default_value = "heimweg0")]
    interface: String,
    #[arg(long, env = "HEIMWEG_UAPI_DIR", default_value = gateway::UAPI_DIR)]
    uapi_dir: PathBuf,
    /// How many of the busiest devices to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

pub async fn run(site: &Site, args: StatusArgs) -> Result<()> {
    let socket = args.uapi_dir.join(format!("{}.sock", args.interface));
    let report = tokio::task::spawn_blocking(move || heimweg::status::query(&socket)).await??;
    // Names come from the store; without it (a plain `heimweg up` gateway) keys are shown.
    // `--top 0` (a health check) needs no names and does not touch the database.
    let mut names = HashMap::new();
    let service = if args.top > 0 {
        open_service(site, false).await.ok()
    } else {
        None
    };
    if let Some(service) = service {
        // The reconciler's own key → device directory; UAPI reports keys in hex.
        for (key, meta) in service.peer_directory().await? {
            names.insert(hex::encode(key), format!("{} ({})", meta.name, meta.group));
        }
    }
    print!(
        "{}",
        heimweg::status::render(&args.interface, &report, &names, args.top)
    );
    Ok(())
}
