//! Sign in to connect: an activation lets a user's devices in groups that require it pass
//! traffic for a few hours. The staff member starts one on their own page after a fresh
//! sign-in with a second factor; they or an admin may end it early. The reconciler's plan
//! reads the running ones; every gateway follows the store's revision within a second.

use crate::absences::utc;
use crate::db::{audit, bump_revision};
use crate::{stored_name, Result, Store, StoreError};
use heimweg_control::{Actor, AuditAction, Name};

/// A running activation, as the staff page, the panel and the API show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    pub id: i64,
    pub user: Name,
    /// Unix seconds; the end is exclusive.
    pub starts_at: i64,
    pub ends_at: i64,
    /// Who started it (the actor, as the audit log writes it).
    pub created_by: String,
}

/// What the reconciler's plan needs of an activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivationSpan {
    pub user_id: i64,
    pub starts_at: i64,
    pub ends_at: i64,
}

/// The longest an activation may last, in hours (a working day and its evening).
pub const MAX_SIGN_IN_HOURS: u8 = 24;

/// Sign in to connect lasts 1 to [`MAX_SIGN_IN_HOURS`] hours, for a group and an activation.
pub(crate) fn check_sign_in_hours(hours: u8) -> Result<()> {
    if hours == 0 || hours > MAX_SIGN_IN_HOURS {
        return Err(StoreError::Invalid(format!(
            "sign in to connect lasts 1 to {MAX_SIGN_IN_HOURS} hours"
        )));
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    user_name: String,
    starts_at: i64,
    ends_at: i64,
    created_by: String,
}

impl TryFrom<Row> for Activation {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Activation> {
        Ok(Activation {
            id: r.id,
            user: stored_name("activations", r.id, &r.user_name)?,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            created_by: r.created_by,
        })
    }
}

const RUNNING: &str = "SELECT a.id, u.name AS user_name, a.starts_at, a.ends_at, a.created_by
                       FROM activations a JOIN users u ON u.id = a.user_id
                       WHERE a.ends_at > $1 AND a.starts_at <= $1";

impl Store {
    /// Starts an activation of `user`'s devices for `hours` from `now`; one that runs is
    /// replaced (signing in again extends it). A disabled user gets none.
    pub async fn start_activation(
        &self,
        actor: &Actor,
        user: &Name,
        hours: u8,
        now: i64,
    ) -> Result<Activation> {
        check_sign_in_hours(hours)?;
        let mut tx = self.write(actor).await?;
        let (user_id, name, disabled_at): (i64, String, Option<i64>) =
            sqlx::query_as("SELECT id, name, disabled_at FROM users WHERE name_key = $1")
                .bind(user.key())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("there is no user named {user:?}")))?;
        if disabled_at.is_some() {
            return Err(StoreError::Conflict(format!("{name} is disabled")));
        }
        sqlx::query("UPDATE activations SET ends_at = $1 WHERE user_id = $2 AND ends_at > $1")
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let ends_at = now + i64::from(hours) * 3600;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO activations (user_id, starts_at, ends_at, created_by)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(user_id)
        .bind(now)
        .bind(ends_at)
        .bind(actor.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let detail = format!("devices may connect until {}", utc(ends_at));
        audit(
            &mut tx,
            now,
            actor,
            AuditAction::ActivationStart,
            &name,
            &detail,
        )
        .await?;
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(Activation {
            id,
            user: stored_name("users", user_id, &name)?,
            starts_at: now,
            ends_at,
            created_by: actor.to_string(),
        })
    }

    /// Ends `user`'s running activation now: their devices in sign-in groups are cut off on
    /// every gateway within a second.
    pub async fn end_activation(&self, actor: &Actor, user: &Name, now: i64) -> Result<()> {
        let mut tx = self.write(actor).await?;
        let running: Option<(i64, String, i64)> = sqlx::query_as(
            "SELECT a.id, u.name, a.ends_at FROM activations a JOIN users u ON u.id = a.user_id
             WHERE u.name_key = $1 AND a.starts_at <= $2 AND a.ends_at > $2",
        )
        .bind(user.key())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let (id, name, planned) = running
            .ok_or_else(|| StoreError::NotFound(format!("{user} has no activation running")))?;
        sqlx::query("UPDATE activations SET ends_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let detail = format!("ended early (was until {})", utc(planned));
        audit(
            &mut tx,
            now,
            actor,
            AuditAction::ActivationEnd,
            &name,
            &detail,
        )
        .await?;
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The activations running at `now`, the latest end first.
    pub async fn activations(&self, now: i64) -> Result<Vec<Activation>> {
        sqlx::query_as::<_, Row>(&format!("{RUNNING} ORDER BY a.ends_at DESC, a.id"))
            .bind(now)
            .fetch_all(&self.reads)
            .await?
            .into_iter()
            .map(Activation::try_from)
            .collect()
    }

    /// `user`'s running activation, if any.
    pub async fn activation_of(&self, user: &Name, now: i64) -> Result<Option<Activation>> {
        sqlx::query_as::<_, Row>(&format!("{RUNNING} AND u.name_key = $2"))
            .bind(now)
            .bind(user.key())
            .fetch_optional(&self.reads)
            .await?
            .map(Activation::try_from)
            .transpose()
    }

    /// What the plan needs: the activations that run at `now`.
    pub async fn activation_spans(&self, now: i64) -> Result<Vec<ActivationSpan>> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT user_id, starts_at, ends_at FROM activations
             WHERE ends_at > $1 AND starts_at <= $1",
        )
        .bind(now)
        .fetch_all(&self.reads)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(user_id, starts_at, ends_at)| ActivationSpan {
                user_id,
                starts_at,
                ends_at,
            })
            .collect())
    }
}
