//! Connections, the write transaction, migrations, the audit trail and the revision: what
//! every entity module uses.

use crate::{Result, Store, StoreError};
use heimweg_control::{Actor, AuditAction};
use sha2::{Digest, Sha256};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};
use std::path::Path;
use std::time::Duration;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL advisory lock every write takes ("heimweg" in ASCII).
const PG_WRITE_LOCK: i64 = 0x0068_6569_6d77_6567;

/// One schema step: the SQL for each backend (the same version number means the same schema
/// on either), and what has to be computed in Rust after it.
struct Migration {
    sqlite: &'static str,
    postgres: &'static str,
    then: Option<Backfill>,
}

#[derive(Clone, Copy)]
enum Backfill {
    NameKeys,
    LinkOwnerKeys,
}

macro_rules! migration {
    ($file:literal) => {
        migration!($file, None)
    };
    ($file:literal, $then:expr) => {
        Migration {
            sqlite: include_str!(concat!("../../../migrations/sqlite/", $file)),
            postgres: include_str!(concat!("../../../migrations/postgres/", $file)),
            then: $then,
        }
    };
}

/// Every migration, in order. Applied ones are recorded with a checksum of their SQL, and a
/// database whose record disagrees with the SQL here is refused: an edited migration would
/// otherwise leave gateways with different schemas under the same version.
const MIGRATIONS: &[Migration] = &[
    migration!("0001_init.sql"),
    migration!("0002_api_tokens.sql"),
    migration!("0003_enrollment_links.sql"),
    migration!("0004_rotation_users_requests.sql"),
    migration!("0005_token_parents.sql"),
    migration!("0006_admins.sql"),
    migration!("0007_name_keys.sql", Some(Backfill::NameKeys)),
    migration!("0008_name_keys_unique.sql"),
    migration!("0009_peer_to_peer.sql"),
    migration!("0010_invitation_mail.sql", Some(Backfill::LinkOwnerKeys)),
    migration!("0011_directory_sync.sql"),
    migration!("0012_identity_provider.sql"),
    migration!("0013_usage_windows.sql"),
    migration!("0014_shared_keys.sql"),
    migration!("0015_sign_in_to_connect.sql"),
    migration!("0016_staff_second_factor.sql"),
];

/// The schema version this build brings a database to.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// The checksum of each migration this build ships, in order: what a backup's records must
/// match.
pub(crate) fn migration_checksums(backend: Backend) -> Vec<String> {
    MIGRATIONS
        .iter()
        .map(|m| checksum(m.sql(backend)))
        .collect()
}

/// How many connections a [`Store`] keeps and how long a request waits for one.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    /// Read connections. SQLite in WAL mode reads in parallel; two cores gain little beyond 8.
    pub reads: u32,
    /// Write connections: one on SQLite (it has one writer anyway); on PostgreSQL a few, since
    /// session bookkeeping writes there without the store's write lock.
    pub writes: u32,
    /// How long a caller waits for a connection before it gets [`StoreError::Busy`].
    pub acquire_timeout: Duration,
}

impl PoolOptions {
    pub fn for_backend(backend: Backend) -> PoolOptions {
        PoolOptions {
            reads: 8,
            writes: match backend {
                Backend::Sqlite => 1,
                Backend::Postgres => 4,
            },
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// Which kind of connection a pool hands out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadOnly,
    ReadWrite,
}

/// Refuses a PostgreSQL URL that would carry the store over a network without a verified TLS
/// connection. Whoever sits on that path could read password hashes and sealed secrets and,
/// worse, rewrite the peer set: enroll a device of their own. So a server that is not on this
/// machine (a Unix socket, `localhost`, a loopback address) needs `sslmode=verify-full` (or
/// `verify-ca`) with the city's CA in `sslrootcert` or the system's store; `sslmode=disable`,
/// written out, is accepted for a link that is encrypted already (IPsec, WireGuard) and
/// logged. libpq's default `prefer`, `allow` and `require` are refused: the first two fall
/// back to plain text, and none checks who answers.
fn check_transport(url: &str) -> Result<()> {
    use sqlx::postgres::{PgConnectOptions, PgSslMode};
    // The options sqlx will use: the URL over PG* environment variables, as libpq reads them.
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e| StoreError::Invalid(format!("the PostgreSQL URL does not parse: {e}")))?;
    let host = options.get_host();
    let local = options.get_socket().is_some()
        || host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match options.get_ssl_mode() {
        _ if local => Ok(()),
        PgSslMode::VerifyFull | PgSslMode::VerifyCa => Ok(()),
        PgSslMode::Disable => {
            tracing::warn!(
                host,
                "the store's PostgreSQL connection is not encrypted (sslmode=disable): only \
                 for a link that is encrypted already"
            );
            Ok(())
        }
        mode => Err(StoreError::Invalid(format!(
            "PostgreSQL at {host} is reached over the network with sslmode={}, which does not \
             check the server: add sslmode=verify-full&sslrootcert=/etc/heimweg/db-ca.pem (the \
             CA that signed the server's certificate) to the URL, or sslmode=disable if the \
             link is encrypted already",
            ssl_mode_name(mode)
        ))),
    }
}

fn ssl_mode_name(mode: sqlx::postgres::PgSslMode) -> &'static str {
    use sqlx::postgres::PgSslMode;
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer (the default)",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

fn backend_of(url: &str) -> Result<Backend> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Backend::Postgres)
    } else {
        Err(StoreError::Invalid(
            "the database URL must start with sqlite:// or postgres://".into(),
        ))
    }
}

/// A pool of `max` connections; read-only ones refuse writes in the database itself, so a
/// write that strays onto a reader fails in every test instead of queueing for the lock.
async fn open_pool(
    url: &str,
    backend: Backend,
    access: Access,
    max: u32,
    options: PoolOptions,
) -> Result<AnyPool> {
    Ok(AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(options.acquire_timeout)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                match backend {
                    Backend::Sqlite => {
                        // Per connection: WAL lets readers read while one writes; NORMAL sync
                        // is durable in WAL mode except against power loss in the last commit;
                        // the busy timeout turns lock waits (another process writing) into
                        // waits, not errors.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                        if access == Access::ReadOnly {
                            conn.execute("PRAGMA query_only = ON").await?;
                        }
                    }
                    Backend::Postgres => {
                        if access == Access::ReadOnly {
                            conn.execute("SET default_transaction_read_only = on")
                                .await?;
                        }
                    }
                }
                Ok(())
            })
        })
        .connect(url)
        .await?)
}

pub(crate) type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

impl Store {
    /// Opens (creating if missing) an SQLite database file and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Store> {
        let path = path.to_str().ok_or_else(|| {
            StoreError::Invalid(format!("the database path {path:?} is not valid UTF-8"))
        })?;
        // The path goes into a URL: escape what a URL would read as syntax.
        let escaped = path
            .replace('%', "%25")
            .replace('?', "%3F")
            .replace('#', "%23");
        Store::connect(&format!("sqlite://{escaped}?mode=rwc")).await
    }

    /// Connects to `sqlite://PATH` or `postgres://USER@HOST/DB` and brings the schema up to
    /// date. Several gateways may connect to one PostgreSQL database at once.
    pub async fn connect(url: &str) -> Result<Store> {
        let backend = backend_of(url)?;
        Store::connect_with(url, PoolOptions::for_backend(backend)).await
    }

    /// [`Store::connect`] with pool sizes of the caller's choosing.
    pub async fn connect_with(url: &str, options: PoolOptions) -> Result<Store> {
        let backend = backend_of(url)?;
        if backend == Backend::Postgres {
            check_transport(url)?;
        }
        sqlx::any::install_drivers(&[sqlx::sqlite::any::DRIVER, sqlx::postgres::any::DRIVER]).ok();
        let writes = open_pool(url, backend, Access::ReadWrite, options.writes, options).await?;
        let reads = open_pool(url, backend, Access::ReadOnly, options.reads, options).await?;
        let store = Store {
            reads,
            writes,
            backend,
            url: url.to_string(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// A handle on the same database with a read connection of its own, for a caller that
    /// must never queue behind the API's readers (the reconciler: a revocation reaches the
    /// data plane within a second however busy the panel is). Writes share this store's.
    pub async fn dedicated_reader(&self) -> Result<Store> {
        let options = PoolOptions {
            reads: 1,
            ..PoolOptions::for_backend(self.backend)
        };
        let reads = open_pool(&self.url, self.backend, Access::ReadOnly, 1, options).await?;
        Ok(Store {
            reads,
            writes: self.writes.clone(),
            backend: self.backend,
            url: self.url.clone(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes both pools and waits until every connection is closed: on SQLite the last one
    /// folds the WAL back into the database and removes the -wal and -shm files, which a
    /// process that exits with connections still closing on their threads may leave behind.
    pub async fn close(&self) {
        self.reads.close().await;
        self.writes.close().await;
    }

    /// One read connection, held for the whole of one method and never beside another.
    pub(crate) async fn read(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>> {
        Ok(self.reads.acquire().await?)
    }

    /// Starts a write transaction that holds the store's one write lock from its first
    /// statement on (`BEGIN IMMEDIATE` on SQLite, an advisory lock on PostgreSQL), and checks
    /// inside it that `actor` may still act: a token revoked or a panel account disabled a
    /// moment ago makes no change, however far its request had come.
    pub(crate) async fn write(&self, actor: &Actor) -> Result<Tx<'static>> {
        let mut tx = self.begin_write().await?;
        check_actor(&mut tx, actor).await?;
        Ok(tx)
    }

    async fn begin_write(&self) -> Result<Tx<'static>> {
        match self.backend {
            Backend::Sqlite => Ok(self.writes.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres => {
                let mut tx = self.writes.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(PG_WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    /// Single-statement bookkeeping that needs no write lock (session activity): on the write
    /// connections, never the read-only ones.
    pub(crate) fn writer(&self) -> &AnyPool {
        &self.writes
    }

    /// A [`Watcher`] for changes other writers commit: PostgreSQL only (SQLite has no
    /// notifications; the reconciler's poll covers it).
    pub async fn watch(&self) -> Result<Option<Watcher>> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut listener = sqlx::postgres::PgListener::connect(&self.url).await?;
        listener.listen("heimweg_revision").await?;
        Ok(Some(Watcher { listener }))
    }

    async fn migrate(&self) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let applied = applied_migrations(&mut tx, self.backend).await?;
        if applied.len() > MIGRATIONS.len() {
            return Err(StoreError::Invalid(format!(
                "the database has schema version {}, newer than this heimweg knows ({}); \
                 upgrade heimweg",
                applied.len(),
                MIGRATIONS.len()
            )));
        }
        for (i, (m, recorded)) in MIGRATIONS.iter().zip(&applied).enumerate() {
            if *recorded != checksum(m.sql(self.backend)) {
                return Err(StoreError::Invalid(format!(
                    "migration {} of this heimweg differs from the one the database was \
                     migrated with; a migration must never change once released",
                    i + 1
                )));
            }
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(applied.len()) {
            let version = i as i64 + 1;
            sqlx::raw_sql(m.sql(self.backend)).execute(&mut *tx).await?;
            if let Some(step) = m.then {
                backfill(&mut tx, step).await?;
            }
            sqlx::query("INSERT INTO heimweg_migrations (version, checksum) VALUES ($1, $2)")
                .bind(version)
                .bind(checksum(m.sql(self.backend)))
                .execute(&mut *tx)
                .await?;
            tracing::info!(version, "database schema migrated");
        }
        if applied.len() < MIGRATIONS.len() {
            // The markers heimweg versions before the checksums read: an older build refuses
            // a database it does not know instead of writing rows without name keys.
            let version = MIGRATIONS.len();
            let marker = match self.backend {
                Backend::Sqlite => format!("PRAGMA user_version = {version}"),
                Backend::Postgres => format!(
                    "CREATE TABLE IF NOT EXISTS heimweg_schema (version BIGINT NOT NULL);
                     INSERT INTO heimweg_schema VALUES ({version})"
                ),
            };
            sqlx::raw_sql(&marker).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

impl Migration {
    fn sql(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        }
    }
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// The checksums of the migrations applied so far, in order. Databases from before checksums
/// recorded only a version (SQLite's `user_version`, PostgreSQL's `heimweg_schema`): their
/// migrations are recorded as the ones this build ships, once.
async fn applied_migrations(tx: &mut Tx<'_>, backend: Backend) -> Result<Vec<String>> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS heimweg_migrations (
             version  BIGINT PRIMARY KEY,
             checksum TEXT NOT NULL
         )",
    )
    .execute(&mut **tx)
    .await?;
    let recorded: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, checksum FROM heimweg_migrations ORDER BY version")
            .fetch_all(&mut **tx)
            .await?;
    if !recorded.is_empty() {
        return Ok(recorded.into_iter().map(|(_, c)| c).collect());
    }
    let legacy: i64 = match backend {
        Backend::Sqlite => {
            sqlx::query_scalar("PRAGMA user_version")
                .fetch_one(&mut **tx)
                .await?
        }
        Backend::Postgres => {
            let exists: Option<String> =
                sqlx::query_scalar("SELECT CAST(to_regclass('heimweg_schema') AS TEXT)")
                    .fetch_one(&mut **tx)
                    .await?;
            if exists.is_some() {
                let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM heimweg_schema")
                    .fetch_one(&mut **tx)
                    .await?;
                v.unwrap_or(0)
            } else {
                0
            }
        }
    };
    let legacy = usize::try_from(legacy).unwrap_or(0).min(MIGRATIONS.len());
    let mut out = Vec::new();
    for (i, m) in MIGRATIONS.iter().enumerate().take(legacy) {
        let c = checksum(m.sql(backend));
        sqlx::query("INSERT INTO heimweg_migrations (version, checksum) VALUES ($1, $2)")
            .bind(i as i64 + 1)
            .bind(&c)
            .execute(&mut **tx)
            .await?;
        out.push(c);
    }
    Ok(out)
}

/// Fills what a migration's SQL cannot compute.
async fn backfill(tx: &mut Tx<'_>, step: Backfill) -> Result<()> {
    match step {
        Backfill::NameKeys => {
            for table in ["devices", "users", "groups", "admins", "api_tokens"] {
                let rows: Vec<(i64, String)> =
                    sqlx::query_as(&format!("SELECT id, name FROM {table} ORDER BY id"))
                        .fetch_all(&mut **tx)
                        .await?;
                let mut seen = std::collections::HashSet::new();
                for (id, name) in rows {
                    let mut key = heimweg_control::name::name_key(&name);
                    // Two names that differ only in case were two records before: both
                    // stay, the later one under a key no typed name can reach (names never
                    // hold control characters), so it is still found by its id and listed.
                    // U+0001, not NUL: PostgreSQL text cannot hold a NUL byte.
                    if !seen.insert(key.clone()) {
                        tracing::warn!(table, id, %name, "a name differs from an earlier one only in case");
                        key = format!("{key}\u{1}{id}");
                    }
                    sqlx::query(&format!("UPDATE {table} SET name_key = $1 WHERE id = $2"))
                        .bind(key)
                        .bind(id)
                        .execute(&mut **tx)
                        .await?;
                }
            }
        }
        Backfill::LinkOwnerKeys => {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT id, owner FROM enrollment_links WHERE owner IS NOT NULL ORDER BY id",
            )
            .fetch_all(&mut **tx)
            .await?;
            for (id, owner) in rows {
                sqlx::query("UPDATE enrollment_links SET owner_key = $1 WHERE id = $2")
                    .bind(heimweg_control::name::name_key(&owner))
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }
    Ok(())
}

/// The check [`Store::write`] makes of the actor inside the transaction: a token not revoked,
/// an account or a user not disabled a moment earlier.
async fn check_actor(tx: &mut Tx<'_>, actor: &Actor) -> Result<()> {
    let (live, id, what, name, ended) = match actor {
        Actor::Token { id, name } => (
            "SELECT id FROM api_tokens WHERE id = $1 AND revoked_at IS NULL",
            id,
            "token",
            name,
            "revoked",
        ),
        Actor::Admin { id, name } => (
            "SELECT id FROM admins WHERE id = $1 AND disabled_at IS NULL",
            id,
            "account",
            name,
            "disabled",
        ),
        Actor::Staff { id, name } => (
            "SELECT id FROM users WHERE id = $1 AND disabled_at IS NULL",
            id,
            "user",
            name,
            "disabled",
        ),
        Actor::System
        | Actor::Cli { .. }
        | Actor::Link { .. }
        | Actor::Requester { .. }
        | Actor::Panel
        | Actor::Directory => return Ok(()),
    };
    let found: Option<i64> = sqlx::query_scalar(live)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    if found.is_none() {
        return Err(StoreError::Unauthorized(format!(
            "the {what} {name:?} was {ended}"
        )));
    }
    Ok(())
}

/// Records a change. Details never hold secrets: public keys, scopes, networks.
pub(crate) async fn audit(
    tx: &mut Tx<'_>,
    at: i64,
    actor: &Actor,
    action: AuditAction,
    subject: &str,
    detail: &str,
) -> Result<()> {
    let actor = actor.to_string();
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(at)
    .bind(&actor)
    .bind(action.as_str())
    .bind(subject)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    // One log line per change, the same facts as the audit entry. Every caller audits after
    // its last validation, so only a database failure (logged as an error itself) can still
    // roll the change back.
    tracing::info!(target: "heimweg::audit", %actor, %action, %subject, %detail, "change");
    Ok(())
}

/// Bumps the revision every gateway's reconciler watches; returns the new one.
pub(crate) async fn bump_revision(tx: &mut Tx<'_>) -> Result<i64> {
    let value: String = sqlx::query_scalar(
        "UPDATE settings SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT)
         WHERE key = 'revision' RETURNING value",
    )
    .fetch_one(&mut **tx)
    .await?;
    if tx.backend_name() == "PostgreSQL" {
        // Delivered at commit (and not at all on rollback) to every gateway's `Watcher`.
        sqlx::query("SELECT pg_notify('heimweg_revision', '')")
            .execute(&mut **tx)
            .await?;
    }
    value
        .parse()
        .map_err(|_| StoreError::corrupt("settings", 0, "the revision is not a number"))
}

/// Wakes a gateway as soon as another writer commits a change (PostgreSQL's LISTEN/NOTIFY).
/// The reconciler still polls the revision: a notification only makes it look sooner, so a
/// lost connection costs latency, never a change.
pub struct Watcher {
    listener: sqlx::postgres::PgListener,
}

impl Watcher {
    /// Returns when a change was committed; on a lost connection, after sqlx reconnected.
    pub async fn changed(&mut self) {
        if self.listener.try_recv().await.is_err() {
            // Not connected and reconnecting failed: do not spin; the poll still runs.
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}

/// A query argument: the types the list filters need.
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

/// WHERE conditions and their arguments, numbered `$1, $2, …` in the order they are added.
/// Only the conditions in use reach the SQL, so each backend plans the plain listing as the
/// index walk it is (PostgreSQL would otherwise plan `$1 IS NULL OR …` generically).
#[derive(Default)]
pub(crate) struct Filter {
    conditions: Vec<String>,
    args: Vec<Arg>,
}

type AnyArgs<'q> = sqlx::any::AnyArguments<'q>;

impl Filter {
    /// Adds an argument; returns its placeholder number.
    pub(crate) fn arg(&mut self, a: Arg) -> usize {
        self.args.push(a);
        self.args.len()
    }

    pub(crate) fn cond(&mut self, c: String) {
        self.conditions.push(c);
    }

    pub(crate) fn where_clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        }
    }

    /// Binds every argument, in placeholder order, to a query of any output.
    pub(crate) fn bind_to<'q, O>(
        &'q self,
        q: sqlx::query::QueryAs<'q, sqlx::Any, O, AnyArgs<'q>>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Any, O, AnyArgs<'q>> {
        self.args.iter().fold(q, |q, a| match a {
            Arg::Text(t) => q.bind(t.as_str()),
            Arg::Int(i) => q.bind(*i),
        })
    }
}

/// `s` for a `LIKE … ESCAPE '\'` pattern.
pub(crate) fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// A row that does not decode into its type: logged once where it is found, and an error
/// for the caller, never a row silently left out.
pub(crate) fn decode_error(
    table: &'static str,
    id: i64,
    reason: impl std::fmt::Display,
) -> StoreError {
    let e = StoreError::corrupt(table, id, reason);
    tracing::error!(error = %e, "a stored row does not decode");
    e
}

#[cfg(test)]
mod tests {
    use super::check_transport;

    #[test]
    fn a_remote_postgresql_needs_a_verified_tls_connection() {
        for url in [
            "postgres://heimweg:x@db.stadt.example/heimweg",
            "postgres://heimweg:x@db.stadt.example/heimweg?sslmode=prefer",
            "postgres://heimweg:x@db.stadt.example/heimweg?sslmode=allow",
            "postgresql://heimweg:x@10.0.0.5:5432/heimweg?sslmode=require",
        ] {
            let err = check_transport(url).unwrap_err().to_string();
            assert!(err.contains("sslmode=verify-full"), "{url}: {err}");
            // The password is not repeated in the error, which ends up in logs.
            assert!(!err.contains(":x@"), "{url}: {err}");
        }
        for url in [
            "postgres://heimweg:x@db.stadt.example/heimweg?sslmode=verify-full&sslrootcert=/etc/heimweg/db-ca.pem",
            "postgres://heimweg:x@db.stadt.example/heimweg?sslmode=verify-ca",
            "postgres://heimweg:x@db.stadt.example/heimweg?sslmode=disable",
            // On this machine: nothing to intercept.
            "postgres://heimweg:x@localhost/heimweg",
            "postgres://heimweg:x@127.0.0.1:5433/heimweg",
            "postgres://heimweg:x@[::1]/heimweg",
            "postgres://heimweg@db.stadt.example/heimweg?host=/run/postgresql",
        ] {
            assert!(check_transport(url).is_ok(), "{url}");
        }
        assert!(check_transport("postgres://%zz").is_err());
    }
}
