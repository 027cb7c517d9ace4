//! Admin accounts of the web panel and their sessions. The store keeps only what cannot be
//! used if the database leaks: argon2id hashes of passwords, SHA-256 of session ids and
//! recovery codes, and TOTP secrets sealed by the caller. Hashing, sealing and deciding what a
//! role may do is the service's business; here is the bookkeeping that has to be atomic: lockout
//! counting, one-time use of TOTP steps and recovery codes, and sessions that end with the
//! account.

use crate::db::{audit, decode_error};
use crate::{stored_name, Result, Store, StoreError};
use heimweg_control::{Actor, AuditAction, Name, Role, SessionStage};

/// An admin account, with what a login needs to check. `Debug` leaves out the hash and the
/// sealed secret, so that a stray `{:?}` in a log line does not carry them.
#[derive(Clone, PartialEq)]
pub struct Admin {
    pub id: i64,
    pub name: Name,
    pub role: Role,
    /// argon2id PHC string.
    pub password_hash: String,
    /// The sealed TOTP secret; `None` without a second factor.
    pub totp_sealed: Option<String>,
    pub failed_logins: i64,
    pub locked_until: Option<i64>,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

/// A live session and its account. `Debug` leaves out the CSRF token.
#[derive(Clone, PartialEq)]
pub struct Session {
    pub admin: Admin,
    pub stage: SessionStage,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("password_hash", &"<redacted>")
            .field("totp", &self.totp_sealed.as_ref().map(|_| "<redacted>"))
            .field("failed_logins", &self.failed_logins)
            .field("locked_until", &self.locked_until)
            .field("created_at", &self.created_at)
            .field("disabled_at", &self.disabled_at)
            .finish()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("admin", &self.admin)
            .field("stage", &self.stage)
            .field("csrf_token", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

const ADMIN_COLUMNS: &str = "a.id, a.name, a.role, a.password_hash, a.totp_sealed, \
                             a.failed_logins, a.locked_until, a.created_at, a.disabled_at";

/// An `admins` row as stored, decoded by column name.
#[derive(sqlx::FromRow)]
struct AdminRow {
    id: i64,
    name: String,
    role: String,
    password_hash: String,
    totp_sealed: Option<String>,
    failed_logins: i64,
    locked_until: Option<i64>,
    created_at: i64,
    disabled_at: Option<i64>,
}

impl TryFrom<AdminRow> for Admin {
    type Error = StoreError;
    fn try_from(r: AdminRow) -> Result<Admin> {
        Ok(Admin {
            name: stored_name("admins", r.id, &r.name)?,
            role: r
                .role
                .parse()
                .map_err(|e| decode_error("admins", r.id, e))?,
            id: r.id,
            password_hash: r.password_hash,
            totp_sealed: r.totp_sealed,
            failed_logins: r.failed_logins,
            locked_until: r.locked_until,
            created_at: r.created_at,
            disabled_at: r.disabled_at,
        })
    }
}

/// A session joined with its account (the session's own creation time renamed, as the
/// account has one too).
#[derive(sqlx::FromRow)]
struct SessionRow {
    #[sqlx(flatten)]
    admin: AdminRow,
    stage: String,
    csrf_token: String,
    session_created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
}

impl Admin {
    /// The actor of what this account does.
    pub fn actor(&self) -> Actor {
        Actor::Admin {
            id: self.id,
            name: self.name.clone(),
        }
    }
}

/// The account with this id, inside a transaction.
pub(crate) async fn admin_by_id(tx: &mut crate::db::Tx<'_>, id: i64) -> Result<Admin> {
    sqlx::query_as::<_, AdminRow>(&format!(
        "SELECT {ADMIN_COLUMNS} FROM admins a WHERE a.id = $1"
    ))
    .bind(id)
    .fetch_one(&mut **tx)
    .await?
    .try_into()
}

impl Store {
    /// Creates a panel account.
    pub async fn create_admin(
        &self,
        actor: &Actor,
        name: &Name,
        password_hash: &str,
        role: Role,
        now: i64,
    ) -> Result<Admin> {
        let mut tx = self.write(actor).await?;
        let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM admins WHERE name_key = $1")
            .bind(name.key())
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(StoreError::Conflict(format!(
                "an admin named {name:?} already exists"
            )));
        }
        sqlx::query(
            "INSERT INTO admins (name, name_key, password_hash, role, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(name.as_str())
        .bind(name.key())
        .bind(password_hash)
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut tx,
            now,
            actor,
            AuditAction::AdminCreate,
            name.as_str(),
            role.as_str(),
        )
        .await?;
        let row: AdminRow = sqlx::query_as(&format!(
            "SELECT {ADMIN_COLUMNS} FROM admins a WHERE a.name_key = $1"
        ))
        .bind(name.key())
        .fetch_one(&mut *tx)
        .await?;
        let admin = Admin::try_from(row)?;
        tx.commit().await?;
        Ok(admin)
    }

    pub async fn admin(&self, name: &Name) -> Result<Option<Admin>> {
        sqlx::query_as::<_, AdminRow>(&format!(
            "SELECT {ADMIN_COLUMNS} FROM admins a WHERE a.name_key = $1"
        ))
        .bind(name.key())
        .fetch_optional(&self.reads)
        .await?
        .map(Admin::try_from)
        .transpose()
    }

    pub async fn admins(&self) -> Result<Vec<Admin>> {
        sqlx::query_as::<_, AdminRow>(&format!(
            "SELECT {ADMIN_COLUMNS} FROM admins a ORDER BY a.name"
        ))
        .fetch_all(&self.reads)
        .await?
        .into_iter()
        .map(Admin::try_from)
        .collect()
    }

    /// How many enabled admin accounts exist: none means the panel needs its first one.
    pub async fn enabled_admin_count(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM admins WHERE disabled_at IS NULL")
                .fetch_one(&self.reads)
                .await?,
        )
    }

    /// Counts a wrong password (or second factor). The `max_failures`th in a row locks the
    /// account until `now + lock_secs`, ends every session still waiting for its second factor
    /// (each could go on guessing codes), and the count starts again. Returns the lock's end
    /// when this failure set one.
    pub async fn record_login_failure(
        &self,
        admin_id: i64,
        max_failures: i64,
        lock_secs: i64,
        now: i64,
    ) -> Result<Option<i64>> {
        let mut tx = self.write(&Actor::Panel).await?;
        let row: Option<(i64, String)> = sqlx::query_as(
            "UPDATE admins SET failed_logins = failed_logins + 1 WHERE id = $1
             RETURNING failed_logins, name",
        )
        .bind(admin_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((failures, name)) = row else {
            return Ok(None);
        };
        let mut locked = None;
        if failures >= max_failures {
            let until = now + lock_secs;
            sqlx::query("UPDATE admins SET failed_logins = 0, locked_until = $1 WHERE id = $2")
                .bind(until)
                .bind(admin_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM admin_sessions WHERE admin_id = $1 AND stage = 'password'")
                .bind(admin_id)
                .execute(&mut *tx)
                .await?;
            let detail = format!("{failures} failed logins; locked for {lock_secs} s");
            audit(
                &mut tx,
                now,
                &Actor::Panel,
                AuditAction::AdminLock,
                &name,
                &detail,
            )
            .await?;
            locked = Some(until);
        }
        tx.commit().await?;
        Ok(locked)
    }

    /// A login succeeded (`how`: "password", "password+totp", "password+recovery code"): the
    /// failure count starts again, and the audit log shows who came in.
    pub async fn record_login(&self, admin: &Admin, how: &str, now: i64) -> Result<()> {
        let actor = admin.actor();
        let mut tx = self.write(&actor).await?;
        sqlx::query("UPDATE admins SET failed_logins = 0 WHERE id = $1")
            .bind(admin.id)
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            now,
            &actor,
            AuditAction::AdminLogin,
            admin.name.as_str(),
            how,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Lifts a lockout before it runs out.
    pub async fn unlock_admin(&self, actor: &Actor, name: &Name, now: i64) -> Result<()> {
        let mut tx = self.write(actor).await?;
        let done = sqlx::query(
            "UPDATE admins SET failed_logins = 0, locked_until = NULL WHERE name_key = $1",
        )
        .bind(name.key())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Err(StoreError::NotFound(format!(
                "there is no admin named {name:?}"
            )));
        }
        audit(
            &mut tx,
            now,
            actor,
            AuditAction::AdminUnlock,
            name.as_str(),
            "",
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets a new password and ends every session of the account.
    pub async fn set_admin_password(
        &self,
        actor: &Actor,
        name: &Name,
        password_hash: &str,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.write(actor).await?;
        let id: i64 = sqlx::query_scalar(
            "UPDATE admins SET password_hash = $1, failed_logins = 0, locked_until = NULL
             WHERE name_key = $2 RETURNING id",
        )
        .bind(password_hash)
        .bind(name.key())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no admin named {name:?}")))?;
        sqlx::query("DELETE FROM admin_sessions WHERE admin_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            now,
            actor,
            AuditAction::AdminPassword,
            name.as_str(),
            "",
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Disables an account and ends its sessions at once.
    pub async fn disable_admin(&self, actor: &Actor, name: &Name, now: i64) -> Result<()> {
        let mut tx = self.write(actor).await?;
        let id: i64 = sqlx::query_scalar(
            "UPDATE admins SET disabled_at = $1 WHERE name_key = $2 AND disabled_at IS NULL
             RETURNING id",
        )
        .bind(now)
        .bind(name.key())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no enabled admin named {name:?}")))?;
        sqlx::query("DELETE FROM admin_sessions WHERE admin_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            now,
            actor,
            AuditAction::AdminDisable,
            name.as_str(),
            "",
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Turns the second factor on (with its recovery codes, replacing any earlier ones) or,
    /// with `None`, off.
    pub async fn set_admin_totp(
        &self,
        actor: &Actor,
        name: &Name,
        totp: Option<(&str, &[String])>,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.write(actor).await?;
        let id: i64 = sqlx::query_scalar(
            "UPDATE admins SET totp_sealed = $1, totp_last_step = NULL WHERE name_key = $2
             RETURNING id",
        )
        .bind(totp.map(|(sealed, _)| sealed))
        .bind(name.key())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no admin named {name:?}")))?;
        sqlx::query("DELETE FROM admin_recovery_codes WHERE admin_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for hash in totp.map_or(&[][..], |(_, codes)| codes) {
            sqlx::query("INSERT INTO admin_recovery_codes (admin_id, code_hash) VALUES ($1, $2)")
                .bind(id)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
        }
        let action = if totp.is_some() {
            AuditAction::AdminTotpOn
        } else {
            AuditAction::AdminTotpOff
        };
        audit(&mut tx, now, actor, action, name.as_str(), "").await?;
        tx.commit().await?;
        Ok(())
    }

    /// Accepts TOTP time step `step` for an account if no equal or later step was accepted
    /// before (a code, even one still valid, works only once) and the account is not locked.
    pub async fn accept_totp_step(&self, admin_id: i64, step: i64, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE admins SET totp_last_step = $1
             WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)
               AND (locked_until IS NULL OR locked_until <= $3)",
        )
        .bind(step)
        .bind(admin_id)
        .bind(now)
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// Uses up a recovery code; false if it is unknown, was used, or the account is locked.
    pub async fn use_recovery_code(
        &self,
        admin_id: i64,
        code_hash: &str,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE admin_recovery_codes SET used_at = $1
             WHERE admin_id = $2 AND code_hash = $3 AND used_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM admins
                               WHERE id = $2 AND locked_until IS NOT NULL AND locked_until > $1)",
        )
        .bind(now)
        .bind(admin_id)
        .bind(code_hash)
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// Recovery codes not used yet.
    pub async fn recovery_codes_left(&self, admin_id: i64) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM admin_recovery_codes WHERE admin_id = $1 AND used_at IS NULL",
        )
        .bind(admin_id)
        .fetch_one(&self.reads)
        .await?)
    }

    /// Starts a session. Sessions are single-row writes with no invariant across rows, so they
    /// skip the write lock that device changes queue behind.
    pub async fn create_session(
        &self,
        id_hash: &str,
        admin_id: i64,
        stage: SessionStage,
        csrf_token: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO admin_sessions
               (id_hash, admin_id, stage, csrf_token, created_at, last_seen_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $5, $6)",
        )
        .bind(id_hash)
        .bind(admin_id)
        .bind(stage.as_str())
        .bind(csrf_token)
        .bind(now)
        .bind(expires_at)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// The live session with this id hash: not expired, its account enabled.
    pub async fn session(&self, id_hash: &str, now: i64) -> Result<Option<Session>> {
        let row: Option<SessionRow> = sqlx::query_as(&format!(
            "SELECT {ADMIN_COLUMNS}, s.stage, s.csrf_token, s.created_at AS session_created_at,
                    s.last_seen_at, s.expires_at
             FROM admin_sessions s JOIN admins a ON a.id = s.admin_id
             WHERE s.id_hash = $1 AND s.expires_at > $2 AND a.disabled_at IS NULL"
        ))
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.reads)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let admin = Admin::try_from(r.admin)?;
        Ok(Some(Session {
            stage: r
                .stage
                .parse()
                .map_err(|e| decode_error("admin_sessions", admin.id, e))?,
            admin,
            csrf_token: r.csrf_token,
            created_at: r.session_created_at,
            last_seen_at: r.last_seen_at,
            expires_at: r.expires_at,
        }))
    }

    /// Records activity on a session and moves its idle deadline.
    pub async fn touch_session(&self, id_hash: &str, now: i64, expires_at: i64) -> Result<()> {
        sqlx::query(
            "UPDATE admin_sessions SET last_seen_at = $1, expires_at = $2 WHERE id_hash = $3",
        )
        .bind(now)
        .bind(expires_at)
        .bind(id_hash)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Ends a session (logout, or the step that replaces it with a new id).
    pub async fn delete_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM admin_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Forgets sessions that ran out.
    pub async fn delete_expired_sessions(&self, now: i64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM admin_sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(self.writer())
                .await?
                .rows_affected(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{Admin, Session};
    use heimweg_control::{Name, Role, SessionStage};

    #[test]
    fn debug_leaves_out_hashes_sealed_secrets_and_tokens() {
        let admin = Admin {
            id: 1,
            name: Name::new("anna").unwrap(),
            role: Role::Admin,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$SALTSALT$HASHHASH".into(),
            totp_sealed: Some("SEALEDTOTPSECRET".into()),
            failed_logins: 0,
            locked_until: None,
            created_at: 0,
            disabled_at: None,
        };
        let session = Session {
            admin,
            stage: SessionStage::Full,
            csrf_token: "CSRFTOKENVALUE".into(),
            created_at: 0,
            last_seen_at: 0,
            expires_at: 0,
        };
        let shown = format!("{session:?}");
        assert!(shown.contains("anna"), "{shown}");
        for secret in ["argon2id", "HASHHASH", "SEALEDTOTPSECRET", "CSRFTOKENVALUE"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}
