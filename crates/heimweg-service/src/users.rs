//! Staff who own devices, and disabling a leaver.

use crate::{Caller, Result, Service};
use heimweg_control::{Email, Name, Scope};
use heimweg_store::{Device, DeviceQuery, Page, User};

impl Service {
    pub async fn create_user(
        &self,
        caller: &Caller,
        name: &Name,
        email: Option<&Email>,
    ) -> Result<User> {
        caller.require(Scope::UsersWrite)?;
        Ok(self
            .store
            .create_user(caller.actor(), name, email, self.now())
            .await?)
    }

    /// Users by name, with a substring search over name and e-mail.
    pub async fn users(
        &self,
        caller: &Caller,
        search: Option<&str>,
        limit: u32,
        offset: u32,
    ) -> Result<Page<User>> {
        caller.require(Scope::UsersRead)?;
        Ok(self.store.users(search, limit, offset, self.now()).await?)
    }

    /// A user, and their devices (newest first, up to 500) if the caller may see devices.
    pub async fn user(&self, caller: &Caller, name: &Name) -> Result<(User, Option<Vec<Device>>)> {
        caller.require(Scope::UsersRead)?;
        let now = self.now();
        let user = self.store.user(name, now).await?;
        let devices = if caller.may(Scope::DevicesRead) {
            let q = DeviceQuery {
                owner: Some(name.to_string()),
                limit: 500,
                ..DeviceQuery::default()
            };
            Some(self.store.devices(&q, now).await?.items)
        } else {
            None
        };
        Ok((user, devices))
    }

    /// Disables a user who left: all their devices are revoked at once, their open links
    /// withdrawn. Needs the right to revoke devices as well as to change users.
    pub async fn disable_user(&self, caller: &Caller, name: &Name) -> Result<u64> {
        caller.require(Scope::UsersWrite)?;
        caller.require(Scope::DevicesWrite)?;
        let revoked = self
            .store
            .disable_user(caller.actor(), name, self.now())
            .await?;
        self.applied().await;
        Ok(revoked)
    }
}
