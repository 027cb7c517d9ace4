//! heimweg-store: the source of truth for peers — settings, groups, devices and their
//! addresses, users, API tokens, enrollment links, access requests, panel accounts and
//! sessions, and the audit log.
//!
//! Two backends behind one set of queries (sqlx's `Any` driver, `$n` placeholders, integer and
//! text columns only):
//!
//! - **SQLite**, the embedded default: a file with WAL and foreign keys on. Every write runs
//!   in `BEGIN IMMEDIATE`, which takes the write lock up front, so a write waits (busy
//!   timeout) or fails before doing anything, never halfway through as "busy".
//! - **PostgreSQL**, when several gateways share one database. Every write first takes one
//!   transaction-scoped advisory lock, which gives the same one-writer-at-a-time semantics
//!   (no serialization failures to retry) across all gateways.
//!
//! Each write is one transaction that checks its actor inside it, audits itself and, when the
//! data plane has to follow, bumps a revision every gateway's reconciler watches; a failed
//! write rolls back whole. Rows decode into the domain's types (`heimweg-control`): a row that
//! does not is an error, logged, never skipped.
//!
//! It deliberately decides nothing a person asked for beyond what must hold atomically
//! (uniqueness, addresses, one-time use): validation, rendering and who may do what are the
//! service's (`heimweg-service`), which is the only crate that writes here.

mod absences;
mod accounts;
mod activations;
mod audit;
mod backup;
mod db;
mod devices;
mod directory;
mod factors;
mod groups;
mod identity;
mod links;
mod mail;
mod people;
mod pool;
mod requests;
mod review;
mod settings;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
mod tokens;
mod users;

use sqlx::AnyPool;

pub use absences::{Absence, AbsenceOf, AbsenceSpan, MAX_REASON};
pub use accounts::{Admin, Session};
pub use activations::{Activation, ActivationSpan, MAX_SIGN_IN_HOURS};
pub use audit::AuditEntry;
pub use backup::{BackupInfo, POSTGRES_BACKUP};
pub use db::{Backend, PoolOptions, Watcher, SCHEMA_VERSION};
pub use devices::{
    ActivePeer, Device, DeviceCounts, DeviceQuery, DeviceUpdate, NewDevice, PeerStatus,
};
pub use directory::DirectoryRun;
pub use factors::StaffFactor;
pub use groups::{Group, GroupPatch};
pub use identity::{PendingSignIn, ProviderAccount, SignInPurpose, StaffSession, SIGN_IN_SECS};
pub use links::{EnrollmentLink, NewLink, RedeemedLink};
pub use mail::{
    ClaimedMail, FreshSecret, InvitationStatus, MailCounts, MailState, MailSummary, RemindOutcome,
};
pub use people::{DeviceOutcome, PersonImport, PersonOutcome, RolloutRow, UserOutcome};
pub use pool::Family;
pub use requests::{AccessRequest, NewAccessRequest, MAX_PENDING};
pub use review::AccessRow;
pub use settings::{Settings, SettingsChange, DEFAULT_ADDRESS_GRACE};
pub use tokens::ApiToken;
pub use users::User;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[source] sqlx::Error),
    /// No connection came free in time: the store is overloaded or unreachable. Worth a retry.
    #[error("the database is busy; try again in a moment")]
    Busy,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the IPv{0} address pool is exhausted; enlarge it in the settings")]
    PoolExhausted(u8),
    #[error("{0}")]
    Invalid(String),
    /// The actor may no longer act (a revoked token, a disabled account).
    #[error("{0}")]
    Unauthorized(String),
    /// A stored row that does not decode: written by hand, or by a broken build.
    #[error("the stored {table} row {id} is invalid: {reason}")]
    Corrupt {
        table: &'static str,
        id: i64,
        reason: String,
    },
}

impl StoreError {
    pub(crate) fn corrupt(table: &'static str, id: i64, reason: impl std::fmt::Display) -> Self {
        StoreError::Corrupt {
            table,
            id,
            reason: reason.to_string(),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut => StoreError::Busy,
            e => StoreError::Db(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One page of a listing and how many match in all.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// The store: a handle on one database, cheap to share behind an `Arc`.
pub struct Store {
    /// Connections for reads only (the database refuses writes on them). A method takes at
    /// most one and never waits for a second while it holds it: with a handful of
    /// connections, a request that did would deadlock against its twins (issue found under 20
    /// concurrent reads, where every holder waited for a fifth connection).
    reads: AnyPool,
    /// The connections writes run on, apart from the readers, so that readers never wait for
    /// a writer's turn at the write lock and writers never take a reader's connection.
    writes: AnyPool,
    backend: Backend,
    /// Kept for [`Store::watch`]; may hold a password, so never printed.
    url: String,
}

/// A name as stored (see [`heimweg_control::Name::from_stored`]).
pub(crate) fn stored_name(
    table: &'static str,
    id: i64,
    raw: &str,
) -> Result<heimweg_control::Name> {
    heimweg_control::Name::from_stored(raw).map_err(|e| db::decode_error(table, id, e))
}
