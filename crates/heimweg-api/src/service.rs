//! The service layer: operations that need more than one store call or a rendering step, shared
//! by the API and the CLI so that neither holds business logic of its own.

use heimweg_control::{config_file_name, ClientConfig, ConfigError, PrivateKey, PublicKey};
use heimweg_store::{
    AccessRequest, Device, EnrollmentLink, NewAccessRequest, NewDevice, Store, StoreError,
};
use ipnet::IpNet;
use std::net::IpAddr;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    NotReady(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Busy(String),
}

/// What an admin asks for when enrolling a device.
#[derive(Debug, Clone)]
pub struct EnrollRequest {
    pub name: String,
    pub group: String,
    pub owner: Option<String>,
    /// The device's own public key; without it the server generates the key pair and puts the
    /// private half into the config, which is shown once and stored nowhere.
    pub public_key: Option<PublicKey>,
    pub expires_in_days: Option<u32>,
}

/// The result of an enrollment: the stored device and its config, shown once.
#[derive(Debug)]
pub struct Enrollment {
    pub device: Device,
    /// The wg-quick text; without a PrivateKey line when the device brought its own key.
    pub config: String,
    pub has_private_key: bool,
    pub file_name: String,
}

/// The client config for a device of `group`, before its addresses are known (they are the
/// pools until [`with_addresses`] sets them). Built and rendered before anything is written,
/// so a config we could not produce never leaves a change behind.
async fn client_config(
    store: &Store,
    gateway_key: PublicKey,
    group: &str,
    private_key: Option<PrivateKey>,
) -> Result<ClientConfig, ServiceError> {
    let settings = store.settings().await?;
    let endpoint = settings.endpoint.clone().ok_or_else(|| {
        ServiceError::NotReady(
            "set the gateway's public endpoint (host:port) before enrolling devices".into(),
        )
    })?;
    let group = store.group(group).await?;
    let (resolvers, search): (Vec<String>, Vec<String>) = group
        .dns
        .iter()
        .cloned()
        .partition(|d| d.parse::<IpAddr>().is_ok());
    let conf = ClientConfig {
        private_key,
        addresses: vec![IpNet::from(settings.pool_v4), IpNet::from(settings.pool_v6)],
        dns: resolvers.iter().filter_map(|d| d.parse().ok()).collect(),
        dns_search: search,
        mtu: settings.mtu,
        gateway_public_key: gateway_key,
        preshared_key: None,
        allowed_ips: if group.full_tunnel {
            vec![
                "0.0.0.0/0".parse().expect("literal network"),
                "::/0".parse().expect("literal network"),
            ]
        } else {
            group.allowed_prefixes.clone()
        },
        endpoint: endpoint.parse().map_err(|_| {
            ServiceError::NotReady(format!("the stored endpoint {endpoint:?} is invalid"))
        })?,
        persistent_keepalive: Some(25),
    };
    conf.render()?;
    Ok(conf)
}

/// Renders `conf` for `device`'s own addresses: the config shown once.
fn finish(mut conf: ClientConfig, device: Device) -> Result<Enrollment, ServiceError> {
    conf.addresses = vec![
        IpNet::from(IpAddr::V4(device.ipv4)),
        IpNet::from(IpAddr::V6(device.ipv6)),
    ];
    let config = conf.render()?;
    Ok(Enrollment {
        file_name: config_file_name(&device.name),
        has_private_key: conf.private_key.is_some(),
        device,
        config,
    })
}

/// The device's key pair: its own public key, or a fresh pair whose private half goes only
/// into the config.
fn key_pair(public_key: Option<PublicKey>) -> (Option<PrivateKey>, PublicKey) {
    match public_key {
        Some(k) => (None, k),
        None => {
            let k = PrivateKey::generate();
            let p = k.public_key();
            (Some(k), p)
        }
    }
}

/// Enrolls a device and renders its config.
pub async fn enroll(
    store: &Store,
    gateway_key: PublicKey,
    actor: &str,
    req: EnrollRequest,
    now: i64,
) -> Result<Enrollment, ServiceError> {
    let (private_key, public_key) = key_pair(req.public_key);
    let conf = client_config(store, gateway_key, &req.group, private_key).await?;
    let device = store
        .add_device(
            actor,
            NewDevice {
                name: req.name,
                group: req.group,
                public_key,
                preshared_key: None,
                owner: req.owner,
                expires_at: req.expires_in_days.map(|d| now + i64::from(d) * 86_400),
            },
            now,
        )
        .await?;
    finish(conf, device)
}

/// Gives a device a new key pair (or the public key it brings) and renders its new config;
/// name, addresses, group and history stay. The old key stops working within a second.
pub async fn rotate(
    store: &Store,
    gateway_key: PublicKey,
    actor: &str,
    name: &str,
    public_key: Option<PublicKey>,
    now: i64,
) -> Result<Enrollment, ServiceError> {
    let current = store.device_by_name(name).await?;
    let (private_key, public_key) = key_pair(public_key);
    let conf = client_config(store, gateway_key, &current.group, private_key).await?;
    let device = store
        .rotate_device_key(actor, name, public_key, now)
        .await?;
    finish(conf, device)
}

/// Redeems a one-time enrollment link: claims it atomically, enrolls the device it was made
/// for, and returns the config. `Ok(None)` when the link is unknown, used, revoked or expired.
/// If enrolling fails after the claim, the claim is given back so the link stays usable.
pub async fn redeem_link(
    store: &Store,
    gateway_key: PublicKey,
    token_hash: &str,
    now: i64,
) -> Result<Option<Enrollment>, ServiceError> {
    let Some(link) = store.claim_enrollment_link(token_hash, now).await? else {
        return Ok(None);
    };
    let result = enroll(
        store,
        gateway_key,
        &format!("link:{}:{}", link.id, link.created_by),
        EnrollRequest {
            name: link.device_name,
            group: link.group,
            owner: link.owner,
            public_key: None,
            expires_in_days: None,
        },
        now,
    )
    .await;
    match result {
        Ok(e) => Ok(Some(e)),
        Err(e) => {
            store.unclaim_enrollment_link(link.id).await?;
            Err(e)
        }
    }
}

/// An iOS profile for a new config, when it is complete (has a private key) and the endpoint
/// is known.
pub async fn mobileconfig(store: &Store, e: &Enrollment) -> Option<String> {
    if !e.has_private_key {
        return None;
    }
    let endpoint = store.settings().await.ok()?.endpoint?;
    Some(heimweg_control::mobileconfig::render(
        &e.device.name,
        &e.config,
        &endpoint,
        "heimweg",
        heimweg_control::mobileconfig::ApplePlatform::Ios,
    ))
}

/// Hours a link may stay open: 72 by default, at most 30 days.
fn link_lifetime_secs(hours: Option<u32>) -> Result<i64, ServiceError> {
    match hours.unwrap_or(72) {
        h @ 1..=720 => Ok(i64::from(h) * 3600),
        _ => Err(ServiceError::Invalid(
            "expires_in_hours must be 1 to 720 (30 days)".into(),
        )),
    }
}

/// Creates a one-time enrollment link; returns it and its secret, which exists only in this
/// answer (the store keeps its hash).
pub async fn create_link(
    store: &Store,
    actor: &str,
    device_name: &str,
    group: &str,
    owner: Option<&str>,
    expires_in_hours: Option<u32>,
    now: i64,
) -> Result<(EnrollmentLink, String), ServiceError> {
    let lifetime = link_lifetime_secs(expires_in_hours)?;
    let token = crate::generate_token();
    let link = store
        .create_enrollment_link(
            actor,
            device_name,
            group,
            owner,
            &crate::token_hash(&token),
            now + lifetime,
            now,
        )
        .await?;
    Ok((link, token))
}

/// `used`, `revoked`, `expired` or `open`.
pub fn link_status(l: &EnrollmentLink, now: i64) -> &'static str {
    if l.used_at.is_some() {
        "used"
    } else if l.revoked_at.is_some() {
        "revoked"
    } else if l.expires_at <= now {
        "expired"
    } else {
        "open"
    }
}

/// Filings admitted per second across all clients, and the burst: a whole department filing
/// at once gets through, a script cannot fill the pending queue in a moment or keep the
/// store's write lock busy (on PostgreSQL that lock is shared by every gateway).
const FILINGS_PER_SECOND: f64 = 1.0;
const FILINGS_BURST: f64 = 30.0;
static FILINGS: crate::RateLimit = crate::RateLimit::new(FILINGS_PER_SECOND, FILINGS_BURST);
/// Per client address: three filings at once, then one a minute. One client cannot use up
/// the shared budget above and shut out everyone else.
static FILINGS_PER_CLIENT: std::sync::LazyLock<crate::KeyedRateLimit> =
    std::sync::LazyLock::new(|| crate::KeyedRateLimit::new(1.0 / 60.0, 3.0));

/// Files a staff member's access request from `client` (its address, if known). Returns it and
/// the requester's secret, the key to their status page, which exists only in this answer.
pub async fn file_access_request(
    store: &Store,
    client: Option<std::net::IpAddr>,
    req: &NewAccessRequest,
    now: i64,
) -> Result<(AccessRequest, String), ServiceError> {
    // Without a known address (tests, or a server not given peer addresses) only the shared
    // budget applies.
    if client.is_some() && !FILINGS_PER_CLIENT.admit(client) {
        return Err(ServiceError::Busy(
            "you have filed several requests just now; please wait a minute before the next".into(),
        ));
    }
    if !FILINGS.admit() {
        return Err(ServiceError::Busy(
            "too many access requests right now; please try again in a minute".into(),
        ));
    }
    let secret = crate::generate_token();
    let r = store
        .create_access_request(
            req,
            &crate::token_hash(&secret),
            &crate::token_hash(&crate::request_link_secret(&secret)),
            now,
        )
        .await?;
    Ok((r, secret))
}

/// Approves a request: its requester's status page then offers the enrollment. The admin
/// never sees the link's secret.
pub async fn approve_access_request(
    store: &Store,
    actor: &str,
    id: i64,
    group: Option<&str>,
    expires_in_hours: Option<u32>,
    now: i64,
) -> Result<AccessRequest, ServiceError> {
    let lifetime = link_lifetime_secs(expires_in_hours)?;
    Ok(store
        .approve_access_request(actor, id, group.unwrap_or("default"), now + lifetime, now)
        .await?)
}
