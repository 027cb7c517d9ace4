//! The access review (BSI NET.3.3.A5: only who needs it has access; ORP.4.A3: rights are
//! documented and reviewed): devices not seen for a set number of days lose their access,
//! announced on the panel a week before, and the list an auditor asks for. And one key, one
//! device (ORP.4.A14): what happens to a device whose key is used from two places at once
//! (see `reconcile::SharedKeyWatch`).

use crate::export::{excel_csv, utc};
use crate::{invalid, Caller, Result, Service};
use heimweg_control::{Actor, Name, Scope};
use heimweg_store::{AccessRow, Device, Group, SettingsChange};
use std::time::Duration;
use tokio::sync::watch;

/// How long before a device loses its access the panel announces it.
pub const REVIEW_NOTICE_DAYS: u32 = 7;
/// The shortest setting: a device unused over a long weekend and a holiday week must not lose
/// its access.
pub const MIN_UNSEEN_DAYS: u32 = 14;
pub const MAX_UNSEEN_DAYS: u32 = 3650;
/// The longest suspension of a device whose key is shared: a month; after that an admin
/// decides.
pub const MAX_SUSPEND_HOURS: u32 = 720;
/// How often each gateway runs the review (the store makes concurrent runs harmless).
const REVIEW_EVERY: Duration = Duration::from_secs(3600);
const DAY: i64 = 86_400;

/// A device the review will revoke soon, and when.
#[derive(Debug, Clone)]
pub struct DueDevice {
    pub device: Device,
    /// Unix seconds: when it loses its access unless it connects before.
    pub due_at: i64,
}

impl Service {
    /// Sets the access review: devices not seen for `days` days lose their access (0: off).
    /// An admin's decision (the panel's admins, the command line).
    pub async fn set_review(&self, caller: &Caller, days: u32) -> Result<heimweg_store::Settings> {
        caller.require_administrator("change the access review")?;
        if days != 0 && !(MIN_UNSEEN_DAYS..=MAX_UNSEEN_DAYS).contains(&days) {
            return Err(invalid(
                "unseen_days",
                format!("0 (off) or {MIN_UNSEEN_DAYS} to {MAX_UNSEEN_DAYS} days"),
            ));
        }
        let change = SettingsChange {
            review_unseen_days: Some(days),
            ..SettingsChange::default()
        };
        Ok(self
            .store
            .update_settings(caller.actor(), &change, self.now())
            .await?)
    }

    /// Sets what happens to a device whose key is used from two places at once: flagged
    /// only (0), or also suspended for `hours`. An admin's decision.
    pub async fn set_shared_key_suspend(
        &self,
        caller: &Caller,
        hours: u32,
    ) -> Result<heimweg_store::Settings> {
        caller.require_administrator("change the access review")?;
        if hours > MAX_SUSPEND_HOURS {
            return Err(invalid(
                "suspend_hours",
                format!("0 (only flag) to {MAX_SUSPEND_HOURS} hours"),
            ));
        }
        let change = SettingsChange {
            shared_key_suspend_hours: Some(hours),
            ..SettingsChange::default()
        };
        Ok(self
            .store
            .update_settings(caller.actor(), &change, self.now())
            .await?)
    }

    /// The devices that lose their access within [`REVIEW_NOTICE_DAYS`] unless they connect,
    /// the soonest first, with the review's setting (empty when it is off).
    pub async fn review_due(&self, caller: &Caller) -> Result<(u32, Vec<DueDevice>)> {
        caller.require(Scope::DevicesRead)?;
        let settings = self.store.settings().await?;
        let days = settings.review_unseen_days;
        if days == 0 {
            return Ok((0, Vec::new()));
        }
        let now = self.now();
        let window = i64::from(days) * DAY;
        let notice = i64::from(REVIEW_NOTICE_DAYS) * DAY;
        // A device made due by a change of the setting still gets its week.
        let earliest = settings.review_changed_at + notice;
        let due = self
            .store
            .unseen_devices(now - window + notice, now)
            .await?
            .into_iter()
            .map(|device| DueDevice {
                due_at: (device.last_seen() + window).max(earliest),
                device,
            })
            .collect();
        Ok((days, due))
    }

    /// Revokes the devices not seen for the review's number of days; the data plane follows.
    /// Returns their names (none when the review is off).
    pub async fn review_pass(&self) -> Result<Vec<Name>> {
        let settings = self.store.settings().await?;
        let days = settings.review_unseen_days;
        let now = self.now();
        // Off, or set within the last week: nobody has had the notice yet.
        if days == 0 || now < settings.review_changed_at + i64::from(REVIEW_NOTICE_DAYS) * DAY {
            return Ok(Vec::new());
        }
        let why = format!("not seen for {days} days (access review)");
        let revoked = self
            .store
            .revoke_unseen(&Actor::System, now - i64::from(days) * DAY, &why, now)
            .await?;
        if !revoked.is_empty() {
            self.applied().await;
        }
        Ok(revoked)
    }

    /// Runs the review every hour until `stop` turns true.
    pub async fn run_review(self, mut stop: watch::Receiver<bool>) {
        loop {
            match self.review_pass().await {
                Ok(revoked) if !revoked.is_empty() => tracing::info!(
                    devices = revoked.len(),
                    "access review: devices not seen for too long lost their access"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "the access review could not run"),
            }
            tokio::select! {
                () = tokio::time::sleep(REVIEW_EVERY) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Who has access to what at this moment: every device that may connect, its owner, its
    /// group's networks and usage window, since when and by whose decision, when last seen.
    pub async fn access_review(&self, caller: &Caller) -> Result<(Vec<AccessRow>, Vec<Group>)> {
        caller.require(Scope::UsersRead)?;
        caller.require(Scope::DevicesRead)?;
        let rows = self.store.access_review(self.now()).await?;
        Ok((rows, self.store.groups().await?))
    }
}

/// The access review as a list for a spreadsheet (see [`excel_csv`]), one row per device.
pub fn access_review_csv(rows: &[AccessRow], groups: &[Group]) -> String {
    excel_csv(
        &[
            "user",
            "device",
            "group",
            "networks",
            "usage_window",
            "since",
            "enrolled_by",
            "last_seen",
            "last_handshake",
            "expires",
        ],
        rows.iter().map(|r| {
            let d = &r.device;
            let group = groups.iter().find(|g| g.name == d.group);
            let networks = group.map_or_else(String::new, |g| {
                g.policy
                    .networks()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            });
            let window = group
                .and_then(|g| g.window.as_ref())
                .map_or_else(|| "any time".to_string(), ToString::to_string);
            [
                d.owner
                    .as_ref()
                    .map_or_else(String::new, ToString::to_string),
                d.name.to_string(),
                d.group.to_string(),
                networks,
                window,
                utc(d.created_at),
                r.enrolled_by.clone().unwrap_or_default(),
                utc(d.last_seen()),
                d.last_handshake_at.map_or_else(|| "never".to_string(), utc),
                d.expires_at.map_or_else(|| "never".to_string(), utc),
            ]
        }),
    )
}
