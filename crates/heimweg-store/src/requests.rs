//! Staff access requests: a public form files one, an admin approves or rejects it, and an
//! approval becomes an enrollment link only the requester can open.
//!
//! The form is public, so what it can do is bounded: names are validated like any other, a
//! device name can have one pending request, and at most [`MAX_PENDING`] requests wait at once
//! (a flood fills the queue, it does not fill the disk or reach the data plane).

use crate::{audit, insert_link, validate_name, Result, Store, StoreError};
use sqlx::Row;

/// Requests waiting for a decision beyond which the form says "try later".
pub const MAX_PENDING: i64 = 500;

#[derive(Debug, Clone, PartialEq)]
pub struct NewAccessRequest {
    pub requester: String,
    pub contact: String,
    pub device_name: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessRequest {
    pub id: i64,
    pub requester: String,
    pub contact: String,
    pub device_name: String,
    pub reason: String,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    pub created_at: i64,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
    /// For an approved request: whether its enrollment link can still be opened.
    pub link_open: bool,
}

const SELECT: &str = "SELECT r.id, r.requester, r.contact, r.device_name, r.reason, r.status,
        r.created_at, r.decided_at, r.decided_by,
        CASE WHEN l.id IS NOT NULL AND l.used_at IS NULL AND l.revoked_at IS NULL
             AND l.expires_at > $1 THEN 1 ELSE 0 END
     FROM access_requests r LEFT JOIN enrollment_links l ON l.id = r.link_id";

fn from_row(r: &sqlx::any::AnyRow) -> AccessRequest {
    AccessRequest {
        id: r.get(0),
        requester: r.get(1),
        contact: r.get(2),
        device_name: r.get(3),
        reason: r.get(4),
        status: r.get(5),
        created_at: r.get(6),
        decided_at: r.get(7),
        decided_by: r.get(8),
        link_open: r.get::<i64, _>(9) != 0,
    }
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
        validate_name("requester", &req.requester)?;
        validate_name("device", &req.device_name)?;
        if req.contact.len() > 254 || req.contact.chars().any(char::is_control) {
            return Err(StoreError::Invalid(
                "contact must be at most 254 printable characters".into(),
            ));
        }
        if req.reason.chars().count() > 500
            || req.reason.chars().any(|c| c.is_control() && c != '\n')
        {
            return Err(StoreError::Invalid(
                "reason must be at most 500 characters".into(),
            ));
        }
        let mut tx = self.write().await?;
        let pending: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM access_requests WHERE status = 'pending'")
                .fetch_one(&mut *tx)
                .await?;
        if pending >= MAX_PENDING {
            return Err(StoreError::Conflict(
                "too many requests are waiting for a decision; please try again later".into(),
            ));
        }
        let clash: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM access_requests WHERE device_name = $1 AND status = 'pending'
             UNION ALL SELECT id FROM devices WHERE name = $1",
        )
        .bind(&req.device_name)
        .fetch_optional(&mut *tx)
        .await?;
        if clash.is_some() {
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
        .bind(&req.requester)
        .bind(&req.contact)
        .bind(&req.device_name)
        .bind(&req.reason)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        audit(
            &mut tx,
            now,
            &format!("request:{}", req.requester),
            "request.create",
            &req.device_name,
            "",
        )
        .await?;
        tx.commit().await?;
        self.access_request(id, now).await
    }

    pub async fn access_request(&self, id: i64, now: i64) -> Result<AccessRequest> {
        sqlx::query(&format!("{SELECT} WHERE r.id = $2"))
            .bind(now)
            .bind(id)
            .fetch_optional(&self.reads)
            .await?
            .map(|r| from_row(&r))
            .ok_or_else(|| StoreError::NotFound(format!("there is no access request {id}")))
    }

    /// The request its holder's secret hashes to, if any.
    pub async fn access_request_by_hash(
        &self,
        request_hash: &str,
        now: i64,
    ) -> Result<Option<AccessRequest>> {
        Ok(sqlx::query(&format!("{SELECT} WHERE r.request_hash = $2"))
            .bind(now)
            .bind(request_hash)
            .fetch_optional(&self.reads)
            .await?
            .map(|r| from_row(&r)))
    }

    /// Requests, oldest pending first when filtering by `pending`, newest first otherwise.
    pub async fn access_requests(
        &self,
        status: Option<&str>,
        limit: u32,
        now: i64,
    ) -> Result<Vec<AccessRequest>> {
        if let Some(s) = status {
            if !["pending", "approved", "rejected"].contains(&s) {
                return Err(StoreError::Invalid(format!(
                    "status {s:?} is not one of pending, approved, rejected"
                )));
            }
        }
        let order = if status == Some("pending") {
            "ASC"
        } else {
            "DESC"
        };
        let rows = sqlx::query(&format!(
            "{SELECT} WHERE ($2 IS NULL OR r.status = $2) ORDER BY r.id {order} LIMIT $3"
        ))
        .bind(now)
        .bind(status)
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(&self.reads)
        .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// Approves a pending request: its enrollment link (for `group`, until `link_expires_at`)
    /// becomes valid, in the same transaction.
    pub async fn approve_access_request(
        &self,
        actor: &str,
        id: i64,
        group: &str,
        link_expires_at: i64,
        now: i64,
    ) -> Result<AccessRequest> {
        if link_expires_at <= now {
            return Err(StoreError::Invalid(
                "the link must expire in the future".into(),
            ));
        }
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "SELECT link_hash, device_name, requester FROM access_requests
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no pending access request {id}")))?;
        let (link_hash, device, requester): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        let link_id = insert_link(
            &mut tx,
            actor,
            &device,
            group,
            Some(&requester),
            &link_hash,
            link_expires_at,
            now,
        )
        .await?;
        sqlx::query(
            "UPDATE access_requests SET status = 'approved', decided_at = $1, decided_by = $2,
                    link_id = $3
             WHERE id = $4",
        )
        .bind(now)
        .bind(actor)
        .bind(link_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        audit(&mut tx, now, actor, "request.approve", &device, group).await?;
        tx.commit().await?;
        self.access_request(id, now).await
    }

    pub async fn reject_access_request(
        &self,
        actor: &str,
        id: i64,
        now: i64,
    ) -> Result<AccessRequest> {
        let mut tx = self.write().await?;
        let device: String = sqlx::query_scalar(
            "UPDATE access_requests SET status = 'rejected', decided_at = $1, decided_by = $2
             WHERE id = $3 AND status = 'pending' RETURNING device_name",
        )
        .bind(now)
        .bind(actor)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no pending access request {id}")))?;
        audit(&mut tx, now, actor, "request.reject", &device, "").await?;
        tx.commit().await?;
        self.access_request(id, now).await
    }
}
