//! Staff access requests: a public form files one, an admin approves or rejects it, and an
//! approval becomes an enrollment link only the requester can open.
//!
//! The form is public, so what it can do is bounded: a device name can have one pending
//! request, and at most [`MAX_PENDING`] requests wait at once (a flood fills the queue, it
//! does not fill the disk or reach the data plane).

use crate::db::{audit, decode_error};
use crate::links::{insert_link, NewLink};
use crate::{stored_name, Result, Store, StoreError};
use heimweg_control::{Actor, AuditAction, Name, RequestStatus};

/// Requests waiting for a decision beyond which the form says "try later".
pub const MAX_PENDING: i64 = 500;

/// A request as the form files it, validated by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAccessRequest {
    pub requester: Name,
    pub contact: String,
    pub device_name: Name,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessRequest {
    pub id: i64,
    pub requester: Name,
    pub contact: String,
    pub device_name: Name,
    pub reason: String,
    pub status: RequestStatus,
    pub created_at: i64,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
    /// For an approved request: whether its enrollment link can still be opened.
    pub link_open: bool,
}

#[derive(sqlx::FromRow)]
struct RequestRow {
    id: i64,
    requester: String,
    contact: String,
    device_name: String,
    reason: String,
    status: String,
    created_at: i64,
    decided_at: Option<i64>,
    decided_by: Option<String>,
    link_open: i64,
}

/// `$1` is `now`, for whether an approved request's link is still open.
const SELECT: &str = "SELECT r.id, r.requester, r.contact, r.device_name, r.reason, r.status,
        r.created_at, r.decided_at, r.decided_by,
        CASE WHEN l.id IS NOT NULL AND l.used_at IS NULL AND l.revoked_at IS NULL
             AND l.expires_at > $1 THEN 1 ELSE 0 END AS link_open
     FROM access_requests r LEFT JOIN enrollment_links l ON l.id = r.link_id";

impl TryFrom<RequestRow> for AccessRequest {
    type Error = StoreError;
    fn try_from(r: RequestRow) -> Result<AccessRequest> {
        Ok(AccessRequest {
            id: r.id,
            requester: stored_name("access_requests", r.id, &r.requester)?,
            contact: r.contact,
            device_name: stored_name("access_requests", r.id, &r.device_name)?,
            reason: r.reason,
            status: r
                .status
                .parse()
                .map_err(|e| decode_error("access_requests", r.id, e))?,
            created_at: r.created_at,
            decided_at: r.decided_at,
            decided_by: r.decided_by,
            link_open: r.link_open != 0,
        })
    }
}

async fn request_on(conn: &mut sqlx::AnyConnection, id: i64, now: i64) -> Result<AccessRequest> {
    sqlx::query_as::<_, RequestRow>(&format!("{SELECT} WHERE r.id = $2"))
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no access request {id}")))?
        .try_into()
}

impl Store {
    /// Files a request. `request_hash` identifies it to the requester later; `link_hash` is
    /// the hash of the enrollment-link secret an approval will activate.
    pub async fn create_access_request(
        &self,
        req: &NewAccessRequest,
        request_hash: &str,
        link_hash: &str,
        now: i64,
    ) -> Result<AccessRequest> {
        let actor = Actor::Requester {
            name: req.requester.to_string(),
        };
        let mut tx = self.write(&actor).await?;
        let pending: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM access_requests WHERE status = 'pending'")
                .fetch_one(&mut *tx)
                .await?;
        if pending >= MAX_PENDING {
            return Err(StoreError::Conflict(
                "too many requests are waiting for a decision; please try again later".into(),
            ));
        }
        let pending_names: Vec<String> =
            sqlx::query_scalar("SELECT device_name FROM access_requests WHERE status = 'pending'")
                .fetch_all(&mut *tx)
                .await?;
        let key = req.device_name.key();
        let device: Option<i64> = sqlx::query_scalar("SELECT id FROM devices WHERE name_key = $1")
            .bind(&key)
            .fetch_optional(&mut *tx)
            .await?;
        let requested = pending_names
            .iter()
            .any(|n| heimweg_control::name::name_key(n) == key);
        if device.is_some() || requested {
            // The form is public: say no more than "choose another", so it cannot be used to
            // list which device names exist.
            return Err(StoreError::Conflict(
                "this device name cannot be used; choose another".into(),
            ));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO access_requests (request_hash, link_hash, requester, contact,
                                          device_name, reason, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(request_hash)
        .bind(link_hash)
        .bind(req.requester.as_str())
        .bind(&req.contact)
        .bind(req.device_name.as_str())
        .bind(&req.reason)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let subject = req.device_name.as_str();
        audit(
            &mut tx,
            now,
            &actor,
            AuditAction::RequestCreate,
            subject,
            "",
        )
        .await?;
        let request = request_on(&mut tx, id, now).await?;
        tx.commit().await?;
        Ok(request)
    }

    pub async fn access_request(&self, id: i64, now: i64) -> Result<AccessRequest> {
        request_on(&mut *self.read().await?, id, now).await
    }

    /// The request its holder's secret hashes to, if any.
    pub async fn access_request_by_hash(
        &self,
        request_hash: &str,
        now: i64,
    ) -> Result<Option<AccessRequest>> {
        sqlx::query_as::<_, RequestRow>(&format!("{SELECT} WHERE r.request_hash = $2"))
            .bind(now)
            .bind(request_hash)
            .fetch_optional(&self.reads)
            .await?
            .map(AccessRequest::try_from)
            .transpose()
    }

    /// Requests, oldest pending first when filtering by pending, newest first otherwise.
    pub async fn access_requests(
        &self,
        status: Option<RequestStatus>,
        limit: u32,
        now: i64,
    ) -> Result<Vec<AccessRequest>> {
        let order = if status == Some(RequestStatus::Pending) {
            "ASC"
        } else {
            "DESC"
        };
        sqlx::query_as::<_, RequestRow>(&format!(
            "{SELECT} WHERE ($2 IS NULL OR r.status = $2) ORDER BY r.id {order} LIMIT $3"
        ))
        .bind(now)
        .bind(status.map(RequestStatus::as_str))
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(&self.reads)
        .await?
        .into_iter()
        .map(AccessRequest::try_from)
        .collect()
    }

    /// Approves a pending request: its enrollment link (for `group`, until `link_expires_at`)
    /// becomes valid, in the same transaction.
    pub async fn approve_access_request(
        &self,
        actor: &Actor,
        id: i64,
        group: &Name,
        link_expires_at: i64,
        now: i64,
    ) -> Result<AccessRequest> {
        if link_expires_at <= now {
            return Err(StoreError::Invalid(
                "the link must expire in the future".into(),
            ));
        }
        let mut tx = self.write(actor).await?;
        let row: Option<(i64, String, String, String)> = sqlx::query_as(
            "SELECT id, link_hash, device_name, requester FROM access_requests
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let (_, link_hash, device, requester) = row.ok_or_else(|| {
            StoreError::NotFound(format!("there is no pending access request {id}"))
        })?;
        let link = NewLink {
            device_name: stored_name("access_requests", id, &device)?,
            group: group.clone(),
            owner: Some(stored_name("access_requests", id, &requester)?),
            token_hash: link_hash,
            expires_at: link_expires_at,
        };
        let link_id = insert_link(&mut tx, actor, &link, now).await?;
        sqlx::query(
            "UPDATE access_requests SET status = 'approved', decided_at = $1, decided_by = $2,
                    link_id = $3
             WHERE id = $4",
        )
        .bind(now)
        .bind(actor.to_string())
        .bind(link_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut tx,
            now,
            actor,
            AuditAction::RequestApprove,
            &device,
            group.as_str(),
        )
        .await?;
        let request = request_on(&mut tx, id, now).await?;
        tx.commit().await?;
        Ok(request)
    }

    pub async fn reject_access_request(
        &self,
        actor: &Actor,
        id: i64,
        now: i64,
    ) -> Result<AccessRequest> {
        let mut tx = self.write(actor).await?;
        let device: String = sqlx::query_scalar(
            "UPDATE access_requests SET status = 'rejected', decided_at = $1, decided_by = $2
             WHERE id = $3 AND status = 'pending' RETURNING device_name",
        )
        .bind(now)
        .bind(actor.to_string())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no pending access request {id}")))?;
        audit(&mut tx, now, actor, AuditAction::RequestReject, &device, "").await?;
        let request = request_on(&mut tx, id, now).await?;
        tx.commit().await?;
        Ok(request)
    }
}
