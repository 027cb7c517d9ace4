//! Sign in to connect: a staff member's devices in groups that require it pass traffic only
//! during an activation. It starts when they finish a fresh sign-in at the identity provider
//! (its second factor included) for that purpose; they or an admin may end it early.

use crate::{Caller, Result, Service};
use heimweg_control::{DeviceStatus, Name, Scope};
use heimweg_store::{Activation, StaffSession, User};

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

    /// The staff member's running activation, ending when the first of their devices is cut
    /// off (a group with fewer hours ends it earlier for its devices), and the hours a new one
    /// gives that device (`None`: none of their devices needs a sign-in).
    pub async fn own_activation(
        &self,
        s: &StaffSession,
    ) -> Result<(Option<Activation>, Option<u8>)> {
        let now = self.now();
        let Some((shortest, _)) = self.sign_in_hours_of(&s.user).await? else {
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

    /// Starts `user`'s activation after a fresh sign-in for it; `None` when none of their
    /// devices needs one (nothing to start).
    pub(crate) async fn start_activation(
        &self,
        user: &User,
        actor: &heimweg_control::Actor,
    ) -> Result<Option<Activation>> {
        let Some((_, hours)) = self.sign_in_hours_of(user).await? else {
            return Ok(None);
        };
        let a = self
            .store
            .start_activation(actor, &user.name, hours, self.now())
            .await?;
        self.applied().await;
        Ok(Some(a))
    }

    /// The shortest and the longest sign-in time of the groups `user`'s active devices are in.
    async fn sign_in_hours_of(&self, user: &User) -> Result<Option<(u8, u8)>> {
        let now = self.now();
        let groups = self.store.groups().await?;
        let devices = self
            .store
            .devices(
                &heimweg_store::DeviceQuery {
                    owner: Some(user.name.as_str().to_string()),
                    limit: 500,
                    ..heimweg_store::DeviceQuery::default()
                },
                now,
            )
            .await?
            .items;
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
        Ok(hours.iter().min().copied().zip(hours.iter().max().copied()))
    }
}
