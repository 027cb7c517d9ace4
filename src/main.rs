//! `heimweg`: the WireGuard remote-access concentrator.
//!
//! `heimweg serve` runs the gateway from its store (SQLite in the state directory, or a
//! PostgreSQL database several gateways share); the `device`, `group`, `user`, `token`,
//! `request`, `admin` and `settings` subcommands change that store through the service, and
//! the running gateway follows within a second. `heimweg up` runs the data plane alone,
//! configured over UAPI. The commands live in `cli/`, one module per group.

mod cli;

use clap::Parser;
use heimweg::gateway;

fn main() -> std::process::ExitCode {
    cli::load_env_file();
    let args = cli::Cli::parse();
    if !args.runs_gateway() {
        heimweg_sys::die_on_broken_pipe();
    }
    gateway::init_logging(args.log_format);
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain: an operator reads this, not a developer.
            eprintln!("heimweg: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
