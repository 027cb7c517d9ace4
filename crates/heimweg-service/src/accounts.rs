//! Panel accounts: logging in (password, second factor, lockout, rate limits), sessions, an
//! account's own password and second factor, and managing accounts.
//!
//! Outcomes a person must read about come back as values, not errors, so that the panel can
//! say them in the reader's language.

use crate::limits::{KeyedRateLimit, RateLimit};
use crate::secrets;
use crate::{token_hash, Caller, Result, Service, ServiceError};
use heimweg_control::{Name, Role, SessionStage};
use heimweg_store::{Admin, Session};

/// Wrong passwords (or codes) in a row that lock an account, and for how long.
pub const MAX_FAILED_LOGINS: i64 = 5;
pub const LOCKOUT_SECS: i64 = 15 * 60;
/// Idle sessions end after this, and every session after [`SESSION_MAX_SECS`].
pub const SESSION_IDLE_SECS: i64 = 30 * 60;
pub const SESSION_MAX_SECS: i64 = 12 * 3600;
/// A session waiting for the second factor.
pub const SESSION_PARTIAL_SECS: i64 = 5 * 60;

/// Password checks across the process, a backstop for the gateway's cores: each costs an
/// argon2id hash (19 MiB, tens of milliseconds).
static PASSWORD_CHECKS: RateLimit = RateLimit::new(5.0, 30.0);
/// Login attempts per client address: a burst of 10, then one every 6 s. One client guessing
/// or flooding runs out of its own tokens long before it could crowd out everyone else.
static LOGINS_PER_CLIENT: std::sync::LazyLock<KeyedRateLimit> =
    std::sync::LazyLock::new(|| KeyedRateLimit::new(1.0 / 6.0, 10.0));
/// At most this many argon2id computations at once: memory (19 MiB each) and cores stay
/// bounded however many requests wait.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// How a login with name and password ended.
#[derive(Debug)]
pub enum LoginOutcome {
    /// Too many logins right now, from this client or in all.
    Busy,
    /// The name or the password is wrong (which, is not said).
    Wrong,
    /// The account is locked until then (now, or by this failure).
    Locked(i64),
    /// The password was right; the second factor is due.
    SecondFactorDue(Admin),
    /// Logged in.
    Done(Admin),
}

/// How a second-factor code ended.
#[derive(Debug, PartialEq, Eq)]
pub enum SecondFactorOutcome {
    Accepted,
    /// Not valid, or used already.
    Wrong,
    Locked(i64),
}

/// How checking the logged-in account's own password ended (before a change to it).
#[derive(Debug, PartialEq, Eq)]
pub enum PasswordCheck {
    Right,
    Busy,
    Wrong,
    /// This failure locked the account; its sessions are over.
    Locked(i64),
}

/// Why a new password is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum NewPasswordProblem {
    TooShort,
    TooLong,
    Mismatch,
}

/// A second factor being set up: shown as a QR code of `uri` and as `base32`, and carried
/// in the confirmation form as `sealed` (it is not stored until a code proves the app has it).
#[derive(Debug)]
pub struct TotpSetup {
    pub uri: String,
    pub base32: String,
    pub sealed: String,
}

/// How confirming a second factor ended.
#[derive(Debug)]
pub enum TotpConfirm {
    /// On; these recovery codes are shown once.
    On(Vec<String>),
    /// The sealed form data was altered or is another account's.
    FormAltered,
    Password(PasswordCheck),
    /// The code does not match the secret; the setup goes on with the same secret.
    CodeMismatch(TotpSetup),
}

/// A session's id (for the cookie) and its CSRF token.
#[derive(Debug)]
pub struct NewSession {
    pub id: String,
}

async fn check_password(phc: String, password: String) -> bool {
    let Ok(_permit) = HASHING.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || secrets::verify_password(&phc, &password))
        .await
        .unwrap_or(false)
}

async fn hash_password(password: String) -> Result<String> {
    let _permit = HASHING
        .acquire()
        .await
        .map_err(|e| ServiceError::Busy(format!("hashing a password: {e}")))?;
    tokio::task::spawn_blocking(move || secrets::hash_password(&password))
        .await
        .map_err(|e| ServiceError::Busy(format!("hashing a password: {e}")))
}

/// What the setup form carries sealed: the account it is for, then the secret, so a sealed
/// secret from one account's setup page cannot be planted in another account.
fn pending_totp(admin_id: i64, secret: &[u8]) -> Vec<u8> {
    let mut v = admin_id.to_be_bytes().to_vec();
    v.extend_from_slice(secret);
    v
}

/// A new password's problem, if any.
pub fn new_password_problem(new: &str, repeat: &str) -> Option<NewPasswordProblem> {
    match secrets::password_problem(new) {
        Some("short") => Some(NewPasswordProblem::TooShort),
        Some(_) => Some(NewPasswordProblem::TooLong),
        None if new != repeat => Some(NewPasswordProblem::Mismatch),
        None => None,
    }
}

impl Service {
    /// A login with name and password from `client`.
    pub async fn login(
        &self,
        client: Option<std::net::IpAddr>,
        name: &str,
        password: String,
    ) -> Result<LoginOutcome> {
        if !LOGINS_PER_CLIENT.admit(client) || !PASSWORD_CHECKS.admit() {
            return Ok(LoginOutcome::Busy);
        }
        let now = self.now();
        let admin = match Name::new(name.trim()) {
            Ok(n) => self.store.admin(&n).await?,
            Err(_) => None,
        }
        .filter(|a| a.disabled_at.is_none());
        let Some(admin) = admin else {
            // As slow as a real check, so response times do not tell which names exist.
            check_password(secrets::dummy_hash().to_string(), password).await;
            return Ok(LoginOutcome::Wrong);
        };
        if let Some(until) = admin.locked_until.filter(|&u| u > now) {
            return Ok(LoginOutcome::Locked(until));
        }
        if !check_password(admin.password_hash.clone(), password).await {
            let locked = self
                .store
                .record_login_failure(admin.id, MAX_FAILED_LOGINS, LOCKOUT_SECS, now)
                .await?;
            return Ok(locked.map_or(LoginOutcome::Wrong, LoginOutcome::Locked));
        }
        if admin.totp_sealed.is_some() {
            return Ok(LoginOutcome::SecondFactorDue(admin));
        }
        self.store.record_login(&admin, "password", now).await?;
        Ok(LoginOutcome::Done(admin))
    }

    /// The second factor of a login: a TOTP code (each time step once) or a recovery code.
    pub async fn second_factor(&self, admin: &Admin, code: &str) -> Result<SecondFactorOutcome> {
        let now = self.now();
        // A lock set through any session (or by the password step) holds here too: otherwise
        // each partial session opened before the lock would go on guessing codes.
        if let Some(until) = admin.locked_until.filter(|&u| u > now) {
            return Ok(SecondFactorOutcome::Locked(until));
        }
        let secret = match &admin.totp_sealed {
            Some(sealed) => self.sealer()?.open(sealed),
            None => None,
        };
        let how = match secret.and_then(|secret| secrets::totp_match(&secret, code, now)) {
            Some(step) if self.store.accept_totp_step(admin.id, step, now).await? => {
                Some("password+totp")
            }
            Some(_) => None,
            None if code.trim().len() > 6
                && self
                    .store
                    .use_recovery_code(admin.id, &secrets::recovery_code_hash(code), now)
                    .await? =>
            {
                Some("password+recovery code")
            }
            None => None,
        };
        let Some(how) = how else {
            let locked = self
                .store
                .record_login_failure(admin.id, MAX_FAILED_LOGINS, LOCKOUT_SECS, now)
                .await?;
            return Ok(locked.map_or(SecondFactorOutcome::Wrong, SecondFactorOutcome::Locked));
        };
        self.store.record_login(admin, how, now).await?;
        Ok(SecondFactorOutcome::Accepted)
    }

    /// Ends the session `replacing` (if any) and starts a new one with a fresh id: the id
    /// changes at login and again after the second factor, so a planted id is worth nothing.
    pub async fn start_session(
        &self,
        replacing: Option<&str>,
        admin_id: i64,
        stage: SessionStage,
    ) -> Result<NewSession> {
        let now = self.now();
        if let Some(h) = replacing {
            self.store.delete_session(h).await?;
        }
        // Sessions that ran out are swept here, at a rate bounded by logins.
        self.store.delete_expired_sessions(now).await?;
        let id = secrets::random_token(32);
        let lifetime = match stage {
            SessionStage::Full => SESSION_IDLE_SECS,
            SessionStage::Password => SESSION_PARTIAL_SECS,
        };
        self.store
            .create_session(
                &token_hash(&id),
                admin_id,
                stage,
                &secrets::random_token(32),
                now,
                now + lifetime,
            )
            .await?;
        Ok(NewSession { id })
    }

    /// The live session whose id hashes to `id_hash`.
    pub async fn session(&self, id_hash: &str) -> Result<Option<Session>> {
        Ok(self.store.session(id_hash, self.now()).await?)
    }

    /// Keeps an active session alive, writing at most once a minute.
    pub async fn touch_session(&self, id_hash: &str, s: &Session) -> Result<()> {
        let now = self.now();
        if s.stage == SessionStage::Full && now - s.last_seen_at >= 60 {
            let until = (now + SESSION_IDLE_SECS).min(s.created_at + SESSION_MAX_SECS);
            self.store.touch_session(id_hash, now, until).await?;
        }
        Ok(())
    }

    pub async fn end_session(&self, id_hash: &str) -> Result<()> {
        Ok(self.store.delete_session(id_hash).await?)
    }

    /// Checks the logged-in account's own password before a change to the account. A wrong
    /// one counts towards the lockout like a failed login, so a stolen session cannot guess
    /// it; when it locks the account, the session `id_hash` ends too.
    pub async fn confirm_password(
        &self,
        admin: &Admin,
        id_hash: Option<&str>,
        password: String,
    ) -> Result<PasswordCheck> {
        if !PASSWORD_CHECKS.admit() {
            return Ok(PasswordCheck::Busy);
        }
        if check_password(admin.password_hash.clone(), password).await {
            return Ok(PasswordCheck::Right);
        }
        let locked = self
            .store
            .record_login_failure(admin.id, MAX_FAILED_LOGINS, LOCKOUT_SECS, self.now())
            .await?;
        if let Some(until) = locked {
            if let Some(h) = id_hash {
                self.store.delete_session(h).await?;
            }
            return Ok(PasswordCheck::Locked(until));
        }
        Ok(PasswordCheck::Wrong)
    }

    /// Sets the account's own new password (checked by [`new_password_problem`] and
    /// [`Service::confirm_password`] first); every session of the account ends.
    pub async fn set_own_password(&self, admin: &Admin, new: String) -> Result<()> {
        if let Some(p) = secrets::password_problem(&new) {
            return Err(ServiceError::Invalid(format!(
                "the new password is too {p}"
            )));
        }
        let hash = hash_password(new).await?;
        Ok(self
            .store
            .set_admin_password(&admin.actor(), &admin.name, &hash, self.now())
            .await?)
    }

    /// Step one of a second factor: a new secret, sealed for the confirmation form.
    pub fn begin_totp(&self, admin: &Admin) -> Result<TotpSetup> {
        self.totp_setup(admin, &secrets::new_totp_secret())
    }

    fn totp_setup(&self, admin: &Admin, secret: &[u8]) -> Result<TotpSetup> {
        Ok(TotpSetup {
            uri: secrets::otpauth_uri(admin.name.as_str(), secret),
            base32: secrets::base32(secret),
            sealed: self.sealer()?.seal(&pending_totp(admin.id, secret)),
        })
    }

    /// Step two: the sealed secret, a code from the app and the account's password turn the
    /// second factor on, with ten recovery codes shown once.
    pub async fn confirm_totp(
        &self,
        admin: &Admin,
        id_hash: Option<&str>,
        sealed: &str,
        code: &str,
        password: String,
    ) -> Result<TotpConfirm> {
        let secret = self
            .sealer()?
            .open(sealed)
            .filter(|p| p.len() == 28 && p[..8] == admin.id.to_be_bytes())
            .map(|p| p[8..].to_vec());
        let Some(secret) = secret else {
            return Ok(TotpConfirm::FormAltered);
        };
        match self.confirm_password(admin, id_hash, password).await? {
            PasswordCheck::Right => {}
            other => return Ok(TotpConfirm::Password(other)),
        }
        let now = self.now();
        let Some(step) = secrets::totp_match(&secret, code, now) else {
            return Ok(TotpConfirm::CodeMismatch(self.totp_setup(admin, &secret)?));
        };
        let codes = secrets::new_recovery_codes();
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| secrets::recovery_code_hash(c))
            .collect();
        let sealed_secret = self.sealer()?.seal(&secret);
        self.store
            .set_admin_totp(
                &admin.actor(),
                &admin.name,
                Some((&sealed_secret, &hashes)),
                now,
            )
            .await?;
        // The code that proved the setup is used: it cannot log in a second time.
        self.store.accept_totp_step(admin.id, step, now).await?;
        Ok(TotpConfirm::On(codes))
    }

    /// Turns the account's own second factor off (after [`Service::confirm_password`]).
    pub async fn own_totp_off(&self, admin: &Admin) -> Result<()> {
        Ok(self
            .store
            .set_admin_totp(&admin.actor(), &admin.name, None, self.now())
            .await?)
    }

    pub async fn recovery_codes_left(&self, admin: &Admin) -> Result<i64> {
        Ok(self.store.recovery_codes_left(admin.id).await?)
    }

    pub async fn admins(&self, caller: &Caller) -> Result<Vec<Admin>> {
        caller.require(heimweg_control::Scope::UsersRead)?;
        Ok(self.store.admins().await?)
    }

    /// How many enabled accounts exist: none means the panel needs its first one.
    pub async fn enabled_admin_count(&self) -> Result<i64> {
        Ok(self.store.enabled_admin_count().await?)
    }

    /// Creates an account. Without a password, a random first one is made and returned
    /// (shown once, to hand over); a given one must pass the password rules.
    pub async fn create_admin(
        &self,
        caller: &Caller,
        name: &Name,
        role: Role,
        password: Option<String>,
    ) -> Result<(Admin, Option<String>)> {
        caller.require_administrator("create panel accounts")?;
        let (password, generated) = self.password_or_new(password)?;
        let hash = hash_password(password.clone()).await?;
        let admin = self
            .store
            .create_admin(caller.actor(), name, &hash, role, self.now())
            .await?;
        Ok((admin, generated.then_some(password)))
    }

    /// Sets a new password for an account (random unless given, returned when made here);
    /// its sessions end.
    pub async fn reset_admin_password(
        &self,
        caller: &Caller,
        name: &Name,
        password: Option<String>,
    ) -> Result<Option<String>> {
        caller.require_administrator("reset passwords")?;
        let (password, generated) = self.password_or_new(password)?;
        let hash = hash_password(password.clone()).await?;
        self.store
            .set_admin_password(caller.actor(), name, &hash, self.now())
            .await?;
        Ok(generated.then_some(password))
    }

    fn password_or_new(&self, password: Option<String>) -> Result<(String, bool)> {
        match password {
            Some(p) => match secrets::password_problem(&p) {
                Some(problem) => Err(ServiceError::Invalid(format!(
                    "the password is too {problem}: use {} to {} characters",
                    secrets::MIN_PASSWORD_CHARS,
                    secrets::MAX_PASSWORD_BYTES
                ))),
                None => Ok((p, false)),
            },
            None => Ok((secrets::random_token(15), true)),
        }
    }

    /// Turns an account's second factor off (a lost phone and no recovery codes left).
    pub async fn reset_admin_totp(&self, caller: &Caller, name: &Name) -> Result<()> {
        caller.require_administrator("reset second factors")?;
        Ok(self
            .store
            .set_admin_totp(caller.actor(), name, None, self.now())
            .await?)
    }

    pub async fn unlock_admin(&self, caller: &Caller, name: &Name) -> Result<()> {
        caller.require_administrator("unlock panel accounts")?;
        Ok(self
            .store
            .unlock_admin(caller.actor(), name, self.now())
            .await?)
    }

    /// Disables an account; its sessions end at once. Nobody disables their own account
    /// (the last admin would lock everyone out).
    pub async fn disable_admin(&self, caller: &Caller, name: &Name) -> Result<()> {
        caller.require_administrator("disable panel accounts")?;
        if let heimweg_control::Actor::Admin { name: me, .. } = caller.actor() {
            if me.key() == name.key() {
                return Err(ServiceError::Invalid(
                    "you cannot disable your own account".into(),
                ));
            }
        }
        Ok(self
            .store
            .disable_admin(caller.actor(), name, self.now())
            .await?)
    }
}
