//! A rollout's people list, imported in batches: each batch is one transaction that creates
//! the users who are new and prepares a one-time link for each device that has neither a
//! device nor an open link yet. Importing the same list again changes nothing.

use crate::db::audit;
use crate::groups::group_id;
use crate::links::{insert_link, NewLink};
use crate::mail::queue_mail;
use crate::users::insert_user;
use crate::{Result, Store, StoreError};
use heimweg_control::name::name_key;
use heimweg_control::{Actor, AuditAction, Email, Name};
use std::collections::HashMap;

/// One person of the list, checked by the caller; `link` (owned by `user`) when the row names
/// a device.
#[derive(Debug, Clone)]
pub struct PersonImport {
    pub user: Name,
    pub email: Option<Email>,
    pub link: Option<NewLink>,
    /// Mail the link's invitation here (queued with the link, in its transaction).
    pub mail_to: Option<Email>,
}

/// What became of a person's user record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserOutcome {
    Created,
    /// Already there and left as it is; `email_differs` when the list gives another address.
    Exists {
        email_differs: bool,
    },
}

/// What became of a person's device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceOutcome {
    /// The row names no device.
    None,
    /// A new link, by id.
    Invited(i64),
    /// An open link for this device and person exists already.
    AlreadyInvited,
    /// The person has this device already.
    AlreadyEnrolled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonOutcome {
    /// Nothing of this person was changed, for the reason given.
    Refused(String),
    Done {
        user: UserOutcome,
        device: DeviceOutcome,
    },
}

impl Store {
    /// Imports `people` in one transaction, or, unless `apply`, only says what that would do
    /// (the same checks in a transaction that is rolled back). A person whose row cannot be
    /// imported (a disabled user, an unknown group, a device name someone else has) is
    /// refused alone.
    pub async fn import_people(
        &self,
        actor: &Actor,
        people: &[PersonImport],
        now: i64,
        apply: bool,
    ) -> Result<Vec<PersonOutcome>> {
        let mut tx = self.write(actor).await?;
        // Open links by device name key: their owner's key. Read once per batch; a batch's own
        // links are added as they are made.
        let open: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT device_name, owner FROM enrollment_links
             WHERE used_at IS NULL AND revoked_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut open: HashMap<String, Option<String>> = open
            .into_iter()
            .map(|(d, o)| (name_key(&d), o.map(|o| name_key(&o))))
            .collect();
        let mut out = Vec::with_capacity(people.len());
        for p in people {
            out.push(import_person(&mut tx, actor, p, now, &mut open).await?);
        }
        if apply {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(out)
    }
}

/// One person, inside the batch's transaction.
async fn import_person(
    tx: &mut crate::db::Tx<'_>,
    actor: &Actor,
    p: &PersonImport,
    now: i64,
    open: &mut HashMap<String, Option<String>>,
) -> Result<PersonOutcome> {
    let user_key = p.user.key();
    if let Some(link) = &p.link {
        if let Err(e) = group_id(tx, &link.group).await {
            return Ok(PersonOutcome::Refused(format!("group: {}", refusal(e)?)));
        }
    }
    let found: Option<(Option<i64>, Option<String>)> =
        sqlx::query_as("SELECT disabled_at, email FROM users WHERE name_key = $1")
            .bind(&user_key)
            .fetch_optional(&mut **tx)
            .await?;
    let device = match &p.link {
        None => Ok(DeviceOutcome::None),
        Some(link) => device_state(tx, link, &user_key, open).await?,
    };
    let device = match (found.as_ref(), device) {
        (Some((Some(_), _)), _) => {
            return Ok(PersonOutcome::Refused(format!(
                "user: {} is disabled (left); nothing is enrolled for them",
                p.user
            )));
        }
        (_, Err(reason)) => return Ok(PersonOutcome::Refused(reason)),
        (_, Ok(d)) => d,
    };
    let user = match found {
        Some((_, email)) => UserOutcome::Exists {
            email_differs: p
                .email
                .as_ref()
                .is_some_and(|e| email.is_none_or(|old| !old.eq_ignore_ascii_case(e.as_str()))),
        },
        None => {
            insert_user(tx, &p.user, p.email.as_ref(), now).await?;
            let detail = p.email.as_ref().map_or("", Email::as_str);
            audit(
                tx,
                now,
                actor,
                AuditAction::UserCreate,
                p.user.as_str(),
                detail,
            )
            .await?;
            UserOutcome::Created
        }
    };
    let device = match (&p.link, device) {
        (Some(link), DeviceOutcome::Invited(_)) => {
            let id = insert_link(tx, actor, link, now).await?;
            if let Some(to) = &p.mail_to {
                queue_mail(tx, actor, id, to.as_str(), false, now).await?;
            }
            open.insert(link.device_name.key(), Some(user_key));
            DeviceOutcome::Invited(id)
        }
        (_, d) => d,
    };
    Ok(PersonOutcome::Done { user, device })
}

/// Whether the person's device is new (`Invited(0)`: a link is to be made), there already, or
/// refused because the name belongs to someone else or to a revoked device.
async fn device_state(
    tx: &mut crate::db::Tx<'_>,
    link: &NewLink,
    user_key: &str,
    open: &HashMap<String, Option<String>>,
) -> Result<std::result::Result<DeviceOutcome, String>> {
    let name = &link.device_name;
    let device: Option<(Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT d.revoked_at, u.name_key FROM devices d LEFT JOIN users u ON u.id = d.owner_id
         WHERE d.name_key = $1",
    )
    .bind(name.key())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match device {
        Some((Some(_), _)) => Err(format!(
            "device: {name} is the name of a revoked device; give the new one another name"
        )),
        Some((None, owner)) if owner.as_deref() == Some(user_key) => {
            Ok(DeviceOutcome::AlreadyEnrolled)
        }
        Some(_) => Err(format!("device: {name} is someone else's device")),
        None => match open.get(&name.key()) {
            Some(owner) if owner.as_deref() == Some(user_key) => Ok(DeviceOutcome::AlreadyInvited),
            Some(_) => Err(format!(
                "device: an open enrollment link for {name} is someone else's"
            )),
            None => Ok(DeviceOutcome::Invited(0)),
        },
    })
}

/// A refusal a person reads (not found, conflict, invalid); any other error ends the batch.
fn refusal(e: StoreError) -> Result<String> {
    match e {
        StoreError::NotFound(m) | StoreError::Conflict(m) | StoreError::Invalid(m) => Ok(m),
        other => Err(other),
    }
}

/// A group's rollout: how far its people got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRow {
    pub group: Name,
    /// Enrollment links ever made for the group's devices.
    pub invited: i64,
    /// Links not used yet and still open.
    pub open_invitations: i64,
    /// Links that expired unused: people to remind.
    pub expired_invitations: i64,
    /// Devices neither revoked nor expired.
    pub enrolled: i64,
    /// Of those, devices that ever completed a handshake.
    pub connected_ever: i64,
    /// Of those, devices with a handshake in the last `recent_secs`.
    pub connected_recently: i64,
}

impl Store {
    /// Every group's rollout, by group name; counted by the database (two queries).
    pub async fn rollout(&self, now: i64, recent_secs: i64) -> Result<Vec<RolloutRow>> {
        let links: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT group_id, COUNT(*),
               COALESCE(SUM(CASE WHEN used_at IS NULL AND revoked_at IS NULL AND expires_at > $1
                            THEN 1 ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN used_at IS NULL AND revoked_at IS NULL AND expires_at <= $1
                            THEN 1 ELSE 0 END), 0)
             FROM enrollment_links GROUP BY group_id",
        )
        .bind(now)
        .fetch_all(&self.reads)
        .await?;
        let devices: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT group_id, COUNT(*),
               COALESCE(SUM(CASE WHEN last_handshake_at IS NOT NULL THEN 1 ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN last_handshake_at > $2 THEN 1 ELSE 0 END), 0)
             FROM devices WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1)
             GROUP BY group_id",
        )
        .bind(now)
        .bind(now - recent_secs)
        .fetch_all(&self.reads)
        .await?;
        let links: HashMap<i64, (i64, i64, i64)> = links
            .into_iter()
            .map(|(g, a, b, c)| (g, (a, b, c)))
            .collect();
        let devices: HashMap<i64, (i64, i64, i64)> = devices
            .into_iter()
            .map(|(g, a, b, c)| (g, (a, b, c)))
            .collect();
        Ok(self
            .groups()
            .await?
            .into_iter()
            .map(|g| {
                let (invited, open_invitations, expired_invitations) =
                    links.get(&g.id).copied().unwrap_or_default();
                let (enrolled, connected_ever, connected_recently) =
                    devices.get(&g.id).copied().unwrap_or_default();
                RolloutRow {
                    group: g.name,
                    invited,
                    open_invitations,
                    expired_invitations,
                    enrolled,
                    connected_ever,
                    connected_recently,
                }
            })
            .collect())
    }
}
