//! `heimweg serve` (the gateway from its store: data plane, reconciler, API and panel,
//! operations listener) and `heimweg up` (the data plane alone).

use super::state::{load_or_create_key, open_service, read_key};
use super::Site;
use anyhow::{bail, Context, Result};
use clap::Args;
use heimweg::gateway;
use heimweg::sink::DataPlaneSink;
use heimweg_control::PrivateKey;
use heimweg_dataplane::{DataPlane, InterfaceAddress};
use heimweg_service::reconcile::{Directory, ReconcileMetrics, Reconciler};
use heimweg_service::{MailSettings, Mailer, Sealer, Service, Settings, SmtpSecurity};
use ipnet::IpNet;
use prometheus::Registry;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::runtime::Runtime;

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    web: WebArgs,
    #[command(flatten)]
    ops: OpsArgs,
    #[command(flatten)]
    mail: MailArgs,
    #[command(flatten)]
    signing: super::state::SigningArgs,
    #[command(flatten)]
    directory: super::directory::DirectoryArgs,
    #[command(flatten)]
    identity: super::identity::IdentityArgs,
}

#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    net: NetArgs,
    /// Address of the gateway inside the tunnel, with prefix (repeatable), e.g. 10.77.0.1/24.
    #[arg(long = "address")]
    addresses: Vec<InterfaceAddress>,
    /// File holding the gateway's private key in base64 (as `wg genkey` writes it).
    /// Default: `STATE_DIR/server.key`, generated (mode 0600) on first start.
    #[arg(long)]
    private_key_file: Option<PathBuf>,
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
    /// The address staff reach the panel's public pages at, e.g. https://vpn.stadt.example:
    /// the enrollment and request links the panel hands out start with it. Unset, a link is
    /// built from the request's Host and X-Forwarded-Proto headers.
    #[arg(long, env = "HEIMWEG_PUBLIC_URL", value_parser = heimweg_api::panel::public_url)]
    public_url: Option<String>,
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

/// The mail server invitations go through. The password only from the settings file
/// (HEIMWEG_SMTP_PASSWORD), never on a command line.
#[derive(Args)]
struct MailArgs {
    /// The mail server's name (as its certificate names it). Unset, no mail is sent: queued
    /// invitations wait.
    #[arg(long, env = "HEIMWEG_SMTP_HOST")]
    smtp_host: Option<String>,
    /// Default: 587 for starttls, 465 for tls, 25 for none.
    #[arg(long, env = "HEIMWEG_SMTP_PORT")]
    smtp_port: Option<u16>,
    /// starttls (required, never a fallback to plain text), tls (from the first byte), or
    /// none (a relay on this machine only).
    #[arg(long, env = "HEIMWEG_SMTP_SECURITY", default_value = "starttls")]
    smtp_security: SmtpSecurity,
    /// The user to authenticate as (its password: HEIMWEG_SMTP_PASSWORD).
    #[arg(long, env = "HEIMWEG_SMTP_USER")]
    smtp_user: Option<String>,
    /// PEM file with the CA certificate(s) of a mail server whose certificate a city CA
    /// signed (the public roots are trusted as well).
    #[arg(long, env = "HEIMWEG_SMTP_CA_FILE")]
    smtp_ca_file: Option<PathBuf>,
    /// The sender, e.g. "VPN der Stadt <vpn@stadt.example>".
    #[arg(long, env = "HEIMWEG_MAIL_FROM")]
    mail_from: Option<String>,
    /// Whom staff call, named in every invitation.
    #[arg(long, env = "HEIMWEG_MAIL_HELPDESK")]
    mail_helpdesk: Option<String>,
    /// Mails a minute at most (Exchange Online allows 30).
    #[arg(long, env = "HEIMWEG_MAIL_PER_MINUTE", default_value_t = 60)]
    mail_per_minute: u32,
}

impl MailArgs {
    /// The mail settings, if a mail server is set.
    fn settings(&self, public_url: Option<&String>) -> Result<Option<MailSettings>> {
        let Some(host) = self.smtp_host.clone() else {
            return Ok(None);
        };
        let from = self
            .mail_from
            .clone()
            .context("HEIMWEG_SMTP_HOST is set, so HEIMWEG_MAIL_FROM must be too")?;
        let public_url = public_url.cloned().context(
            "HEIMWEG_SMTP_HOST is set, so HEIMWEG_PUBLIC_URL must be too: the mailed links \
             start with it",
        )?;
        let password = std::env::var("HEIMWEG_SMTP_PASSWORD").ok();
        let credentials = match (&self.smtp_user, password) {
            (Some(u), Some(p)) => Some((u.clone(), p)),
            (Some(_), None) => anyhow::bail!(
                "HEIMWEG_SMTP_USER is set but HEIMWEG_SMTP_PASSWORD is not (put it in the \
                 settings file)"
            ),
            (None, _) => None,
        };
        let ca_pem = self
            .smtp_ca_file
            .as_ref()
            .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
            .transpose()?;
        Ok(Some(MailSettings {
            port: self
                .smtp_port
                .unwrap_or_else(|| self.smtp_security.default_port()),
            host,
            security: self.smtp_security,
            ca_pem,
            credentials,
            from,
            public_url,
            helpdesk: self.mail_helpdesk.clone(),
            per_minute: self.mail_per_minute,
            hello_name: None,
        }))
    }
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

pub fn up(site: &Site, args: UpArgs) -> Result<()> {
    let key = match args.private_key_file {
        Some(p) => read_key(&p).with_context(|| format!("reading {}", p.display()))?,
        None => load_or_create_key(&site.state_dir)?,
    };
    let mut config = args.net.config(key);
    config.addresses = args.addresses;
    gateway::run(config, &args.net.uapi_dir)
}

/// `service` with the directory and the identity provider, and so with the sign-ins they
/// bring.
fn who_signs_in(
    service: heimweg_service::Service,
    ldap: &super::directory::DirectoryArgs,
    identity: &super::identity::IdentityArgs,
    web: &WebArgs,
) -> Result<heimweg_service::Service> {
    let service = identity.apply(ldap.apply(service)?, web.public_url.as_ref())?;
    if ldap.signs_staff_in() && service.identity_provider().is_some() {
        bail!(
            "HEIMWEG_DIRECTORY_SIGN_IN and HEIMWEG_OIDC_ISSUER are both set: where there is an \
             identity provider, staff sign in there; unset one of them"
        );
    }
    Ok(service)
}

pub fn serve(site: &Site, args: ServeArgs) -> Result<()> {
    let ServeArgs {
        net,
        web,
        ops,
        mail,
        signing,
        directory: ldap,
        identity,
    } = args;
    let rt = super::runtime()?;
    let key = load_or_create_key(&site.state_dir)?;
    let public = PrivateKey::from_bytes(key).public_key();
    let service = rt
        .block_on(open_service(site, true))?
        .with_gateway_key(public)
        .with_sealer(Sealer::for_gateway(&key));
    let service = who_signs_in(signing.apply(service)?, &ldap, &identity, &web)?;
    let settings = rt.block_on(service.settings())?;
    let mut config = net.config(key);
    config.addresses = gateway_addresses(&settings);
    let running = gateway::start(config, &net.uapi_dir, gateway::UapiWrites::Refused)?;
    let dataplane = running.dataplane.clone();
    let directory = Arc::new(Directory::default());
    let registry = heimweg::metrics::registry(
        dataplane.clone(),
        directory.clone(),
        heimweg::metrics::PerPeer {
            max: ops.metrics_per_peer,
            names: ops.metrics_peer_names,
        },
    )?;
    let service = start_reconciler(&rt, service, &dataplane, directory, &registry)?;
    let (service, mailer) = start_mailer(&rt, service, &mail, web.public_url.as_ref())?;
    let directory_sync = heimweg_service::DirectorySync::new(service.clone()).map(|sync| {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        (stop, rt.spawn(sync.run(stopped)))
    });
    // The access review revokes devices unseen for the set number of days (off by default);
    // each gateway runs it, the store makes a second run in the same hour a no-op.
    let (review_stop, review_stopped) = tokio::sync::watch::channel(false);
    rt.spawn(service.clone().run_review(review_stopped));
    start_api(&rt, &service, &dataplane, &web, &registry)?;
    if ops.metrics_listen != "off" {
        start_ops(&rt, &service, &dataplane, &ops.metrics_listen, registry)?;
    }
    let first_admin = if rt.block_on(service.enabled_admin_count())? == 0 {
        format!(
            " (no account yet: heimweg --state-dir {} admin add NAME)",
            site.state_dir.display()
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
        dataplane.interface(),
        dataplane.listen_port(),
        site.state_dir.display(),
        ops.metrics_listen,
        api_listen = web.api_listen,
    );
    running.wait();
    let _ = review_stop.send(true);
    if let Some((stop, _)) = directory_sync {
        // A run in progress is one transaction: stopping mid-run changes nothing.
        let _ = stop.send(true);
    }
    if let Some((stop, task)) = mailer {
        // The mail being sent is finished and marked, the other claims handed back: a
        // restart neither loses an invitation nor sends one twice.
        let _ = stop.send(true);
        let _ = rt.block_on(tokio::time::timeout(
            std::time::Duration::from_secs(40),
            task,
        ));
    }
    rt.shutdown_background();
    Ok(())
}

/// A stop switch and the task it stops.
type Background = (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
);

/// The invitation mail sender, if a mail server is set; the service then wakes it.
fn start_mailer(
    rt: &Runtime,
    service: Service,
    mail: &MailArgs,
    public_url: Option<&String>,
) -> Result<(Service, Option<Background>)> {
    Ok(match mail.settings(public_url)? {
        Some(settings) => {
            let mailer = Mailer::new(service.clone(), settings)?;
            let service = service.with_mail_waker(mailer.waker());
            let (stop, stopped) = tokio::sync::watch::channel(false);
            (service, Some((stop, rt.spawn(mailer.run(stopped)))))
        }
        None => (service, None),
    })
}

/// The gateway takes the first address of each pool; devices get the following ones.
fn gateway_addresses(settings: &Settings) -> Vec<InterfaceAddress> {
    let v4 = u32::from(settings.pool_v4.network()).wrapping_add(1);
    let v6 = u128::from(settings.pool_v6.network()).wrapping_add(1);
    vec![
        InterfaceAddress {
            addr: IpAddr::V4(Ipv4Addr::from(v4)),
            prefix_len: settings.pool_v4.prefix_len(),
        },
        InterfaceAddress {
            addr: IpAddr::V6(Ipv6Addr::from(v6)),
            prefix_len: settings.pool_v6.prefix_len(),
        },
    ]
}

/// Starts the reconciler that keeps the data plane's peers equal to the store, and returns
/// the service that waits for it after each enrollment.
fn start_reconciler(
    rt: &Runtime,
    service: Service,
    dataplane: &Arc<DataPlane>,
    directory: Arc<Directory>,
    registry: &Registry,
) -> Result<Service> {
    // The reconciler reads on a connection of its own: API and panel readers never delay a
    // revocation on its way to the data plane.
    let reader = rt
        .block_on(service.dedicated_reader())
        .context("opening the reconciler's database connection")?;
    let (reconciler, handle) = Reconciler::new(
        reader,
        Arc::new(DataPlaneSink::new(dataplane.clone())),
        directory,
        ReconcileMetrics::register(registry)?,
    );
    rt.spawn(reconciler.run());
    Ok(service.with_reconciler(handle))
}

/// Binds and serves the JSON API, the public pages and the panel.
fn start_api(
    rt: &Runtime,
    service: &Service,
    dataplane: &Arc<DataPlane>,
    web: &WebArgs,
    registry: &Registry,
) -> Result<()> {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(web.api_listen))
        .with_context(|| format!("binding the API to {}", web.api_listen))?;
    let live = heimweg::live::Live::new(dataplane.clone());
    rt.spawn(live.clone().run());
    let app = heimweg_api::metrics::track(
        heimweg_api::router(heimweg_api::AppState {
            service: service.clone(),
            panel: heimweg_api::panel::PanelConfig {
                secure_cookies: !web.panel_insecure_cookies,
                public_url: web.public_url.clone(),
            },
            live: Some(live),
            trusted_proxies: heimweg_api::TrustedProxies::new(web.trusted_proxies.clone()),
        }),
        heimweg_api::metrics::ApiMetrics::register(registry)?,
    );
    rt.spawn(async move {
        // With the peer's address, for the panel's per-client login limit.
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the API server stopped");
        }
    });
    Ok(())
}

/// Binds and serves /metrics, /healthz and /readyz.
fn start_ops(
    rt: &Runtime,
    service: &Service,
    dataplane: &Arc<DataPlane>,
    listen: &str,
    registry: Registry,
) -> Result<()> {
    let addr: SocketAddr = listen
        .parse()
        .context("--metrics-listen must be an address:port or \"off\"")?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("binding the metrics endpoint to {addr}"))?;
    let ops_app = heimweg::metrics::router(registry, dataplane.clone(), service.clone())?;
    rt.spawn(async move {
        if let Err(e) = axum::serve(listener, ops_app).await {
            tracing::error!(error = %e, "the metrics server stopped");
        }
    });
    Ok(())
}
