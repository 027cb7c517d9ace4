//! The command line: one module per command group. Each command parses its arguments into the
//! domain's types, makes one call to the service as the local operator, and prints the answer;
//! the rules (who may, what is valid, what is written) live in `heimweg-service`.

mod absence;
mod admin;
mod backup;
mod device;
mod directory;
mod group;
mod identity;
mod request;
mod serve;
mod settings;
mod state;
mod status;
mod token;
mod user;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use heimweg::gateway;
use heimweg_control::Name;
use heimweg_service::Caller;
use std::future::Future;
use std::path::PathBuf;

pub use state::load_env_file;

#[derive(Parser)]
#[command(
    name = "heimweg",
    version,
    about = "WireGuard remote-access concentrator"
)]
pub struct Cli {
    /// Directory for the gateway's state: the database and the gateway key.
    #[arg(
        long,
        global = true,
        env = "HEIMWEG_STATE_DIR",
        default_value = "/var/lib/heimweg"
    )]
    state_dir: PathBuf,
    /// The database: by default the SQLite file `STATE_DIR/heimweg.db`. Several gateways share
    /// one PostgreSQL database: postgres://USER:PASSWORD@HOST/DB. Pass it through the
    /// environment, not the command line, so the password stays out of `ps`.
    #[arg(
        long,
        global = true,
        env = "HEIMWEG_DATABASE_URL",
        hide_env_values = true
    )]
    database: Option<String>,
    /// Log lines for people (human) or one JSON object per line (json).
    #[arg(
        long,
        global = true,
        env = "HEIMWEG_LOG_FORMAT",
        value_enum,
        default_value = "human"
    )]
    pub log_format: gateway::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: data plane, UAPI socket, and the reconciler that keeps the peers equal
    /// to the enrolled devices. Creates the state directory, database and key on first run.
    Serve(Box<serve::ServeArgs>),
    /// Run only the data plane, configured over the UAPI socket (`wg set`, `wg syncconf`).
    Up(serve::UpArgs),
    /// Enroll, list and revoke devices.
    #[command(subcommand)]
    Device(device::DeviceCmd),
    /// Create and list groups (each with its access policy).
    #[command(subcommand)]
    Group(group::GroupCmd),
    /// Gateway settings.
    #[command(subcommand)]
    Settings(settings::SettingsCmd),
    /// API tokens for automation.
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// A `wg show`-like summary of the running gateway: peers, traffic, drops, top talkers.
    Status(status::StatusArgs),
    /// Staff members who own devices.
    #[command(subcommand)]
    User(user::UserCmd),
    /// Absences: a user's or a device's access suspended for a span.
    #[command(subcommand)]
    Absence(absence::AbsenceCmd),
    /// Access requests staff filed through the public form.
    #[command(subcommand)]
    Request(request::RequestCmd),
    /// Accounts of the web panel.
    #[command(subcommand)]
    Admin(admin::AdminCmd),
    /// The directory sync (LDAP, Active Directory): run it now, list its runs.
    #[command(subcommand)]
    Directory(directory::DirectoryCmd),
    /// Write a consistent copy of the SQLite database to a new file while the gateway runs.
    Backup(backup::BackupArgs),
    /// Put a backup in place of the SQLite database; the gateway must be stopped.
    Restore(backup::RestoreArgs),
}

impl Cli {
    /// Whether this runs a gateway (`serve`, `up`): a daemon must outlive a reader that went
    /// away, while the other commands end quietly when their output pipe closes.
    pub fn runs_gateway(&self) -> bool {
        matches!(self.command, Command::Serve(_) | Command::Up(_))
    }
}

/// Where the gateway's state is: the state directory, and the database if it is not the
/// SQLite file in there.
pub struct Site {
    pub state_dir: PathBuf,
    pub database: Option<String>,
}

pub fn run(cli: Cli) -> Result<()> {
    let site = Site {
        state_dir: cli.state_dir,
        database: cli.database,
    };
    match cli.command {
        Command::Serve(args) => serve::serve(&site, *args),
        Command::Up(args) => serve::up(&site, args),
        Command::Device(cmd) => block_on(device::run(&site, cmd)),
        Command::Group(cmd) => block_on(group::run(&site, cmd)),
        Command::Settings(cmd) => block_on(settings::run(&site, cmd)),
        Command::Token(cmd) => block_on(token::run(&site, cmd)),
        Command::Status(args) => block_on(status::run(&site, args)),
        Command::User(cmd) => block_on(user::run(&site, cmd)),
        Command::Absence(cmd) => block_on(absence::run(&site, cmd)),
        Command::Request(cmd) => block_on(request::run(&site, cmd)),
        Command::Admin(cmd) => block_on(admin::run(&site, cmd)),
        Command::Directory(cmd) => block_on(directory::run(&site, cmd)),
        Command::Backup(args) => block_on(backup::backup(&site, args)),
        Command::Restore(args) => block_on(backup::restore(&site, args)),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn block_on(command: impl Future<Output = Result<()>>) -> Result<()> {
    runtime()?.block_on(command)
}

/// Who the audit log names for CLI changes: the local operator (the one behind `sudo`).
fn caller() -> Caller {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "root".into());
    Caller::cli(&user)
}

/// A name for something the command creates: it must pass today's rules.
fn new_name(what: &str, raw: &str) -> Result<Name> {
    Name::new(raw).with_context(|| format!("{what} {raw:?}"))
}

/// A name that refers to something that exists. Older versions stored names today's rules
/// refuse (spaces at the ends, invisible characters); the operator must still be able to
/// revoke such a device, so only what no version ever stored is refused here.
fn existing_name(what: &str, raw: &str) -> Result<Name> {
    Name::from_stored(raw).with_context(|| format!("{what} {raw:?}"))
}

/// Prints a whole listing with one write. A reader that stops at the line it wanted (`| grep
/// -q`) then finds the listing complete in the pipe; written line by line, the rest would hit
/// the closed pipe and the command would die of SIGPIPE, failing a `pipefail` script.
fn print_listing(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
