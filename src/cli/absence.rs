//! `heimweg absence`: a user's or a device's access suspended from a date to a date.

use super::state::open_service;
use super::{caller, existing_name, print_listing, Site};
use anyhow::Result;
use clap::{ArgGroup, Subcommand};
use heimweg_control::window::time_zone;
use heimweg_service::{AbsenceOf, AbsenceRequest};
use std::fmt::Write as _;

#[derive(Subcommand)]
pub enum AbsenceCmd {
    /// Suspend a user's devices (or one device) from a date to a date; access comes back by
    /// itself at the end.
    #[command(group(ArgGroup::new("who").required(true).args(["user", "device"])))]
    Add {
        /// The user: all their devices.
        #[arg(long)]
        user: Option<String>,
        /// One device.
        #[arg(long)]
        device: Option<String>,
        /// The first day (2027-01-04), a local time (2027-01-04T08:00) or a moment with an
        /// offset.
        #[arg(long)]
        from: String,
        /// The last day (included), or a local time or moment (excluded).
        #[arg(long)]
        until: String,
        /// The zone the dates and times are read in.
        #[arg(long, default_value = "Europe/Berlin")]
        time_zone: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Absences that have not ended.
    List {
        /// The zone the times are shown in.
        #[arg(long, default_value = "Europe/Berlin")]
        time_zone: String,
    },
    /// End an absence now (one that has not begun is withdrawn).
    End { id: i64 },
}

pub async fn run(site: &Site, cmd: AbsenceCmd) -> Result<()> {
    let service = open_service(site, false).await?;
    match cmd {
        AbsenceCmd::Add {
            user,
            device,
            from,
            until,
            time_zone,
            reason,
        } => {
            let of = match (user, device) {
                (Some(u), _) => AbsenceOf::User(existing_name("user", &u)?),
                (None, Some(d)) => AbsenceOf::Device(existing_name("device", &d)?),
                (None, None) => unreachable!("clap requires --user or --device"),
            };
            let req = AbsenceRequest {
                of,
                from,
                until,
                time_zone,
                reason,
            };
            let a = service.add_absence(&caller(), &req).await?;
            println!(
                "absence {} entered: from {} until {}",
                a.id,
                utc(a.starts_at),
                utc(a.ends_at)
            );
        }
        AbsenceCmd::List { time_zone: zone } => {
            let tz = time_zone(&zone)?;
            let local = |at: i64| {
                jiff::Timestamp::from_second(at).map_or_else(
                    |_| at.to_string(),
                    |t| {
                        t.to_zoned(tz.clone())
                            .strftime("%Y-%m-%d %H:%M %Z")
                            .to_string()
                    },
                )
            };
            let mut out = String::new();
            for a in service.absences(&caller()).await? {
                let who = match &a.of {
                    AbsenceOf::User(n) => format!("user {n}"),
                    AbsenceOf::Device(n) => format!("device {n}"),
                };
                writeln!(
                    out,
                    "{:<6} {:<28} {} .. {}  by {}{}",
                    a.id,
                    who,
                    local(a.starts_at),
                    local(a.ends_at),
                    a.created_by,
                    if a.reason.is_empty() {
                        String::new()
                    } else {
                        format!("  ({})", a.reason)
                    }
                )?;
            }
            print_listing(&out)?;
        }
        AbsenceCmd::End { id } => {
            let a = service.end_absence(&caller(), id).await?;
            println!("absence {} ended; access is back within a second", a.id);
        }
    }
    Ok(())
}

fn utc(at: i64) -> String {
    jiff::Timestamp::from_second(at).map_or_else(|_| at.to_string(), |t| t.to_string())
}
