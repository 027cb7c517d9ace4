//! Changes to what already exists: a device's key, group, owner or expiry; a group's policy;
//! users (and disabling a leaver); API tokens. Each is one audited write transaction that
//! bumps the revision when the data plane has to follow.

use crate::{
    audit, bump_revision, escape_like, pool, upsert_user, validate_name, ApiToken, Device, Group,
    Page, Result, Store, StoreError, Tx,
};
use heimweg_control::PublicKey;
use ipnet::IpNet;
use sqlx::Row;

/// Changes to a device; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct DeviceUpdate {
    /// Moves the device to another group (and so under another access policy).
    pub group: Option<String>,
    /// `Some(None)` removes the owner.
    pub owner: Option<Option<String>>,
    /// `Some(None)` makes the device permanent.
    pub expires_at: Option<Option<i64>>,
}

/// Changes to a group's access policy; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct GroupUpdate {
    pub allowed_prefixes: Option<Vec<IpNet>>,
    pub full_tunnel: Option<bool>,
    pub dns: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: Option<String>,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
    /// Devices that are neither revoked nor expired.
    pub active_devices: i64,
}

/// The id of a device that is not revoked, or a clear error.
async fn active_device_id(tx: &mut Tx<'_>, name: &str) -> Result<i64> {
    sqlx::query_scalar("SELECT id FROM devices WHERE name = $1 AND revoked_at IS NULL")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no active device named {name:?}")))
}

impl Store {
    /// Gives a device a new public key, keeping its name, addresses, group and history. The
    /// old key stops working at the next reconcile (within a second); a preshared key, being
    /// tied to the old key pair, is dropped.
    pub async fn rotate_device_key(
        &self,
        actor: &str,
        name: &str,
        new_key: PublicKey,
        now: i64,
    ) -> Result<Device> {
        let key = new_key.to_base64();
        let mut tx = self.write().await?;
        let id = active_device_id(&mut tx, name).await?;
        let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM devices WHERE public_key = $1")
            .bind(&key)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(StoreError::Conflict(
                "a device with this public key already exists; every device needs its own key"
                    .into(),
            ));
        }
        sqlx::query(
            "UPDATE devices SET public_key = $1, preshared_key = NULL, key_rotated_at = $2,
                    last_handshake_at = NULL, last_endpoint = NULL
             WHERE id = $3",
        )
        .bind(&key)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        audit(&mut tx, now, actor, "device.rotate", name, &key).await?;
        bump_revision(&mut tx).await?;
        // Read before commit: once committed the old key is dead, and a failed read after it
        // would lose the only copy of the new private key (in the caller's config).
        let device = crate::device_on(&mut tx, name).await?;
        tx.commit().await?;
        Ok(device)
    }

    /// Changes a device's group, owner or expiry. The data plane follows within a second
    /// (a new group's policy, or removal at the new expiry).
    pub async fn update_device(
        &self,
        actor: &str,
        name: &str,
        u: DeviceUpdate,
        now: i64,
    ) -> Result<Device> {
        if let Some(Some(at)) = u.expires_at {
            if at <= now {
                return Err(StoreError::Invalid(
                    "the expiry must be in the future; revoke the device to end it now".into(),
                ));
            }
        }
        let mut tx = self.write().await?;
        let id = active_device_id(&mut tx, name).await?;
        let mut changes = Vec::new();
        if let Some(group) = &u.group {
            let gid: i64 = sqlx::query_scalar("SELECT id FROM groups WHERE name = $1")
                .bind(group)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| {
                    StoreError::NotFound(format!("there is no group named {group:?}"))
                })?;
            sqlx::query("UPDATE devices SET group_id = $1 WHERE id = $2")
                .bind(gid)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            changes.push(format!("group={group}"));
        }
        if let Some(owner) = &u.owner {
            let owner_id = match owner {
                Some(o) => Some(upsert_user(&mut tx, o, now).await?),
                None => None,
            };
            sqlx::query("UPDATE devices SET owner_id = $1 WHERE id = $2")
                .bind(owner_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            changes.push(format!("owner={}", owner.as_deref().unwrap_or("")));
        }
        if let Some(expires_at) = u.expires_at {
            sqlx::query("UPDATE devices SET expires_at = $1 WHERE id = $2")
                .bind(expires_at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            changes.push(format!(
                "expires_at={}",
                expires_at.map_or("never".to_string(), |t| t.to_string())
            ));
        }
        if changes.is_empty() {
            return Err(StoreError::Invalid("nothing to change".into()));
        }
        audit(
            &mut tx,
            now,
            actor,
            "device.update",
            name,
            &changes.join(" "),
        )
        .await?;
        bump_revision(&mut tx).await?;
        let device = crate::device_on(&mut tx, name).await?;
        tx.commit().await?;
        Ok(device)
    }

    /// Changes a group's access policy; every device in it follows within a second.
    pub async fn update_group(
        &self,
        actor: &str,
        name: &str,
        u: GroupUpdate,
        now: i64,
    ) -> Result<Group> {
        if u.allowed_prefixes.as_ref().is_some_and(Vec::is_empty) {
            return Err(StoreError::Invalid(
                "allowed_prefixes must name at least one network".into(),
            ));
        }
        // Read under the write lock: read first and two admins changing different fields at
        // once would each write the other's old values back.
        let mut tx = self.write().await?;
        let current = sqlx::query(
            "SELECT id, name, allowed_prefixes, full_tunnel, dns FROM groups WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| crate::group_from_row(&r))
        .ok_or_else(|| StoreError::NotFound(format!("there is no group named {name:?}")))?;
        let prefixes = u.allowed_prefixes.unwrap_or(current.allowed_prefixes);
        let full_tunnel = u.full_tunnel.unwrap_or(current.full_tunnel);
        let dns = u.dns.unwrap_or(current.dns);
        let changed = sqlx::query(
            "UPDATE groups SET allowed_prefixes = $1, full_tunnel = $2, dns = $3 WHERE id = $4",
        )
        .bind(crate::join(&prefixes))
        .bind(i64::from(full_tunnel))
        .bind(crate::join(&dns))
        .bind(current.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed != 1 {
            return Err(StoreError::NotFound(format!(
                "there is no group named {name:?}"
            )));
        }
        audit(
            &mut tx,
            now,
            actor,
            "group.update",
            name,
            &format!(
                "allowed={} full_tunnel={full_tunnel} dns={}",
                crate::join(&prefixes),
                crate::join(&dns)
            ),
        )
        .await?;
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(Group {
            allowed_prefixes: prefixes,
            full_tunnel,
            dns,
            ..current
        })
    }

    /// Creates a user (a member of staff who owns devices).
    pub async fn create_user(
        &self,
        actor: &str,
        name: &str,
        email: Option<&str>,
        now: i64,
    ) -> Result<User> {
        validate_name("user", name)?;
        if let Some(e) = email {
            if e.len() > 254 || !e.contains('@') || e.chars().any(|c| c.is_whitespace()) {
                return Err(StoreError::Invalid(format!(
                    "{e:?} is not an e-mail address"
                )));
            }
        }
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "INSERT INTO users (name, email, created_at) VALUES ($1, $2, $3)
             ON CONFLICT(name) DO NOTHING",
        )
        .bind(name)
        .bind(email)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Err(StoreError::Conflict(format!(
                "a user named {name:?} already exists"
            )));
        }
        audit(
            &mut tx,
            now,
            actor,
            "user.create",
            name,
            email.unwrap_or(""),
        )
        .await?;
        tx.commit().await?;
        self.user(name, now).await
    }

    /// Users by name, with a substring search.
    pub async fn users(
        &self,
        search: Option<&str>,
        limit: u32,
        offset: u32,
        now: i64,
    ) -> Result<Page<User>> {
        let pattern = search.map(|s| format!("%{}%", escape_like(&s.to_lowercase())));
        let limit = if limit == 0 { 50 } else { limit.min(500) };
        let condition = "($1 IS NULL OR LOWER(u.name) LIKE $1 ESCAPE '\\' \
                         OR LOWER(u.email) LIKE $1 ESCAPE '\\')";
        let mut conn = self.read().await?;
        let total: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM users u WHERE {condition}"))
                .bind(&pattern)
                .fetch_one(&mut *conn)
                .await?;
        let rows = sqlx::query(&format!(
            "{USER_SELECT} WHERE {condition} ORDER BY u.name LIMIT $3 OFFSET $4"
        ))
        .bind(&pattern)
        .bind(now)
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&mut *conn)
        .await?;
        Ok(Page {
            items: rows.iter().map(user_from_row).collect(),
            total: total as u64,
        })
    }

    pub async fn user(&self, name: &str, now: i64) -> Result<User> {
        sqlx::query(&format!("{USER_SELECT} WHERE u.name = $1"))
            .bind(name)
            .bind(now)
            .fetch_optional(&self.reads)
            .await?
            .map(|r| user_from_row(&r))
            .ok_or_else(|| StoreError::NotFound(format!("there is no user named {name:?}")))
    }

    /// Disables a user who left: every device of theirs is revoked in the same transaction,
    /// and none can be enrolled for them again. Returns how many devices were revoked.
    pub async fn disable_user(&self, actor: &str, name: &str, now: i64) -> Result<u64> {
        let mut tx = self.write().await?;
        let id: i64 = sqlx::query_scalar(
            "UPDATE users SET disabled_at = $1 WHERE name = $2 AND disabled_at IS NULL
             RETURNING id",
        )
        .bind(now)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no enabled user named {name:?}")))?;
        let devices: Vec<(i64, String)> = sqlx::query_as(
            "UPDATE devices SET revoked_at = $1 WHERE owner_id = $2 AND revoked_at IS NULL
             RETURNING id, name",
        )
        .bind(now)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        for (device_id, device) in &devices {
            pool::release(&mut tx, *device_id, now).await?;
            audit(
                &mut tx,
                now,
                actor,
                "device.revoke",
                device,
                "user disabled",
            )
            .await?;
        }
        // Open enrollment links for them would otherwise still create devices.
        sqlx::query(
            "UPDATE enrollment_links SET revoked_at = $1
             WHERE owner = $2 AND used_at IS NULL AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut tx,
            now,
            actor,
            "user.disable",
            name,
            &format!("{} devices revoked", devices.len()),
        )
        .await?;
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(devices.len() as u64)
    }

    /// Every token, newest first (never their secrets: only hashes are stored).
    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(
            "SELECT id, name, scopes, created_at, revoked_at FROM api_tokens ORDER BY id DESC",
        )
        .fetch_all(&self.reads)
        .await?;
        Ok(rows.iter().map(crate::token_from_row).collect())
    }

    /// Revokes a token and every token minted from it, at any depth, in one statement.
    /// Returns how many descendants went with it.
    pub async fn revoke_api_token(&self, actor: &str, name: &str, now: i64) -> Result<u64> {
        let mut tx = self.write().await?;
        let live: Option<i64> =
            sqlx::query_scalar("SELECT id FROM api_tokens WHERE name = $1 AND revoked_at IS NULL")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        let id = live.ok_or_else(|| {
            StoreError::NotFound(format!("there is no live token named {name:?}"))
        })?;
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND id IN (
                 WITH RECURSIVE family(id) AS (
                     SELECT CAST($2 AS BIGINT)
                     UNION ALL
                     SELECT t.id FROM api_tokens t JOIN family f ON t.parent_id = f.id
                 )
                 SELECT id FROM family)",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let descendants = done.saturating_sub(1);
        audit(
            &mut tx,
            now,
            actor,
            "token.revoke",
            name,
            &format!("{descendants} tokens minted from it revoked too"),
        )
        .await?;
        tx.commit().await?;
        Ok(descendants)
    }
}

/// `$2` is `now`, for counting the devices still active.
const USER_SELECT: &str = "SELECT u.id, u.name, u.email, u.created_at, u.disabled_at,
        (SELECT COUNT(*) FROM devices d WHERE d.owner_id = u.id AND d.revoked_at IS NULL
           AND (d.expires_at IS NULL OR d.expires_at > $2))
     FROM users u";

fn user_from_row(r: &sqlx::any::AnyRow) -> User {
    User {
        id: r.get(0),
        name: r.get(1),
        email: r.get(2),
        created_at: r.get(3),
        disabled_at: r.get(4),
        active_devices: r.get(5),
    }
}
