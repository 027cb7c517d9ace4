//! The second factor heimweg keeps for staff who sign in with their directory password (a
//! city without an identity provider): a TOTP secret set up at the first sign-in, sealed by
//! the service with the gateway's key, each code's time step used once on every gateway, and a
//! lock after wrong codes in a row, as for panel accounts. An admin's reset forgets the secret
//! and the lock: the next sign-in sets up a new one.

use crate::db::{audit, Tx};
use crate::users::{user_by_id, user_on};
use crate::{Result, Store, User};
use heimweg_control::{Actor, AuditAction, Name};

/// A staff member's second factor as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffFactor {
    /// The sealed TOTP secret; `None` before it is set up.
    pub totp_sealed: Option<String>,
    /// The sign-in is locked until then (Unix seconds).
    pub locked_until: Option<i64>,
}

impl Store {
    /// The user whose directory entry has the id `directory_id` (as the sync stores it).
    pub async fn user_by_directory_id(&self, directory_id: &str, now: i64) -> Result<Option<User>> {
        let mut conn = self.read().await?;
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE directory_id = $1")
            .bind(directory_id)
            .fetch_optional(&mut *conn)
            .await?;
        match id {
            Some(id) => Ok(Some(user_by_id(&mut conn, id, now).await?)),
            None => Ok(None),
        }
    }

    /// The user with this id (a sign-in's note names it).
    pub async fn user_by_id(&self, id: i64, now: i64) -> Result<User> {
        user_by_id(&mut *self.read().await?, id, now).await
    }

    /// The directory entry id of the user with this id; `None` for one the directory does not
    /// know.
    pub async fn user_directory_id(&self, id: i64) -> Result<Option<String>> {
        let found: Option<Option<String>> =
            sqlx::query_scalar("SELECT directory_id FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *self.read().await?)
                .await?;
        Ok(found.flatten())
    }

    /// The user's second factor; `None` before their first sign-in.
    pub async fn staff_factor(&self, user_id: i64) -> Result<Option<StaffFactor>> {
        let row: Option<(Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT totp_sealed, locked_until FROM staff_factors WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&mut *self.read().await?)
        .await?;
        Ok(row.map(|(totp_sealed, locked_until)| StaffFactor {
            totp_sealed,
            locked_until,
        }))
    }

    /// Keeps `sealed` as `user`'s TOTP secret with its first code's `step` used. False when
    /// they have one already: another browser finished its set-up first, and this one's code
    /// belongs to a secret that is not kept.
    pub async fn set_staff_totp(
        &self,
        user: &User,
        sealed: &str,
        step: i64,
        now: i64,
    ) -> Result<bool> {
        let actor = user.staff_actor();
        let mut tx = self.write(&actor).await?;
        let done = sqlx::query(
            "INSERT INTO staff_factors (user_id, totp_sealed, totp_last_step, created_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user.id)
        .bind(sealed)
        .bind(step)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            audit(
                &mut tx,
                now,
                &actor,
                AuditAction::UserTotpOn,
                user.name.as_str(),
                "",
            )
            .await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Uses up the code of time `step`: false if that step (or a later one) was used, or the
    /// sign-in is locked. A right code starts the count of wrong ones again.
    pub async fn accept_staff_code(&self, user_id: i64, step: i64, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE staff_factors SET totp_last_step = $1, failed_codes = 0
             WHERE user_id = $2 AND totp_sealed IS NOT NULL
               AND (totp_last_step IS NULL OR totp_last_step < $1)
               AND (locked_until IS NULL OR locked_until <= $3)",
        )
        .bind(step)
        .bind(user_id)
        .bind(now)
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// A wrong code after a right password. The `max_failures`th in a row locks the sign-in
    /// for `lock_secs` and ends the user's staff sessions (one could otherwise go on guessing
    /// on the staff page); returns the lock's end then.
    pub async fn record_staff_code_failure(
        &self,
        user: &User,
        max_failures: i64,
        lock_secs: i64,
        now: i64,
    ) -> Result<Option<i64>> {
        let mut tx = self.write(&user.staff_actor()).await?;
        let failures: Option<i64> = sqlx::query_scalar(
            "UPDATE staff_factors SET failed_codes = failed_codes + 1 WHERE user_id = $1
             RETURNING failed_codes",
        )
        .bind(user.id)
        .fetch_optional(&mut *tx)
        .await?;
        let locked = match failures {
            Some(n) if n >= max_failures => Some(lock(&mut tx, user, n, lock_secs, now).await?),
            _ => None,
        };
        tx.commit().await?;
        Ok(locked)
    }

    /// Forgets `name`'s second factor and any lock: their next sign-in sets up a new one (a
    /// lost phone). Their staff sessions end.
    pub async fn reset_staff_factor(&self, actor: &Actor, name: &Name, now: i64) -> Result<()> {
        let mut tx = self.write(actor).await?;
        let user = user_on(&mut tx, name, now).await?;
        let forgotten = sqlx::query("DELETE FROM staff_factors WHERE user_id = $1")
            .bind(user.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM staff_sessions WHERE user_id = $1")
            .bind(user.id)
            .execute(&mut *tx)
            .await?;
        let detail = if forgotten == 0 {
            "none was set up"
        } else {
            ""
        };
        audit(
            &mut tx,
            now,
            actor,
            AuditAction::UserTotpReset,
            user.name.as_str(),
            detail,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Locks `user`'s sign-in after `failures` wrong codes, inside `tx`; returns the lock's end.
async fn lock(
    tx: &mut Tx<'_>,
    user: &User,
    failures: i64,
    lock_secs: i64,
    now: i64,
) -> Result<i64> {
    let until = now + lock_secs;
    sqlx::query("UPDATE staff_factors SET failed_codes = 0, locked_until = $1 WHERE user_id = $2")
        .bind(until)
        .bind(user.id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM staff_sessions WHERE user_id = $1")
        .bind(user.id)
        .execute(&mut **tx)
        .await?;
    let detail = format!("{failures} wrong codes; locked for {lock_secs} s");
    audit(
        tx,
        now,
        &Actor::Panel,
        AuditAction::UserLock,
        user.name.as_str(),
        &detail,
    )
    .await
    .map(|()| until)
}
