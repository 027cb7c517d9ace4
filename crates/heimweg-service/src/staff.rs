//! A staff member's own page: signed in through the identity provider (or with the
//! directory password and a second factor, staff_sign_in.rs), they see their devices
//! and enroll, rotate or revoke their own, within their sign-in's groups and the device limit,
//! and nothing else. Every change is audited as theirs (`staff:NAME`).

use crate::devices::{finish, key_pair};
use crate::{Enrollment, Result, Service, ServiceError};
use heimweg_control::identity::own_device_name;
use heimweg_control::mobileconfig::ApplePlatform;
use heimweg_control::{DeviceStatus, Name, PublicKey, UsageWindow};
use heimweg_store::{Absence, AbsenceOf, Device, DeviceQuery, NewDevice, StaffSession};

/// Devices a staff page lists: enough for any limit, bounded for a page.
const OWN_DEVICES_SHOWN: u32 = 100;

impl Service {
    /// The live staff session whose id hashes to `id_hash`.
    pub async fn staff_session(&self, id_hash: &str) -> Result<Option<StaffSession>> {
        Ok(self.store.staff_session(id_hash, self.now()).await?)
    }

    pub async fn end_staff_session(&self, id_hash: &str) -> Result<()> {
        Ok(self.store.delete_staff_session(id_hash).await?)
    }

    /// The most active devices a staff member may have; `None` where staff do not sign in.
    pub fn own_device_limit(&self) -> Option<u32> {
        self.identity_provider()
            .map(|s| s.device_limit)
            .or_else(|| self.directory_sign_in().map(|d| d.device_limit))
    }

    /// The staff member's devices, active ones first, newest first.
    pub async fn own_devices(&self, s: &StaffSession) -> Result<Vec<Device>> {
        let q = DeviceQuery {
            owner: Some(s.user.name.as_str().to_string()),
            limit: OWN_DEVICES_SHOWN,
            ..DeviceQuery::default()
        };
        let now = self.now();
        // The owner filter compares names by their key: exactly this user's devices.
        let mut devices = self.store.devices(&q, now).await?.items;
        devices.sort_by_key(|d| (d.status(now) != DeviceStatus::Active, -d.created_at));
        Ok(devices)
    }

    /// When the staff member can connect: the usage windows of the groups they may use or
    /// have devices in, and the absences that suspend them or one of `devices` (from
    /// [`Service::own_devices`]), running or planned.
    pub async fn own_access_times(
        &self,
        s: &StaffSession,
        devices: &[Device],
    ) -> Result<(Vec<(Name, UsageWindow)>, Vec<Absence>)> {
        let mine = |g: &Name| {
            s.groups.iter().any(|n| n.key() == g.key())
                || devices.iter().any(|d| d.group.key() == g.key())
        };
        let windows = self
            .store
            .groups()
            .await?
            .into_iter()
            .filter(|g| mine(&g.name))
            .filter_map(|g| g.window.map(|w| (g.name, w)))
            .collect();
        let absences = self
            .store
            .absences(self.now())
            .await?
            .into_iter()
            .filter(|a| match &a.of {
                AbsenceOf::User(u) => u.key() == s.user.name.key(),
                AbsenceOf::Device(d) => devices.iter().any(|x| x.name.key() == d.key()),
            })
            .collect();
        Ok((windows, absences))
    }

    /// Enrolls a device of the staff member's, named after them (`anna-laptop`), in `group`
    /// (one their sign-in allows), with the key pair made here or the public key the device
    /// made.
    pub async fn enroll_own(
        &self,
        s: &StaffSession,
        label: &str,
        group: &Name,
        public_key: Option<PublicKey>,
    ) -> Result<Enrollment> {
        let limit = self
            .own_device_limit()
            .ok_or_else(|| ServiceError::NotReady("no identity provider is connected".into()))?;
        if !s.groups.iter().any(|g| g.key() == group.key()) {
            return Err(crate::invalid(
                "group",
                format!("{group} is not one of the groups you may choose"),
            ));
        }
        let name = own_device_name(&s.user.name, label).map_err(|e| crate::invalid("name", e))?;
        let (private_key, public_key) = key_pair(public_key);
        self.check_device_key(&public_key)?;
        let conf = self.prepare_config(group, private_key).await?;
        let device = self
            .store
            .add_own_device(
                &s.actor(),
                &NewDevice {
                    name,
                    group: group.clone(),
                    public_key,
                    preshared_key: None,
                    owner: Some(s.user.name.clone()),
                    expires_at: None,
                },
                limit,
                self.now(),
            )
            .await?;
        let enrolled = finish(conf, device, ApplePlatform::Ios)?;
        self.applied().await;
        Ok(enrolled)
    }

    /// The staff member's own active device `name`; anyone else's is "not found", so the page
    /// tells nobody which names exist.
    async fn own_device(&self, s: &StaffSession, name: &Name) -> Result<Device> {
        let not_found = || {
            ServiceError::Store(heimweg_store::StoreError::NotFound(format!(
                "you have no device named {name:?}"
            )))
        };
        let d = self.store.device(name).await.map_err(|_| not_found())?;
        if d.owner
            .as_ref()
            .is_some_and(|o| o.key() == s.user.name.key())
            && d.status(self.now()) == DeviceStatus::Active
        {
            Ok(d)
        } else {
            Err(not_found())
        }
    }

    /// Gives the staff member's device a new key pair, its private half only in the config.
    pub async fn rotate_own(&self, s: &StaffSession, name: &Name) -> Result<Enrollment> {
        let current = self.own_device(s, name).await?;
        self.rotate_as(&s.actor(), &current, None).await
    }

    /// Revokes the staff member's device: the gateway drops it within a second.
    pub async fn revoke_own(&self, s: &StaffSession, name: &Name) -> Result<()> {
        let current = self.own_device(s, name).await?;
        self.store
            .revoke_device(&s.actor(), &current.name, self.now())
            .await?;
        self.applied().await;
        Ok(())
    }
}
