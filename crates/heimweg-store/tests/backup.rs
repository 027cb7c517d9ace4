//! Backups of the store: a consistent copy of the SQLite file while the store is written, the
//! checks a backup passes before a restore, and PostgreSQL's plain "use pg_dump".

backend_tests!(
    a_backup_taken_while_devices_enroll_is_consistent,
    an_existing_target_is_refused_and_left_as_it_is,
    a_backup_is_private_and_verified,
    damaged_foreign_and_newer_backups_are_refused,
);

use heimweg_control::{Actor, Name, PrivateKey};
use heimweg_store::testing::Scratch;
use heimweg_store::{backend_tests, Backend, DeviceQuery, NewDevice, Store, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const NOW: i64 = 1_795_000_000;

async fn fresh(backend: Backend, tag: &str) -> Option<(Scratch, Store)> {
    let db = Scratch::new(backend, tag).await?;
    let store = db.open().await;
    assert!(store
        .init_defaults([0x12, 0x34, 0x56, 0x78, 0x9a], NOW)
        .await
        .unwrap());
    Some((db, store))
}

/// A directory for this test's backups, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!(
            "heimweg-backup-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The names in the directory, sorted.
    fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn n(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn admin() -> Actor {
    Actor::Cli {
        user: "admin".into(),
    }
}

fn device(name: &str) -> NewDevice {
    NewDevice {
        name: n(name),
        group: n("default"),
        public_key: PrivateKey::generate().public_key(),
        preshared_key: None,
        owner: Some(n("m.muster")),
        expires_at: None,
    }
}

/// The SQLite file behind a scratch URL (`sqlite://PATH?mode=rwc`).
fn sqlite_path(db: &Scratch) -> PathBuf {
    let url = db.url().strip_prefix("sqlite://").unwrap();
    PathBuf::from(url.split_once('?').map_or(url, |(p, _)| p))
}

/// On PostgreSQL a backup is pg_dump's job: the store says so, with the command, and writes
/// nothing. True if the test is done (it was PostgreSQL).
async fn postgres_says_pg_dump(backend: Backend, store: &Store, dir: &Dir) -> bool {
    if backend != Backend::Postgres {
        return false;
    }
    let target = dir.join("pg.db");
    match store.backup_to(&target).await {
        Err(StoreError::Invalid(m)) => {
            assert!(m.contains("pg_dump --format=custom"), "{m}");
            assert!(m.contains("pg_restore"), "{m}");
            assert!(!m.contains("postgres://"), "no URL (password) in: {m}");
        }
        other => panic!("a PostgreSQL store answered a backup with {other:?}"),
    }
    assert!(dir.entries().is_empty(), "nothing written");
    true
}

async fn read_only(path: &Path) -> SqliteConnection {
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .unwrap()
}

/// What a backup holds, from its own tables: (devices, devices with both their addresses,
/// addresses held by devices, device.create audit entries, revision).
async fn contents(path: &Path) -> (i64, i64, i64, i64, i64) {
    let mut conn = read_only(path).await;
    let devices: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let whole: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM devices d WHERE
           EXISTS (SELECT 1 FROM addresses a WHERE a.family = 4 AND a.device_id = d.id
                   AND a.pool_offset = d.ipv4_offset AND a.released_at IS NULL)
       AND EXISTS (SELECT 1 FROM addresses a WHERE a.family = 6 AND a.device_id = d.id
                   AND a.pool_offset = d.ipv6_offset AND a.released_at IS NULL)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let held: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM addresses WHERE device_id IS NOT NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let audited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'device.create'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let revision: String = sqlx::query_scalar("SELECT value FROM settings WHERE key = 'revision'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    (devices, whole, held, audited, revision.parse().unwrap())
}

/// Enrolls devices one after another until told to stop; returns how many.
fn keep_enrolling(store: Arc<Store>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<i64> {
    tokio::spawn(async move {
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            store
                .add_device(&admin(), &device(&format!("dev-{i}")), NOW)
                .await
                .unwrap();
            i += 1;
        }
        i
    })
}

async fn wait_for_revision(store: &Store, at_least: i64) {
    for _ in 0..2000 {
        if store.revision().await.unwrap() >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the writer did not reach revision {at_least}");
}

async fn a_backup_taken_while_devices_enroll_is_consistent(backend: Backend) {
    let Some((db, store)) = fresh(backend, "bk_online").await else {
        return;
    };
    let dir = Dir::new("online");
    if postgres_says_pg_dump(backend, &store, &dir).await {
        return;
    }
    let store = Arc::new(store);
    let base = store.revision().await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = keep_enrolling(store.clone(), stop.clone());
    let mut taken = Vec::new();
    for (i, after) in [5, 40, 120].into_iter().enumerate() {
        wait_for_revision(&store, base + after).await;
        let target = dir.join(&format!("online-{i}.db"));
        let info = store.backup_to(&target).await.unwrap();
        taken.push((target, info));
        // The same through the file, as a restore keeps the database it replaces.
        let target = dir.join(&format!("file-{i}.db"));
        let info = Store::backup_file(&sqlite_path(&db), &target)
            .await
            .unwrap();
        taken.push((target, info));
    }
    // At least one more enrollment after the last backup: every backup is from the middle.
    wait_for_revision(&store, taken.last().unwrap().1.revision + 1).await;
    stop.store(true, Ordering::Relaxed);
    let enrolled = writer.await.unwrap();
    for (path, info) in &taken {
        assert_eq!(Store::verify_backup(path).await.unwrap(), *info);
        let (devices, whole, held, audited, revision) = contents(path).await;
        assert_eq!(revision, info.revision);
        // Each enrollment is one transaction that bumps the revision once: a consistent
        // snapshot has exactly as many devices, addresses and audit entries as revisions.
        assert_eq!(devices, revision - base, "{}", path.display());
        assert_eq!(whole, devices, "every device has both its addresses");
        assert_eq!(held, 2 * devices, "no address without its device");
        assert_eq!(audited, devices, "every enrollment audited, none more");
        assert_eq!(info.devices, devices as u64);
        assert!(devices > 0 && devices < enrolled, "taken while enrolling");
        assert_eq!(info.schema_version, heimweg_store::SCHEMA_VERSION);
    }
    // A backup opens as a store (what `heimweg restore` does next) and lists its devices.
    let (first, info) = &taken[0];
    let copy = dir.join("restored.db");
    std::fs::copy(first, &copy).unwrap();
    let restored = Store::open(&copy).await.unwrap();
    let page = restored
        .devices(&DeviceQuery::default(), NOW)
        .await
        .unwrap();
    assert_eq!(page.total, info.devices);
    assert_eq!(restored.revision().await.unwrap(), info.revision);
}

async fn an_existing_target_is_refused_and_left_as_it_is(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "bk_exists").await else {
        return;
    };
    let dir = Dir::new("exists");
    if postgres_says_pg_dump(backend, &store, &dir).await {
        return;
    }
    let target = dir.join("heimweg.backup");
    std::fs::write(&target, b"precious").unwrap();
    let err = store.backup_to(&target).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("exists")),
        "{err:?}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    // A symlink is not followed, and what it points to stays.
    let link = dir.join("link.backup");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(matches!(
        store.backup_to(&link).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    // A directory that does not exist: an error, nothing made.
    assert!(store
        .backup_to(&dir.join("missing/heimweg.backup"))
        .await
        .is_err());
    assert_eq!(
        dir.entries(),
        ["heimweg.backup", "link.backup"],
        "no leftovers"
    );
}

async fn a_backup_is_private_and_verified(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "bk_mode").await else {
        return;
    };
    let dir = Dir::new("mode");
    if postgres_says_pg_dump(backend, &store, &dir).await {
        return;
    }
    store
        .add_device(&admin(), &device("laptop"), NOW)
        .await
        .unwrap();
    // Whatever the directory allows, the backup holds preshared keys: 0600.
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let target = dir.join("heimweg.backup");
    let info = store.backup_to(&target).await.unwrap();
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(info.bytes, meta.len());
    assert_eq!(info.devices, 1);
    assert_eq!(info.revision, store.revision().await.unwrap());
    assert_eq!(dir.entries(), ["heimweg.backup"], "no temporary file left");
    // Checking a backup changes nothing in it.
    let before = std::fs::read(&target).unwrap();
    Store::verify_backup(&target).await.unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), before);
    assert_eq!(
        dir.entries(),
        ["heimweg.backup"],
        "no journal left by the check"
    );
}

async fn damaged_foreign_and_newer_backups_are_refused(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "bk_refuse").await else {
        return;
    };
    let dir = Dir::new("refuse");
    if postgres_says_pg_dump(backend, &store, &dir).await {
        return;
    }
    let good = dir.join("good.db");
    store.backup_to(&good).await.unwrap();
    let refused = |e: StoreError, what: &str| match e {
        StoreError::Invalid(m) => assert!(m.contains(what), "{m:?} lacks {what:?}"),
        e => panic!("{e:?}"),
    };

    let garbage = dir.join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    refused(
        Store::verify_backup(&garbage).await.unwrap_err(),
        "not a readable SQLite database",
    );
    let half = dir.join("half.db");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&half, &bytes[..bytes.len() / 2]).unwrap();
    assert!(Store::verify_backup(&half).await.is_err(), "a cut-off file");
    refused(
        Store::verify_backup(&dir.join("none.db"))
            .await
            .unwrap_err(),
        "none.db",
    );

    let foreign = dir.join("foreign.db");
    edit_copy(&good, &foreign, "DROP TABLE addresses").await;
    refused(
        Store::verify_backup(&foreign).await.unwrap_err(),
        "not one of heimweg's",
    );
    let newer = dir.join("newer.db");
    edit_copy(
        &good,
        &newer,
        "INSERT INTO heimweg_migrations (version, checksum) VALUES (999, 'future')",
    )
    .await;
    refused(Store::verify_backup(&newer).await.unwrap_err(), "newer");
    let edited = dir.join("edited.db");
    edit_copy(
        &good,
        &edited,
        "UPDATE heimweg_migrations SET checksum = 'x' WHERE version = 2",
    )
    .await;
    refused(Store::verify_backup(&edited).await.unwrap_err(), "differs");
    // An older backup is fine: opening it migrates it.
    let older = dir.join("older.db");
    let last = heimweg_store::SCHEMA_VERSION;
    edit_copy(
        &good,
        &older,
        &format!("DELETE FROM heimweg_migrations WHERE version = {last}"),
    )
    .await;
    let info = Store::verify_backup(&older).await.unwrap();
    assert_eq!(info.schema_version, last - 1);
}

/// A copy of `from` at `to` with one statement applied.
async fn edit_copy(from: &Path, to: &Path, sql: &str) {
    std::fs::copy(from, to).unwrap();
    let mut conn = SqliteConnectOptions::new()
        .filename(to)
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

/// The SQLite migrations up to 8, as the heimweg that shipped them applied and recorded them.
const OLD_MIGRATIONS: [&str; 8] = [
    include_str!("../../../migrations/sqlite/0001_init.sql"),
    include_str!("../../../migrations/sqlite/0002_api_tokens.sql"),
    include_str!("../../../migrations/sqlite/0003_enrollment_links.sql"),
    include_str!("../../../migrations/sqlite/0004_rotation_users_requests.sql"),
    include_str!("../../../migrations/sqlite/0005_token_parents.sql"),
    include_str!("../../../migrations/sqlite/0006_admins.sql"),
    include_str!("../../../migrations/sqlite/0007_name_keys.sql"),
    include_str!("../../../migrations/sqlite/0008_name_keys_unique.sql"),
];

/// Not per backend: an SQLite file written by an older heimweg (schema version 8) passes the
/// check, and opening it (what `heimweg restore` does last) migrates it, keeping its rows.
#[tokio::test]
async fn an_older_backup_passes_and_is_migrated_when_opened() {
    use sha2::{Digest, Sha256};
    let dir = Dir::new("older");
    let old = dir.join("old.db");
    let mut conn = SqliteConnectOptions::new()
        .filename(&old)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    for (i, sql) in OLD_MIGRATIONS.iter().enumerate() {
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        if i == 0 {
            sqlx::raw_sql("CREATE TABLE heimweg_migrations (version BIGINT PRIMARY KEY, checksum TEXT NOT NULL)")
                .execute(&mut conn)
                .await
                .unwrap();
        }
        sqlx::query("INSERT INTO heimweg_migrations (version, checksum) VALUES ($1, $2)")
            .bind(i as i64 + 1)
            .bind(hex::encode(Sha256::digest(sql.as_bytes())))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::raw_sql(
        "PRAGMA user_version = 8;
         INSERT INTO settings (key, value) VALUES ('revision', '41');
         INSERT INTO groups (id, name, name_key, allowed_prefixes, full_tunnel, dns, created_at)
             VALUES (7, 'Bauamt', 'bauamt', '10.20.0.0/16', 0, '', 1700000000);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let info = Store::verify_backup(&old).await.unwrap();
    assert_eq!((info.schema_version, info.revision), (8, 41));
    // What `heimweg restore` does after putting it in place: open it once, which migrates it.
    let placed = dir.join("heimweg.db");
    Store::backup_file(&old, &placed).await.unwrap();
    let store = Store::open(&placed).await.unwrap();
    assert_eq!(store.revision().await.unwrap(), 41);
    let groups = store.groups().await.unwrap();
    assert!(groups.iter().any(|g| g.name == "Bauamt"), "{groups:?}");
    drop(store);
    let migrated = Store::verify_backup(&placed).await.unwrap();
    assert_eq!(migrated.schema_version, heimweg_store::SCHEMA_VERSION);
}
