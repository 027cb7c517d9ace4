//! Staff who own devices, and disabling a leaver.

use crate::db::{audit, bump_revision, decode_error, escape_like, Tx};
use crate::{pool, stored_name, Page, Result, Store, StoreError};
use heimweg_control::{Actor, AuditAction, Email, Name};

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: i64,
    pub name: Name,
    pub email: Option<Email>,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
    /// Devices that are neither revoked nor expired.
    pub active_devices: i64,
    /// Linked to a directory entry: the directory sync decides about this user.
    pub from_directory: bool,
    /// The group the directory's mapping gives this user (their devices are moved there).
    pub group: Option<Name>,
    /// Linked to an account of the identity provider: signs in on the staff page.
    pub from_provider: bool,
}

impl User {
    /// The actor of what this user does themselves (signing in, on their own page).
    pub fn staff_actor(&self) -> Actor {
        Actor::Staff {
            id: self.id,
            name: self.name.clone(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    name: String,
    email: Option<String>,
    created_at: i64,
    disabled_at: Option<i64>,
    active_devices: i64,
    directory_id: Option<String>,
    group_name: Option<String>,
    oidc_subject: Option<String>,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(r: UserRow) -> Result<User> {
        Ok(User {
            id: r.id,
            name: stored_name("users", r.id, &r.name)?,
            email: r
                .email
                .map(|e| Email::new(&e).map_err(|err| decode_error("users", r.id, err)))
                .transpose()?,
            created_at: r.created_at,
            disabled_at: r.disabled_at,
            active_devices: r.active_devices,
            from_directory: r.directory_id.is_some(),
            from_provider: r.oidc_subject.is_some(),
            group: r
                .group_name
                .map(|g| stored_name("groups", r.id, &g))
                .transpose()?,
        })
    }
}

/// `$2` is `now`, for counting the devices still active.
const USER_SELECT: &str = "SELECT u.id, u.name, u.email, u.created_at, u.disabled_at,
        (SELECT COUNT(*) FROM devices d WHERE d.owner_id = u.id AND d.revoked_at IS NULL
           AND (d.expires_at IS NULL OR d.expires_at > $2)) AS active_devices,
        u.directory_id, (SELECT g.name FROM groups g WHERE g.id = u.group_id) AS group_name,
        u.oidc_subject
     FROM users u";

/// The id of the user `name`, created if missing; a disabled user is refused (their devices
/// cannot be enrolled again).
pub(crate) async fn upsert_user(tx: &mut Tx<'_>, name: &Name, now: i64) -> Result<i64> {
    // Looked up first rather than `ON CONFLICT`: the table has two unique columns (the name
    // and its key), and an upsert names only one. The write lock makes the pair atomic.
    let found: Option<(i64, Option<i64>)> =
        sqlx::query_as("SELECT id, disabled_at FROM users WHERE name_key = $1")
            .bind(name.key())
            .fetch_optional(&mut **tx)
            .await?;
    match found {
        Some((_, Some(_))) => Err(StoreError::Conflict(format!(
            "the user {name:?} is disabled; their devices cannot be enrolled"
        ))),
        Some((id, None)) => Ok(id),
        None => insert_user(tx, name, None, now).await,
    }
}

pub(crate) async fn insert_user(
    tx: &mut Tx<'_>,
    name: &Name,
    email: Option<&Email>,
    now: i64,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO users (name, name_key, email, created_at) VALUES ($1, $2, $3, $4)
         RETURNING id",
    )
    .bind(name.as_str())
    .bind(name.key())
    .bind(email.map(Email::as_str))
    .bind(now)
    .fetch_one(&mut **tx)
    .await?)
}

/// Whether `name` is a disabled user (an unknown name is not).
pub(crate) async fn is_disabled(tx: &mut Tx<'_>, name: &Name) -> Result<bool> {
    let disabled: Option<Option<i64>> =
        sqlx::query_scalar("SELECT disabled_at FROM users WHERE name_key = $1")
            .bind(name.key())
            .fetch_optional(&mut **tx)
            .await?;
    Ok(matches!(disabled, Some(Some(_))))
}

pub(crate) async fn user_on(conn: &mut sqlx::AnyConnection, name: &Name, now: i64) -> Result<User> {
    sqlx::query_as::<_, UserRow>(&format!("{USER_SELECT} WHERE u.name_key = $1"))
        .bind(name.key())
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no user named {name:?}")))?
        .try_into()
}

/// The user with this id (a staff session's, a sign-in's).
pub(crate) async fn user_by_id(conn: &mut sqlx::AnyConnection, id: i64, now: i64) -> Result<User> {
    sqlx::query_as::<_, UserRow>(&format!("{USER_SELECT} WHERE u.id = $1"))
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no user with id {id}")))?
        .try_into()
}

impl Store {
    /// Creates a user (a member of staff who owns devices).
    pub async fn create_user(
        &self,
        actor: &Actor,
        name: &Name,
        email: Option<&Email>,
        now: i64,
    ) -> Result<User> {
        let mut tx = self.write(actor).await?;
        let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE name_key = $1")
            .bind(name.key())
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(StoreError::Conflict(format!(
                "a user named {name:?} already exists"
            )));
        }
        insert_user(&mut tx, name, email, now).await?;
        let detail = email.map_or("", Email::as_str);
        audit(
            &mut tx,
            now,
            actor,
            AuditAction::UserCreate,
            name.as_str(),
            detail,
        )
        .await?;
        let user = user_on(&mut tx, name, now).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Users by name, with a substring search over name and e-mail.
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
        let rows: Vec<UserRow> = sqlx::query_as(&format!(
            "{USER_SELECT} WHERE {condition} ORDER BY u.name LIMIT $3 OFFSET $4"
        ))
        .bind(&pattern)
        .bind(now)
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&mut *conn)
        .await?;
        Ok(Page {
            items: rows
                .into_iter()
                .map(User::try_from)
                .collect::<Result<_>>()?,
            total: total as u64,
        })
    }

    pub async fn user(&self, name: &Name, now: i64) -> Result<User> {
        user_on(&mut *self.read().await?, name, now).await
    }

    /// Disables a user who left: every device of theirs is revoked in the same transaction,
    /// their open enrollment links are withdrawn, and none can be enrolled for them again.
    /// Returns how many devices were revoked.
    pub async fn disable_user(&self, actor: &Actor, name: &Name, now: i64) -> Result<u64> {
        let mut tx = self.write(actor).await?;
        let (id, stored): (i64, String) = sqlx::query_as(
            "SELECT id, name FROM users WHERE name_key = $1 AND disabled_at IS NULL",
        )
        .bind(name.key())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no enabled user named {name:?}")))?;
        let revoked = disable_in(&mut tx, actor, id, &stored, now).await?;
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(revoked)
    }
}

/// Disables the enabled user `id` (named `stored`) inside `tx`: every device revoked and its
/// addresses released, every open link withdrawn, a running sign-in to connect ended (a user
/// enabled again signs in afresh), audited by `actor`, who is kept as the one who disabled
/// them. The caller bumps the revision.
pub(crate) async fn disable_in(
    tx: &mut Tx<'_>,
    actor: &Actor,
    id: i64,
    stored: &str,
    now: i64,
) -> Result<u64> {
    sqlx::query("UPDATE users SET disabled_at = $1, disabled_by = $2 WHERE id = $3")
        .bind(now)
        .bind(actor.to_string())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE activations SET ends_at = $1 WHERE user_id = $2 AND ends_at > $1")
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    let devices: Vec<(i64, String)> = sqlx::query_as(
        "UPDATE devices SET revoked_at = $1 WHERE owner_id = $2 AND revoked_at IS NULL
         RETURNING id, name",
    )
    .bind(now)
    .bind(id)
    .fetch_all(&mut **tx)
    .await?;
    for (device_id, device) in &devices {
        pool::release(tx, *device_id, now).await?;
        audit(
            tx,
            now,
            actor,
            AuditAction::DeviceRevoke,
            device,
            "user disabled",
        )
        .await?;
    }
    // A staff session would otherwise let them enroll a device again.
    sqlx::query("DELETE FROM staff_sessions WHERE user_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    // Open enrollment links for them would otherwise still create devices.
    let name = stored_name("users", id, stored)?;
    crate::links::revoke_links_of(tx, &name, now).await?;
    let detail = format!("{} devices revoked", devices.len());
    audit(tx, now, actor, AuditAction::UserDisable, stored, &detail).await?;
    Ok(devices.len() as u64)
}
