//! Devices: enrollment with its config (rendered before anything is written), key rotation,
//! changes, revocation, listings.

use crate::{Caller, Result, Service, ServiceError};
use heimweg_control::mobileconfig::{self, ApplePlatform};
use heimweg_control::{
    config_file_name, ClientConfig, DeviceStatus, ExpiryDays, Name, PrivateKey, PublicKey, Scope,
};
use heimweg_store::{
    Device, DeviceCounts, DeviceQuery, DeviceUpdate, Group, NewDevice, Page, Settings,
};
use ipnet::IpNet;
use std::net::IpAddr;

/// What an admin (or a script) asks for when enrolling a device.
#[derive(Debug, Clone)]
pub struct EnrollRequest {
    pub name: Name,
    pub group: Name,
    pub owner: Option<Name>,
    /// The device's own public key; without it the server generates the key pair and puts the
    /// private half into the config, which is shown once and stored nowhere.
    pub public_key: Option<PublicKey>,
    pub expires_in: Option<ExpiryDays>,
}

/// An enrollment or rotation: the stored device and its config, shown once.
#[derive(Debug)]
pub struct Enrollment {
    pub device: Device,
    /// The wg-quick text; without a PrivateKey line when the device brought its own key.
    pub config: String,
    pub has_private_key: bool,
    /// A download name every app imports.
    pub file_name: String,
    /// The same tunnel as an Apple profile (iPad, iPhone), when the config is complete.
    pub mobileconfig: Option<String>,
}

/// Organisation named in Apple profiles.
const PROFILE_ORGANISATION: &str = "heimweg";

/// The client config for a device of `group`, before its addresses are known (they are the
/// pools until [`finish`] sets them). Built and rendered before anything is written, so a
/// config we could not produce never leaves a change behind.
fn client_config(
    settings: &Settings,
    gateway_key: PublicKey,
    group: &Group,
    private_key: Option<PrivateKey>,
) -> Result<ClientConfig> {
    let endpoint = settings.endpoint.clone().ok_or_else(|| {
        ServiceError::NotReady(
            "set the gateway's public endpoint (host:port) before enrolling devices".into(),
        )
    })?;
    let policy = &group.policy;
    let conf = ClientConfig {
        private_key,
        addresses: vec![IpNet::from(settings.pool_v4), IpNet::from(settings.pool_v6)],
        dns: policy.resolvers().collect(),
        dns_search: policy.search_domains().map(String::from).collect(),
        mtu: settings.mtu,
        gateway_public_key: gateway_key,
        preshared_key: None,
        allowed_ips: if policy.tunnel().is_full() {
            vec![
                "0.0.0.0/0".parse().expect("literal network"),
                "::/0".parse().expect("literal network"),
            ]
        } else {
            policy.networks().to_vec()
        },
        endpoint,
        persistent_keepalive: Some(25),
    };
    conf.render()?;
    Ok(conf)
}

/// Renders `conf` for `device`'s own addresses: the config shown once, and its profile for
/// `platform`.
pub(crate) fn finish(
    mut conf: ClientConfig,
    device: Device,
    platform: ApplePlatform,
) -> Result<Enrollment> {
    conf.addresses = vec![
        IpNet::from(IpAddr::V4(device.ipv4)),
        IpNet::from(IpAddr::V6(device.ipv6)),
    ];
    let config = conf.render()?;
    let has_private_key = conf.private_key.is_some();
    let mobileconfig = has_private_key.then(|| {
        mobileconfig::render(
            device.name.as_str(),
            &config,
            &conf.endpoint.to_string(),
            PROFILE_ORGANISATION,
            platform,
            &mobileconfig::payload_identifier(&conf.gateway_public_key, device.id),
        )
    });
    Ok(Enrollment {
        file_name: config_file_name(device.name.as_str(), device.id),
        has_private_key,
        device,
        config,
        mobileconfig,
    })
}

/// The device's key pair: its own public key, or a fresh pair whose private half goes only
/// into the config.
pub(crate) fn key_pair(public_key: Option<PublicKey>) -> (Option<PrivateKey>, PublicKey) {
    match public_key {
        Some(k) => (None, k),
        None => {
            let k = PrivateKey::generate();
            let p = k.public_key();
            (Some(k), p)
        }
    }
}

impl Service {
    /// Refuses the gateway's own key as a device key: WireGuard peers cannot share a key with
    /// the interface they talk to (wireguard-go drops such a peer).
    pub(crate) fn check_device_key(&self, key: &PublicKey) -> Result<()> {
        if Some(*key) == self.gateway_key {
            return Err(ServiceError::Invalid(
                "public_key: this is the gateway's own key; the device needs a key of its own"
                    .into(),
            ));
        }
        Ok(())
    }

    /// A config for a device of `group`, ready to be finished with its addresses.
    pub(crate) async fn prepare_config(
        &self,
        group: &Name,
        private_key: Option<PrivateKey>,
    ) -> Result<ClientConfig> {
        let settings = self.store.settings().await?;
        let group = self.store.group(group).await?;
        client_config(&settings, self.gateway_key()?, &group, private_key)
    }

    /// Enrolls a device and renders its config; answers once the local data plane has it.
    pub async fn enroll(&self, caller: &Caller, req: EnrollRequest) -> Result<Enrollment> {
        caller.require(Scope::DevicesWrite)?;
        let (private_key, public_key) = key_pair(req.public_key);
        self.check_device_key(&public_key)?;
        let conf = self.prepare_config(&req.group, private_key).await?;
        let now = self.now();
        let device = self
            .store
            .add_device(
                caller.actor(),
                &NewDevice {
                    name: req.name,
                    group: req.group,
                    public_key,
                    preshared_key: None,
                    owner: req.owner,
                    expires_at: req.expires_in.map(|d| now + d.as_secs()),
                },
                now,
            )
            .await?;
        let enrolled = finish(conf, device, ApplePlatform::Ios)?;
        self.applied().await;
        Ok(enrolled)
    }

    /// Gives a device a new key pair (or the public key it brings) and renders its new config;
    /// name, addresses, group and history stay. The old key stops working within a second.
    pub async fn rotate(
        &self,
        caller: &Caller,
        name: &Name,
        public_key: Option<PublicKey>,
    ) -> Result<Enrollment> {
        caller.require(Scope::DevicesWrite)?;
        let current = self.store.device(name).await?;
        self.rotate_as(caller.actor(), &current, public_key).await
    }

    /// [`Service::rotate`] of `current` by `actor`, whose right to it is checked already.
    pub(crate) async fn rotate_as(
        &self,
        actor: &heimweg_control::Actor,
        current: &Device,
        public_key: Option<PublicKey>,
    ) -> Result<Enrollment> {
        let (private_key, public_key) = key_pair(public_key);
        self.check_device_key(&public_key)?;
        let conf = self.prepare_config(&current.group, private_key).await?;
        let device = self
            .store
            .rotate_device_key(actor, &current.name, public_key, self.now())
            .await?;
        let rotated = finish(conf, device, ApplePlatform::Ios)?;
        self.applied().await;
        Ok(rotated)
    }

    /// Revokes a device: the gateway drops it within a second.
    pub async fn revoke(&self, caller: &Caller, name: &Name) -> Result<()> {
        caller.require(Scope::DevicesWrite)?;
        self.store
            .revoke_device(caller.actor(), name, self.now())
            .await?;
        self.applied().await;
        Ok(())
    }

    /// Changes a device's group, owner or expiry.
    pub async fn update_device(
        &self,
        caller: &Caller,
        name: &Name,
        u: DeviceUpdate,
    ) -> Result<Device> {
        caller.require(Scope::DevicesWrite)?;
        if u.is_empty() {
            return Err(ServiceError::Invalid("nothing to change".into()));
        }
        let now = self.now();
        if let Some(Some(at)) = u.expires_at {
            if at <= now {
                return Err(ServiceError::Invalid(
                    "the expiry must be in the future; revoke the device to end it now".into(),
                ));
            }
        }
        let device = self
            .store
            .update_device(caller.actor(), name, &u, now)
            .await?;
        self.applied().await;
        Ok(device)
    }

    /// Devices, newest first, filtered and paginated.
    pub async fn devices(&self, caller: &Caller, q: &DeviceQuery) -> Result<Page<Device>> {
        caller.require(Scope::DevicesRead)?;
        Ok(self.store.devices(q, self.now()).await?)
    }

    pub async fn device(&self, caller: &Caller, name: &Name) -> Result<Device> {
        caller.require(Scope::DevicesRead)?;
        Ok(self.store.device(name).await?)
    }

    /// Devices by state, and how many active ones had a handshake within `connected_secs`.
    pub async fn device_counts(
        &self,
        caller: &Caller,
        connected_secs: i64,
    ) -> Result<DeviceCounts> {
        caller.require(Scope::DevicesRead)?;
        Ok(self.store.device_counts(self.now(), connected_secs).await?)
    }

    /// How many active devices expire within each of `within` (seconds from now): for the
    /// operators' alert before a batch of devices stops working. Counted by the database, so
    /// a scrape costs the same at 100,000 devices.
    pub async fn devices_expiring(&self, within: &[i64]) -> Result<Vec<i64>> {
        let now = self.now();
        let mut out = Vec::with_capacity(within.len());
        for w in within {
            out.push(self.store.count_expiring(now, now + w).await?);
        }
        Ok(out)
    }

    /// A device's state now.
    pub fn status_of(&self, d: &Device) -> DeviceStatus {
        d.status(self.now())
    }
}
