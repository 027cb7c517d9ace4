//! heimweg-service: every operation on heimweg's state, with its rules, in one place.
//!
//! The JSON API, the admin panel and the command line are callers: they parse what a person
//! or a program sent into the domain's types (`heimweg-control`), call one function here with
//! the [`Caller`] who asks, and render the answer. Here is everything in between: who may do
//! it (token scopes, panel roles), what is valid beyond the types (lifetimes, which scopes a
//! token may grant), the rendering that must succeed before anything is written (client
//! configs), the rate limits that protect the store, the cryptography of accounts, and the
//! reconciler that turns the store's state into the data plane's peers. Only this crate
//! writes to the store.
//!
//! It deliberately knows no HTTP, no HTML and no terminal, and does not depend on the data
//! plane: the reconciler applies its plan through [`reconcile::PeerSink`], which the binary
//! implements for the running data plane.

mod absences;
mod accounts;
mod activations;
mod audit;
mod backup;
mod devices;
mod directory;
mod export;
mod groups;
pub mod limits;
mod links;
mod mail;
mod mdm;
mod oidc;
mod people;
pub mod reconcile;
mod requests;
mod review;
pub mod secrets;
mod settings;
mod smtp;
mod staff;
mod staff_sign_in;
mod tokens;
mod users;

use heimweg_control::{Actor, Role, Scope, Scopes};
use heimweg_store::Store;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use absences::{require_absence_writer, AbsenceRequest};
pub use accounts::{
    new_password_problem, LoginOutcome, NewPasswordProblem, NewSession, PasswordCheck,
    SecondFactorOutcome, TotpConfirm, TotpSetup, SESSION_IDLE_SECS, SESSION_MAX_SECS,
};
pub use devices::{EnrollRequest, Enrollment};
pub use directory::{
    DirectoryKind, DirectoryPreview, DirectorySettings, DirectorySync, DisabledRule, LdapSecurity,
};
pub use links::LinkOffer;
pub use mail::{retry_delay_secs, MailSettings, Mailer, SendRound, SmtpSecurity, MAX_ATTEMPTS};
pub use mdm::{MdmExport, MdmProfiles, MAX_MDM_DEVICES};
pub use oidc::{
    IdentityProvider, OidcSettings, ProviderAnswer, SignInStart, SignedIn, STAFF_SESSION_SECS,
};
pub use people::{
    ImportCounts, ImportOptions, ImportReport, ImportedRow, Invitation, IMPORT_BATCH,
};
pub use requests::{request_link_secret, FiledRequest, RequestForm};
pub use review::{
    access_review_csv, DueDevice, MAX_SUSPEND_HOURS, MAX_UNSEEN_DAYS, MIN_UNSEEN_DAYS,
    REVIEW_NOTICE_DAYS,
};
pub use secrets::Sealer;
pub use staff_sign_in::{
    CodeStep, ConnectStep, DirectorySignIn, FactorSetup, PasswordStep, CODE_STEP_SECS,
};
pub use tokens::MintedToken;

/// The store's types the callers read; the store itself stays behind the service.
pub use heimweg_store::{
    Absence, AbsenceOf, AccessRequest, AccessRow, Activation, ActivePeer, Admin, ApiToken,
    AuditEntry, Backend, BackupInfo, Device, DeviceCounts, DeviceOutcome, DeviceQuery,
    DeviceUpdate, DirectoryRun, EnrollmentLink, Group, GroupPatch, InvitationStatus, MailCounts,
    MailState, MailSummary, Page, PeerStatus, PersonOutcome, PoolOptions, RemindOutcome,
    RolloutRow, Session, Settings, SignInPurpose, StaffSession, StoreError, User, UserOutcome,
    DEFAULT_ADDRESS_GRACE, MAX_PENDING, MAX_SIGN_IN_HOURS, POSTGRES_BACKUP, SIGN_IN_SECS,
};

/// Everything an operation can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] heimweg_control::ConfigError),
    /// Something must be set up first (the endpoint clients dial, the gateway key).
    #[error("{0}")]
    NotReady(String),
    /// The request itself is wrong, and the message says how.
    #[error("{0}")]
    Invalid(String),
    /// A rate limit: try again later.
    #[error("{0}")]
    Busy(String),
    /// The caller lacks the scope (a token) or the role (a panel account) for this.
    #[error("this caller lacks the scope {:?}", .0.as_str())]
    Forbidden(Scope),
    /// Only a full administrator (a panel admin, the command line) may do this; no token
    /// scope grants it.
    #[error("only an administrator may {0}")]
    AdminOnly(&'static str),
    /// The caller's credentials do not (or no longer) hold.
    #[error("{0}")]
    Unauthorized(String),
}

pub type Result<T> = std::result::Result<T, ServiceError>;

/// An input refused for a named field: "name: a name must not be empty".
pub(crate) fn invalid(field: &str, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Invalid(format!("{field}: {e}"))
}

/// What a caller is allowed, beside who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Grants {
    /// The gateway's own operators (the command line as root) and heimweg itself.
    Everything,
    Scopes(Scopes),
}

/// Who asks, and what they may do: every operation takes one.
#[derive(Debug, Clone)]
pub struct Caller {
    actor: Actor,
    grants: Grants,
}

impl Caller {
    /// The command line on the gateway: whoever can run it as root can read the database
    /// and the key anyway.
    pub fn cli(user: &str) -> Caller {
        Caller {
            actor: Actor::Cli {
                user: user.to_string(),
            },
            grants: Grants::Everything,
        }
    }

    /// heimweg itself (first-run defaults, tests of the service).
    pub fn system() -> Caller {
        Caller {
            actor: Actor::System,
            grants: Grants::Everything,
        }
    }

    /// An API token and its scopes.
    pub fn token(t: &ApiToken) -> Caller {
        Caller {
            actor: Actor::Token {
                id: t.id,
                name: t.name.clone(),
            },
            grants: Grants::Scopes(t.scopes.clone()),
        }
    }

    /// A panel account: an admin may do everything, the helpdesk may only look.
    pub fn admin(a: &Admin) -> Caller {
        Caller {
            actor: a.actor(),
            grants: match a.role {
                Role::Admin => Grants::Everything,
                Role::Helpdesk => Grants::Scopes(Scopes::new(
                    Scope::ALL
                        .into_iter()
                        .filter(|s| s.as_str().ends_with(":read")),
                )),
            },
        }
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    pub fn may(&self, scope: Scope) -> bool {
        match &self.grants {
            Grants::Everything => true,
            Grants::Scopes(s) => s.has(scope),
        }
    }

    pub fn require(&self, scope: Scope) -> Result<()> {
        if self.may(scope) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(scope))
        }
    }

    /// For what no scope covers: the gateway's settings, panel accounts.
    pub(crate) fn require_administrator(&self, what: &'static str) -> Result<()> {
        match self.grants {
            Grants::Everything => Ok(()),
            Grants::Scopes(_) => Err(ServiceError::AdminOnly(what)),
        }
    }

    /// Whether this caller is a full administrator.
    pub fn is_administrator(&self) -> bool {
        self.grants == Grants::Everything
    }

    /// The scopes this caller holds, for what it may grant to a token it mints.
    pub(crate) fn scopes(&self) -> Scopes {
        match &self.grants {
            Grants::Everything => Scopes::all(),
            Grants::Scopes(s) => s.clone(),
        }
    }
}

/// Where the time comes from: the system's clock, or a fixed moment in tests.
#[derive(Debug, Clone, Copy)]
enum Clock {
    System,
    Fixed(i64),
}

/// The service: a handle on the store and what the operations need besides. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    store: Arc<Store>,
    gateway_key: Option<heimweg_control::PublicKey>,
    sealer: Option<Sealer>,
    reconciler: Option<reconcile::Handle>,
    /// Wakes this process's mail sender when a mail is queued.
    mail_wake: Option<Arc<tokio::sync::Notify>>,
    /// Signs the profiles of an MDM export with the organisation's certificate.
    profile_signer: Option<Arc<heimweg_control::signing::ProfileSigner>>,
    /// The LDAP directory or Active Directory whose entries decide who is a user.
    directory: Option<Arc<directory::DirectorySettings>>,
    /// The identity provider staff and admins sign in through.
    oidc: Option<Arc<oidc::IdentityProvider>>,
    /// Staff sign in with the directory password and a second factor heimweg keeps.
    directory_sign_in: Option<staff_sign_in::DirectorySignIn>,
    clock: Clock,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("backend", &self.store.backend())
            .field("gateway_key", &self.gateway_key)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Opens the store at `url` (see `heimweg_store::Store::connect`).
    pub async fn connect(url: &str) -> Result<Service> {
        Ok(Service::new(Store::connect(url).await?))
    }

    /// Opens the store with pools of the caller's choosing.
    pub async fn connect_with(url: &str, options: PoolOptions) -> Result<Service> {
        Ok(Service::new(Store::connect_with(url, options).await?))
    }

    /// Opens (creating if missing) an SQLite file.
    pub async fn open_sqlite(path: &std::path::Path) -> Result<Service> {
        Ok(Service::new(Store::open(path).await?))
    }

    pub fn new(store: Store) -> Service {
        Service {
            store: Arc::new(store),
            gateway_key: None,
            sealer: None,
            reconciler: None,
            mail_wake: None,
            profile_signer: None,
            directory: None,
            oidc: None,
            directory_sign_in: None,
            clock: Clock::System,
        }
    }

    /// The gateway's public key, which every client config names.
    pub fn with_gateway_key(mut self, key: heimweg_control::PublicKey) -> Service {
        self.gateway_key = Some(key);
        self
    }

    /// What seals second factors at rest (derived from the gateway's private key).
    pub fn with_sealer(mut self, sealer: Sealer) -> Service {
        self.sealer = Some(sealer);
        self
    }

    /// This gateway's reconciler: enrollments and rotations then wait until the data plane
    /// has the new peer before they answer, so a client that dials at once is answered.
    pub fn with_reconciler(mut self, handle: reconcile::Handle) -> Service {
        self.reconciler = Some(handle);
        self
    }

    /// Signs the profiles of MDM exports with the organisation's certificate.
    pub fn with_profile_signer(
        mut self,
        signer: heimweg_control::signing::ProfileSigner,
    ) -> Service {
        self.profile_signer = Some(Arc::new(signer));
        self
    }

    /// Whose certificate signs exported profiles, if any.
    pub fn profile_signer_subject(&self) -> Option<String> {
        self.profile_signer.as_ref().map(|s| s.subject())
    }

    /// A service whose clock stands still at `now` (tests).
    pub fn with_fixed_clock(mut self, now: i64) -> Service {
        self.clock = Clock::Fixed(now);
        self
    }

    /// Unix seconds now.
    pub fn now(&self) -> i64 {
        match self.clock {
            Clock::Fixed(t) => t,
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        }
    }

    pub fn backend(&self) -> Backend {
        self.store.backend()
    }

    /// A service on the same database whose reads have a connection of their own: the
    /// reconciler's, which must never queue behind API readers.
    pub async fn dedicated_reader(&self) -> Result<Service> {
        Ok(Service {
            store: Arc::new(self.store.dedicated_reader().await?),
            ..self.clone()
        })
    }

    fn gateway_key(&self) -> Result<heimweg_control::PublicKey> {
        self.gateway_key.ok_or_else(|| {
            ServiceError::NotReady(
                "no gateway key: start `heimweg serve` once (it creates the key) or copy the \
                 gateway's server.key into the state directory"
                    .into(),
            )
        })
    }

    fn sealer(&self) -> Result<&Sealer> {
        self.sealer
            .as_ref()
            .ok_or_else(|| ServiceError::NotReady("second factors need the gateway key".into()))
    }

    /// First-run defaults; false if the database had them already.
    pub async fn init_defaults(&self, ula_global_id: [u8; 5]) -> Result<bool> {
        Ok(self.store.init_defaults(ula_global_id, self.now()).await?)
    }

    /// The change revision (readiness checks read it: the store answers).
    pub async fn revision(&self) -> Result<i64> {
        Ok(self.store.revision().await?)
    }

    /// Closes the database connections and waits for them (see [`Store::close`]), for a
    /// command that leaves a database behind for another process, such as a restore.
    pub async fn close(&self) {
        self.store.close().await;
    }

    /// Lets the data plane's reconciler know about a change and waits until it has applied
    /// it (a little while at most): the enrolled device is a peer before the answer.
    async fn applied(&self) {
        if let Some(r) = &self.reconciler {
            r.sync_now().await;
        }
    }

    /// Test-only access to the store, for setting up states the service would refuse.
    #[doc(hidden)]
    pub fn store_for_tests(&self) -> &Store {
        &self.store
    }
}

/// A new random token (`hw_` + 43 base64url characters = 256 bits).
pub fn generate_token() -> String {
    format!("hw_{}", secrets::random_token(32))
}

/// Hex SHA-256 of a token: what the store keeps.
pub fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}
