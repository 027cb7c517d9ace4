//! `heimweg request`: access requests staff filed through the public form.

use super::state::open_service;
use super::{caller, existing_name, print_listing, Site};
use anyhow::{Context, Result};
use clap::Subcommand;
use heimweg_control::{LinkHours, RequestStatus};
use std::fmt::Write as _;

#[derive(Subcommand)]
pub enum RequestCmd {
    /// List requests (pending ones by default).
    List {
        #[arg(long, default_value = "pending")]
        status: String,
    },
    /// Approve: the requester's status page then offers the enrollment.
    Approve {
        id: i64,
        #[arg(long, default_value = "default")]
        group: String,
        /// Hours the requester has to use it.
        #[arg(long, default_value_t = 72)]
        expires_in_hours: u32,
    },
    Reject {
        id: i64,
    },
}

pub async fn run(site: &Site, cmd: RequestCmd) -> Result<()> {
    let service = open_service(site, false).await?;
    match cmd {
        RequestCmd::List { status } => {
            // "all" is no state a request is in: it lifts the filter.
            let status = (status != "all")
                .then(|| status.parse::<RequestStatus>())
                .transpose()
                .context("--status (or all)")?;
            let mut out = String::new();
            for r in service.requests(&caller(), status, 500).await? {
                writeln!(
                    out,
                    "{:>5} {:<9} {:<24} {:<24} {} {}",
                    r.id,
                    r.status.as_str(),
                    r.device_name.as_str(),
                    r.requester.as_str(),
                    r.contact,
                    r.reason
                )?;
            }
            print_listing(&out)?;
        }
        RequestCmd::Approve {
            id,
            group,
            expires_in_hours,
        } => {
            let group = existing_name("--group", &group)?;
            let lifetime = LinkHours::new(expires_in_hours).context("--expires-in-hours")?;
            let r = service
                .approve_request(&caller(), id, Some(&group), lifetime)
                .await?;
            println!(
                "approved {} for {}; their status page now offers the setup",
                r.device_name, r.requester
            );
        }
        RequestCmd::Reject { id } => {
            let r = service.reject_request(&caller(), id).await?;
            println!("rejected {} for {}", r.device_name, r.requester);
        }
    }
    Ok(())
}
