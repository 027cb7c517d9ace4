//! Backups of the SQLite store: a consistent copy taken while the gateway runs, and the check a
//! backup passes before it is restored. A PostgreSQL database is backed up with PostgreSQL's own
//! tools ([`POSTGRES_BACKUP`]).
//!
//! A backup is `VACUUM INTO` on a read-only connection of its own: it reads one snapshot of the
//! database (the WAL's committed transactions included), so writes going on meanwhile are in it
//! whole or not at all, and it takes none of the store's connections. The copy is written to an
//! empty temporary file created with mode 0600 in the target's directory (the database holds
//! preshared keys and staff names), checked, synced, and only then given the target's name, which
//! it never takes from a file that exists.

use crate::{db, Backend, Result, Store, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use std::hash::{BuildHasher, Hasher};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// What to run instead of `heimweg backup` and `heimweg restore` on PostgreSQL.
pub const POSTGRES_BACKUP: &str = "\
heimweg backs up only its SQLite file; a PostgreSQL database is backed up and restored with \
PostgreSQL's tools (HEIMWEG_DATABASE_URL as in /etc/heimweg/env):
  back up:  pg_dump --format=custom --file=heimweg.dump \"$HEIMWEG_DATABASE_URL\"
  restore:  stop every gateway on the database, then
            pg_restore --clean --if-exists --no-owner --single-transaction \
--dbname=\"$HEIMWEG_DATABASE_URL\" heimweg.dump
            and start them again
  check:    psql \"$HEIMWEG_DATABASE_URL\" -c 'SELECT max(version) FROM heimweg_migrations'
See \"Backup and restore\" in deploy/README.md.";

/// What a backup holds, as read from the backup itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// The schema version it was written with: this build's or older (a restore migrates it).
    pub schema_version: usize,
    /// The change revision it was taken at.
    pub revision: i64,
    /// Devices not revoked.
    pub devices: u64,
    /// Its size on disk.
    pub bytes: u64,
}

impl Store {
    /// Writes a consistent copy of this store's SQLite database to `target`, a file that must
    /// not exist yet, while the gateway goes on reading and writing. PostgreSQL: an error that
    /// says to use `pg_dump`.
    pub async fn backup_to(&self, target: &Path) -> Result<BackupInfo> {
        if self.backend == Backend::Postgres {
            return Err(StoreError::Invalid(POSTGRES_BACKUP.into()));
        }
        if self.url.contains(":memory:") {
            return Err(StoreError::Invalid(
                "an in-memory database has nothing on disk to back up".into(),
            ));
        }
        let options = SqliteConnectOptions::from_str(&self.url)?
            .read_only(true)
            .create_if_missing(false);
        backup_with(options, target).await
    }

    /// Writes a consistent copy of the SQLite database file `database` to `target` (which must
    /// not exist), without opening it as a store: no migration, no write. For keeping a
    /// database that is about to be replaced.
    pub async fn backup_file(database: &Path, target: &Path) -> Result<BackupInfo> {
        regular_file(database)?;
        backup_with(read_only(database), target).await
    }

    /// Checks a backup file without changing it: it opens read-only, `PRAGMA integrity_check`
    /// says ok, no foreign key dangles, it is a heimweg database, and its migrations are this
    /// build's (or the first of them: an older backup is migrated when it is opened). A backup
    /// from a newer heimweg is refused.
    pub async fn verify_backup(path: &Path) -> Result<BackupInfo> {
        let bytes = regular_file(path)?;
        let unreadable = |e: sqlx::Error| {
            StoreError::Invalid(format!(
                "{} is not a readable SQLite database: {e}",
                path.display()
            ))
        };
        let mut conn = read_only(path).connect().await.map_err(unreadable)?;
        let checked = check(&mut conn).await;
        let _ = conn.close().await;
        let mut info = checked.map_err(|e| match e {
            StoreError::Db(e) => unreadable(e),
            e => e,
        })?;
        info.bytes = bytes;
        Ok(info)
    }
}

fn read_only(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false)
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Invalid(format!("{what} {}: {e}", path.display()))
}

/// The size of `path`, a regular file (or a link to one): SQLite would block on a pipe.
fn regular_file(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| io_error("reading", path, e))?;
    if !meta.is_file() {
        return Err(StoreError::Invalid(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(meta.len())
}

/// Integrity, foreign keys, what the database is, and what it holds.
async fn check(conn: &mut SqliteConnection) -> Result<BackupInfo> {
    let problems: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut *conn)
        .await?;
    if problems != ["ok"] {
        let first: Vec<&str> = problems.iter().take(5).map(String::as_str).collect();
        return Err(StoreError::Invalid(format!(
            "the backup is damaged (PRAGMA integrity_check): {}",
            first.join("; ")
        )));
    }
    let dangling = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&mut *conn)
        .await?
        .len();
    if dangling > 0 {
        return Err(StoreError::Invalid(format!(
            "the backup is damaged: {dangling} rows refer to rows that do not exist"
        )));
    }
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut *conn)
            .await?;
    if !["settings", "devices", "addresses"]
        .iter()
        .all(|t| tables.iter().any(|have| have == t))
    {
        return Err(StoreError::Invalid(
            "this is an SQLite database, but not one of heimweg's".into(),
        ));
    }
    let schema_version = schema_version(conn, &tables).await?;
    let revision: Option<String> =
        sqlx::query_scalar("SELECT value FROM settings WHERE key = 'revision'")
            .fetch_optional(&mut *conn)
            .await?;
    let revision = revision.and_then(|r| r.parse().ok()).ok_or_else(|| {
        StoreError::Invalid("the backup has no change revision: it is not a heimweg store".into())
    })?;
    let devices: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE revoked_at IS NULL")
        .fetch_one(&mut *conn)
        .await?;
    Ok(BackupInfo {
        schema_version,
        revision,
        devices: u64::try_from(devices).unwrap_or(0),
        bytes: 0,
    })
}

/// The backup's schema version, if this build can open it: every recorded migration must be
/// the one this build ships under that number, and there must not be more of them.
async fn schema_version(conn: &mut SqliteConnection, tables: &[String]) -> Result<usize> {
    let ours = db::migration_checksums(Backend::Sqlite);
    let newer = |theirs: usize| {
        StoreError::Invalid(format!(
            "the backup has schema version {theirs}, newer than this heimweg knows ({}): \
             restore it with the heimweg version that wrote it, or a newer one",
            ours.len()
        ))
    };
    if !tables.iter().any(|t| t == "heimweg_migrations") {
        // Written before migrations were recorded: only a version number.
        let legacy: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&mut *conn)
            .await?;
        let legacy = usize::try_from(legacy).unwrap_or(0);
        return if legacy > ours.len() {
            Err(newer(legacy))
        } else {
            Ok(legacy)
        };
    }
    let recorded: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, checksum FROM heimweg_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?;
    if recorded.len() > ours.len() {
        return Err(newer(recorded.len()));
    }
    for (i, ((version, checksum), expected)) in recorded.iter().zip(&ours).enumerate() {
        if *version != i as i64 + 1 || checksum != expected {
            return Err(StoreError::Invalid(format!(
                "migration {} of the backup differs from this heimweg's; it was written by a \
                 different build and cannot be restored with this one",
                i + 1
            )));
        }
    }
    Ok(recorded.len())
}

/// `VACUUM INTO` a fresh temporary file beside `target`, checked and synced, then given
/// `target`'s name.
async fn backup_with(source: SqliteConnectOptions, target: &Path) -> Result<BackupInfo> {
    let target = std::path::absolute(target).map_err(|e| io_error("resolving", target, e))?;
    refuse_existing(&target)?;
    let tmp = create_temporary(&target)?;
    let written = vacuum_into(source, &tmp, &target).await;
    let published = match written {
        Ok(()) => publish(&tmp, &target).await,
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&tmp);
    let info = published?;
    tracing::debug!(path = %target.display(), revision = info.revision, "backup written");
    Ok(info)
}

fn exists(target: &Path) -> StoreError {
    StoreError::Conflict(format!(
        "{} exists; a backup never replaces a file: choose a new name",
        target.display()
    ))
}

fn refuse_existing(target: &Path) -> Result<()> {
    match std::fs::symlink_metadata(target) {
        Ok(_) => Err(exists(target)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("looking at", target, e)),
    }
}

/// `.NAME.RANDOM.tmp` beside `target`: created empty (what `VACUUM INTO` requires), exclusively
/// (never through a symlink or over another file) and with mode 0600.
fn create_temporary(target: &Path) -> Result<PathBuf> {
    let dir = target.parent().unwrap_or(Path::new("/"));
    let name = target
        .file_name()
        .ok_or_else(|| StoreError::Invalid(format!("{} names no file", target.display())))?;
    for _ in 0..16 {
        // RandomState is seeded from the system's randomness: a name no one can predict.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{random:016x}.tmp"));
        let tmp = dir.join(tmp_name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(_) => return Ok(tmp),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_error("creating a file in", dir, e)),
        }
    }
    Err(StoreError::Invalid(format!(
        "could not create a temporary file in {}",
        dir.display()
    )))
}

async fn vacuum_into(source: SqliteConnectOptions, tmp: &Path, target: &Path) -> Result<()> {
    let tmp_str = tmp.to_str().ok_or_else(|| {
        StoreError::Invalid(format!("the path {} is not valid UTF-8", target.display()))
    })?;
    let mut conn = source.connect().await?;
    let copied = sqlx::query("VACUUM INTO $1")
        .bind(tmp_str)
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    copied?;
    Ok(())
}

/// Checks the copy, puts it on disk, and links it in under `target` (a hard link fails if
/// `target` appeared meanwhile, where a rename would replace it).
async fn publish(tmp: &Path, target: &Path) -> Result<BackupInfo> {
    let info = Store::verify_backup(tmp).await?;
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error("syncing", tmp, e))?;
    match std::fs::hard_link(tmp, target) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(exists(target)),
        // A file system without hard links: the check just before the rename must do.
        Err(_) => {
            refuse_existing(target)?;
            std::fs::rename(tmp, target).map_err(|e| io_error("writing", target, e))?;
        }
    }
    if let Some(dir) = target.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(info)
}
