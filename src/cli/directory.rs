//! `heimweg directory`: run the directory sync now and list its runs; the directory's
//! settings, which `serve` reads too (deploy/heimweg.env documents them).

use super::state::open_service;
use super::{caller, print_listing, Site};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use heimweg_control::directory::{GroupMap, Plan, UserChange};
use heimweg_service::{
    DirectoryKind, DirectoryPreview, DirectoryRun, DirectorySettings, DirectorySignIn,
    DisabledRule, LdapSecurity, Service,
};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// The LDAP directory or Active Directory whose entries decide who is a user. The reading
/// account's password only from the settings file (HEIMWEG_LDAP_BIND_PASSWORD), never on a
/// command line.
#[derive(Args)]
pub struct DirectoryArgs {
    /// ldap://dc1.stadt.example (StartTLS, required) or ldaps://dc1.stadt.example. Unset,
    /// heimweg syncs no directory.
    #[arg(long, env = "HEIMWEG_LDAP_URL")]
    ldap_url: Option<String>,
    /// ad (Active Directory, Samba) or ldap (OpenLDAP and the like): the defaults for the
    /// filter and the attributes.
    #[arg(long, env = "HEIMWEG_LDAP_KIND", default_value = "ad")]
    ldap_kind: DirectoryKind,
    /// Where the users are, e.g. OU=Mitarbeiter,DC=stadt,DC=example (searched with all
    /// that is below it).
    #[arg(long, env = "HEIMWEG_LDAP_BASE")]
    ldap_base: Option<String>,
    /// Which directory group grants which heimweg group, the first a user is a member of
    /// deciding: staff=CN=VPN-Nutzer,OU=Gruppen,DC=stadt,DC=example;… (';' apart).
    #[arg(long, env = "HEIMWEG_LDAP_GROUPS")]
    ldap_groups: Option<String>,
    /// The account heimweg reads with (its password: HEIMWEG_LDAP_BIND_PASSWORD).
    #[arg(long, env = "HEIMWEG_LDAP_BIND_DN")]
    ldap_bind_dn: Option<String>,
    /// PEM file with the CA certificate(s) of the directory's certificate (default: the
    /// system's CAs).
    #[arg(long, env = "HEIMWEG_LDAP_CA_FILE")]
    ldap_ca_file: Option<PathBuf>,
    /// Which entries are people (default for ad: (&(objectCategory=person)(objectClass=user)),
    /// for ldap: (objectClass=inetOrgPerson)).
    #[arg(long, env = "HEIMWEG_LDAP_FILTER")]
    ldap_filter: Option<String>,
    /// The login, which becomes the user's name (default sAMAccountName or uid).
    #[arg(long, env = "HEIMWEG_LDAP_LOGIN_ATTRIBUTE")]
    ldap_login_attribute: Option<String>,
    /// The entry's stable id (default objectGUID or entryUUID).
    #[arg(long, env = "HEIMWEG_LDAP_ID_ATTRIBUTE")]
    ldap_id_attribute: Option<String>,
    /// A disabled account: ATTRIBUTE or ATTRIBUTE=VALUE (default for ad: bit 2 of
    /// userAccountControl; for ldap: pwdAccountLockedTime=000001010000Z).
    #[arg(long, env = "HEIMWEG_LDAP_DISABLED")]
    ldap_disabled: Option<String>,
    /// How often the gateway syncs: 15m, 1h, 90s (at least 10s).
    #[arg(long, env = "HEIMWEG_LDAP_INTERVAL", default_value = "15m", value_parser = parse_interval)]
    ldap_interval: Duration,
    /// A run that would disable more than this share of the directory's users (per cent)
    /// is refused and changes nothing; three may always go.
    #[arg(long, env = "HEIMWEG_LDAP_MAX_DISABLE_PERCENT", default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
    ldap_max_disable_percent: u8,
    /// Enable a user the directory disabled when they are back (their revoked devices stay
    /// revoked).
    #[arg(long, env = "HEIMWEG_LDAP_REENABLE")]
    ldap_reenable: bool,
    /// Plain-text LDAP, allowed to a directory on this machine only.
    #[arg(long, env = "HEIMWEG_LDAP_PLAINTEXT")]
    ldap_plaintext: bool,
    /// Staff sign in on their own page (/my) with their directory password and a second
    /// factor (TOTP) heimweg keeps, set up at their first sign-in: for a city without an
    /// identity provider (with one, HEIMWEG_OIDC_ISSUER, staff sign in there).
    #[arg(long, env = "HEIMWEG_DIRECTORY_SIGN_IN")]
    directory_sign_in: bool,
    /// The most devices a staff member who signs in with the directory password may enroll.
    #[arg(long, env = "HEIMWEG_DIRECTORY_DEVICE_LIMIT", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    directory_device_limit: u32,
}

fn parse_interval(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is no interval: a number and s, m or h (15m)"))?;
    let secs = match unit.trim() {
        "s" => n,
        "" | "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => {
            return Err(format!(
                "{s:?} is no interval: a number and s, m or h (15m)"
            ))
        }
    };
    if secs < 10 {
        return Err(format!("{s:?} is too short: at least 10s"));
    }
    Ok(Duration::from_secs(secs))
}

impl DirectoryArgs {
    /// The directory's settings, if one is set.
    pub fn settings(&self) -> Result<Option<DirectorySettings>> {
        let Some(url) = &self.ldap_url else {
            return Ok(None);
        };
        let base = self
            .ldap_base
            .as_deref()
            .context("HEIMWEG_LDAP_URL is set, so HEIMWEG_LDAP_BASE must be too")?;
        let groups = self.ldap_groups.as_deref().context(
            "HEIMWEG_LDAP_URL is set, so HEIMWEG_LDAP_GROUPS must be too: which directory group \
             grants which heimweg group",
        )?;
        let groups = GroupMap::parse(groups).context("HEIMWEG_LDAP_GROUPS")?;
        let mut s = DirectorySettings::new(self.ldap_kind, url, base, groups)?;
        if self.ldap_plaintext {
            if s.security == LdapSecurity::Tls {
                bail!("HEIMWEG_LDAP_PLAINTEXT is set, but HEIMWEG_LDAP_URL asks for ldaps://");
            }
            s.security = LdapSecurity::None;
        }
        let password = std::env::var("HEIMWEG_LDAP_BIND_PASSWORD").ok();
        s.bind = match (&self.ldap_bind_dn, password) {
            (Some(dn), Some(p)) => Some((dn.clone(), p)),
            (Some(_), None) => bail!(
                "HEIMWEG_LDAP_BIND_DN is set but HEIMWEG_LDAP_BIND_PASSWORD is not (put it in \
                 the settings file)"
            ),
            (None, _) => None,
        };
        s.ca_pem = self
            .ldap_ca_file
            .as_ref()
            .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
            .transpose()?;
        if let Some(f) = &self.ldap_filter {
            s.filter.clone_from(f);
        }
        if let Some(a) = &self.ldap_login_attribute {
            s.login_attribute.clone_from(a);
        }
        if let Some(a) = &self.ldap_id_attribute {
            s.id_attribute.clone_from(a);
        }
        if let Some(d) = &self.ldap_disabled {
            s.disabled = DisabledRule::parse(d);
        }
        s.interval = self.ldap_interval;
        s.policy.max_disable_percent = self.ldap_max_disable_percent;
        s.policy.reenable = self.ldap_reenable;
        Ok(Some(s))
    }

    /// `service`, connected to the directory if one is set, and signing staff in with it if
    /// asked to.
    pub fn apply(&self, service: Service) -> Result<Service> {
        let Some(settings) = self.settings()? else {
            if self.directory_sign_in {
                bail!("HEIMWEG_DIRECTORY_SIGN_IN is set, so HEIMWEG_LDAP_URL must be too");
            }
            return Ok(service);
        };
        let service = service.with_directory(settings);
        Ok(if self.directory_sign_in {
            service.with_directory_sign_in(DirectorySignIn {
                device_limit: self.directory_device_limit,
            })
        } else {
            service
        })
    }

    /// Whether staff are to sign in with the directory password.
    pub fn signs_staff_in(&self) -> bool {
        self.directory_sign_in
    }
}

#[derive(Subcommand)]
pub enum DirectoryCmd {
    /// Read the directory now and apply it (as the gateway does every interval).
    Sync {
        /// Only say what the run would create, change and disable; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        directory: Box<DirectoryArgs>,
    },
    /// The latest runs: when, at whose request, what they changed or why not.
    Runs {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

pub async fn run(site: &Site, cmd: DirectoryCmd) -> Result<()> {
    match cmd {
        DirectoryCmd::Sync { dry_run, directory } => {
            let service = directory.apply(open_service(site, false).await?)?;
            if service.directory().is_none() {
                bail!("no directory is set: HEIMWEG_LDAP_URL and the rest (deploy/README.md)");
            }
            if dry_run {
                return match service.preview_directory(&caller()).await? {
                    DirectoryPreview::Plan(plan) => print_listing(&describe_plan(&plan)),
                    DirectoryPreview::Refused(why) => bail!("a run would be {why}"),
                    DirectoryPreview::Failed(why) => bail!("a run would fail: {why}"),
                };
            }
            let run = service.sync_directory(&caller()).await?;
            print_listing(&describe(&run))?;
            if run.outcome != "ok" {
                bail!("the directory sync {}: nothing was changed", run.outcome);
            }
        }
        DirectoryCmd::Runs { limit } => {
            let runs = open_service(site, false)
                .await?
                .directory_runs(&caller(), limit)
                .await?;
            if runs.is_empty() {
                println!("no directory sync has run yet");
            }
            let text: String = runs.iter().map(describe).collect();
            print_listing(&text)?;
        }
    }
    Ok(())
}

/// Names listed per kind of change in a dry run; the counts are complete.
const NAMES_LISTED: usize = 50;

fn describe_plan(plan: &Plan) -> String {
    let mut out = format!(
        "dry run, nothing changed: {} entries, {} users; a run would create {}, change {}, \
         disable {}, enable {}; {} left out\n",
        plan.entries,
        plan.eligible,
        plan.create.len(),
        plan.change.len(),
        plan.disable.len(),
        plan.enable.len(),
        plan.skipped.len()
    );
    let mut list = |what: &str, lines: Vec<String>| {
        let n = lines.len();
        for line in lines.into_iter().take(NAMES_LISTED) {
            let _ = writeln!(out, "  {what} {line}");
        }
        if n > NAMES_LISTED {
            let _ = writeln!(out, "  … and {} more to {what}", n - NAMES_LISTED);
        }
    };
    list(
        "create",
        plan.create
            .iter()
            .map(|u| format!("{} (group {})", u.name, u.group))
            .collect(),
    );
    list("change", plan.change.iter().map(describe_change).collect());
    list(
        "disable",
        plan.disable.iter().map(|(_, n)| n.to_string()).collect(),
    );
    list(
        "enable",
        plan.enable.iter().map(|(_, n)| n.to_string()).collect(),
    );
    list("leave out", plan.skipped.clone());
    out
}

fn describe_change(c: &UserChange) -> String {
    let mut parts = Vec::new();
    if c.link.is_some() {
        parts.push("linked to the directory".to_string());
    }
    if let Some(n) = &c.rename {
        parts.push(format!("renamed {n}"));
    }
    if let Some(e) = &c.email {
        parts.push(format!(
            "e-mail {}",
            e.as_ref().map_or("none", |e| e.as_str())
        ));
    }
    if let Some(g) = &c.group {
        parts.push(format!("group {g}"));
    }
    format!("{}: {}", c.name, parts.join(", "))
}

fn describe(run: &DirectoryRun) -> String {
    let when = heimweg_control::invitation::deadline(run.started_at);
    let mut out = format!(
        "{when} {} (by {}): {} entries, {} created, {} changed, {} disabled, {} enabled, {} left out\n",
        run.outcome,
        run.requested_by,
        run.entries,
        run.created,
        run.changed,
        run.disabled,
        run.enabled,
        run.skipped
    );
    if let Some(m) = &run.message {
        for line in m.lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}
