//! The audit log.

use crate::{Caller, Result, Service};
use heimweg_control::{Name, Scope};
use heimweg_store::{AuditEntry, Page};

impl Service {
    /// The newest entries.
    pub async fn audit_log(&self, caller: &Caller, limit: u32) -> Result<Vec<AuditEntry>> {
        caller.require(Scope::AuditRead)?;
        Ok(self.store.audit_log(limit.clamp(1, 1000)).await?)
    }

    /// Entries, newest first, optionally only those about `subject`.
    pub async fn audit_entries(
        &self,
        caller: &Caller,
        subject: Option<&str>,
        limit: u32,
        offset: u32,
    ) -> Result<Page<AuditEntry>> {
        caller.require(Scope::AuditRead)?;
        Ok(self.store.audit_entries(subject, limit, offset).await?)
    }

    /// A device's own history (the newest `limit` entries): part of looking at the device.
    pub async fn device_history(
        &self,
        caller: &Caller,
        device: &Name,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        caller.require(Scope::DevicesRead)?;
        Ok(self
            .store
            .audit_entries(Some(device.as_str()), limit, 0)
            .await?
            .items)
    }
}
