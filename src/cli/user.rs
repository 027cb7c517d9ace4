//! `heimweg user`: staff who own devices, and disabling a leaver.

use super::state::open_service;
use super::{caller, existing_name, new_name, print_listing, Site};
use anyhow::{Context, Result};
use clap::Subcommand;
use heimweg_control::{Email, LinkHours};
use heimweg_service::{ImportOptions, ImportReport, PersonOutcome};
use std::fmt::Write as _;
use std::path::PathBuf;

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
    /// Import staff and their devices from a CSV file (columns user, email, group, device;
    /// `;` or `,`; UTF-8, as Excel's "CSV UTF-8" writes it). Creates the users who are new and
    /// a one-time enrollment link for each new device; the same file again changes nothing.
    Import(ImportArgs),
}

#[derive(clap::Args)]
pub struct ImportArgs {
    file: PathBuf,
    /// Only say what would change, and which rows are refused and why.
    #[arg(long)]
    dry_run: bool,
    /// Hours the links stay open (1 to 720).
    #[arg(long, default_value_t = 168)]
    link_hours: u32,
    /// Write the new links (user, email, device, group, link, expires) to this CSV file,
    /// mode 0600: the only copy of the links. Required unless --dry-run.
    #[arg(long, required_unless_present = "dry_run")]
    invitations: Option<PathBuf>,
    /// Also write the printable instruction sheets (HTML, one A4 page per device, German
    /// and English, with the link's QR code; mode 0600: they hold the links).
    #[arg(long, requires = "helpdesk")]
    sheets: Option<PathBuf>,
    /// Whom staff call when it does not work, printed on every sheet.
    #[arg(long)]
    helpdesk: Option<String>,
    /// Where the links point: the panel's public address (as for serve).
    #[arg(long, env = "HEIMWEG_PUBLIC_URL", value_parser = heimweg_api::panel::public_url)]
    public_url: Option<String>,
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
        UserCmd::Import(args) => import(&service, args).await?,
    }
    Ok(())
}

/// Imports a people list, prints what happened and writes the invitations and sheets.
async fn import(service: &heimweg_service::Service, args: ImportArgs) -> Result<()> {
    let ImportArgs {
        file,
        dry_run,
        link_hours,
        invitations,
        sheets,
        helpdesk,
        public_url,
    } = args;
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let options = ImportOptions {
        dry_run,
        link_hours: LinkHours::new(link_hours).context("--link-hours")?,
    };
    let report = service.import_people(&caller(), &bytes, options).await?;
    print_listing(&import_summary(&report)?)?;
    if report.invitations.is_empty() {
        return Ok(());
    }
    let base = public_url.unwrap_or_else(|| {
        eprintln!(
            "HEIMWEG_PUBLIC_URL is not set: the links are written as paths; put the \
             panel's address in front of them"
        );
        String::new()
    });
    if let Some(path) = invitations {
        heimweg::files::write_private(&path, report.invitations_csv(&base).as_bytes())?;
        eprintln!(
            "wrote {} links to {}: the only copy of them.",
            report.invitations.len(),
            path.display()
        );
    }
    if let Some(path) = sheets {
        let html = heimweg_api::sheets::for_invitations(
            &report.invitations,
            &base,
            helpdesk.as_deref().unwrap_or_default(),
        );
        heimweg::files::write_private(&path, html.as_bytes())?;
        eprintln!(
            "wrote the instruction sheets to {}: open it in a browser and print it (a \
             page per device).",
            path.display()
        );
    }
    Ok(())
}

/// Every refused row with its reason, then the counts.
fn import_summary(report: &ImportReport) -> Result<String> {
    let mut out = String::new();
    for r in &report.rows {
        if let PersonOutcome::Refused(why) = &r.outcome {
            writeln!(out, "line {}: refused: {why}", r.line)?;
        }
    }
    let c = report.counts();
    writeln!(
        out,
        "{}{} users created, {} devices invited, {} rows unchanged, {} rows refused",
        if report.dry_run {
            "dry run, nothing changed: would be "
        } else {
            ""
        },
        c.users_created,
        c.invited,
        c.unchanged,
        c.refused
    )?;
    Ok(out)
}
