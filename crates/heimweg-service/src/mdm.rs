//! Profiles for devices an MDM manages: one export gives many iPads or Macs their Apple
//! profiles at once, as a zip for the MDM to push.
//!
//! heimweg keeps no private key, so a profile needs a new one: the export gives every selected
//! device a new key pair, in one transaction, and the profile of each. The profile keeps the
//! device's `PayloadIdentifier`, so on the device it replaces the one installed before; until
//! the MDM has pushed it, the device's old key no longer works.

use crate::devices::{finish, key_pair};
use crate::{Caller, Result, Service, ServiceError};
use heimweg_control::mobileconfig::{self, ApplePlatform};
use heimweg_control::{ClientConfig, DeviceStatus, Name, Scope};
use heimweg_store::{Device, DeviceQuery};
use std::collections::HashMap;

/// Most devices one export re-keys: a city's managed iPads in one go, an archive of a few
/// megabytes.
pub const MAX_MDM_DEVICES: usize = 5_000;

/// Which devices an export is for: every active device of `group`, and the named ones.
#[derive(Debug, Clone)]
pub struct MdmExport {
    pub group: Option<Name>,
    pub devices: Vec<Name>,
    pub platform: ApplePlatform,
}

/// An export: one profile per device, and the archive an MDM takes.
#[derive(Debug)]
pub struct MdmProfiles {
    /// The devices with their new keys, by name.
    pub devices: Vec<Device>,
    /// A zip of `<file name>.mobileconfig` entries, one per device; the names differ for
    /// every device (see `config_file_name`).
    pub archive: Vec<u8>,
}

impl Service {
    /// Gives every selected device a new key and its Apple profile (see the module's
    /// comment). All or nothing: the profiles are rendered before the one transaction that
    /// changes the keys, and an unknown or revoked device refuses the whole export.
    pub async fn mdm_export(&self, caller: &Caller, req: MdmExport) -> Result<MdmProfiles> {
        caller.require(Scope::DevicesWrite)?;
        let now = self.now();
        let mut selected: Vec<Device> = Vec::new();
        if let Some(group) = &req.group {
            self.store.group(group).await?;
            let mut q = DeviceQuery {
                group: Some(group.to_string()),
                status: Some(DeviceStatus::Active),
                limit: 500,
                ..DeviceQuery::default()
            };
            loop {
                let page = self.store.devices(&q, now).await?;
                let got = page.items.len();
                selected.extend(page.items);
                if got < 500 || selected.len() > MAX_MDM_DEVICES {
                    break;
                }
                q.offset += 500;
            }
        }
        for name in &req.devices {
            let d = self.store.device(name).await?;
            if d.status(now) != DeviceStatus::Active {
                return Err(ServiceError::Invalid(format!(
                    "{name} is {}: only active devices get a profile",
                    d.status(now).as_str()
                )));
            }
            selected.push(d);
        }
        let mut seen = std::collections::HashSet::new();
        selected.retain(|d| seen.insert(d.id));
        if selected.is_empty() {
            return Err(ServiceError::Invalid(
                "no active device matches: name a group with devices, or devices".into(),
            ));
        }
        if selected.len() > MAX_MDM_DEVICES {
            return Err(ServiceError::Invalid(format!(
                "more than {MAX_MDM_DEVICES} devices: export them in parts (by group or by name)"
            )));
        }

        // Everything rendered first: a config or archive we cannot produce changes nothing.
        let mut configs: HashMap<String, ClientConfig> = HashMap::new();
        let mut keys = Vec::with_capacity(selected.len());
        let mut files = Vec::with_capacity(selected.len());
        for device in selected {
            let group_key = device.group.key();
            let conf = match configs.get(&group_key) {
                Some(c) => c.clone(),
                None => {
                    let c = self.prepare_config(&device.group, None).await?;
                    configs.insert(group_key, c.clone());
                    c
                }
            };
            let (private_key, public_key) = key_pair(None);
            let conf = ClientConfig {
                private_key,
                ..conf
            };
            let name = device.name.clone();
            let enrolled = finish(conf, device, req.platform)?;
            let profile = enrolled.mobileconfig.ok_or_else(|| {
                ServiceError::NotReady("a profile needs the device's private key".into())
            })?;
            let stem = enrolled.file_name.trim_end_matches(".conf");
            files.push((format!("{stem}.mobileconfig"), profile));
            keys.push((name, public_key));
        }
        let archive = self.archive(files, now).await?;
        let devices = self
            .store
            .rotate_device_keys(caller.actor(), &keys, now)
            .await?;
        self.applied().await;
        Ok(MdmProfiles { devices, archive })
    }
}

impl Service {
    /// The zip of the profiles as the export writes them: signed with the organisation's
    /// certificate when there is one (iOS and macOS then show them as verified; the signature
    /// wraps the same plist), else the plists themselves. Thousands of signatures are
    /// seconds of CPU: they are made off the async threads.
    async fn archive(&self, files: Vec<(String, String)>, now: i64) -> Result<Vec<u8>> {
        let zip = |files: &[(String, Vec<u8>)]| {
            mobileconfig::zip(files).map_err(|e| ServiceError::Invalid(e.to_string()))
        };
        let Some(signer) = self.profile_signer.clone() else {
            let plain: Vec<(String, Vec<u8>)> = files
                .into_iter()
                .map(|(n, p)| (n, p.into_bytes()))
                .collect();
            return zip(&plain);
        };
        let signed: Vec<(String, Vec<u8>)> = tokio::task::spawn_blocking(move || {
            files
                .into_iter()
                .map(|(name, profile)| {
                    let signed = signer.sign(profile.as_bytes(), now).map_err(|e| {
                        ServiceError::NotReady(format!("signing the profiles: {e}"))
                    })?;
                    Ok((name, signed))
                })
                .collect::<Result<_>>()
        })
        .await
        .map_err(|e| ServiceError::NotReady(format!("signing the profiles: {e}")))??;
        zip(&signed)
    }
}
