//! Sign-in through the identity provider: the sign-ins in flight, the link from the provider's
//! subject to a user or panel account, staff sessions, and a staff member's own enrollment
//! under their device limit. What the claims mean is decided by the service
//! (`heimweg_control::identity`); here is what has to be atomic.

use crate::db::{audit, decode_error, Tx};
use crate::devices::{insert_device, Device, NewDevice};
use crate::users::{user_by_id, user_on, User};
use crate::{Admin, Result, Store, StoreError};
use heimweg_control::{Actor, AuditAction, Email, Name, Role};

/// How long a sign-in may take between the redirect to the provider and its answer.
pub const SIGN_IN_SECS: i64 = 600;

/// Who a sign-in is for: a staff member's own page, or the admin panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInPurpose {
    Staff,
    Panel,
    /// A staff member signing in afresh to start an activation (sign in to connect).
    Connect,
}

impl SignInPurpose {
    fn as_str(self) -> &'static str {
        match self {
            SignInPurpose::Staff => "staff",
            SignInPurpose::Panel => "panel",
            SignInPurpose::Connect => "connect",
        }
    }
}

/// A sign-in in flight: what the answer is checked against. `Debug` leaves out the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingSignIn {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub purpose: SignInPurpose,
    /// Where to go afterwards: a path of this site.
    pub next: String,
    /// When it began (Unix seconds): a sign-in to connect must be one the person made after.
    pub begun_at: i64,
}

impl std::fmt::Debug for PendingSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSignIn")
            .field("purpose", &self.purpose)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

/// A staff member's live session. `Debug` leaves out the CSRF token.
#[derive(Clone, PartialEq)]
pub struct StaffSession {
    pub user: User,
    /// The groups this sign-in may put devices in, the first one the default.
    pub groups: Vec<Name>,
    pub csrf_token: String,
    pub expires_at: i64,
}

impl std::fmt::Debug for StaffSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaffSession")
            .field("user", &self.user.name)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl StaffSession {
    /// The actor of what the staff member does on their page.
    pub fn actor(&self) -> Actor {
        self.user.staff_actor()
    }
}

/// Who the provider says signed in, as far as the store needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAccount<'a> {
    /// The provider's subject: its stable id for the person.
    pub subject: &'a str,
    /// The login name (e.g. `preferred_username`): the name of a new user or account.
    pub login: &'a Name,
    pub email: Option<&'a Email>,
}

impl Store {
    /// Remembers a sign-in until its answer (and forgets those older than [`SIGN_IN_SECS`]).
    pub async fn save_sign_in(&self, id_hash: &str, s: &PendingSignIn, now: i64) -> Result<()> {
        let mut tx = self.writer().begin().await?;
        sqlx::query("DELETE FROM oidc_logins WHERE created_at <= $1")
            .bind(now - SIGN_IN_SECS)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO oidc_logins (id_hash, state, nonce, pkce_verifier, purpose, next, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id_hash)
        .bind(&s.state)
        .bind(&s.nonce)
        .bind(&s.pkce_verifier)
        .bind(s.purpose.as_str())
        .bind(&s.next)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The sign-in this browser started, if it is younger than [`SIGN_IN_SECS`]; gone
    /// afterwards, so that an answer cannot be replayed.
    pub async fn take_sign_in(&self, id_hash: &str, now: i64) -> Result<Option<PendingSignIn>> {
        let row: Option<(String, String, String, String, String, i64)> = sqlx::query_as(
            "DELETE FROM oidc_logins WHERE id_hash = $1
             RETURNING state, nonce, pkce_verifier, purpose, next, created_at",
        )
        .bind(id_hash)
        .fetch_optional(self.writer())
        .await?;
        let Some((state, nonce, pkce_verifier, purpose, next, created_at)) = row else {
            return Ok(None);
        };
        if created_at <= now - SIGN_IN_SECS {
            return Ok(None);
        }
        let purpose = match purpose.as_str() {
            "staff" => SignInPurpose::Staff,
            "panel" => SignInPurpose::Panel,
            "connect" => SignInPurpose::Connect,
            other => return Err(decode_error("oidc_logins", 0, format!("purpose {other:?}"))),
        };
        Ok(Some(PendingSignIn {
            state,
            nonce,
            pkce_verifier,
            purpose,
            next,
            begun_at: created_at,
        }))
    }

    /// The user a staff member signed in as: the one linked to their subject; else the user of
    /// their login name, linked now (made before the provider was connected, or by the
    /// directory sync, which reads the same directory); else a new user if `may_create`.
    /// A disabled user is refused, and so is a name another subject is linked to already.
    pub async fn staff_sign_in(
        &self,
        who: &ProviderAccount<'_>,
        may_create: bool,
        now: i64,
    ) -> Result<User> {
        let mut tx = self.write(&Actor::System).await?;
        let by_subject: Option<(i64, Option<i64>)> =
            sqlx::query_as("SELECT id, disabled_at FROM users WHERE oidc_subject = $1")
                .bind(who.subject)
                .fetch_optional(&mut *tx)
                .await?;
        let id = match by_subject {
            Some((_, Some(_))) => return Err(disabled()),
            Some((id, None)) => id,
            None => link_or_create(&mut tx, who, may_create, now).await?,
        };
        let user = user_by_id(&mut tx, id, now).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// The panel account a provider sign-in with `role` is: the one linked to the subject
    /// (its role brought in line with the provider's groups), else a new one. A local account
    /// of the same name is never taken over: it stays the password account it is.
    pub async fn admin_sign_in(
        &self,
        who: &ProviderAccount<'_>,
        role: Role,
        now: i64,
    ) -> Result<Admin> {
        let mut tx = self.write(&Actor::System).await?;
        let found: Option<(i64, String, Option<i64>)> =
            sqlx::query_as("SELECT id, role, disabled_at FROM admins WHERE oidc_subject = $1")
                .bind(who.subject)
                .fetch_optional(&mut *tx)
                .await?;
        let id = match found {
            Some((_, _, Some(_))) => return Err(disabled()),
            Some((id, was, None)) => {
                if was != role.as_str() {
                    sqlx::query("UPDATE admins SET role = $1 WHERE id = $2")
                        .bind(role.as_str())
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    audit_role(&mut tx, id, who.login, role, now).await?;
                }
                id
            }
            None => create_provider_admin(&mut tx, who, role, now).await?,
        };
        let admin = crate::accounts::admin_by_id(&mut tx, id).await?;
        audit(
            &mut tx,
            now,
            &admin.actor(),
            AuditAction::AdminLogin,
            admin.name.as_str(),
            "identity provider",
        )
        .await?;
        tx.commit().await?;
        Ok(admin)
    }

    /// Starts a session for `user`, whose sign-in allowed `groups`: the sign-in as the audit
    /// log records it (a sign-in refused after its user was found is not one). Refused if the
    /// user was disabled a moment earlier.
    pub async fn create_staff_session(
        &self,
        id_hash: &str,
        user: &User,
        groups: &[Name],
        csrf_token: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        let actor = user.staff_actor();
        let mut tx = self.write(&actor).await?;
        let groups: Vec<&str> = groups.iter().map(Name::as_str).collect();
        sqlx::query(
            "INSERT INTO staff_sessions
               (id_hash, user_id, groups, csrf_token, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id_hash)
        .bind(user.id)
        .bind(groups.join("\n"))
        .bind(csrf_token)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut tx,
            now,
            &actor,
            AuditAction::UserSignIn,
            user.name.as_str(),
            "",
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live staff session with this id hash: not expired, its user enabled.
    pub async fn staff_session(&self, id_hash: &str, now: i64) -> Result<Option<StaffSession>> {
        let mut conn = self.read().await?;
        let row: Option<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT s.user_id, s.groups, s.csrf_token, s.expires_at
             FROM staff_sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id_hash = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
        let Some((user_id, groups, csrf_token, expires_at)) = row else {
            return Ok(None);
        };
        let groups = groups
            .lines()
            .map(|g| crate::stored_name("staff_sessions", user_id, g))
            .collect::<Result<_>>()?;
        Ok(Some(StaffSession {
            user: user_by_id(&mut conn, user_id, now).await?,
            groups,
            csrf_token,
            expires_at,
        }))
    }

    pub async fn delete_staff_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM staff_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Enrolls a device for its owner, the staff member `actor`, unless they already have
    /// `limit` active devices: counted in the write transaction, so two enrollments at once
    /// cannot both slip under it.
    pub async fn add_own_device(
        &self,
        actor: &Actor,
        d: &NewDevice,
        limit: u32,
        now: i64,
    ) -> Result<Device> {
        let mut tx = self.write(actor).await?;
        let owner = d
            .owner
            .as_ref()
            .ok_or_else(|| StoreError::Invalid("an own device needs its owner".into()))?;
        let active = user_on(&mut tx, owner, now).await?.active_devices;
        if active >= i64::from(limit) {
            return Err(StoreError::Conflict(format!(
                "you have {active} active devices, the most you may have; revoke one you no \
                 longer use first"
            )));
        }
        let device = insert_device(&mut tx, actor, d, now).await?;
        tx.commit().await?;
        Ok(device)
    }
}

fn disabled() -> StoreError {
    StoreError::Unauthorized("this account is disabled in heimweg; ask the IT service desk".into())
}

/// Links the user named like the provider's login to the subject, or creates them.
async fn link_or_create(
    tx: &mut Tx<'_>,
    who: &ProviderAccount<'_>,
    may_create: bool,
    now: i64,
) -> Result<i64> {
    let by_name: Option<(i64, Option<i64>, Option<String>)> =
        sqlx::query_as("SELECT id, disabled_at, oidc_subject FROM users WHERE name_key = $1")
            .bind(who.login.key())
            .fetch_optional(&mut **tx)
            .await?;
    match by_name {
        Some((_, Some(_), _)) => Err(disabled()),
        Some((_, None, Some(_))) => Err(StoreError::Conflict(format!(
            "the user {:?} is linked to another account of the identity provider; an admin \
             has to sort this out",
            who.login.as_str()
        ))),
        Some((id, None, None)) => {
            link_subject(
                tx,
                id,
                who,
                AuditAction::UserUpdate,
                "linked to the identity provider",
                now,
            )
            .await?;
            Ok(id)
        }
        None if may_create => {
            let id = crate::users::insert_user(tx, who.login, who.email, now).await?;
            link_subject(
                tx,
                id,
                who,
                AuditAction::UserCreate,
                "identity provider",
                now,
            )
            .await?;
            Ok(id)
        }
        None => Err(StoreError::Unauthorized(
            "you are in no group that may connect; ask the IT service desk".into(),
        )),
    }
}

/// Links user `id` to the provider's subject, audited as the staff member's own doing.
async fn link_subject(
    tx: &mut Tx<'_>,
    id: i64,
    who: &ProviderAccount<'_>,
    action: AuditAction,
    detail: &str,
    now: i64,
) -> Result<()> {
    sqlx::query("UPDATE users SET oidc_subject = $1 WHERE id = $2")
        .bind(who.subject)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    let actor = Actor::Staff {
        id,
        name: who.login.clone(),
    };
    audit(tx, now, &actor, action, who.login.as_str(), detail).await
}

async fn create_provider_admin(
    tx: &mut Tx<'_>,
    who: &ProviderAccount<'_>,
    role: Role,
    now: i64,
) -> Result<i64> {
    let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM admins WHERE name_key = $1")
        .bind(who.login.key())
        .fetch_optional(&mut **tx)
        .await?;
    if taken.is_some() {
        return Err(StoreError::Conflict(format!(
            "a local panel account named {:?} exists; sign in with its password (a sign-in \
             through the identity provider never takes over a local account)",
            who.login.as_str()
        )));
    }
    // No password: the empty hash matches none, so the account signs in only through the
    // provider (and its second factor).
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO admins (name, name_key, password_hash, role, created_at, oidc_subject)
         VALUES ($1, $2, '', $3, $4, $5) RETURNING id",
    )
    .bind(who.login.as_str())
    .bind(who.login.key())
    .bind(role.as_str())
    .bind(now)
    .bind(who.subject)
    .fetch_one(&mut **tx)
    .await?;
    let actor = Actor::Admin {
        id,
        name: who.login.clone(),
    };
    let detail = format!("{} (identity provider)", role.as_str());
    audit(
        tx,
        now,
        &actor,
        AuditAction::AdminCreate,
        who.login.as_str(),
        &detail,
    )
    .await?;
    Ok(id)
}

async fn audit_role(tx: &mut Tx<'_>, id: i64, login: &Name, role: Role, now: i64) -> Result<()> {
    let actor = Actor::Admin {
        id,
        name: login.clone(),
    };
    let detail = format!("{} (identity provider)", role.as_str());
    audit(
        tx,
        now,
        &actor,
        AuditAction::AdminRole,
        login.as_str(),
        &detail,
    )
    .await
}
