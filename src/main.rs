//! `heimweg`: the WireGuard remote-access concentrator.
//!
//! `heimweg serve` runs the gateway from its store (SQLite in the state directory, or a
//! PostgreSQL database several gateways share); the `device`, `group` and `settings`
//! subcommands change that store and the running gateway follows within a second. `heimweg up` runs the data plane alone, configured over UAPI.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use heimweg::gateway;
use heimweg::reconcile::{self, unix_now};
use heimweg_api::service::{self, EnrollRequest};
use heimweg_control::{qr::Qr, PrivateKey, PublicKey};
use heimweg_dataplane::InterfaceAddress;
use heimweg_store::{DeviceQuery, DeviceUpdate, GroupUpdate, NewGroup, Store};
use ipnet::IpNet;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "heimweg",
    version,
    about = "WireGuard remote-access concentrator"
)]
struct Cli {
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
    log_format: gateway::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: data plane, UAPI socket, and the reconciler that keeps the peers equal
    /// to the enrolled devices. Creates the state directory, database and key on first run.
    Serve {
        #[command(flatten)]
        net: NetArgs,
        #[command(flatten)]
        web: WebArgs,
        #[command(flatten)]
        ops: OpsArgs,
    },
    /// Run only the data plane, configured over the UAPI socket (`wg set`, `wg syncconf`).
    Up {
        #[command(flatten)]
        net: NetArgs,
        /// Address of the gateway inside the tunnel, with prefix (repeatable), e.g. 10.77.0.1/24.
        #[arg(long = "address")]
        addresses: Vec<InterfaceAddress>,
        /// File holding the gateway's private key in base64 (as `wg genkey` writes it).
        /// Default: `STATE_DIR/server.key`, generated (mode 0600) on first start.
        #[arg(long)]
        private_key_file: Option<PathBuf>,
    },
    /// Enroll, list and revoke devices.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Create and list groups (each with its access policy).
    #[command(subcommand)]
    Group(GroupCmd),
    /// Gateway settings.
    #[command(subcommand)]
    Settings(SettingsCmd),
    /// API tokens for automation.
    #[command(subcommand)]
    Token(TokenCmd),
    /// A `wg show`-like summary of the running gateway: peers, traffic, drops, top talkers.
    Status {
        #[arg(long, env = "HEIMWEG_INTERFACE", default_value = "heimweg0")]
        interface: String,
        #[arg(long, env = "HEIMWEG_UAPI_DIR", default_value = gateway::UAPI_DIR)]
        uapi_dir: PathBuf,
        /// How many of the busiest devices to list.
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// Staff members who own devices.
    #[command(subcommand)]
    User(UserCmd),
    /// Access requests staff filed through the public form.
    #[command(subcommand)]
    Request(RequestCmd),
    /// Accounts of the web panel.
    #[command(subcommand)]
    Admin(AdminCmd),
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Create a panel account. Prints a random first password unless one comes on stdin.
    Add {
        name: String,
        /// admin (everything) or helpdesk (read-only).
        #[arg(long, default_value = "admin")]
        role: String,
        /// Read the password from the first line of stdin instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List panel accounts.
    List,
    /// Set a new password (printed, or read with --password-stdin); ends the account's sessions.
    ResetPassword {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Turn off the account's second factor (a lost phone and no recovery codes left).
    ResetTotp { name: String },
    /// Lift a lockout after failed logins.
    Unlock { name: String },
    /// Disable an account; its sessions end at once.
    Disable { name: String },
}

#[derive(Subcommand)]
enum UserCmd {
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
}

#[derive(Subcommand)]
enum RequestCmd {
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

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a bearer token for the JSON API; it is printed once and only its hash is stored.
    Create {
        name: String,
        /// A scope the token holds (repeatable): devices:read|write, groups:read|write,
        /// users:read|write, tokens:read|write, audit:read.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// List tokens (never their secrets).
    List,
    Revoke {
        name: String,
    },
}

/// How the JSON API and the panel are served.
#[derive(Args)]
struct WebArgs {
    /// Where the JSON API listens. Plain HTTP: keep it on localhost or behind a TLS proxy.
    #[arg(long, env = "HEIMWEG_API_LISTEN", default_value = "127.0.0.1:8080")]
    api_listen: SocketAddr,
    /// Send the panel's cookies without the Secure flag, for a panel reached over plain
    /// HTTP on a trusted network. Not needed for http://localhost or behind a TLS proxy.
    #[arg(long, env = "HEIMWEG_PANEL_INSECURE_COOKIES")]
    panel_insecure_cookies: bool,
    /// Reverse proxies (addresses or networks, comma-separated) whose X-Forwarded-For names
    /// the client, e.g. 127.0.0.1,::1 for a TLS proxy on this machine. Nobody else's is
    /// believed: the per-client login and request limits count the connection's address.
    #[arg(long = "trusted-proxy", env = "HEIMWEG_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_proxy)]
    trusted_proxies: Vec<IpNet>,
}

/// A proxy's address (a /32 or /128) or network.
fn parse_proxy(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is neither an IP address nor a network"))
}

#[derive(Args)]
struct OpsArgs {
    /// Where /metrics, /healthz and /readyz listen (plain HTTP; 9586 is the WireGuard
    /// exporters' port). "off" disables them.
    #[arg(long, env = "HEIMWEG_METRICS_LISTEN", default_value = "127.0.0.1:9586")]
    metrics_listen: String,
    /// Per-peer series for at most this many devices (0: aggregates only). Keyed by device id.
    #[arg(long, env = "HEIMWEG_METRICS_PER_PEER", default_value_t = 0)]
    metrics_per_peer: usize,
    /// Put device names into heimweg_peer_info (personal data in Prometheus: opt-in).
    #[arg(long, env = "HEIMWEG_METRICS_PEER_NAMES")]
    metrics_peer_names: bool,
}

#[derive(Args)]
struct NetArgs {
    /// Interface name.
    #[arg(long, env = "HEIMWEG_INTERFACE", default_value = "heimweg0")]
    interface: String,
    /// UDP listen port.
    #[arg(long, env = "HEIMWEG_LISTEN_PORT", default_value_t = 51820)]
    listen_port: u16,
    /// Interface MTU.
    #[arg(long, env = "HEIMWEG_MTU", default_value_t = 1420)]
    mtu: u32,
    /// Worker threads; 0 = one per core.
    #[arg(long, env = "HEIMWEG_WORKERS", default_value_t = 0)]
    workers: usize,
    /// Directory of the UAPI socket.
    #[arg(long, env = "HEIMWEG_UAPI_DIR", default_value = gateway::UAPI_DIR)]
    uapi_dir: PathBuf,
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// Enroll a device. Prints its config (and a QR code for phones and tablets) once: the
    /// private key is not stored anywhere.
    Add {
        name: String,
        #[arg(long, default_value = "default")]
        group: String,
        /// The staff member the device belongs to.
        #[arg(long)]
        owner: Option<String>,
        /// The device's own public key, if it generated its key itself.
        #[arg(long)]
        public_key: Option<String>,
        /// Days until the device stops working.
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// Write the config to this file (mode 0600) instead of printing it.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Do not print the QR code.
        #[arg(long)]
        no_qr: bool,
    },
    /// List devices, newest first.
    List {
        /// Filter by name, owner or public key.
        #[arg(long)]
        search: Option<String>,
        #[arg(long)]
        group: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Revoke a device: the gateway drops it within a second.
    Revoke { name: String },
    /// Give a device a new key and print its new config once; the old key stops working
    /// within a second. Name, addresses and history stay.
    Rotate {
        name: String,
        /// The device's own new public key, if it generated the key itself.
        #[arg(long)]
        public_key: Option<String>,
        /// Write the config to this file (mode 0600) instead of printing it.
        #[arg(long)]
        output: Option<PathBuf>,
        #[arg(long)]
        no_qr: bool,
    },
    /// Change a device's group, owner or expiry.
    Set {
        name: String,
        #[arg(long)]
        group: Option<String>,
        #[arg(long, conflicts_with = "no_owner")]
        owner: Option<String>,
        #[arg(long)]
        no_owner: bool,
        /// Days from now until the device stops working.
        #[arg(long, conflicts_with = "never_expires")]
        expires_in_days: Option<u32>,
        #[arg(long)]
        never_expires: bool,
    },
}

#[derive(Subcommand)]
enum GroupCmd {
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
    },
}

#[derive(Subcommand)]
enum SettingsCmd {
    /// Set the host:port clients dial, e.g. vpn.stadt.example:51820.
    Endpoint { endpoint: String },
    /// Show the settings and the gateway's public key.
    Show,
}

/// The settings file the systemd unit reads. The CLI reads it too, so that `heimweg device add`
/// in a root shell uses the same database, state directory and interface as the service.
const ENV_FILE: &str = "/etc/heimweg/env";

/// Applies `KEY=VALUE` lines of the settings file (`HEIMWEG_*` and `RUST_LOG` only) that the
/// environment does not set already. Runs before any thread exists.
fn load_env_file() {
    let path = std::env::var_os("HEIMWEG_ENV_FILE").unwrap_or_else(|| ENV_FILE.into());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            eprintln!(
                "heimweg: not reading {}: {e}; its settings do not apply",
                Path::new(&path).display()
            );
            return;
        }
    };
    for line in text.lines().map(str::trim) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let known = key.starts_with("HEIMWEG_") || key == "RUST_LOG";
        if line.starts_with('#') || !known || std::env::var_os(key).is_some() {
            continue;
        }
        std::env::set_var(key, value.trim_matches('"'));
    }
}

fn main() -> std::process::ExitCode {
    load_env_file();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Up { .. } | Command::Serve { .. }) {
        heimweg_sys::die_on_broken_pipe();
    }
    gateway::init_logging(cli.log_format);
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain: an operator reads this, not a developer.
            eprintln!("heimweg: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Up {
            net,
            addresses,
            private_key_file,
        } => {
            let key = match private_key_file {
                Some(p) => read_key(&p).with_context(|| format!("reading {}", p.display()))?,
                None => load_or_create_key(&cli.state_dir)?,
            };
            let mut config = net.config(key);
            config.addresses = addresses;
            gateway::run(config, &net.uapi_dir)
        }
        Command::Serve { net, web, ops } => {
            serve(&cli.state_dir, cli.database.as_deref(), net, web, ops)
        }
        Command::Device(cmd) => {
            runtime()?.block_on(device(&cli.state_dir, cli.database.as_deref(), cmd))
        }
        Command::Group(cmd) => {
            runtime()?.block_on(group(&cli.state_dir, cli.database.as_deref(), cmd))
        }
        Command::Settings(cmd) => {
            runtime()?.block_on(settings(&cli.state_dir, cli.database.as_deref(), cmd))
        }
        Command::Token(cmd) => {
            runtime()?.block_on(token(&cli.state_dir, cli.database.as_deref(), cmd))
        }
        Command::Status {
            interface,
            uapi_dir,
            top,
        } => runtime()?.block_on(status(
            &cli.state_dir,
            cli.database.as_deref(),
            &interface,
            &uapi_dir,
            top,
        )),
        Command::User(cmd) => {
            runtime()?.block_on(user(&cli.state_dir, cli.database.as_deref(), cmd))
        }
        Command::Request(cmd) => {
            runtime()?.block_on(request(&cli.state_dir, cli.database.as_deref(), cmd))
        }
        Command::Admin(cmd) => {
            runtime()?.block_on(admin(&cli.state_dir, cli.database.as_deref(), cmd))
        }
    }
}

impl NetArgs {
    fn config(&self, key: [u8; 32]) -> heimweg_dataplane::Config {
        let mut config = heimweg_dataplane::Config::new(self.interface.clone());
        config.listen_port = self.listen_port;
        config.private_key = Some(key);
        config.mtu = self.mtu;
        config.workers = self.workers;
        config.set_up = true;
        config
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Opens the store: the configured database, or the SQLite file in the state directory. Only
/// `serve` (`create`) makes a new SQLite file: a CLI command that found none would otherwise
/// start a private database no gateway reads. A new database gets its defaults.
async fn open_store(state_dir: &Path, database: Option<&str>, create: bool) -> Result<Store> {
    if !create && database.is_none() && !state_dir.join("heimweg.db").exists() {
        bail!(
            "no database at {}: start `heimweg serve` once first, or give the database of a \
             gateway with HEIMWEG_DATABASE_URL (as in {ENV_FILE})",
            state_dir.join("heimweg.db").display()
        );
    }
    create_state_dir(state_dir)?;
    let store = match database {
        // The URL may carry a password: errors name the backend, never the URL.
        Some(url) => Store::connect(url)
            .await
            .context("opening the database given by --database / HEIMWEG_DATABASE_URL")?,
        None => {
            let path = state_dir.join("heimweg.db");
            if !path.exists() {
                // The database holds preshared keys and staff names: create it private, and
                // SQLite gives its -wal and -shm files the same mode.
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
            }
            Store::open(&path)
                .await
                .with_context(|| format!("opening {}", path.display()))?
        }
    };
    let mut ula = [0u8; 5];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut ula);
    if store.init_defaults(ula, unix_now()).await? {
        tracing::info!("created the database with a default group and pools");
    }
    Ok(store)
}

fn serve(
    state_dir: &Path,
    database: Option<&str>,
    net: NetArgs,
    web: WebArgs,
    ops: OpsArgs,
) -> Result<()> {
    let api_listen = web.api_listen;
    let rt = runtime()?;
    let key = load_or_create_key(state_dir)?;
    let store = Arc::new(rt.block_on(open_store(state_dir, database, true))?);
    let settings = rt.block_on(store.settings())?;
    let mut config = net.config(key);
    // The gateway takes the first address of each pool; devices get the following ones.
    config.addresses = vec![
        InterfaceAddress {
            addr: IpAddr::V4(nth(settings.pool_v4.network().into(), 1)),
            prefix_len: settings.pool_v4.prefix_len(),
        },
        InterfaceAddress {
            addr: IpAddr::V6(nth6(settings.pool_v6.network().into(), 1)),
            prefix_len: settings.pool_v6.prefix_len(),
        },
    ];
    let running = gateway::start(config, &net.uapi_dir)?;
    let public = PrivateKey::from_bytes(key).public_key();
    let directory = Arc::new(reconcile::Directory::default());
    let registry = heimweg::metrics::registry(
        running.dataplane.clone(),
        directory.clone(),
        heimweg::metrics::PerPeer {
            max: ops.metrics_per_peer,
            names: ops.metrics_peer_names,
        },
    )?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(api_listen))
        .with_context(|| format!("binding the API to {api_listen}"))?;
    let live = heimweg::live::Live::new(running.dataplane.clone());
    rt.spawn(live.clone().run());
    let app = heimweg_api::metrics::track(
        heimweg_api::router(heimweg_api::AppState {
            store: store.clone(),
            gateway_key: public,
            panel: heimweg_api::panel::PanelConfig {
                secure_cookies: !web.panel_insecure_cookies,
                sealer: heimweg_api::panel::Sealer::for_gateway(&key),
            },
            live: Some(live),
            trusted_proxies: heimweg_api::TrustedProxies::new(web.trusted_proxies),
        }),
        heimweg_api::metrics::ApiMetrics::register(&registry)?,
    );
    rt.spawn(async move {
        // With the peer's address, for the panel's per-client login limit.
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the API server stopped");
        }
    });
    if ops.metrics_listen != "off" {
        let addr: SocketAddr = ops
            .metrics_listen
            .parse()
            .context("--metrics-listen must be an address:port or \"off\"")?;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .with_context(|| format!("binding the metrics endpoint to {addr}"))?;
        let ops_app =
            heimweg::metrics::router(registry.clone(), running.dataplane.clone(), store.clone());
        rt.spawn(async move {
            if let Err(e) = axum::serve(listener, ops_app).await {
                tracing::error!(error = %e, "the metrics server stopped");
            }
        });
    }
    let first_admin = if rt.block_on(store.enabled_admin_count())? == 0 {
        format!(
            " (no account yet: heimweg --state-dir {} admin add NAME)",
            state_dir.display()
        )
    } else {
        String::new()
    };
    eprintln!(
        "heimweg is running on {} (UDP {}), gateway public key {public}.\n\
         Admin panel: http://{api_listen}/{first_admin}\n\
         Enroll a device with:  heimweg --state-dir {} device add NAME\n\
         (set the address clients dial first: heimweg settings endpoint HOST:PORT)\n\
         JSON API on http://{api_listen}/api/v1; create a token with: heimweg token create NAME --scope devices:write\n\
         Metrics: http://{}/metrics",
        running.dataplane.interface(),
        running.dataplane.listen_port(),
        state_dir.display(),
        ops.metrics_listen,
    );
    // The reconciler reads on a connection of its own: API and panel readers never delay a
    // revocation on its way to the data plane.
    let reconciler_store = Arc::new(
        rt.block_on(store.dedicated_reader())
            .context("opening the reconciler's database connection")?,
    );
    rt.spawn(reconcile::run(
        reconciler_store,
        running.dataplane.clone(),
        directory,
        reconcile::ReconcileMetrics::register(&registry)?,
    ));
    running.wait();
    rt.shutdown_background();
    Ok(())
}

fn nth(base: u32, n: u32) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(base.wrapping_add(n))
}

fn nth6(base: u128, n: u128) -> std::net::Ipv6Addr {
    std::net::Ipv6Addr::from(base.wrapping_add(n))
}

async fn device(state_dir: &Path, database: Option<&str>, cmd: DeviceCmd) -> Result<()> {
    let store = open_store(state_dir, database, false).await?;
    let actor = actor();
    match cmd {
        DeviceCmd::Add {
            name,
            group,
            owner,
            public_key,
            expires_in_days,
            output,
            no_qr,
        } => {
            let gateway_key = gateway_public_key(state_dir)?;
            let public_key = parse_public_key(public_key)?;
            let enrolled = service::enroll(
                &store,
                gateway_key,
                &actor,
                EnrollRequest {
                    name: name.clone(),
                    group,
                    owner,
                    public_key,
                    expires_in_days,
                },
                unix_now(),
            )
            .await?;
            print_config(&enrolled, output.as_deref(), no_qr)?;
        }
        DeviceCmd::List {
            search,
            group,
            limit,
            offset,
        } => {
            let page = store
                .devices(
                    &DeviceQuery {
                        search,
                        group,
                        limit,
                        offset,
                        ..Default::default()
                    },
                    unix_now(),
                )
                .await?;
            println!(
                "{:<24} {:<12} {:<16} {:<10} {:<16} public key",
                "name", "group", "ipv4", "state", "last handshake"
            );
            for d in &page.items {
                let state = d.status(unix_now());
                let seen = d.last_handshake_at.map_or("never".to_string(), |t| {
                    format!("{} s ago", (unix_now() - t).max(0))
                });
                println!(
                    "{:<24} {:<12} {:<16} {:<10} {:<16} {}",
                    d.name, d.group, d.ipv4, state, seen, d.public_key
                );
            }
            println!("({} of {} shown)", page.items.len(), page.total);
        }
        DeviceCmd::Revoke { name } => {
            store.revoke_device(&actor, &name, unix_now()).await?;
            println!("revoked {name}; a running gateway drops it within a second");
        }
        DeviceCmd::Rotate {
            name,
            public_key,
            output,
            no_qr,
        } => {
            let gateway_key = gateway_public_key(state_dir)?;
            let public_key = parse_public_key(public_key)?;
            let rotated =
                service::rotate(&store, gateway_key, &actor, &name, public_key, unix_now()).await?;
            print_config(&rotated, output.as_deref(), no_qr)?;
            eprintln!("The old key of {name} stops working within a second.");
        }
        DeviceCmd::Set {
            name,
            group,
            owner,
            no_owner,
            expires_in_days,
            never_expires,
        } => {
            let now = unix_now();
            let d = store
                .update_device(
                    &actor,
                    &name,
                    DeviceUpdate {
                        group,
                        owner: if no_owner {
                            Some(None)
                        } else {
                            owner.map(Some)
                        },
                        expires_at: if never_expires {
                            Some(None)
                        } else {
                            expires_in_days.map(|days| Some(now + i64::from(days) * 86_400))
                        },
                    },
                    now,
                )
                .await?;
            println!(
                "{}: group {}, owner {}, expires {}",
                d.name,
                d.group,
                d.owner.as_deref().unwrap_or("-"),
                d.expires_at.map_or("never".to_string(), |t| format!(
                    "in {} days",
                    (t - now) / 86_400
                ))
            );
        }
    }
    Ok(())
}

async fn status(
    state_dir: &Path,
    database: Option<&str>,
    interface: &str,
    uapi_dir: &Path,
    top: usize,
) -> Result<()> {
    let socket = uapi_dir.join(format!("{interface}.sock"));
    let report = tokio::task::spawn_blocking(move || heimweg::status::query(&socket)).await??;
    // Names come from the store; without it (a plain `heimweg up` gateway) keys are shown.
    // `--top 0` (a health check) needs no names and does not touch the database.
    let mut names = std::collections::HashMap::new();
    let store = if top > 0 {
        open_store(state_dir, database, false).await.ok()
    } else {
        None
    };
    if let Some(store) = store {
        // The reconciler's own key → device directory; UAPI reports keys in hex.
        let directory = reconcile::desired_peers(&store, unix_now())
            .await?
            .directory;
        for (key, meta) in directory {
            names.insert(hex::encode(key), format!("{} ({})", meta.name, meta.group));
        }
    }
    print!(
        "{}",
        heimweg::status::render(interface, &report, &names, top)
    );
    Ok(())
}

/// The gateway's public key for configs. Never generated here: a CLI that made up a key would
/// hand out configs no gateway answers.
fn gateway_public_key(state_dir: &Path) -> Result<PublicKey> {
    let path = state_dir.join("server.key");
    if !path.exists() {
        bail!(
            "no gateway key at {}: start `heimweg serve` once first (it creates the key), or \
             copy the gateway's server.key there",
            path.display()
        );
    }
    Ok(PrivateKey::from_bytes(
        read_key(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .public_key())
}

fn parse_public_key(key: Option<String>) -> Result<Option<PublicKey>> {
    key.map(|k| k.parse::<PublicKey>().context("--public-key"))
        .transpose()
}

/// Prints (or writes, mode 0600) a config that is shown once, with its QR code.
fn print_config(enrolled: &service::Enrollment, output: Option<&Path>, no_qr: bool) -> Result<()> {
    let conf = &enrolled.config;
    match output {
        Some(path) => {
            heimweg::files::write_private(path, conf.as_bytes())?;
            eprintln!("wrote {} ({})", path.display(), enrolled.file_name);
        }
        None => {
            println!("# {} — {}", enrolled.file_name, enrolled.device.ipv4);
            print!("{conf}");
            if !no_qr {
                println!("{}", Qr::encode(conf)?.to_terminal());
            }
            eprintln!("This is the only time this config is shown; it is not stored.");
        }
    }
    Ok(())
}

async fn user(state_dir: &Path, database: Option<&str>, cmd: UserCmd) -> Result<()> {
    let store = open_store(state_dir, database, false).await?;
    match cmd {
        UserCmd::Add { name, email } => {
            store
                .create_user(&actor(), &name, email.as_deref(), unix_now())
                .await?;
            println!("created user {name}");
        }
        UserCmd::List { search } => {
            let page = store.users(search.as_deref(), 500, 0, unix_now()).await?;
            println!("{:<24} {:<32} {:>8} state", "name", "e-mail", "devices");
            for u in &page.items {
                println!(
                    "{:<24} {:<32} {:>8} {}",
                    u.name,
                    u.email.as_deref().unwrap_or("-"),
                    u.active_devices,
                    if u.disabled_at.is_some() {
                        "disabled"
                    } else {
                        "enabled"
                    }
                );
            }
            println!("({} of {} shown)", page.items.len(), page.total);
        }
        UserCmd::Disable { name } => {
            let n = store.disable_user(&actor(), &name, unix_now()).await?;
            println!("disabled {name}; {n} devices revoked");
        }
    }
    Ok(())
}

async fn request(state_dir: &Path, database: Option<&str>, cmd: RequestCmd) -> Result<()> {
    let store = open_store(state_dir, database, false).await?;
    let now = unix_now();
    match cmd {
        RequestCmd::List { status } => {
            let status = (status != "all").then_some(status);
            for r in store.access_requests(status.as_deref(), 500, now).await? {
                println!(
                    "{:>5} {:<9} {:<24} {:<24} {} {}",
                    r.id, r.status, r.device_name, r.requester, r.contact, r.reason
                );
            }
        }
        RequestCmd::Approve {
            id,
            group,
            expires_in_hours,
        } => {
            let r = store
                .approve_access_request(
                    &actor(),
                    id,
                    &group,
                    now + i64::from(expires_in_hours) * 3600,
                    now,
                )
                .await?;
            println!(
                "approved {} for {}; their status page now offers the setup",
                r.device_name, r.requester
            );
        }
        RequestCmd::Reject { id } => {
            let r = store.reject_access_request(&actor(), id, now).await?;
            println!("rejected {} for {}", r.device_name, r.requester);
        }
    }
    Ok(())
}

async fn group(state_dir: &Path, database: Option<&str>, cmd: GroupCmd) -> Result<()> {
    let store = open_store(state_dir, database, false).await?;
    match cmd {
        GroupCmd::Add {
            name,
            allow,
            dns,
            full_tunnel,
        } => {
            check_dns(&dns)?;
            let g = store
                .create_group(
                    &actor(),
                    NewGroup {
                        name,
                        allowed_prefixes: allow,
                        full_tunnel,
                        dns,
                    },
                    unix_now(),
                )
                .await?;
            println!("created group {}", g.name);
        }
        GroupCmd::Set {
            name,
            allow,
            dns,
            full_tunnel,
        } => {
            check_dns(&dns)?;
            let g = store
                .update_group(
                    &actor(),
                    &name,
                    GroupUpdate {
                        allowed_prefixes: (!allow.is_empty()).then_some(allow),
                        full_tunnel,
                        dns: (!dns.is_empty()).then_some(dns),
                    },
                    unix_now(),
                )
                .await?;
            println!(
                "changed group {}; its devices follow within a second",
                g.name
            );
        }
        GroupCmd::List => {
            for g in store.groups().await? {
                let nets: Vec<String> = g.allowed_prefixes.iter().map(|n| n.to_string()).collect();
                println!(
                    "{:<16} {} {}{}",
                    g.name,
                    if g.full_tunnel { "full" } else { "split" },
                    nets.join(","),
                    if g.dns.is_empty() {
                        String::new()
                    } else {
                        format!(" dns={}", g.dns.join(","))
                    }
                );
            }
        }
    }
    Ok(())
}

fn check_dns(dns: &[String]) -> Result<()> {
    for d in dns {
        if d.parse::<IpAddr>().is_err() && !heimweg_control::clientconf::is_hostname(d) {
            bail!("--dns {d:?} is neither an IP address nor a domain name");
        }
    }
    Ok(())
}

async fn settings(state_dir: &Path, database: Option<&str>, cmd: SettingsCmd) -> Result<()> {
    let store = open_store(state_dir, database, false).await?;
    match cmd {
        SettingsCmd::Endpoint { endpoint } => {
            store.set_endpoint(&actor(), &endpoint, unix_now()).await?;
            println!("clients will dial {endpoint}");
        }
        SettingsCmd::Show => {
            let s = store.settings().await?;
            let key = gateway_public_key(state_dir)?;
            println!(
                "endpoint:   {}",
                s.endpoint.as_deref().unwrap_or("(not set)")
            );
            println!("public key: {key}");
            println!("pools:      {} {}", s.pool_v4, s.pool_v6);
            println!("client MTU: {}", s.mtu);
        }
    }
    Ok(())
}

async fn token(state_dir: &Path, database: Option<&str>, cmd: TokenCmd) -> Result<()> {
    let store = open_store(state_dir, database, false).await?;
    match cmd {
        TokenCmd::Create { name, scopes } => {
            if let Some(bad) = scopes
                .iter()
                .find(|s| !heimweg_api::SCOPES.contains(&s.as_str()))
            {
                bail!(
                    "unknown scope {bad:?}; use {}",
                    heimweg_api::SCOPES.join(", ")
                );
            }
            let token = heimweg_api::generate_token();
            store
                .create_api_token(
                    &actor(),
                    &name,
                    &heimweg_api::token_hash(&token),
                    &scopes,
                    unix_now(),
                )
                .await?;
            println!("{token}");
            eprintln!("This is the only time the token is shown; only its hash is stored.");
        }
        TokenCmd::List => {
            for t in store.api_tokens().await? {
                println!(
                    "{:<24} {:<8} {}",
                    t.name,
                    if t.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "live"
                    },
                    t.scopes.join(" ")
                );
            }
        }
        TokenCmd::Revoke { name } => {
            let minted = store.revoke_api_token(&actor(), &name, unix_now()).await?;
            println!("revoked token {name} and {minted} tokens minted from it");
        }
    }
    Ok(())
}

/// Who the audit log names for CLI changes: the local operator.
/// A password from the first line of stdin, or a new random one to print.
fn admin_password(from_stdin: bool) -> Result<(String, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        let password = line.trim_end_matches(['\r', '\n']).to_string();
        if let Some(problem) = heimweg_api::panel::secrets::password_problem(&password) {
            bail!(
                "the password is too {problem}: use {} to {} characters",
                heimweg_api::panel::secrets::MIN_PASSWORD_CHARS,
                heimweg_api::panel::secrets::MAX_PASSWORD_BYTES
            );
        }
        Ok((password, false))
    } else {
        Ok((heimweg_api::panel::secrets::random_token(15), true))
    }
}

async fn admin(state_dir: &Path, database: Option<&str>, cmd: AdminCmd) -> Result<()> {
    let store = open_store(state_dir, database, false).await?;
    let now = unix_now();
    match cmd {
        AdminCmd::Add {
            name,
            role,
            password_stdin,
        } => {
            let role: heimweg_store::Role = role.parse()?;
            let (password, generated) = admin_password(password_stdin)?;
            let hash = heimweg_api::panel::secrets::hash_password(&password);
            store
                .create_admin(&actor(), &name, &hash, role, now)
                .await?;
            if generated {
                println!("{password}");
                eprintln!(
                    "Created {name} ({}). This is the only time the password is shown; log in \
                     to the panel and change it under your account, then set up a second factor.",
                    role.as_str()
                );
            } else {
                eprintln!("Created {name} ({}).", role.as_str());
            }
        }
        AdminCmd::List => {
            for a in store.admins().await? {
                let state = if a.disabled_at.is_some() {
                    "disabled"
                } else if a.locked_until.is_some_and(|u| u > now) {
                    "locked"
                } else {
                    "active"
                };
                println!(
                    "{:<24} {:<9} {:<9} totp={}",
                    a.name,
                    a.role.as_str(),
                    state,
                    if a.totp_sealed.is_some() { "on" } else { "off" }
                );
            }
        }
        AdminCmd::ResetPassword {
            name,
            password_stdin,
        } => {
            let (password, generated) = admin_password(password_stdin)?;
            let hash = heimweg_api::panel::secrets::hash_password(&password);
            store
                .set_admin_password(&actor(), &name, &hash, now)
                .await?;
            if generated {
                println!("{password}");
                eprintln!("The new password is shown only now; {name}'s sessions have ended.");
            }
        }
        AdminCmd::ResetTotp { name } => {
            store.set_admin_totp(&actor(), &name, None, now).await?;
            eprintln!(
                "{name} logs in with the password alone until they set up a new second factor."
            );
        }
        AdminCmd::Unlock { name } => store.unlock_admin(&actor(), &name, now).await?,
        AdminCmd::Disable { name } => store.disable_admin(&actor(), &name, now).await?,
    }
    Ok(())
}

fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "root".into())
    )
}

fn create_state_dir(state_dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))
}

/// Reads a WireGuard key in base64, as `wg genkey` writes it.
fn read_key(path: &Path) -> Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)?;
    let key: PrivateKey = text
        .trim()
        .parse()
        .context("the file holds no WireGuard key")?;
    Ok(key.expose_bytes())
}

/// The gateway key lives in the state directory; the first start creates it with mode 0600 so
/// that a restart keeps the identity every client config refers to.
fn load_or_create_key(state_dir: &Path) -> Result<[u8; 32]> {
    let path = state_dir.join("server.key");
    if path.exists() {
        return read_key(&path).with_context(|| format!("reading {}", path.display()));
    }
    create_state_dir(state_dir)?;
    let key = PrivateKey::generate();
    heimweg::files::write_private(&path, format!("{}\n", key.expose_base64()).as_bytes())?;
    tracing::info!(path = %path.display(), "generated the gateway key");
    Ok(key.expose_bytes())
}
