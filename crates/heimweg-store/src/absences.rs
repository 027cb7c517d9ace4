//! Absences: a user's or a device's access suspended for a span (ORP.4.A6/A7, accounts locked
//! during long absences). The reconciler's plan leaves the devices out while one runs; it
//! comes back by itself at the end.

use crate::db::{audit, bump_revision, Tx};
use crate::{stored_name, Result, Store, StoreError};
use heimweg_control::{Actor, AuditAction, Name};

/// Whose access an absence suspends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbsenceOf {
    /// Every device of the user.
    User(Name),
    /// One device.
    Device(Name),
}

impl AbsenceOf {
    fn kind(&self) -> &'static str {
        match self {
            AbsenceOf::User(_) => "user",
            AbsenceOf::Device(_) => "device",
        }
    }

    fn name(&self) -> &Name {
        match self {
            AbsenceOf::User(n) | AbsenceOf::Device(n) => n,
        }
    }
}

/// An absence as the panel and the API list it.
#[derive(Debug, Clone, PartialEq)]
pub struct Absence {
    pub id: i64,
    pub of: AbsenceOf,
    /// Unix seconds; the end is exclusive.
    pub starts_at: i64,
    pub ends_at: i64,
    pub reason: String,
    /// Who decided it (the actor, as the audit log writes it).
    pub created_by: String,
    pub created_at: i64,
}

/// What the reconciler's plan needs of an absence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbsenceSpan {
    pub user_id: Option<i64>,
    pub device_id: Option<i64>,
    pub starts_at: i64,
    pub ends_at: i64,
}

/// A reason says why to whoever reads the list later: one line, short.
pub const MAX_REASON: usize = 200;

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    user_name: Option<String>,
    device_name: Option<String>,
    starts_at: i64,
    ends_at: i64,
    reason: String,
    created_by: String,
    created_at: i64,
}

const SELECT: &str = "SELECT a.id, u.name AS user_name, d.name AS device_name, a.starts_at,
                             a.ends_at, a.reason, a.created_by, a.created_at
                      FROM absences a
                      LEFT JOIN users u ON u.id = a.user_id
                      LEFT JOIN devices d ON d.id = a.device_id";

impl TryFrom<Row> for Absence {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Absence> {
        let of = match (r.user_name, r.device_name) {
            (Some(u), None) => AbsenceOf::User(stored_name("absences", r.id, &u)?),
            (None, Some(d)) => AbsenceOf::Device(stored_name("absences", r.id, &d)?),
            _ => {
                return Err(crate::db::decode_error(
                    "absences",
                    r.id,
                    "names neither one user nor one device",
                ))
            }
        };
        Ok(Absence {
            id: r.id,
            of,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            reason: r.reason,
            created_by: r.created_by,
            created_at: r.created_at,
        })
    }
}

/// A moment for the audit log, in UTC.
pub(crate) fn utc(at: i64) -> String {
    jiff::Timestamp::from_second(at).map_or_else(|_| at.to_string(), |t| t.to_string())
}

async fn absence_on(tx: &mut Tx<'_>, id: i64) -> Result<Absence> {
    sqlx::query_as::<_, Row>(&format!("{SELECT} WHERE a.id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no absence {id}")))?
        .try_into()
}

impl Store {
    /// Suspends a user's or a device's access from `starts_at` to `ends_at`. A span that has
    /// already ended is refused (it would suspend nothing and read as if it had).
    pub async fn add_absence(
        &self,
        actor: &Actor,
        of: &AbsenceOf,
        (starts_at, ends_at): (i64, i64),
        reason: &str,
        now: i64,
    ) -> Result<Absence> {
        let reason = reason.trim();
        if ends_at <= starts_at {
            return Err(StoreError::Invalid(
                "an absence must end after it starts".into(),
            ));
        }
        if ends_at <= now {
            return Err(StoreError::Invalid(
                "this absence would already be over; give an end in the future".into(),
            ));
        }
        if reason.chars().count() > MAX_REASON || reason.chars().any(char::is_control) {
            return Err(StoreError::Invalid(format!(
                "a reason is one line of at most {MAX_REASON} characters"
            )));
        }
        let mut tx = self.write(actor).await?;
        // The audit log names them as stored, not as typed.
        let (user_id, device_id, stored): (Option<i64>, Option<i64>, String) = match of {
            AbsenceOf::User(n) => {
                let (id, name): (i64, String) =
                    sqlx::query_as("SELECT id, name FROM users WHERE name_key = $1")
                        .bind(n.key())
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(|| {
                            StoreError::NotFound(format!("there is no user named {n:?}"))
                        })?;
                (Some(id), None, name)
            }
            AbsenceOf::Device(n) => {
                let (id, name): (i64, String) = sqlx::query_as(
                    "SELECT id, name FROM devices WHERE name_key = $1 AND revoked_at IS NULL",
                )
                .bind(n.key())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| {
                    StoreError::NotFound(format!("there is no active device named {n:?}"))
                })?;
                (None, Some(id), name)
            }
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO absences (user_id, device_id, starts_at, ends_at, reason, created_by,
                                   created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(starts_at)
        .bind(ends_at)
        .bind(reason)
        .bind(actor.to_string())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let detail = format!(
            "{} absent from {} to {}{}{}",
            of.kind(),
            utc(starts_at),
            utc(ends_at),
            if reason.is_empty() { "" } else { ": " },
            reason
        );
        audit(
            &mut tx,
            now,
            actor,
            AuditAction::AbsenceCreate,
            &stored,
            &detail,
        )
        .await?;
        bump_revision(&mut tx).await?;
        let absence = absence_on(&mut tx, id).await?;
        tx.commit().await?;
        Ok(absence)
    }

    /// Ends an absence now: one that has not begun is withdrawn, one that runs ends at `now`
    /// (its record stays, with the real end), one that is over is left as it was.
    pub async fn end_absence(&self, actor: &Actor, id: i64, now: i64) -> Result<Absence> {
        let mut tx = self.write(actor).await?;
        let mut absence = absence_on(&mut tx, id).await?;
        let planned_end = absence.ends_at;
        if absence.ends_at <= now {
            return Err(StoreError::Conflict(format!(
                "absence {id} is over already"
            )));
        }
        if absence.starts_at > now {
            sqlx::query("DELETE FROM absences WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query("UPDATE absences SET ends_at = $1 WHERE id = $2")
                .bind(now.max(absence.starts_at + 1))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            absence.ends_at = now.max(absence.starts_at + 1);
        }
        let detail = format!(
            "{} absence {id} ended (was until {})",
            absence.of.kind(),
            utc(planned_end)
        );
        audit(
            &mut tx,
            now,
            actor,
            AuditAction::AbsenceEnd,
            absence.of.name().as_str(),
            &detail,
        )
        .await?;
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(absence)
    }

    /// One absence, ended or not.
    pub async fn absence(&self, id: i64) -> Result<Absence> {
        sqlx::query_as::<_, Row>(&format!("{SELECT} WHERE a.id = $1"))
            .bind(id)
            .fetch_optional(&self.reads)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("there is no absence {id}")))?
            .try_into()
    }

    /// The absences that have not ended by `now`, the earliest start first.
    pub async fn absences(&self, now: i64) -> Result<Vec<Absence>> {
        sqlx::query_as::<_, Row>(&format!(
            "{SELECT} WHERE a.ends_at > $1 ORDER BY a.starts_at, a.id"
        ))
        .bind(now)
        .fetch_all(&self.reads)
        .await?
        .into_iter()
        .map(Absence::try_from)
        .collect()
    }

    /// What the plan needs: every absence that has not ended by `now`.
    pub async fn absence_spans(&self, now: i64) -> Result<Vec<AbsenceSpan>> {
        let rows: Vec<(Option<i64>, Option<i64>, i64, i64)> = sqlx::query_as(
            "SELECT user_id, device_id, starts_at, ends_at FROM absences WHERE ends_at > $1",
        )
        .bind(now)
        .fetch_all(&mut *self.read().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(user_id, device_id, starts_at, ends_at)| AbsenceSpan {
                user_id,
                device_id,
                starts_at,
                ends_at,
            })
            .collect())
    }
}
