//! Gateway-wide settings.

use crate::{Caller, Result, Service};
use heimweg_control::Endpoint;
use heimweg_store::{Settings, SettingsChange};

impl Service {
    /// The settings: what every config and page is built from, so no scope guards them.
    pub async fn settings(&self) -> Result<Settings> {
        Ok(self.store.settings().await?)
    }

    /// Sets the host:port clients dial. Changing how the gateway is reached is an admin's
    /// decision: the panel's admins and the command line (no token scope grants it).
    pub async fn set_endpoint(&self, caller: &Caller, endpoint: Endpoint) -> Result<Settings> {
        caller.require_administrator("change the gateway's settings")?;
        let change = SettingsChange {
            endpoint: Some(endpoint),
            ..SettingsChange::default()
        };
        Ok(self
            .store
            .update_settings(caller.actor(), &change, self.now())
            .await?)
    }
}
