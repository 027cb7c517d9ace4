//! Groups and their access policy.

use crate::{Caller, Result, Service};
use heimweg_control::{GroupPolicy, Name, Scope};
use heimweg_store::{Group, GroupPatch};

impl Service {
    pub async fn groups(&self, caller: &Caller) -> Result<Vec<Group>> {
        caller.require(Scope::GroupsRead)?;
        Ok(self.store.groups().await?)
    }

    pub async fn group(&self, caller: &Caller, name: &Name) -> Result<Group> {
        caller.require(Scope::GroupsRead)?;
        Ok(self.store.group(name).await?)
    }

    /// Creates a group; its policy was validated when it was built.
    pub async fn create_group(
        &self,
        caller: &Caller,
        name: &Name,
        policy: &GroupPolicy,
    ) -> Result<Group> {
        caller.require(Scope::GroupsWrite)?;
        Ok(self
            .store
            .create_group(caller.actor(), name, policy, self.now())
            .await?)
    }

    /// Changes a group's policy; every device in it follows within a second. Their configs
    /// keep the AllowedIPs they were issued with: the gateway's filter, not the config, is the
    /// boundary.
    pub async fn update_group(
        &self,
        caller: &Caller,
        name: &Name,
        patch: GroupPatch,
    ) -> Result<Group> {
        caller.require(Scope::GroupsWrite)?;
        if patch.is_empty() {
            return Err(crate::ServiceError::Invalid("nothing to change".into()));
        }
        let group = self
            .store
            .update_group(caller.actor(), name, patch, self.now())
            .await?;
        self.applied().await;
        Ok(group)
    }
}
