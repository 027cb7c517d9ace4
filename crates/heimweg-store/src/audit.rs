//! Reading the audit log (entries are written by each change, in its transaction).

use crate::db::decode_error;
use crate::{Page, Result, Store};
use heimweg_control::AuditAction;

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub at: i64,
    /// The actor as recorded (see `heimweg_control::RecordedActor` to take it apart).
    pub actor: String,
    pub action: AuditAction,
    pub subject: String,
    pub detail: String,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at: i64,
    actor: String,
    action: String,
    subject: String,
    detail: String,
}

impl Store {
    /// The newest audit entries.
    pub async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        Ok(self.audit_entries(None, limit, 0).await?.items)
    }

    /// Audit entries, newest first, optionally only those about `subject`.
    pub async fn audit_entries(
        &self,
        subject: Option<&str>,
        limit: u32,
        offset: u32,
    ) -> Result<Page<AuditEntry>> {
        let condition = "($1 IS NULL OR subject = $1)";
        let mut conn = self.read().await?;
        let total: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM audit_log WHERE {condition}"))
                .bind(subject)
                .fetch_one(&mut *conn)
                .await?;
        let rows: Vec<AuditRow> = sqlx::query_as(&format!(
            "SELECT id, at, actor, action, subject, detail FROM audit_log WHERE {condition}
             ORDER BY id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(subject)
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&mut *conn)
        .await?;
        let items = rows
            .into_iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: r.at,
                    actor: r.actor,
                    action: r
                        .action
                        .parse()
                        .map_err(|e| decode_error("audit_log", r.id, e))?,
                    subject: r.subject,
                    detail: r.detail,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Page {
            items,
            total: total as u64,
        })
    }
}
