//! `heimweg user`: staff who own devices, and disabling a leaver.

use super::state::open_service;
use super::{caller, existing_name, new_name, print_listing, Site};
use anyhow::{Context, Result};
use clap::Subcommand;
use heimweg_control::{Email, LinkHours, LinkStatus};
use heimweg_service::{ImportOptions, ImportReport, MailState, PersonOutcome};
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
    /// End a user's sign-in to connect now: their devices in groups that require it are cut
    /// off within a second on every gateway.
    EndActivation { name: String },
    /// Forget a staff member's second factor for the staff page and any lock after wrong
    /// codes (a lost phone): their next sign-in with the directory password sets up a new one.
    ResetSecondFactor { name: String },
    /// Who is signed in to connect now, and until when (UTC).
    Activations,
    /// Import staff and their devices from a CSV file (columns user, email, group, device;
    /// `;` or `,`; UTF-8, as Excel's "CSV UTF-8" writes it). Creates the users who are new and
    /// a one-time enrollment link for each new device; the same file again changes nothing.
    Import(ImportArgs),
    /// Mail a reminder with a new link to everyone whose invitation is unused (of one group,
    /// or of all): the link of the earlier mail or sheet stops working. Sent by `heimweg
    /// serve`'s mail queue (HEIMWEG_SMTP_HOST).
    Remind {
        #[arg(long)]
        group: Option<String>,
        /// Hours the links stay open from now (1 to 720).
        #[arg(long, default_value_t = 168)]
        link_hours: u32,
    },
    /// Invitations, newest first: mail sent or failed, link opened, device set up, connected.
    Invitations {
        #[arg(long, default_value_t = 500)]
        limit: u32,
    },
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
    /// mode 0600: the only copy of the links (with --mail, of those for people without an
    /// address). Required unless --dry-run.
    #[arg(long, required_unless_present = "dry_run")]
    invitations: Option<PathBuf>,
    /// Mail each invitation whose person has an address (`heimweg serve` sends them through
    /// its mail queue); only the others go to --invitations and --sheets.
    #[arg(long)]
    mail: bool,
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
        UserCmd::EndActivation { name } => {
            let user = existing_name("user", &name)?;
            service.end_activation(&caller(), &user).await?;
            println!("ended {user}'s sign-in to connect; their devices are cut off");
        }
        UserCmd::ResetSecondFactor { name } => {
            let user = existing_name("user", &name)?;
            service.reset_staff_factor(&caller(), &user).await?;
            println!("reset {user}'s second factor; their next sign-in sets up a new one");
        }
        UserCmd::Activations => {
            let mut out = String::new();
            for a in service.activations(&caller()).await? {
                let until = jiff::Timestamp::from_second(a.ends_at)
                    .map_or_else(|_| a.ends_at.to_string(), |t| t.to_string());
                out.push_str(&format!("{:<24} until {until}\n", a.user.as_str()));
            }
            super::print_listing(&out)?;
        }
        UserCmd::Import(args) => import(&service, args).await?,
        UserCmd::Remind { group, link_hours } => {
            let group = group.map(|g| existing_name("group", &g)).transpose()?;
            let hours = LinkHours::new(link_hours).context("--link-hours")?;
            let r = service.remind(&caller(), group.as_ref(), hours).await?;
            println!(
                "{} reminders queued; {} unused invitations have no mail address (remind them \
                 another way); {} have a mail still on its way",
                r.queued, r.without_address, r.pending
            );
        }
        UserCmd::Invitations { limit } => {
            let list = service.invitations(&caller(), limit).await?;
            print_listing(&invitation_listing(&list, service.now())?)?;
        }
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
        mail,
    } = args;
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let options = ImportOptions {
        dry_run,
        link_hours: LinkHours::new(link_hours).context("--link-hours")?,
        mail,
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
    if report.mailed > 0 {
        writeln!(
            out,
            "{} invitations {} mail (heimweg serve sends them)",
            report.mailed,
            if report.dry_run {
                "would go by"
            } else {
                "queued for"
            }
        )?;
    }
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

/// One line per invitation: who, which device, the mail, how far they got.
fn invitation_listing(list: &[heimweg_service::InvitationStatus], now: i64) -> Result<String> {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut out = format!(
        "{:<24} {:<20} {:<10} {:<7} {:<7} {:<9} note\n",
        "user", "device", "mail", "opened", "set up", "connected"
    );
    for i in list {
        let link = i.link_status(now);
        let note = match (&i.mail, link) {
            (Some(m), _) if m.state != MailState::Sent && m.last_error.is_some() => {
                m.last_error.clone().unwrap_or_default()
            }
            (_, LinkStatus::Expired) => "link expired".to_string(),
            (_, LinkStatus::Revoked) => "link withdrawn".to_string(),
            _ => String::new(),
        };
        writeln!(
            out,
            "{:<24} {:<20} {:<10} {:<7} {:<7} {:<9} {note}",
            i.user.as_ref().map_or("-", |u| u.as_str()),
            i.device.as_str(),
            i.mail.as_ref().map_or("-", |m| m.state.as_str()),
            yes(i.opened_at.is_some()),
            yes(i.used_at.is_some()),
            yes(i.last_handshake_at.is_some()),
        )?;
    }
    Ok(out)
}
