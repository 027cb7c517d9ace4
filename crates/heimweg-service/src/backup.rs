//! Backups of the store. Taking one is not a change, so it is not audited (the audit log is
//! written only by changes, in their transaction); it is logged with who took it and where.

use crate::{Caller, Result, Service};
use heimweg_store::{BackupInfo, Store};
use std::path::Path;

impl Service {
    /// Writes a consistent copy of the SQLite database to `target` (a new file, mode 0600)
    /// while the gateway runs. PostgreSQL: refused with the `pg_dump` command to use.
    pub async fn backup(&self, caller: &Caller, target: &Path) -> Result<BackupInfo> {
        caller.require_administrator("back up the database")?;
        let info = self.store.backup_to(target).await?;
        tracing::info!(
            actor = %caller.actor(),
            path = %target.display(),
            revision = info.revision,
            devices = info.devices,
            "database backed up"
        );
        Ok(info)
    }

    /// Checks a backup before it is restored (see `heimweg_store::Store::verify_backup`): no
    /// store needs to be open, since a restore may be the first thing a new gateway does.
    pub async fn verify_backup(caller: &Caller, path: &Path) -> Result<BackupInfo> {
        caller.require_administrator("restore the database")?;
        Ok(Store::verify_backup(path).await?)
    }

    /// A consistent copy of the SQLite file `database` (which no gateway has open) to `target`,
    /// without migrating or writing it: how a restore keeps the database it replaces.
    pub async fn backup_sqlite_file(
        caller: &Caller,
        database: &Path,
        target: &Path,
    ) -> Result<BackupInfo> {
        caller.require_administrator("back up the database")?;
        let info = Store::backup_file(database, target).await?;
        tracing::info!(
            actor = %caller.actor(),
            database = %database.display(),
            path = %target.display(),
            revision = info.revision,
            "database copied"
        );
        Ok(info)
    }
}
