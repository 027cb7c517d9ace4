//! Sign in to connect: a staff member's devices in groups that require it pass traffic only
//! during an activation. It starts when they finish a fresh sign-in at the identity provider
//! (its second factor included) for that purpose; they or an admin may end it early.

use crate::{Caller, Result, Service};
use heimweg_control::{DeviceStatus, Name, Scope};
use heimweg_store::{Activation, Device, DeviceQuery, Group, StaffSession, User};

impl Service {
    /// The activations running now.
    pub async fn activations(&self, caller: &Caller) -> Result<Vec<Activation>> {
        caller.require(Scope::UsersRead)?;
        Ok(self.store.activations(self.now()).await?)
    }

    /// Ends `user`'s activation now: their devices in sign-in groups are cut off on every
    /// gateway within a second.
    pub async fn end_activation(&self, caller: &Caller, user: &Name) -> Result<()> {
        caller.require(Scope::UsersWrite)?;
        self.store
            .end_activation(caller.actor(), user, self.now())
            .await?;
        self.applied().await;
        Ok(())
    }

    /// The staff member's running activation, ending when the first of their `devices` (from
    /// [`Service::own_devices`]) is cut off (a group with fewer hours ends it earlier for its
    /// devices), and the hours a new one gives that device (`None`: none of their devices
    /// needs a sign-in).
    pub async fn own_activation(
        &self,
        s: &StaffSession,
        devices: &[Device],
    ) -> Result<(Option<Activation>, Option<u8>)> {
        let now = self.now();
        let groups = self.store.groups().await?;
        let Some((shortest, _)) = sign_in_hours(devices, &groups, now) else {
            return Ok((None, None));
        };
        let running = self
            .store
            .activation_of(&s.user.name, now)
            .await?
            .map(|mut a| {
                a.ends_at = a.ends_at.min(a.starts_at + i64::from(shortest) * 3600);
                a
            })
            .filter(|a| a.ends_at > now);
        Ok((running, Some(shortest)))
    }

    /// Ends the staff member's own activation.
    pub async fn end_own_activation(&self, s: &StaffSession) -> Result<()> {
        self.store
            .end_activation(&s.actor(), &s.user.name, self.now())
            .await?;
        self.applied().await;
        Ok(())
    }

    /// Starts `user`'s activation after their fresh sign-in for it (so it is theirs in the
    /// audit log); `None` when none of their devices needs one (nothing to start).
    pub(crate) async fn start_activation(&self, user: &User) -> Result<Option<Activation>> {
        let now = self.now();
        let devices = self
            .store
            .devices(
                &DeviceQuery {
                    owner: Some(user.name.as_str().to_string()),
                    status: Some(DeviceStatus::Active),
                    limit: 500,
                    ..DeviceQuery::default()
                },
                now,
            )
            .await?
            .items;
        let groups = self.store.groups().await?;
        let Some((_, hours)) = sign_in_hours(&devices, &groups, now) else {
            return Ok(None);
        };
        let a = self
            .store
            .start_activation(&user.staff_actor(), &user.name, hours, now)
            .await?;
        self.applied().await;
        Ok(Some(a))
    }
}

/// The shortest and the longest sign-in time of the groups the active ones of `devices` are
/// in; `None` when none of them needs a sign-in.
fn sign_in_hours(devices: &[Device], groups: &[Group], now: i64) -> Option<(u8, u8)> {
    let hours: Vec<u8> = devices
        .iter()
        .filter(|d| d.status(now) == DeviceStatus::Active)
        .filter_map(|d| {
            groups
                .iter()
                .find(|g| g.name.key() == d.group.key())
                .and_then(|g| g.sign_in_hours)
        })
        .collect();
    hours.iter().min().copied().zip(hours.iter().max().copied())
}
