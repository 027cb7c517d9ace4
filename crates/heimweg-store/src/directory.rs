//! Directory sync, applied: a run's plan (heimweg_control::directory) made and carried out in
//! one write transaction, so that a run changes everything it decided or nothing, and no other
//! change slips in between the users it read and the ones it writes. Every run is recorded.

use crate::db::{audit, bump_revision, Tx};
use crate::users::disable_in;
use crate::{stored_name, Result, Store, StoreError};
use heimweg_control::directory::{
    self, Entry, GroupMap, Known, Plan, Refused, SyncPolicy, UserChange,
};
use heimweg_control::{Actor, AuditAction, Email, Name};
use std::collections::HashMap;

/// Runs kept for the panel and the API; older ones are deleted.
const RUNS_KEPT: i64 = 500;

/// One run of the directory sync, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryRun {
    pub id: i64,
    pub started_at: i64,
    pub finished_at: i64,
    /// `system` for the schedule, else the admin, token or command line that asked.
    pub requested_by: String,
    /// ok, refused or failed.
    pub outcome: String,
    pub entries: i64,
    pub created: i64,
    pub changed: i64,
    pub disabled: i64,
    pub enabled: i64,
    pub skipped: i64,
    /// Why it was refused or failed, or the entries it left out.
    pub message: Option<String>,
}

impl Store {
    /// Applies what the directory returned (`found`, read from `started_at` on): plans against
    /// the users as they are now and carries the plan out, or records that it was refused. The
    /// changes are the directory's (audited as `directory`); the run is recorded with who
    /// asked for it, and returned (its message lists the entries left out, or why it was
    /// refused).
    pub async fn apply_directory(
        &self,
        requested_by: &Actor,
        found: &[Entry],
        map: &GroupMap,
        policy: SyncPolicy,
        started_at: i64,
        now: i64,
    ) -> Result<DirectoryRun> {
        let mut tx = self.write(requested_by).await?;
        let groups = mapped_groups(&mut tx, map).await?;
        let known = known_users(&mut tx).await?;
        let (outcome, run, message) = match directory::plan(&known, found, map, policy) {
            Ok(plan) => {
                let revoked = carry_out(&mut tx, &plan, &groups, now).await?;
                let moved = devices_to_their_owners_groups(&mut tx, now).await?;
                let run = RunCounts {
                    entries: plan.entries,
                    created: plan.create.len(),
                    changed: plan.change.len(),
                    disabled: plan.disable.len(),
                    enabled: plan.enable.len(),
                    skipped: plan.skipped.len(),
                };
                if plan.changes_anything() || moved > 0 {
                    let detail = format!(
                        "{} entries: {} created, {} changed, {} disabled ({revoked} devices \
                         revoked), {} enabled; {moved} devices moved to their owner's group",
                        run.entries, run.created, run.changed, run.disabled, run.enabled
                    );
                    let sync = AuditAction::DirectorySync;
                    audit(&mut tx, now, &Actor::Directory, sync, "directory", &detail).await?;
                    bump_revision(&mut tx).await?;
                }
                let skipped = (!plan.skipped.is_empty()).then(|| plan.skipped.join("\n"));
                ("ok", run, skipped)
            }
            Err(refused) => {
                let message = refused.to_string();
                let sync = AuditAction::DirectorySync;
                audit(&mut tx, now, &Actor::Directory, sync, "directory", &message).await?;
                let run = RunCounts {
                    entries: found.len(),
                    ..RunCounts::default()
                };
                ("refused", run, Some(message))
            }
        };
        let recorded = record_run(
            &mut tx,
            requested_by,
            started_at,
            now,
            outcome,
            &run,
            message.as_deref(),
        )
        .await?;
        tx.commit().await?;
        Ok(recorded)
    }

    /// What a run would do with `found` now, changing nothing: the plan, or why it would be
    /// refused (a mapped group that does not exist is an error, as in a run).
    pub async fn preview_directory(
        &self,
        found: &[Entry],
        map: &GroupMap,
        policy: SyncPolicy,
    ) -> Result<std::result::Result<Plan, Refused>> {
        let mut conn = self.read().await?;
        mapped_groups(&mut conn, map).await?;
        let known = known_users(&mut conn).await?;
        Ok(directory::plan(&known, found, map, policy))
    }

    /// Records a run that could not read the directory: nothing was changed.
    pub async fn record_directory_failure(
        &self,
        requested_by: &Actor,
        started_at: i64,
        now: i64,
        message: &str,
    ) -> Result<DirectoryRun> {
        let mut tx = self.write(requested_by).await?;
        let run = RunCounts::default();
        let recorded = record_run(
            &mut tx,
            requested_by,
            started_at,
            now,
            "failed",
            &run,
            Some(message),
        )
        .await?;
        tx.commit().await?;
        Ok(recorded)
    }

    /// The newest runs first.
    pub async fn directory_runs(&self, limit: u32) -> Result<Vec<DirectoryRun>> {
        let mut conn = self.read().await?;
        let rows: Vec<RunRow> = sqlx::query_as(
            "SELECT id, started_at, finished_at, requested_by, outcome, entries, created, changed,
                    disabled, enabled, skipped, message
             FROM directory_runs ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows.into_iter().map(DirectoryRun::from).collect())
    }

    /// When the newest run started: gateways that share a database skip their scheduled run
    /// when another ran within the interval.
    pub async fn last_directory_run(&self) -> Result<Option<i64>> {
        let mut conn = self.read().await?;
        Ok(
            sqlx::query_scalar("SELECT MAX(started_at) FROM directory_runs")
                .fetch_one(&mut *conn)
                .await?,
        )
    }
}

/// The id of every heimweg group the mapping names, by name key; a clear error for one that
/// does not exist.
async fn mapped_groups(
    conn: &mut sqlx::AnyConnection,
    map: &GroupMap,
) -> Result<HashMap<String, i64>> {
    let mut groups = HashMap::new();
    for (_, group) in map.entries() {
        let id: i64 = sqlx::query_scalar("SELECT id FROM groups WHERE name_key = $1")
            .bind(group.key())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "the group mapping names the heimweg group {group:?}, which does not exist \
                     (create it first: heimweg group add)"
                ))
            })?;
        groups.insert(group.key(), id);
    }
    Ok(groups)
}

/// Carries a plan out, audited as the directory's doing; how many devices it revoked.
async fn carry_out(
    tx: &mut Tx<'_>,
    plan: &Plan,
    groups: &HashMap<String, i64>,
    now: i64,
) -> Result<u64> {
    let actor = Actor::Directory;
    for u in &plan.create {
        // One statement per user (a first sync creates tens of thousands).
        sqlx::query(
            "INSERT INTO users (name, name_key, email, created_at, directory_id, group_id)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(u.name.as_str())
        .bind(u.name.key())
        .bind(u.email.as_ref().map(Email::as_str))
        .bind(now)
        .bind(&u.directory_id)
        .bind(groups[&u.group.key()])
        .execute(&mut **tx)
        .await?;
        let detail = format!("group={}", u.group);
        audit(
            tx,
            now,
            &actor,
            AuditAction::UserCreate,
            u.name.as_str(),
            &detail,
        )
        .await?;
    }
    for c in &plan.change {
        let detail = change(tx, c, groups).await?;
        audit(
            tx,
            now,
            &actor,
            AuditAction::UserUpdate,
            c.name.as_str(),
            &detail,
        )
        .await?;
    }
    let mut revoked = 0;
    for (id, name) in &plan.disable {
        revoked += disable_in(tx, &actor, *id, name.as_str(), now).await?;
    }
    for (id, name) in &plan.enable {
        sqlx::query("UPDATE users SET disabled_at = NULL, disabled_by = NULL WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        let detail = "back in the directory";
        audit(
            tx,
            now,
            &actor,
            AuditAction::UserEnable,
            name.as_str(),
            detail,
        )
        .await?;
    }
    Ok(revoked)
}

/// Puts every active device of a linked, enabled user into the user's directory group: a
/// device enrolled into another group (by an admin, through a link made before the user moved)
/// must not get around the directory's decision. How many moved, each audited.
async fn devices_to_their_owners_groups(tx: &mut Tx<'_>, now: i64) -> Result<u64> {
    let astray: Vec<(i64, String, i64, String)> = sqlx::query_as(
        "SELECT d.id, d.name, u.group_id, g.name FROM devices d
           JOIN users u ON u.id = d.owner_id
           JOIN groups g ON g.id = u.group_id
         WHERE d.revoked_at IS NULL AND u.directory_id IS NOT NULL AND u.disabled_at IS NULL
           AND d.group_id <> u.group_id",
    )
    .fetch_all(&mut **tx)
    .await?;
    for (id, device, group_id, group) in &astray {
        sqlx::query("UPDATE devices SET group_id = $1 WHERE id = $2")
            .bind(group_id)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        let detail = format!("group={group} (the owner's directory group)");
        audit(
            tx,
            now,
            &Actor::Directory,
            AuditAction::DeviceUpdate,
            device,
            &detail,
        )
        .await?;
    }
    Ok(astray.len() as u64)
}

/// Changes one user as the directory says; what changed, for the audit log.
async fn change(tx: &mut Tx<'_>, c: &UserChange, groups: &HashMap<String, i64>) -> Result<String> {
    let mut said = Vec::new();
    if let Some(link) = &c.link {
        sqlx::query("UPDATE users SET directory_id = $1 WHERE id = $2")
            .bind(link)
            .bind(c.id)
            .execute(&mut **tx)
            .await?;
        said.push("linked to the directory".to_string());
    }
    if let Some(new) = &c.rename {
        rename(tx, c.id, &c.name, new).await?;
        said.push(format!("name={new}"));
    }
    if let Some(email) = &c.email {
        sqlx::query("UPDATE users SET email = $1 WHERE id = $2")
            .bind(email.as_ref().map(Email::as_str))
            .bind(c.id)
            .execute(&mut **tx)
            .await?;
        said.push(format!(
            "email={}",
            email.as_ref().map_or("", Email::as_str)
        ));
    }
    if let Some(group) = &c.group {
        let moved = move_to_group(tx, c.id, groups[&group.key()]).await?;
        said.push(format!("group={group} ({moved} devices moved)"));
    }
    Ok(said.join(" "))
}

#[derive(sqlx::FromRow)]
struct KnownRow {
    id: i64,
    name: String,
    email: Option<String>,
    directory_id: Option<String>,
    group_name: Option<String>,
    disabled_at: Option<i64>,
    disabled_by: Option<String>,
}

/// Every user, as the plan compares them.
async fn known_users(conn: &mut sqlx::AnyConnection) -> Result<Vec<Known>> {
    let rows: Vec<KnownRow> = sqlx::query_as(
        "SELECT u.id, u.name, u.email, u.directory_id, g.name AS group_name, u.disabled_at,
                u.disabled_by
         FROM users u LEFT JOIN groups g ON g.id = u.group_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Known {
                id: r.id,
                name: stored_name("users", r.id, &r.name)?,
                // An address stored by an older version that no longer parses is replaced.
                email: r.email.and_then(|e| Email::new(&e).ok()),
                directory_id: r.directory_id,
                group: r
                    .group_name
                    .map(|g| stored_name("groups", r.id, &g))
                    .transpose()?,
                disabled: r.disabled_at.is_some(),
                disabled_by_directory: r.disabled_by.as_deref() == Some("directory"),
            })
        })
        .collect()
}

/// Renames a user, and the links made out to them (which name their owner).
async fn rename(tx: &mut Tx<'_>, id: i64, old: &Name, new: &Name) -> Result<()> {
    sqlx::query("UPDATE users SET name = $1, name_key = $2 WHERE id = $3")
        .bind(new.as_str())
        .bind(new.key())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE enrollment_links SET owner = $1, owner_key = $2 WHERE owner_key = $3")
        .bind(new.as_str())
        .bind(new.key())
        .bind(old.key())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Puts a user and their devices in force into `group`; how many devices moved.
async fn move_to_group(tx: &mut Tx<'_>, user: i64, group: i64) -> Result<u64> {
    sqlx::query("UPDATE users SET group_id = $1 WHERE id = $2")
        .bind(group)
        .bind(user)
        .execute(&mut **tx)
        .await?;
    Ok(sqlx::query(
        "UPDATE devices SET group_id = $1
         WHERE owner_id = $2 AND revoked_at IS NULL AND group_id <> $1",
    )
    .bind(group)
    .bind(user)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

#[derive(Default)]
struct RunCounts {
    entries: usize,
    created: usize,
    changed: usize,
    disabled: usize,
    enabled: usize,
    skipped: usize,
}

async fn record_run(
    tx: &mut Tx<'_>,
    requested_by: &Actor,
    started_at: i64,
    now: i64,
    outcome: &str,
    run: &RunCounts,
    message: Option<&str>,
) -> Result<DirectoryRun> {
    let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO directory_runs (started_at, finished_at, requested_by, outcome, entries,
                                     created, changed, disabled, enabled, skipped, message)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
    )
    .bind(started_at)
    .bind(now)
    .bind(requested_by.to_string())
    .bind(outcome)
    .bind(n(run.entries))
    .bind(n(run.created))
    .bind(n(run.changed))
    .bind(n(run.disabled))
    .bind(n(run.enabled))
    .bind(n(run.skipped))
    .bind(message)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query(
        "DELETE FROM directory_runs
         WHERE id <= (SELECT MAX(id) FROM directory_runs) - $1",
    )
    .bind(RUNS_KEPT)
    .execute(&mut **tx)
    .await?;
    Ok(DirectoryRun {
        id,
        started_at,
        finished_at: now,
        requested_by: requested_by.to_string(),
        outcome: outcome.to_string(),
        entries: n(run.entries),
        created: n(run.created),
        changed: n(run.changed),
        disabled: n(run.disabled),
        enabled: n(run.enabled),
        skipped: n(run.skipped),
        message: message.map(str::to_string),
    })
}

#[derive(sqlx::FromRow)]
struct RunRow {
    id: i64,
    started_at: i64,
    finished_at: i64,
    requested_by: String,
    outcome: String,
    entries: i64,
    created: i64,
    changed: i64,
    disabled: i64,
    enabled: i64,
    skipped: i64,
    message: Option<String>,
}

impl From<RunRow> for DirectoryRun {
    fn from(r: RunRow) -> DirectoryRun {
        DirectoryRun {
            id: r.id,
            started_at: r.started_at,
            finished_at: r.finished_at,
            requested_by: r.requested_by,
            outcome: r.outcome,
            entries: r.entries,
            created: r.created,
            changed: r.changed,
            disabled: r.disabled,
            enabled: r.enabled,
            skipped: r.skipped,
            message: r.message,
        }
    }
}
