//! `heimweg group`: groups and their access policy.

use super::state::open_service;
use super::{caller, existing_name, new_name, print_listing, Site};
use anyhow::Result;
use clap::Subcommand;
use heimweg_control::policy::parse_dns;
use heimweg_control::{GroupPolicy, TunnelMode, UsageWindow};
use heimweg_service::GroupPatch;
use ipnet::IpNet;
use std::fmt::Write as _;

#[derive(Subcommand)]
pub enum GroupCmd {
    /// Create a group that may reach the given networks.
    Add {
        name: String,
        /// A network the group's devices may reach (repeatable), e.g. 10.20.0.0/16.
        #[arg(long = "allow", required = true)]
        allow: Vec<IpNet>,
        /// Resolver IPs or search domains for the devices (repeatable).
        #[arg(long)]
        dns: Vec<String>,
        /// Route all of the device's traffic through the tunnel.
        #[arg(long)]
        full_tunnel: bool,
        /// Let the group's devices reach other devices (of groups that allow it too).
        #[arg(long)]
        peer_to_peer: bool,
    },
    List,
    /// Change a group's access policy; its devices follow within a second.
    Set {
        name: String,
        /// Replaces the networks the group may reach (repeatable).
        #[arg(long = "allow")]
        allow: Vec<IpNet>,
        /// Replaces the resolvers and search domains (repeatable).
        #[arg(long)]
        dns: Vec<String>,
        /// true: all traffic through the tunnel; false: only the allowed networks.
        #[arg(long)]
        full_tunnel: Option<bool>,
        /// true: the group's devices may reach other devices; false: they may not.
        #[arg(long)]
        peer_to_peer: Option<bool>,
        /// When the group's devices may pass traffic, weekly, in local time: "Mon-Fri
        /// 06:00-20:00; Sat 08:00-12:00" (replaces the window; German day names read too).
        #[arg(long, conflicts_with = "no_window")]
        window: Option<String>,
        /// The window's time zone (an IANA name).
        #[arg(long, requires = "window", default_value = "Europe/Berlin")]
        time_zone: String,
        /// A date the window stays closed, e.g. a public holiday (repeatable): 2026-12-24.
        #[arg(long = "closed", requires = "window")]
        closed: Vec<String>,
        /// Remove the window: the devices may connect at any time.
        #[arg(long)]
        no_window: bool,
        /// Sign in to connect: the devices pass traffic only for this many hours (1 to 24)
        /// after their owner signs in with a second factor on the staff page; 0 turns it off.
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=24))]
        sign_in_hours: Option<u8>,
    },
}

pub async fn run(site: &Site, cmd: GroupCmd) -> Result<()> {
    let service = open_service(site, false).await?;
    match cmd {
        GroupCmd::Add {
            name,
            allow,
            dns,
            full_tunnel,
            peer_to_peer,
        } => {
            let name = new_name("group name", &name)?;
            let policy =
                GroupPolicy::new(allow, TunnelMode::from_full(full_tunnel), parse_dns(&dns)?)?
                    .peer_to_peer(peer_to_peer);
            let g = service.create_group(&caller(), &name, &policy).await?;
            println!("created group {}", g.name);
        }
        GroupCmd::Set {
            name,
            allow,
            dns,
            full_tunnel,
            peer_to_peer,
            window,
            time_zone,
            closed,
            no_window,
            sign_in_hours,
        } => {
            // A flag not given leaves that part of the policy as it is.
            let window = match (window, no_window) {
                (Some(w), _) => Some(Some(UsageWindow::new(&w, &time_zone, &closed.join(","))?)),
                (None, true) => Some(None),
                (None, false) => None,
            };
            let patch = GroupPatch {
                networks: (!allow.is_empty()).then_some(allow),
                tunnel: full_tunnel.map(TunnelMode::from_full),
                dns: (!dns.is_empty()).then(|| parse_dns(&dns)).transpose()?,
                peer_to_peer,
                window,
                sign_in_hours: sign_in_hours.map(|h| (h > 0).then_some(h)),
            };
            let name = existing_name("group", &name)?;
            let g = service.update_group(&caller(), &name, patch).await?;
            println!(
                "changed group {}; its devices follow within a second",
                g.name
            );
        }
        GroupCmd::List => print_listing(&listing(&service.groups(&caller()).await?)?)?,
    }
    Ok(())
}

/// One line per group: its policy and window.
fn listing(groups: &[heimweg_service::Group]) -> Result<String> {
    let mut out = String::new();
    for g in groups {
        let policy = &g.policy;
        let nets: Vec<String> = policy.networks().iter().map(|n| n.to_string()).collect();
        let dns: Vec<String> = policy.dns().iter().map(|d| d.to_string()).collect();
        writeln!(
            out,
            "{:<16} {} {}{}{}{}{}",
            g.name.as_str(),
            if policy.tunnel().is_full() {
                "full"
            } else {
                "split"
            },
            nets.join(","),
            if dns.is_empty() {
                String::new()
            } else {
                format!(" dns={}", dns.join(","))
            },
            if policy.allows_peer_to_peer() {
                " peer-to-peer"
            } else {
                ""
            },
            g.window
                .as_ref()
                .map(|w| format!(" window={w}"))
                .unwrap_or_default(),
            g.sign_in_hours
                .map(|h| format!(" sign-in={h}h"))
                .unwrap_or_default()
        )?;
    }
    Ok(out)
}
