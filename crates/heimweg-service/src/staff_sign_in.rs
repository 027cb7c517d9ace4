//! Staff sign-in without an identity provider: the directory password, checked by a bind as
//! the staff member's own entry, and a TOTP code from a second factor heimweg keeps, set up at
//! the first sign-in. Each such sign-in is fresh and has both factors, so it also starts sign
//! in to connect for the devices that need it; on the staff page, password and code again
//! extend it.
//!
//! Between the password and the code, the state is a sealed note in the page's form (the user,
//! when, this browser's form token, and at the first sign-in the new secret): nothing is stored
//! for someone who has only guessed a password. Wrong passwords are the directory's to count
//! (its own lockout policy sees every bind); here they are slowed per client, and no more than
//! three per login in 15 minutes go on to the directory, so that typing a colleague's login
//! here cannot lock their city account. Wrong codes, which come only after a right password,
//! lock the sign-in after [`MAX_FAILED_LOGINS`] in a row for [`LOCKOUT_SECS`], as for panel
//! accounts.

use crate::accounts::{LOCKOUT_SECS, MAX_FAILED_LOGINS};
use crate::directory::{Lookup, PasswordCheck};
use crate::limits::{KeyedRateLimit, LoginFailures, RateLimit};
use crate::secrets::{self, MAX_PASSWORD_BYTES};
use crate::{token_hash, Caller, Result, Service, ServiceError, STAFF_SESSION_SECS};
use heimweg_control::{Name, Scope};
use heimweg_store::{StaffSession, User};
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// How long the code step may follow the password step.
pub const CODE_STEP_SECS: i64 = 5 * 60;
/// The longest login name looked up.
const MAX_LOGIN_BYTES: usize = 256;

/// Password checks per client address: a burst of 10, then one every 6 s, as panel logins.
static CHECKS_PER_CLIENT: LazyLock<KeyedRateLimit> =
    LazyLock::new(|| KeyedRateLimit::new(1.0 / 6.0, 10.0));
/// Binds against the directory across the process: the city's domain controllers are not
/// heimweg's to flood.
static DIRECTORY_BINDS: RateLimit = RateLimit::new(20.0, 60.0);
/// Wrong passwords per login a gateway passes on to the directory in 15 minutes: fewer than
/// the lockout thresholds directories are set to (Active Directory's baselines say 5 to 10),
/// so that heimweg is no way to lock a colleague's city account.
static WRONG_PASSWORDS: LazyLock<LoginFailures> =
    LazyLock::new(|| LoginFailures::new(3, std::time::Duration::from_secs(15 * 60)));

/// What a sign-in on the staff page needs.
#[derive(Debug, Clone, Copy)]
pub struct DirectorySignIn {
    /// The most active devices a staff member may have.
    pub device_limit: u32,
}

/// How the password step of a sign-in ended.
#[derive(Debug)]
pub enum PasswordStep {
    /// Too many sign-ins right now, from this client or in all.
    Busy,
    /// Three wrong passwords for this login within 15 minutes: no more go to the directory
    /// for a while (its own lockout would lock the city account).
    Throttled,
    /// Unknown, wrong, disabled: which, is not said.
    Wrong,
    /// Wrong codes locked the sign-in until then.
    Locked(i64),
    /// The password was right: the code step follows, with this sealed note. `setup` at the
    /// first sign-in: the new secret to add to an authenticator app.
    Code {
        note: String,
        setup: Option<FactorSetup>,
    },
}

/// A new second factor, for an authenticator app: the `otpauth://` URI (a QR code) and the
/// secret as text.
pub struct FactorSetup {
    pub uri: String,
    pub base32: String,
}

impl std::fmt::Debug for FactorSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FactorSetup([redacted])")
    }
}

/// How the code step ended.
pub enum CodeStep {
    /// The note is altered, from another browser, or older than [`CODE_STEP_SECS`]: start
    /// again.
    Expired,
    /// Not the code of the moment (or one used already); the same note may try again (with
    /// the set-up it began, at the first sign-in).
    Wrong(Option<FactorSetup>),
    Locked(i64),
    /// Signed in: the staff session's secret, and whether sign in to connect started.
    SignedIn {
        session: String,
        connected: bool,
    },
}

impl std::fmt::Debug for CodeStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodeStep::Expired => f.write_str("Expired"),
            CodeStep::Wrong(setup) => f.debug_tuple("Wrong").field(setup).finish(),
            CodeStep::Locked(until) => f.debug_tuple("Locked").field(until).finish(),
            CodeStep::SignedIn { connected, .. } => f
                .debug_struct("SignedIn")
                .field("session", &"[redacted]")
                .field("connected", connected)
                .finish(),
        }
    }
}

/// How password and code on the staff page ended.
#[derive(Debug)]
pub enum ConnectStep {
    Busy,
    Throttled,
    WrongPassword,
    WrongCode,
    Locked(i64),
    /// Started (false: none of their devices needs it).
    Started(bool),
}

/// What the directory said of a password, and who it belongs to.
enum Checked {
    Busy,
    Throttled,
    Wrong,
    Right(User),
}

/// The sealed note between the two steps.
#[derive(Serialize, Deserialize)]
struct Note {
    user: i64,
    at: i64,
    /// The hash of the browser's form token: the note is of no use in another browser.
    browser: String,
    /// The new secret, at the first sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl Service {
    /// Lets staff sign in on their own page with the directory password and a second factor
    /// heimweg keeps (only where no identity provider is connected, which takes precedence).
    pub fn with_directory_sign_in(mut self, settings: DirectorySignIn) -> Service {
        self.directory_sign_in = Some(settings);
        self
    }

    /// Whether staff sign in with the directory password here.
    pub fn directory_sign_in(&self) -> Option<DirectorySignIn> {
        self.directory_sign_in
            .filter(|_| self.oidc.is_none() && self.directory.is_some())
    }

    fn sign_in_directory(&self) -> Result<std::sync::Arc<crate::DirectorySettings>> {
        match (self.directory_sign_in(), &self.directory) {
            (Some(_), Some(d)) => Ok(std::sync::Arc::clone(d)),
            _ => Err(ServiceError::NotReady(
                "staff do not sign in with the directory password on this gateway \
                 (HEIMWEG_DIRECTORY_SIGN_IN, with a directory and no identity provider)"
                    .into(),
            )),
        }
    }

    /// Checks `password` for `who` (counted as `login` against the wrong passwords) at the
    /// directory.
    async fn directory_password(
        &self,
        client: Option<std::net::IpAddr>,
        who: Lookup,
        login: &str,
        password: String,
    ) -> Result<Checked> {
        let directory = self.sign_in_directory()?;
        if !CHECKS_PER_CLIENT.admit(client) || !DIRECTORY_BINDS.admit() {
            return Ok(Checked::Busy);
        }
        if !WRONG_PASSWORDS.admits(login) {
            return Ok(Checked::Throttled);
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(Checked::Wrong);
        }
        let entry = match directory.check_password(who, password).await {
            Ok(PasswordCheck::Right(entry)) => entry,
            Ok(PasswordCheck::Wrong | PasswordCheck::Disabled) => {
                WRONG_PASSWORDS.failed(login);
                return Ok(Checked::Wrong);
            }
            Err(e) => {
                return Err(ServiceError::NotReady(format!(
                    "the directory could not check the password: {e}"
                )))
            }
        };
        WRONG_PASSWORDS.succeeded(login);
        // Only a user the sync made, enabled, and in a group: the directory decides.
        let user = self
            .store
            .user_by_directory_id(&entry.id, self.now())
            .await?
            .filter(|u| u.disabled_at.is_none() && u.group.is_some());
        Ok(user.map_or(Checked::Wrong, Checked::Right))
    }

    /// The password step of a sign-in from `client`, in the browser whose form token is
    /// `browser`.
    pub async fn password_sign_in(
        &self,
        client: Option<std::net::IpAddr>,
        login: &str,
        password: String,
        browser: &str,
    ) -> Result<PasswordStep> {
        let login = login.trim();
        if login.is_empty() || login.len() > MAX_LOGIN_BYTES {
            return Ok(PasswordStep::Wrong);
        }
        let user = match self
            .directory_password(client, Lookup::Login(login.to_string()), login, password)
            .await?
        {
            Checked::Busy => return Ok(PasswordStep::Busy),
            Checked::Throttled => return Ok(PasswordStep::Throttled),
            Checked::Wrong => return Ok(PasswordStep::Wrong),
            Checked::Right(user) => user,
        };
        let now = self.now();
        let factor = self.store.staff_factor(user.id).await?;
        if let Some(until) = locked(factor.as_ref(), now) {
            return Ok(PasswordStep::Locked(until));
        }
        let sealer = self.sealer()?;
        let mut note = Note {
            user: user.id,
            at: now,
            browser: token_hash(browser),
            secret: None,
        };
        let setup = if factor.and_then(|f| f.totp_sealed).is_none() {
            let secret = secrets::new_totp_secret();
            note.secret = Some(secrets::base32(&secret));
            Some(factor_setup(&user, &secret))
        } else {
            None
        };
        let note = sealer.seal(&serde_json::to_vec(&note).expect("a note serialises"));
        Ok(PasswordStep::Code { note, setup })
    }

    /// The code step: the note from [`Service::password_sign_in`], in the same browser.
    pub async fn finish_password_sign_in(
        &self,
        note: &str,
        code: &str,
        browser: &str,
    ) -> Result<CodeStep> {
        // A note sealed before a restart that turned this sign-in off signs nobody in.
        self.sign_in_directory()?;
        let now = self.now();
        let sealer = self.sealer()?;
        let note: Option<Note> = sealer
            .open(note)
            .and_then(|plain| serde_json::from_slice(&plain).ok());
        let Some(note) = note.filter(|n| {
            secrets::same(&n.browser, &token_hash(browser))
                && n.at <= now
                && now - n.at <= CODE_STEP_SECS
        }) else {
            return Ok(CodeStep::Expired);
        };
        let user = self.store.user_by_id(note.user, now).await?;
        if user.disabled_at.is_some() || user.group.is_none() {
            return Ok(CodeStep::Expired);
        }
        let step = match &note.secret {
            Some(base32) => {
                let secret = secrets::from_base32(base32).ok_or(ServiceError::Invalid(
                    "the sign-in's note is damaged; start again".into(),
                ))?;
                let Some(step) = secrets::totp_match(&secret, code, now) else {
                    // Setting up, a mistyped code counts for nothing: the secret is new.
                    return Ok(CodeStep::Wrong(Some(factor_setup(&user, &secret))));
                };
                if !self
                    .store
                    .set_staff_totp(&user, &sealer.seal(&secret), step, now)
                    .await?
                {
                    return Ok(CodeStep::Expired);
                }
                Ok(())
            }
            None => self.check_code(&user, code).await?,
        };
        if let Err(outcome) = step {
            return Ok(outcome);
        }
        let session = secrets::random_token(32);
        let group = user.group.clone().expect("checked above");
        self.store
            .create_staff_session(
                &token_hash(&session),
                &user,
                &[group],
                &secrets::random_token(32),
                now,
                now + STAFF_SESSION_SECS,
            )
            .await?;
        let connected = self.start_activation(&user).await?.is_some();
        Ok(CodeStep::SignedIn { session, connected })
    }

    /// Checks `code` against `user`'s stored secret; a wrong one counts towards the lock.
    async fn check_code(
        &self,
        user: &User,
        code: &str,
    ) -> Result<std::result::Result<(), CodeStep>> {
        let now = self.now();
        let factor = self.store.staff_factor(user.id).await?;
        if let Some(until) = locked(factor.as_ref(), now) {
            return Ok(Err(CodeStep::Locked(until)));
        }
        let secret = factor
            .and_then(|f| f.totp_sealed)
            .and_then(|sealed| self.sealer().ok()?.open(&sealed));
        let Some(secret) = secret else {
            // Reset by an admin since the password step: a new set-up is due.
            return Ok(Err(CodeStep::Expired));
        };
        if let Some(step) = secrets::totp_match(&secret, code, now) {
            if self.store.accept_staff_code(user.id, step, now).await? {
                return Ok(Ok(()));
            }
        }
        let locked = self
            .store
            .record_staff_code_failure(user, MAX_FAILED_LOGINS, LOCKOUT_SECS, now)
            .await?;
        Ok(Err(locked.map_or(CodeStep::Wrong(None), CodeStep::Locked)))
    }

    /// Password and code again on the staff page: starts (or extends) sign in to connect.
    pub async fn connect_with_password(
        &self,
        client: Option<std::net::IpAddr>,
        s: &StaffSession,
        password: String,
        code: &str,
    ) -> Result<ConnectStep> {
        let Some(id) = self.store.user_directory_id(s.user.id).await? else {
            return Ok(ConnectStep::WrongPassword);
        };
        let user = match self
            .directory_password(client, Lookup::Id(id), &s.user.name.key(), password)
            .await?
        {
            Checked::Busy => return Ok(ConnectStep::Busy),
            Checked::Throttled => return Ok(ConnectStep::Throttled),
            Checked::Right(user) if user.id == s.user.id => user,
            Checked::Right(_) | Checked::Wrong => return Ok(ConnectStep::WrongPassword),
        };
        match self.check_code(&user, code).await? {
            Ok(()) => {}
            Err(CodeStep::Locked(until)) => return Ok(ConnectStep::Locked(until)),
            Err(_) => return Ok(ConnectStep::WrongCode),
        }
        let started = self.start_activation(&user).await?.is_some();
        Ok(ConnectStep::Started(started))
    }

    /// Forgets `name`'s second factor and lock (a lost phone): their next sign-in sets up a
    /// new one. Their staff sessions end.
    pub async fn reset_staff_factor(&self, caller: &Caller, name: &Name) -> Result<()> {
        caller.require(Scope::UsersWrite)?;
        Ok(self
            .store
            .reset_staff_factor(caller.actor(), name, self.now())
            .await?)
    }

    /// `name`'s second factor, for the panel and the API: set up or not, and locked until.
    pub async fn staff_factor(
        &self,
        caller: &Caller,
        name: &Name,
    ) -> Result<Option<heimweg_store::StaffFactor>> {
        caller.require(Scope::UsersRead)?;
        let user = self.store.user(name, self.now()).await?;
        Ok(self.store.staff_factor(user.id).await?)
    }
}

/// When the sign-in is locked until, if it is now.
fn locked(factor: Option<&heimweg_store::StaffFactor>, now: i64) -> Option<i64> {
    factor.and_then(|f| f.locked_until).filter(|&u| u > now)
}

fn factor_setup(user: &User, secret: &[u8]) -> FactorSetup {
    FactorSetup {
        uri: secrets::otpauth_uri(&format!("{} (VPN)", user.name), secret),
        base32: secrets::base32(secret),
    }
}
