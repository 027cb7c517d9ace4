//! One-time enrollment links: prepared for a device that does not exist yet, redeemed once
//! by the staff member on the device. Only the SHA-256 of a link's secret is stored.

use crate::db::{audit, Tx};
use crate::devices::{insert_device, Device, NewDevice};
use crate::groups::group_id;
use crate::users::is_disabled;
use crate::{stored_name, Result, Store, StoreError};
use heimweg_control::{Actor, AuditAction, LinkStatus, Name, PublicKey};

/// An enrollment link as stored (its secret only as a hash).
#[derive(Debug, Clone, PartialEq)]
pub struct EnrollmentLink {
    pub id: i64,
    pub device_name: Name,
    pub group: Name,
    pub owner: Option<Name>,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// When its page was first opened (a mail scanner that follows links counts too).
    pub opened_at: Option<i64>,
}

impl EnrollmentLink {
    pub fn status(&self, now: i64) -> LinkStatus {
        LinkStatus::at(self.used_at, self.revoked_at, self.expires_at, now)
    }
}

/// A link to prepare.
#[derive(Debug, Clone)]
pub struct NewLink {
    pub device_name: Name,
    pub group: Name,
    pub owner: Option<Name>,
    pub token_hash: String,
    pub expires_at: i64,
}

/// A redeemed link and the device it made.
#[derive(Debug, Clone, PartialEq)]
pub struct RedeemedLink {
    pub link: EnrollmentLink,
    pub device: Device,
}

#[derive(sqlx::FromRow)]
struct LinkRow {
    id: i64,
    device_name: String,
    group_name: String,
    owner: Option<String>,
    created_by: String,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    revoked_at: Option<i64>,
    opened_at: Option<i64>,
}

const SELECT: &str = "SELECT l.id, l.device_name, g.name AS group_name, l.owner, l.created_by,
        l.created_at, l.expires_at, l.used_at, l.revoked_at, l.opened_at
     FROM enrollment_links l JOIN groups g ON g.id = l.group_id";

/// Open: not used, not revoked, not expired at `$2`.
const OPEN: &str = "l.token_hash = $1 AND l.used_at IS NULL AND l.revoked_at IS NULL \
                    AND l.expires_at > $2";

impl TryFrom<LinkRow> for EnrollmentLink {
    type Error = StoreError;
    fn try_from(r: LinkRow) -> Result<EnrollmentLink> {
        Ok(EnrollmentLink {
            id: r.id,
            device_name: stored_name("enrollment_links", r.id, &r.device_name)?,
            group: stored_name("enrollment_links", r.id, &r.group_name)?,
            owner: r
                .owner
                .map(|o| stored_name("enrollment_links", r.id, &o))
                .transpose()?,
            created_by: r.created_by,
            created_at: r.created_at,
            expires_at: r.expires_at,
            used_at: r.used_at,
            revoked_at: r.revoked_at,
            opened_at: r.opened_at,
        })
    }
}

/// Records a link for a device name that is still free, for an owner who is not disabled;
/// audited. Returns its id.
pub(crate) async fn insert_link(
    tx: &mut Tx<'_>,
    actor: &Actor,
    l: &NewLink,
    now: i64,
) -> Result<i64> {
    let group_id = group_id(tx, &l.group).await?;
    let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM devices WHERE name_key = $1")
        .bind(l.device_name.key())
        .fetch_optional(&mut **tx)
        .await?;
    if taken.is_some() {
        return Err(StoreError::Conflict(format!(
            "a device named {:?} already exists",
            l.device_name
        )));
    }
    if let Some(owner) = &l.owner {
        // Refused now, not when the staff member opens the link and finds it broken.
        if is_disabled(tx, owner).await? {
            return Err(StoreError::Conflict(format!(
                "the user {owner:?} is disabled; no device can be enrolled for them"
            )));
        }
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO enrollment_links (token_hash, device_name, group_id, owner, owner_key,
                                       created_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(&l.token_hash)
    .bind(l.device_name.as_str())
    .bind(group_id)
    .bind(l.owner.as_ref().map(Name::as_str))
    .bind(l.owner.as_ref().map(Name::key))
    .bind(actor.to_string())
    .bind(now)
    .bind(l.expires_at)
    .fetch_one(&mut **tx)
    .await?;
    audit(
        tx,
        now,
        actor,
        AuditAction::LinkCreate,
        l.device_name.as_str(),
        "",
    )
    .await?;
    Ok(id)
}

/// Withdraws the open links of `owner` (a leaver).
pub(crate) async fn revoke_links_of(tx: &mut Tx<'_>, owner: &Name, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE enrollment_links SET revoked_at = $1
         WHERE owner_key = $2 AND used_at IS NULL AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(owner.key())
    .execute(&mut **tx)
    .await?;
    // Links a gateway of an older version wrote while this one ran have no owner key: their
    // owner is compared here, as before.
    let unkeyed: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, owner FROM enrollment_links
         WHERE owner_key IS NULL AND owner IS NOT NULL AND used_at IS NULL AND revoked_at IS NULL",
    )
    .fetch_all(&mut **tx)
    .await?;
    for (id, o) in unkeyed {
        if heimweg_control::name::name_key(&o) == owner.key() {
            sqlx::query("UPDATE enrollment_links SET revoked_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

impl Store {
    /// Prepares a link for a device that does not exist yet.
    pub async fn create_enrollment_link(
        &self,
        actor: &Actor,
        l: &NewLink,
        now: i64,
    ) -> Result<EnrollmentLink> {
        if l.expires_at <= now {
            return Err(StoreError::Invalid(
                "the link must expire in the future".into(),
            ));
        }
        let mut tx = self.write(actor).await?;
        let id = insert_link(&mut tx, actor, l, now).await?;
        tx.commit().await?;
        Ok(EnrollmentLink {
            id,
            device_name: l.device_name.clone(),
            group: l.group.clone(),
            owner: l.owner.clone(),
            created_by: actor.to_string(),
            created_at: now,
            expires_at: l.expires_at,
            used_at: None,
            revoked_at: None,
            opened_at: None,
        })
    }

    /// The open link with this hash, without using it up: what its page shows before the
    /// holder confirms, and what the service renders the config for.
    pub async fn open_enrollment_link(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<EnrollmentLink>> {
        sqlx::query_as::<_, LinkRow>(&format!("{SELECT} WHERE {OPEN}"))
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&self.reads)
            .await?
            .map(EnrollmentLink::try_from)
            .transpose()
    }

    /// Redeems an open link in one transaction: marks it used and enrolls its device with
    /// `public_key`. `None` if the link is unknown, used, revoked or expired (deliberately
    /// indistinguishable to the holder). Two devices racing on one link cannot both get a
    /// device, and a failed enrollment leaves the link open: nothing half-done survives a
    /// crash or an error.
    pub async fn redeem_enrollment_link(
        &self,
        token_hash: &str,
        public_key: PublicKey,
        now: i64,
    ) -> Result<Option<RedeemedLink>> {
        // A cheap read first: the page is public, and guessed or stale links must not queue
        // for the store's write lock (on PostgreSQL shared by every gateway).
        let Some(open) = self.open_enrollment_link(token_hash, now).await? else {
            return Ok(None);
        };
        let actor = Actor::Link {
            id: open.id,
            created_by: open.created_by.clone(),
        };
        let mut tx = self.write(&actor).await?;
        let claimed: Option<i64> = sqlx::query_scalar(
            "UPDATE enrollment_links SET used_at = $1
             WHERE token_hash = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1
             RETURNING id",
        )
        .bind(now)
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = claimed else {
            return Ok(None);
        };
        let link = sqlx::query_as::<_, LinkRow>(&format!("{SELECT} WHERE l.id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let link = EnrollmentLink::try_from(link)?;
        let device = insert_device(
            &mut tx,
            &actor,
            &NewDevice {
                name: link.device_name.clone(),
                group: link.group.clone(),
                public_key,
                preshared_key: None,
                owner: link.owner.clone(),
                expires_at: None,
            },
            now,
        )
        .await?;
        sqlx::query("UPDATE enrollment_links SET device_id = $1 WHERE id = $2")
            .bind(device.id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(RedeemedLink { link, device }))
    }

    /// Notes that an open link's page was opened, the first time only (the rollout's
    /// "opened"). A link already marked costs no write.
    pub async fn mark_link_opened(&self, link: &EnrollmentLink, now: i64) -> Result<()> {
        if link.opened_at.is_some() {
            return Ok(());
        }
        let mut tx = self.write(&Actor::System).await?;
        sqlx::query(
            "UPDATE enrollment_links SET opened_at = $1 WHERE id = $2 AND opened_at IS NULL",
        )
        .bind(now)
        .bind(link.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn revoke_enrollment_link(&self, actor: &Actor, id: i64, now: i64) -> Result<()> {
        let mut tx = self.write(actor).await?;
        let name: Option<String> = sqlx::query_scalar(
            "UPDATE enrollment_links SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL
             AND used_at IS NULL RETURNING device_name",
        )
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let name = name.ok_or_else(|| {
            StoreError::NotFound(format!("there is no open enrollment link with id {id}"))
        })?;
        audit(&mut tx, now, actor, AuditAction::LinkRevoke, &name, "").await?;
        tx.commit().await?;
        Ok(())
    }

    /// Links, newest first.
    pub async fn enrollment_links(&self, limit: u32) -> Result<Vec<EnrollmentLink>> {
        sqlx::query_as::<_, LinkRow>(&format!("{SELECT} ORDER BY l.id DESC LIMIT $1"))
            .bind(i64::from(limit))
            .fetch_all(&self.reads)
            .await?
            .into_iter()
            .map(EnrollmentLink::try_from)
            .collect()
    }
}
