//! Upgrades: a database at every earlier schema version, holding what a gateway of that era
//! wrote, is migrated to the current version on both backends, and nothing is lost.
//!
//! Each database is built by hand: the migrations' SQL up to version k, the rows a gateway
//! at each version wrote (plain SQL, as that version's columns allowed), and the version
//! recorded the way heimweg of that era recorded it. Then [`Store::connect`] migrates it, and
//! every row must still be there and decode through the store's read API, addresses and pool
//! cursors must be unchanged, a new device must get a fresh address, and a second open must
//! change nothing. (An edited migration being refused is `a_changed_migration_is_refused` in
//! tests/store.rs.)
//!
//! A new migration needs a data step in [`STEPS`] (what a gateway at that version writes);
//! without one this test fails.

backend_tests!(
    every_earlier_schema_version_upgrades_with_its_data,
    names_that_differ_only_in_case_survive_the_upgrade,
);

use heimweg_control::name::name_key;
use heimweg_control::{Actor, Name, PresharedKey, PrivateKey, RequestStatus};
use heimweg_store::testing::Scratch;
use heimweg_store::{
    backend_tests, Backend, Device, DeviceQuery, NewDevice, Store, StoreError, SCHEMA_VERSION,
};
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Connection};
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

const NOW: i64 = 1_795_000_000;
const DAY: i64 = 86_400;
const POOL_V4: &str = "10.77.0.0/16";
const POOL_V6: &str = "fd12:3456:789a::/64";
const ENDPOINT: &str = "vpn.stadt.example:51820";
/// The address grace period the gateways were set up with (the default).
const GRACE: i64 = DAY;
/// The migration that brought name keys (and, after it, unique names without case); heimweg
/// from before it recorded the schema version only in `user_version` / `heimweg_schema`.
const NAME_KEYS: usize = 7;
/// Tables whose names are compared without case from migration 7 on.
const NAMED: [&str; 5] = ["devices", "users", "groups", "admins", "api_tokens"];

/// What a database at each schema version holds beyond what it held at the one before:
/// `STEPS[v - 1]` runs right after migration v, with the columns version v has.
const STEPS: &[fn(&mut Seed)] = &[
    v1_first_gateway,
    v2_api_tokens,
    v3_enrollment_links,
    v4_rotation_users_requests,
    v5_token_parents,
    v6_admins,
    v7_name_keys,
    v8_unique_name_keys,
    v9_peer_to_peer,
    v10_invitation_mail,
    v11_directory_sync,
    v12_identity_provider,
    v13_usage_windows,
    v14_shared_keys,
    v15_sign_in_to_connect,
    v16_staff_second_factor,
];

// ---------------------------------------------------------------------------------------
// The tests

/// Every version from 1 to the current one (the current one as a control: nothing to
/// migrate, so a failure there is the fixture's, not a migration's).
async fn every_earlier_schema_version_upgrades_with_its_data(backend: Backend) {
    run_versions(backend, 1..=SCHEMA_VERSION, false).await;
}

/// Before name keys two names could differ only in case (`Anna-iPad` and `anna-ipad`); both
/// records must survive migration 7, the first found by its name, the second listed.
async fn names_that_differ_only_in_case_survive_the_upgrade(backend: Backend) {
    run_versions(backend, 1..=NAME_KEYS - 1, true).await;
}

/// Upgrades from each version in `versions`, each on a blocking thread of its own (sqlx's
/// futures are not `Send` enough for `tokio::spawn`) so that one failure does not hide the
/// others; fails with every version that failed.
async fn run_versions(backend: Backend, versions: std::ops::RangeInclusive<usize>, twins: bool) {
    assert_eq!(
        STEPS.len(),
        SCHEMA_VERSION,
        "migration {} has no data step in tests/upgrade.rs: add to STEPS what a gateway at \
         that schema version writes, so that upgrades from it are tested",
        STEPS.len() + 1
    );
    let mut failures = Vec::new();
    for k in versions {
        let runtime = tokio::runtime::Handle::current();
        let upgrade = move || runtime.block_on(upgrade_from(backend, k, twins));
        if let Err(e) = tokio::task::spawn_blocking(upgrade).await {
            failures.push(format!("from schema version {k}: {}", panic_text(e)));
        }
    }
    assert!(
        failures.is_empty(),
        "upgrades on {backend:?}{} failed:\n{}",
        if twins {
            " with names differing only in case"
        } else {
            ""
        },
        failures.join("\n")
    );
}

fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_else(|| "a panic without a message".into()),
        Err(e) => e.to_string(),
    }
}

/// One upgrade: a database at version `k` with its data, migrated, checked, reopened.
async fn upgrade_from(backend: Backend, k: usize, twins: bool) {
    let tag = format!("upgrade_v{k}{}", if twins { "_twins" } else { "" });
    let Some(db) = Scratch::new(backend, &tag).await else {
        return;
    };
    let expect = build(backend, db.url(), k, twins).await;
    let before = Snapshot::take(db.url(), backend).await;
    let store = match Store::connect(db.url()).await {
        Ok(store) => store,
        Err(e) => {
            panic!("opening a {backend:?} database at schema version {k} (with data) failed: {e}")
        }
    };
    let after = Snapshot::take(db.url(), backend).await;
    before.assert_kept(&after);
    check_names_have_keys(db.url()).await;
    check_reads(&store, &expect).await;
    check_twins(&store, &expect).await;
    check_write(&store, &before, &expect).await;
    drop(store);
    check_reopen(db.url(), backend, &expect).await;
    eprintln!(
        "upgraded a {backend:?} database from schema version {k} to {SCHEMA_VERSION}{}",
        if twins { " (with case twins)" } else { "" }
    );
}

// ---------------------------------------------------------------------------------------
// Building a database at version k

/// Creates the schema of version `k`, the data of every version up to it, and the record of
/// the version; returns what was written.
async fn build(backend: Backend, url: &str, k: usize, twins: bool) -> Expected {
    install_drivers();
    let files = migration_files(backend);
    let mut conn = AnyConnection::connect(url)
        .await
        .expect("connect to scratch");
    if backend == Backend::Sqlite {
        // As the store's connections have it: the fixture must satisfy the foreign keys.
        exec(&mut conn, "PRAGMA foreign_keys = ON").await;
    }
    let mut seed = Seed::new(twins);
    for (v, (_, sql)) in files.iter().enumerate().take(k) {
        sqlx::raw_sql(sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("migration {} does not apply: {e}", v + 1));
        seed.at = v + 1;
        STEPS[v](&mut seed);
        for statement in std::mem::take(&mut seed.sql) {
            exec(&mut conn, &statement).await;
        }
    }
    for statement in seed.finish() {
        exec(&mut conn, &statement).await;
    }
    record_version(&mut conn, backend, &files, k).await;
    conn.close().await.expect("close");
    seed.expect
}

fn install_drivers() {
    sqlx::any::install_drivers(&[sqlx::sqlite::any::DRIVER, sqlx::postgres::any::DRIVER]).ok();
}

async fn exec(conn: &mut AnyConnection, sql: &str) {
    sqlx::raw_sql(sql)
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("fixture statement failed: {e}\n{sql}"));
}

/// The migrations heimweg ships for `backend`, in order: (file name, SQL).
fn migration_files(backend: Backend) -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../migrations")
        .join(match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        });
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("migration file"))
        })
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        SCHEMA_VERSION,
        "{} holds {} migrations, the store ships {SCHEMA_VERSION}",
        dir.display(),
        files.len()
    );
    files
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Records version `k` as heimweg of that era did. Before name keys (cb4738b and earlier):
/// SQLite's `user_version`, and on PostgreSQL one `heimweg_schema` row per applied migration.
/// From migration 7 on only with checksums in `heimweg_migrations`, beside the old markers
/// set to the version (what the current code writes).
async fn record_version(
    conn: &mut AnyConnection,
    backend: Backend,
    files: &[(String, String)],
    k: usize,
) {
    let versions: Vec<usize> = if k < NAME_KEYS {
        (1..=k).collect()
    } else {
        exec(
            conn,
            "CREATE TABLE heimweg_migrations (
                 version  BIGINT PRIMARY KEY,
                 checksum TEXT NOT NULL
             )",
        )
        .await;
        for (v, (_, sql)) in files.iter().enumerate().take(k) {
            let c = checksum(sql);
            let v = v + 1;
            exec(
                conn,
                &format!("INSERT INTO heimweg_migrations (version, checksum) VALUES ({v}, '{c}')"),
            )
            .await;
        }
        vec![k]
    };
    match backend {
        Backend::Sqlite => exec(conn, &format!("PRAGMA user_version = {k}")).await,
        Backend::Postgres => {
            exec(
                conn,
                "CREATE TABLE IF NOT EXISTS heimweg_schema (version BIGINT NOT NULL)",
            )
            .await;
            for v in versions {
                exec(conn, &format!("INSERT INTO heimweg_schema VALUES ({v})")).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The data, as gateways of each version wrote it

/// A device as the fixture enrolled it.
#[derive(Debug, Clone)]
struct Dev {
    name: String,
    group: String,
    owner: Option<String>,
    key: String,
    v4: i64,
    v6: i64,
    revoked: bool,
    rotated: bool,
}

/// What the fixture wrote: what the store must read back after the upgrade.
#[derive(Debug, Default)]
struct Expected {
    devices: Vec<Dev>,
    /// (name, disabled)
    users: Vec<(String, bool)>,
    /// (name, peer to peer)
    groups: Vec<(String, bool)>,
    /// (name, revoked)
    tokens: Vec<(String, bool)>,
    /// Enrollment links by device name.
    links: Vec<String>,
    /// (device name of the link, state) of each invitation mail.
    mails: Vec<(String, String)>,
    /// (device name, status)
    requests: Vec<(String, RequestStatus)>,
    admins: Vec<String>,
    /// (session id hash, admin name) of sessions that are live at `NOW`.
    sessions: Vec<(String, String)>,
    /// (group, schedule) of groups with a usage window.
    windows: Vec<(String, String)>,
    /// Users with an absence running at the era it was written in.
    absent: Vec<String>,
    /// Devices flagged for a shared key.
    shared_keys: usize,
    /// (group, hours) of groups that require sign in to connect.
    sign_in: Vec<(String, u8)>,
    audit: u64,
    revision: i64,
    /// (table, the first name, the later one differing only in case)
    twins: Vec<(&'static str, String, String)>,
}

/// The fixture under construction: the statements of the current step and the model.
struct Seed {
    /// Whether to write names that differ only in case (databases before name keys only).
    twins: bool,
    /// The schema version the current step writes for.
    at: usize,
    sql: Vec<String>,
    next_v4: i64,
    next_v6: i64,
    /// Every named row: (table, name), for the name-key backfill of version 7.
    named: Vec<(&'static str, String)>,
    /// Every link's owner: (device name, owner), for the owner-key backfill of version 10.
    link_owners: Vec<(String, String)>,
    expect: Expected,
}

/// `s` as an SQL string literal.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn q_opt(s: Option<&str>) -> String {
    s.map_or_else(|| "NULL".into(), q)
}

fn i_opt(i: Option<i64>) -> String {
    i.map_or_else(|| "NULL".into(), |i| i.to_string())
}

/// A device's public key, the same for a seed on every run.
fn key(seed: u8) -> String {
    PrivateKey::from_bytes([seed; 32]).public_key().to_base64()
}

fn sha(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn id_of(table: &str, name: &str) -> String {
    format!("(SELECT id FROM {table} WHERE name = {})", q(name))
}

impl Seed {
    fn new(twins: bool) -> Seed {
        Seed {
            twins,
            at: 0,
            sql: Vec::new(),
            next_v4: 2,
            next_v6: 2,
            named: Vec::new(),
            link_owners: Vec::new(),
            expect: Expected::default(),
        }
    }

    fn run(&mut self, sql: String) {
        self.sql.push(sql);
    }

    /// When the current version was in use: a month per version, all before `NOW`.
    fn era(&self) -> i64 {
        let months_ago = 13 - self.at.min(12) as i64;
        NOW - 30 * DAY * months_ago
    }

    /// Inserts a row with a name (and from version 7 on its key, as heimweg writes it).
    fn insert_named(&mut self, table: &'static str, name: &str, columns: &str, values: &str) {
        let (key_column, key_value) = if self.at >= NAME_KEYS {
            (", name_key", format!(", {}", q(&name_key(name))))
        } else {
            ("", String::new())
        };
        self.run(format!(
            "INSERT INTO {table} (name{key_column}, {columns}) VALUES ({}{key_value}, {values})",
            q(name)
        ));
        self.named.push((table, name.to_string()));
    }

    fn audit(&mut self, actor: &str, action: &str, subject: &str, detail: &str) {
        let at = self.era();
        self.run(format!(
            "INSERT INTO audit_log (at, actor, action, subject, detail) VALUES ({at}, {}, {}, {}, {})",
            q(actor),
            q(action),
            q(subject),
            q(detail)
        ));
        self.expect.audit += 1;
    }

    fn bump(&mut self) {
        self.expect.revision += 1;
    }

    fn setting(&mut self, key: &str, value: &str) {
        self.run(format!(
            "INSERT INTO settings (key, value) VALUES ({}, {})
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            q(key),
            q(value)
        ));
    }

    fn group(&mut self, name: &str, networks: &str, full: bool, dns: &str, audited: bool) {
        let peer = if self.at >= 9 { ", peer_to_peer" } else { "" };
        let peer_value = if self.at >= 9 { ", 0" } else { "" };
        let values = format!(
            "{}, {}, {}, {}{peer_value}",
            q(networks),
            i64::from(full),
            q(dns),
            self.era()
        );
        self.insert_named(
            "groups",
            name,
            &format!("allowed_prefixes, full_tunnel, dns, created_at{peer}"),
            &values,
        );
        self.expect.groups.push((name.into(), false));
        if audited {
            self.audit("cli:root", "group.create", name, networks);
            self.bump();
        }
    }

    /// A user as `upsert_user` made them (an owner named at enrollment), or with an e-mail
    /// as the users API makes them (audited, from version 4 on).
    fn user(&mut self, name: &str, email: Option<&str>) {
        if self.expect.users.iter().any(|(n, _)| n == name) {
            return;
        }
        let values = format!("{}, {}", q_opt(email), self.era());
        self.insert_named("users", name, "email, created_at", &values);
        self.expect.users.push((name.into(), false));
        if email.is_some() {
            self.audit("cli:root", "user.create", name, email.unwrap_or(""));
        }
    }

    /// Enrolls a device: the next offsets of both pools, its address rows, audited.
    fn device(&mut self, actor: &str, name: &str, group: &str, owner: Option<&str>, seed: u8) {
        if let Some(owner) = owner {
            self.user(owner, None);
        }
        let (v4, v6) = (self.next_v4, self.next_v6);
        self.next_v4 += 1;
        self.next_v6 += 1;
        let key = key(seed);
        let psk = (seed % 2 == 0).then(|| PresharedKey::from_bytes([seed; 32]).expose_base64());
        let values = format!(
            "{}, {}, {}, {}, {v4}, {v6}, {}",
            q(&key),
            q_opt(psk.as_deref()),
            id_of("groups", group),
            owner.map_or_else(|| "NULL".into(), |o| id_of("users", o)),
            self.era()
        );
        self.insert_named(
            "devices",
            name,
            "public_key, preshared_key, group_id, owner_id, ipv4_offset, ipv6_offset, created_at",
            &values,
        );
        for (family, offset) in [(4, v4), (6, v6)] {
            self.run(format!(
                "INSERT INTO addresses (family, pool_offset, device_id, released_at)
                 VALUES ({family}, {offset}, {}, NULL)",
                id_of("devices", name)
            ));
        }
        self.audit(actor, "device.create", name, &key);
        self.bump();
        self.expect.devices.push(Dev {
            name: name.into(),
            group: group.into(),
            owner: owner.map(Into::into),
            key,
            v4,
            v6,
            revoked: false,
            rotated: false,
        });
    }

    fn update_device(&mut self, name: &str, set: &str) {
        self.run(format!("UPDATE devices SET {set} WHERE name = {}", q(name)));
    }

    /// Revokes a device at `at`: its addresses start their grace period.
    fn revoke(&mut self, name: &str, at: i64, detail: &str) {
        self.update_device(name, &format!("revoked_at = {at}"));
        self.run(format!(
            "UPDATE addresses SET device_id = NULL, released_at = {at} WHERE device_id = {}",
            id_of("devices", name)
        ));
        self.audit("cli:root", "device.revoke", name, detail);
        self.bump();
        self.dev(name).revoked = true;
    }

    fn dev(&mut self, name: &str) -> &mut Dev {
        self.expect
            .devices
            .iter_mut()
            .find(|d| d.name == name)
            .expect("a seeded device")
    }

    fn token(&mut self, actor: &str, name: &str, scopes: &str, parent: Option<&str>) {
        let (parent_column, parent_value) = match parent {
            Some(p) => (", parent_id", format!(", {}", id_of("api_tokens", p))),
            None if self.at >= 5 => (", parent_id", ", NULL".to_string()),
            None => ("", String::new()),
        };
        let values = format!(
            "{}, {}, {}{parent_value}",
            q(&sha(&format!("token-{name}"))),
            q(scopes),
            self.era()
        );
        self.insert_named(
            "api_tokens",
            name,
            &format!("token_hash, scopes, created_at{parent_column}"),
            &values,
        );
        self.audit(actor, "token.create", name, scopes);
        self.expect.tokens.push((name.into(), false));
    }

    fn revoke_token(&mut self, name: &str, detail: &str) {
        let at = self.era();
        self.run(format!(
            "UPDATE api_tokens SET revoked_at = {at} WHERE name = {}",
            q(name)
        ));
        self.audit("cli:root", "token.revoke", name, detail);
        for t in &mut self.expect.tokens {
            if t.0 == name {
                t.1 = true;
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // one column each, as the table has them
    fn link(
        &mut self,
        secret: &str,
        device: &str,
        group: &str,
        owner: Option<&str>,
        expires_at: i64,
        used_at: Option<i64>,
        revoked_at: Option<i64>,
    ) {
        // From version 10 a link keeps its owner's name key (older ones get it by backfill).
        let (key_col, key) = if self.at >= 10 {
            (
                ", owner_key",
                format!(", {}", q_opt(owner.map(name_key).as_deref())),
            )
        } else {
            ("", String::new())
        };
        self.run(format!(
            "INSERT INTO enrollment_links (token_hash, device_name, group_id, owner, created_by,
                                           created_at, expires_at, used_at, revoked_at{key_col})
             VALUES ({}, {}, {}, {}, 'cli:root', {}, {expires_at}, {}, {}{key})",
            q(&sha(secret)),
            q(device),
            id_of("groups", group),
            q_opt(owner),
            self.era(),
            i_opt(used_at),
            i_opt(revoked_at)
        ));
        self.audit("cli:root", "link.create", device, "");
        self.expect.links.push(device.into());
        if let Some(o) = owner {
            self.link_owners.push((device.into(), o.into()));
        }
    }

    /// What heimweg keeps in settings besides what the first step wrote: the pool cursors
    /// and the revision, as they stand after every step.
    fn finish(&mut self) -> Vec<String> {
        let (v4, v6, revision) = (self.next_v4, self.next_v6, self.expect.revision);
        self.setting("pool_v4_next", &v4.to_string());
        self.setting("pool_v6_next", &v6.to_string());
        self.setting("revision", &revision.to_string());
        std::mem::take(&mut self.sql)
    }

    /// Names the later of two rows that differ only in case (when this fixture has them).
    fn twin(&mut self, table: &'static str, first: &str, second: &str) -> bool {
        assert!(
            self.at < NAME_KEYS || !self.twins,
            "twins exist only before name keys"
        );
        if self.twins {
            self.expect.twins.push((table, first.into(), second.into()));
        }
        self.twins
    }
}

/// Version 1 (ec2cb9e): a gateway set up with its defaults, an endpoint, groups, devices of
/// staff (one expired, one revoked an hour ago) and their addresses, the audit trail.
fn v1_first_gateway(s: &mut Seed) {
    for (k, v) in [
        ("pool_v4", POOL_V4),
        ("pool_v6", POOL_V6),
        ("mtu", "1280"),
        ("address_grace_s", "86400"),
        ("revision", "0"),
    ] {
        s.setting(k, v);
    }
    // The default group of those versions reached the device pools.
    s.group("default", &format!("{POOL_V4},{POOL_V6}"), false, "", false);
    s.audit("system", "init", "gateway", "");
    s.setting("endpoint", ENDPOINT);
    s.audit("cli:root", "settings.endpoint", ENDPOINT, "");
    s.bump();
    s.group(
        "Verwaltung",
        "10.20.0.0/16,192.168.50.0/24",
        false,
        "10.20.0.53,verwaltung.stadt.example",
        true,
    );
    s.group("Außendienst", "0.0.0.0/0,::/0", true, "10.20.0.53", true);
    s.device("cli:root", "Anna-iPad", "default", Some("m.muster"), 10);
    s.update_device(
        "Anna-iPad",
        &format!(
            "last_handshake_at = {}, last_endpoint = '203.0.113.7:51820'",
            NOW - 90
        ),
    );
    s.device(
        "cli:root",
        "Laptop-Bauamt-07",
        "Verwaltung",
        Some("j.schmidt"),
        11,
    );
    s.update_device(
        "Laptop-Bauamt-07",
        &format!("expires_at = {}", NOW + 90 * DAY),
    );
    s.device(
        "cli:root",
        "Jürgens-Laptop",
        "Außendienst",
        Some("jürgen.groß"),
        12,
    );
    s.update_device("Jürgens-Laptop", &format!("expires_at = {}", NOW - DAY));
    s.device("cli:root", "Altgerät", "default", Some("j.schmidt"), 13);
    s.revoke("Altgerät", NOW - 3600, "");
    if s.twin("devices", "Anna-iPad", "anna-ipad") {
        s.twin("users", "m.muster", "M.Muster");
        s.device("cli:root", "anna-ipad", "default", Some("M.Muster"), 14);
    }
    if s.twin("groups", "Verwaltung", "verwaltung") {
        s.group("verwaltung", "10.21.0.0/16", false, "", true);
    }
}

/// Version 2 (5923604): API tokens, and a device enrolled through the API.
fn v2_api_tokens(s: &mut Seed) {
    s.token(
        "cli:root",
        "ansible",
        "devices:read devices:write groups:read",
        None,
    );
    s.token("cli:root", "monitoring", "devices:read audit:read", None);
    s.device(
        "token:ansible",
        "Tablet-Kita-3",
        "default",
        Some("k.weber"),
        15,
    );
    if s.twin("api_tokens", "ansible", "Ansible") {
        s.token("cli:root", "Ansible", "devices:read", None);
    }
}

/// Version 3 (fb2429b): enrollment links, one open, one redeemed (its device exists), one
/// withdrawn.
fn v3_enrollment_links(s: &mut Seed) {
    let era = s.era();
    s.link(
        "link-open",
        "Handy-Ordnungsamt",
        "default",
        Some("k.weber"),
        NOW + 72 * 3600,
        None,
        None,
    );
    s.link(
        "link-used",
        "Laptop-Schule-12",
        "Verwaltung",
        Some("k.weber"),
        era + 72 * 3600,
        Some(era + 600),
        None,
    );
    s.device(
        "link:2:cli:root",
        "Laptop-Schule-12",
        "Verwaltung",
        Some("k.weber"),
        16,
    );
    s.link(
        "link-withdrawn",
        "Alt-Handy",
        "default",
        None,
        era + 72 * 3600,
        None,
        Some(era + 60),
    );
    s.audit("cli:root", "link.revoke", "Alt-Handy", "");
}

/// Version 4 (f3b7f29): a rotated key, a moved device, users with e-mail, a leaver disabled
/// with their device, a revoked token, access requests in every state.
fn v4_rotation_users_requests(s: &mut Seed) {
    let era = s.era();
    let new_key = key(21);
    s.update_device(
        "Laptop-Bauamt-07",
        &format!(
            "public_key = {}, preshared_key = NULL, key_rotated_at = {era},
             last_handshake_at = NULL, last_endpoint = NULL",
            q(&new_key)
        ),
    );
    s.audit("cli:root", "device.rotate", "Laptop-Bauamt-07", &new_key);
    s.bump();
    let d = s.dev("Laptop-Bauamt-07");
    d.key = new_key;
    d.rotated = true;
    s.update_device(
        "Tablet-Kita-3",
        &format!("group_id = {}", id_of("groups", "Verwaltung")),
    );
    s.audit(
        "cli:root",
        "device.update",
        "Tablet-Kita-3",
        "group=Verwaltung",
    );
    s.bump();
    s.dev("Tablet-Kita-3").group = "Verwaltung".into();
    s.user("l.becker", Some("l.becker@stadt.example"));
    // A leaver: disabled, their device revoked with them.
    s.user("p.alt", Some("p.alt@stadt.example"));
    s.device("cli:root", "PC-Alt", "default", Some("p.alt"), 17);
    s.run(format!(
        "UPDATE users SET disabled_at = {era} WHERE name = 'p.alt'"
    ));
    s.revoke("PC-Alt", era, "user disabled");
    s.audit("cli:root", "user.disable", "p.alt", "1 devices revoked");
    s.bump();
    for u in &mut s.expect.users {
        if u.0 == "p.alt" {
            u.1 = true;
        }
    }
    s.revoke_token("monitoring", "0 tokens minted from it revoked too");
    v4_access_requests(s);
}

fn v4_access_requests(s: &mut Seed) {
    let era = s.era();
    let request = |s: &mut Seed, secret: &str, device: &str, status: RequestStatus| {
        s.run(format!(
            "INSERT INTO access_requests (request_hash, link_hash, requester, contact,
                                          device_name, reason, status, created_at)
             VALUES ({}, {}, 'l.becker', 'l.becker@stadt.example', {}, 'Bereitschaftsdienst',
                     'pending', {era})",
            q(&sha(&format!("request-{secret}"))),
            q(&sha(&format!("link-{secret}"))),
            q(device)
        ));
        s.audit("request:l.becker", "request.create", device, "");
        s.expect.requests.push((device.into(), status));
    };
    request(s, "a", "Handy-Bereitschaft", RequestStatus::Pending);
    request(s, "b", "Laptop-Becker", RequestStatus::Approved);
    request(s, "c", "Privat-PC", RequestStatus::Rejected);
    // Approved: its link (the hash the requester's secret derives) becomes valid.
    s.run(format!(
        "INSERT INTO enrollment_links (token_hash, device_name, group_id, owner, created_by,
                                       created_at, expires_at)
         VALUES ({}, 'Laptop-Becker', {}, 'l.becker', 'cli:root', {era}, {})",
        q(&sha("link-b")),
        id_of("groups", "Verwaltung"),
        NOW + 72 * 3600
    ));
    s.audit("cli:root", "link.create", "Laptop-Becker", "");
    s.expect.links.push("Laptop-Becker".into());
    s.link_owners
        .push(("Laptop-Becker".into(), "l.becker".into()));
    s.run(format!(
        "UPDATE access_requests SET status = 'approved', decided_at = {era},
                decided_by = 'cli:root',
                link_id = (SELECT id FROM enrollment_links WHERE token_hash = {})
         WHERE device_name = 'Laptop-Becker'",
        q(&sha("link-b"))
    ));
    s.audit("cli:root", "request.approve", "Laptop-Becker", "Verwaltung");
    s.run(format!(
        "UPDATE access_requests SET status = 'rejected', decided_at = {era},
                decided_by = 'cli:root'
         WHERE device_name = 'Privat-PC'"
    ));
    s.audit("cli:root", "request.reject", "Privat-PC", "");
}

/// Version 5 (3e2a269): tokens minted by a token, one of them revoked since.
fn v5_token_parents(s: &mut Seed) {
    s.token(
        "token:ansible",
        "ci-deploy",
        "devices:read",
        Some("ansible"),
    );
    s.token("token:ansible", "ci-alt", "devices:read", Some("ansible"));
    s.revoke_token("ci-alt", "0 tokens minted from it revoked too");
}

/// Version 6 (fa7387a): panel accounts with a second factor, recovery codes, sessions, a
/// disabled account.
fn v6_admins(s: &mut Seed) {
    let era = s.era();
    let admin = |s: &mut Seed, name: &str, role: &str, totp: Option<&str>| {
        let values = format!(
            "'$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA', \
             {}, {}, {era}",
            q(role),
            q_opt(totp)
        );
        s.insert_named(
            "admins",
            name,
            "password_hash, role, totp_sealed, created_at",
            &values,
        );
        s.audit("cli:root", "admin.create", name, role);
        s.expect.admins.push(name.into());
    };
    admin(
        s,
        "admin",
        "admin",
        Some("v1:bm9uY2Vub25jZQ:c2VhbGVkc2VhbGVk"),
    );
    admin(s, "helpdesk", "helpdesk", None);
    admin(s, "ex-admin", "admin", None);
    s.run(format!(
        "UPDATE admins SET totp_last_step = {}, failed_logins = 2 WHERE name = 'admin'",
        NOW / 30 - 10
    ));
    s.run(format!(
        "UPDATE admins SET disabled_at = {era} WHERE name = 'ex-admin'"
    ));
    s.audit("cli:root", "admin.disable", "ex-admin", "");
    for (code, used) in [("code-1", "NULL".to_string()), ("code-2", era.to_string())] {
        s.run(format!(
            "INSERT INTO admin_recovery_codes (admin_id, code_hash, used_at)
             VALUES ({}, {}, {used})",
            id_of("admins", "admin"),
            q(&sha(code))
        ));
    }
    for (id, name, stage) in [
        ("s-admin", "admin", "full"),
        ("s-help", "helpdesk", "password"),
    ] {
        s.run(format!(
            "INSERT INTO admin_sessions (id_hash, admin_id, stage, csrf_token, created_at,
                                         last_seen_at, expires_at)
             VALUES ({}, {}, '{stage}', 'csrf-{id}', {}, {}, {})",
            q(&sha(id)),
            id_of("admins", name),
            NOW - 600,
            NOW - 60,
            NOW + 3600
        ));
        s.audit(&format!("admin:{name}"), "admin.login", name, "password");
        s.expect.sessions.push((sha(id), name.into()));
    }
    if s.twin("admins", "helpdesk", "Helpdesk") {
        admin(s, "Helpdesk", "helpdesk", None);
    }
}

/// Version 7 (5344c3b): heimweg filled the name keys of every named row in Rust.
fn v7_name_keys(s: &mut Seed) {
    for (table, name) in s.named.clone() {
        s.run(format!(
            "UPDATE {table} SET name_key = {} WHERE name = {}",
            q(&name_key(&name)),
            q(&name)
        ));
    }
}

/// Version 8 (5344c3b): names unique without case; a device and a user written with keys.
fn v8_unique_name_keys(s: &mut Seed) {
    s.user("s.neumann", Some("s.neumann@stadt.example"));
    s.device("cli:root", "Drucker-Foyer", "default", None, 18);
    s.device(
        "admin:admin",
        "Tablet-Standesamt",
        "Verwaltung",
        Some("s.neumann"),
        19,
    );
}

/// Version 9 (ef391a0): a group whose devices reach each other.
fn v9_peer_to_peer(s: &mut Seed) {
    s.group("Leitstelle", "10.30.0.0/16", false, "10.30.0.53", true);
    s.run("UPDATE groups SET peer_to_peer = 1 WHERE name = 'Leitstelle'".into());
    s.audit(
        "cli:root",
        "group.update",
        "Leitstelle",
        "allowed=10.30.0.0/16 full_tunnel=false dns=10.30.0.53 peer_to_peer=true",
    );
    s.bump();
    for g in &mut s.expect.groups {
        if g.0 == "Leitstelle" {
            g.1 = true;
        }
    }
    s.device(
        "cli:root",
        "Leitstelle-PC-1",
        "Leitstelle",
        Some("m.muster"),
        20,
    );
    s.device(
        "cli:root",
        "Leitstelle-PC-2",
        "Leitstelle",
        Some("m.muster"),
        22,
    );
}

/// Version 10: invitations by mail. A link mailed and opened, and a reminder still queued for
/// an older link (its sealed secret held until it is sent).
fn v10_invitation_mail(s: &mut Seed) {
    // What heimweg did right after the migration: each link's owner key.
    for (device, owner) in s.link_owners.clone() {
        s.run(format!(
            "UPDATE enrollment_links SET owner_key = {} WHERE device_name = {}",
            q(&name_key(&owner)),
            q(&device)
        ));
    }
    let era = s.era();
    s.link(
        "link-mailed",
        "Laptop-Neu",
        "Verwaltung",
        Some("l.becker"),
        NOW + 72 * 3600,
        None,
        None,
    );
    s.run(format!(
        "UPDATE enrollment_links SET opened_at = {era} WHERE device_name = 'Laptop-Neu'"
    ));
    for (device, state, sealed, reminder) in [
        ("Laptop-Neu", "sent", "NULL", 0),
        ("Handy-Ordnungsamt", "queued", "'c2VhbGVk'", 1),
    ] {
        s.run(format!(
            "INSERT INTO invitation_mails (link_id, recipient, reminder, state, attempts,
                                           next_attempt_at, sealed_secret, message_id,
                                           queued_by, queued_at, sent_at)
             VALUES ((SELECT id FROM enrollment_links WHERE device_name = {}),
                     'l.becker@stadt.example', {reminder}, {}, 1, {era}, {sealed},
                     '<m@stadt.example>', 'cli:root', {era}, {})",
            q(device),
            q(state),
            if state == "sent" {
                era.to_string()
            } else {
                "NULL".into()
            }
        ));
        s.expect.mails.push((device.into(), state.into()));
    }
    s.audit(
        "cli:root",
        "link.remind",
        "Handy-Ordnungsamt",
        "l.becker@stadt.example",
    );
}

/// Version 11: directory sync. A user linked to a directory entry and put in a group by it, a
/// leaver it disabled, and the runs that did so.
fn v11_directory_sync(s: &mut Seed) {
    let era = s.era();
    s.run(
        "UPDATE users SET directory_id = '5b1f0c3e-0d1e-4c7a-9a55-1f2e3d4c5b6a',
                          group_id = (SELECT id FROM groups WHERE name = 'Leitstelle')
         WHERE name = 'm.muster'"
            .to_string(),
    );
    s.user("k.weg", Some("k.weg@stadt.example"));
    s.run(format!(
        "UPDATE users SET directory_id = '0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b',
                          disabled_at = {era}, disabled_by = 'directory'
         WHERE name = 'k.weg'"
    ));
    for (outcome, disabled, message) in [("ok", 1, "NULL"), ("refused", 0, "'refused: 40 of 41'")] {
        s.run(format!(
            "INSERT INTO directory_runs (started_at, finished_at, requested_by, outcome, entries,
                                         created, changed, disabled, enabled, skipped, message)
             VALUES ({era}, {era}, 'system', '{outcome}', 41, 1, 1, {disabled}, 0, 0, {message})"
        ));
    }
    s.audit("directory", "user.disable", "k.weg", "0 devices revoked");
    s.bump();
    for u in &mut s.expect.users {
        if u.0 == "k.weg" {
            u.1 = true;
        }
    }
}

/// Sign-in through the identity provider: a user and a panel account linked to the
/// provider's subjects (the account without a password), a staff session and a sign-in in
/// flight.
fn v12_identity_provider(s: &mut Seed) {
    let era = s.era();
    s.user("a.sso", Some("a.sso@stadt.example"));
    s.run("UPDATE users SET oidc_subject = 'sub-a-sso-1' WHERE name = 'a.sso'".to_string());
    s.insert_named(
        "admins",
        "it-sso",
        "password_hash, role, created_at, oidc_subject",
        &format!("'', 'admin', {era}, 'sub-it-sso-2'"),
    );
    s.audit(
        "admin:it-sso",
        "admin.create",
        "it-sso",
        "admin (identity provider)",
    );
    s.expect.admins.push("it-sso".into());
    s.run(format!(
        "INSERT INTO staff_sessions (id_hash, user_id, groups, csrf_token, created_at, expires_at)
         SELECT 'staff-session-hash', id, 'Leitstelle', 'csrf', {era}, {era} + 3600
         FROM users WHERE name = 'a.sso'"
    ));
    s.run(format!(
        "INSERT INTO oidc_logins (id_hash, state, nonce, pkce_verifier, purpose, next, created_at)
         VALUES ('sign-in-hash', 'state', 'nonce', 'verifier', 'staff', '/my', {era})"
    ));
    s.audit("staff:a.sso", "user.sign_in", "a.sso", "");
}

/// Access in time: a group limited to office hours with a closed date, and a user's absence
/// entered by an admin.
fn v13_usage_windows(s: &mut Seed) {
    let era = s.era();
    s.run(
        "UPDATE groups SET window_schedule = 'Mon-Fri 06:00-20:00', window_zone = 'Europe/Berlin',
                           window_closed = '2026-12-24'
         WHERE name = 'Leitstelle'"
            .to_string(),
    );
    s.audit(
        "admin:it-sso",
        "group.update",
        "Leitstelle",
        "window=Mon-Fri 06:00-20:00 (Europe/Berlin), closed 2026-12-24",
    );
    s.run(format!(
        "INSERT INTO absences (user_id, starts_at, ends_at, reason, created_by, created_at)
         SELECT id, {era}, {era} + 86400, 'Elternzeit', 'admin:it-sso', {era}
         FROM users WHERE name = 'a.sso'"
    ));
    s.audit("admin:it-sso", "absence.create", "a.sso", "user absent");
    s.bump();
    s.expect
        .windows
        .push(("Leitstelle".into(), "Mon-Fri 06:00-20:00".into()));
    s.expect.absent.push("a.sso".into());
}

/// One key, one device: a device whose key the gateway saw used from two places.
fn v14_shared_keys(s: &mut Seed) {
    let era = s.era();
    s.run(format!(
        "UPDATE devices SET shared_key_at = {era}
         WHERE id = (SELECT MIN(id) FROM devices WHERE revoked_at IS NULL)"
    ));
    s.audit(
        "system",
        "device.shared_key",
        "Laptop-Neu",
        "used from 198.51.100.7 and 203.0.113.9 at once",
    );
    s.expect.shared_keys = 1;
}

/// Sign in to connect: a group that requires it, a sign-in to connect in flight, and a
/// staff member's activation.
fn v15_sign_in_to_connect(s: &mut Seed) {
    let era = s.era();
    s.run("UPDATE groups SET sign_in_hours = 8 WHERE name = 'Leitstelle'".to_string());
    s.audit(
        "admin:it-sso",
        "group.update",
        "Leitstelle",
        "sign_in_hours=8",
    );
    s.run(format!(
        "INSERT INTO oidc_logins (id_hash, state, nonce, pkce_verifier, purpose, next, created_at)
         VALUES ('connect-hash', 'state', 'nonce', 'verifier', 'connect', '/my', {era})"
    ));
    s.run(format!(
        "INSERT INTO activations (user_id, starts_at, ends_at, created_by)
         SELECT id, {era}, {era} + 28800, 'staff:a.sso' FROM users WHERE name = 'a.sso'"
    ));
    s.audit("staff:a.sso", "activation.start", "a.sso", "");
    s.bump();
    s.expect.sign_in.push(("Leitstelle".into(), 8));
}

/// A staff member who signs in with the directory password, with a second factor set up.
fn v16_staff_second_factor(s: &mut Seed) {
    let era = s.era();
    s.run(format!(
        "INSERT INTO staff_factors (user_id, totp_sealed, totp_last_step, failed_codes, created_at)
         SELECT id, 'sealed-secret', {step}, 2, {era} FROM users WHERE name = 'a.sso'",
        step = era / 30
    ));
    s.audit("staff:a.sso", "user.totp_on", "a.sso", "");
    s.bump();
}

// ---------------------------------------------------------------------------------------
// Checks

/// The rows of a database as they are stored, read past the store.
#[derive(Debug, PartialEq)]
struct Snapshot {
    /// Rows per table (heimweg's version records left out).
    counts: Vec<(String, i64)>,
    settings: Vec<(String, String)>,
    /// (family, offset, device, released at)
    addresses: Vec<(i64, i64, Option<i64>, Option<i64>)>,
    /// (id, name, public key, IPv4 offset, IPv6 offset, revoked at)
    devices: Vec<(i64, String, String, i64, i64, Option<i64>)>,
}

impl Snapshot {
    async fn take(url: &str, backend: Backend) -> Snapshot {
        install_drivers();
        let mut conn = AnyConnection::connect(url).await.expect("connect");
        let tables: Vec<String> = sqlx::query_scalar(match backend {
            Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
            Backend::Postgres => {
                "SELECT CAST(tablename AS TEXT) FROM pg_tables
                 WHERE schemaname = current_schema() ORDER BY tablename"
            }
        })
        .fetch_all(&mut conn)
        .await
        .expect("tables");
        let mut counts = Vec::new();
        for t in tables.into_iter().filter(|t| !t.starts_with("heimweg_")) {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {t}"))
                .fetch_one(&mut conn)
                .await
                .expect("count");
            counts.push((t, n));
        }
        let snapshot = Snapshot {
            counts,
            settings: sqlx::query_as("SELECT key, value FROM settings ORDER BY key")
                .fetch_all(&mut conn)
                .await
                .expect("settings"),
            addresses: sqlx::query_as(
                "SELECT family, pool_offset, device_id, released_at FROM addresses
                 ORDER BY family, pool_offset",
            )
            .fetch_all(&mut conn)
            .await
            .expect("addresses"),
            devices: sqlx::query_as(
                "SELECT id, name, public_key, ipv4_offset, ipv6_offset, revoked_at FROM devices
                 ORDER BY id",
            )
            .fetch_all(&mut conn)
            .await
            .expect("devices"),
        };
        conn.close().await.expect("close");
        snapshot
    }

    /// Every table that existed before still has its rows; settings (the pool cursors, the
    /// revision), addresses and devices are unchanged.
    fn assert_kept(&self, after: &Snapshot) {
        for (table, n) in &self.counts {
            let now = after
                .counts
                .iter()
                .find(|(t, _)| t == table)
                .map(|(_, n)| *n);
            assert_eq!(
                now,
                Some(*n),
                "the upgrade changed how many rows {table} holds"
            );
        }
        assert_eq!(
            self.settings, after.settings,
            "the upgrade changed settings"
        );
        assert_eq!(
            self.addresses, after.addresses,
            "the upgrade changed addresses"
        );
        assert_eq!(self.devices, after.devices, "the upgrade changed devices");
    }

    /// Offsets no new device may get: held, or released within the grace period.
    fn taken(&self) -> HashSet<(i64, i64)> {
        self.addresses
            .iter()
            .filter(|(_, _, device, released)| {
                device.is_some() || released.is_some_and(|r| r > NOW - GRACE)
            })
            .map(|(family, offset, _, _)| (*family, *offset))
            .collect()
    }
}

/// Every named row has its comparison key after the upgrade.
async fn check_names_have_keys(url: &str) {
    let mut conn = AnyConnection::connect(url).await.expect("connect");
    for table in NAMED {
        let missing: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {table} WHERE name_key IS NULL"
        ))
        .fetch_one(&mut conn)
        .await
        .expect("count");
        assert_eq!(
            missing, 0,
            "{table}: rows without a name key after the upgrade"
        );
    }
    let missing: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM enrollment_links WHERE owner IS NOT NULL AND owner_key IS NULL",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert_eq!(
        missing, 0,
        "links without their owner's key after the upgrade"
    );
    conn.close().await.expect("close");
}

fn pools() -> (ipnet::Ipv4Net, ipnet::Ipv6Net) {
    (POOL_V4.parse().unwrap(), POOL_V6.parse().unwrap())
}

fn v4_at(offset: i64) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(pools().0.network()) + u32::try_from(offset).unwrap())
}

fn v6_at(offset: i64) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(pools().1.network()) + u128::try_from(offset).unwrap())
}

fn n(s: &str) -> Name {
    Name::new(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// Everything the fixture wrote reads back through the store.
async fn check_reads(store: &Store, e: &Expected) {
    let settings = store.settings().await.expect("settings decode");
    let (pool_v4, pool_v6) = pools();
    assert_eq!(settings.pool_v4, pool_v4);
    assert_eq!(settings.pool_v6, pool_v6);
    assert_eq!(settings.mtu, 1280);
    assert_eq!(settings.address_grace.as_secs(), GRACE as u64);
    assert_eq!(
        settings.endpoint.map(|p| p.to_string()).as_deref(),
        Some(ENDPOINT)
    );
    let revision = store.revision().await.expect("revision");
    assert!(
        revision >= e.revision,
        "the revision went back from {} to {revision}",
        e.revision
    );
    check_devices(store, e).await;
    check_people(store, e).await;
    check_access(store, e).await;
    check_time(store, e).await;
    let audit = store.audit_entries(None, 1, 0).await.expect("audit").total;
    assert_eq!(audit, e.audit, "audit entries");
    let entries = store
        .audit_log(10_000)
        .await
        .expect("every audit entry decodes");
    assert_eq!(entries.len() as u64, e.audit);
}

/// Usage windows decode as written; absences are listed with their user.
async fn check_time(store: &Store, e: &Expected) {
    let groups = store.groups().await.expect("every group decodes");
    let windows: Vec<(String, String)> = groups
        .iter()
        .filter_map(|g| {
            g.window
                .as_ref()
                .map(|w| (g.name.to_string(), w.schedule()))
        })
        .collect();
    assert_eq!(windows, e.windows, "usage windows");
    let absent: Vec<String> = store
        .absences(0)
        .await
        .expect("every absence decodes")
        .into_iter()
        .map(|a| match a.of {
            heimweg_store::AbsenceOf::User(n) | heimweg_store::AbsenceOf::Device(n) => {
                n.to_string()
            }
        })
        .collect();
    assert_eq!(absent, e.absent, "absences");
    let flagged = all_devices(store)
        .await
        .values()
        .filter(|d| d.shared_key_at.is_some())
        .count();
    assert_eq!(flagged, e.shared_keys, "devices flagged for a shared key");
    let sign_in: Vec<(String, u8)> = store
        .groups()
        .await
        .expect("every group decodes")
        .into_iter()
        .filter_map(|g| g.sign_in_hours.map(|h| (g.name.to_string(), h)))
        .collect();
    assert_eq!(sign_in, e.sign_in, "groups that require sign in to connect");
}

async fn all_devices(store: &Store) -> HashMap<String, Device> {
    let q = DeviceQuery {
        status: None,
        limit: 500,
        ..DeviceQuery::default()
    };
    let page = store.devices(&q, NOW).await.expect("every device decodes");
    assert_eq!(
        page.total as usize,
        page.items.len(),
        "fewer than 500 devices"
    );
    page.items
        .into_iter()
        .map(|d| (d.name.as_str().to_string(), d))
        .collect()
}

async fn check_devices(store: &Store, e: &Expected) {
    let devices = all_devices(store).await;
    assert_eq!(devices.len(), e.devices.len(), "devices listed");
    for want in &e.devices {
        let got = devices
            .get(&want.name)
            .unwrap_or_else(|| panic!("device {:?} is gone", want.name));
        assert_eq!(got.ipv4, v4_at(want.v4), "{}: IPv4 address", want.name);
        assert_eq!(got.ipv6, v6_at(want.v6), "{}: IPv6 address", want.name);
        assert_eq!(got.public_key.to_base64(), want.key, "{}: key", want.name);
        assert_eq!(got.group.as_str(), want.group, "{}: group", want.name);
        assert_eq!(
            got.owner.as_ref().map(Name::as_str),
            want.owner.as_deref(),
            "{}: owner",
            want.name
        );
        assert_eq!(
            got.revoked_at.is_some(),
            want.revoked,
            "{}: revoked",
            want.name
        );
        assert_eq!(
            got.key_rotated_at.is_some(),
            want.rotated,
            "{}: rotated",
            want.name
        );
    }
    let peers = store.unrevoked_peers().await.expect("peers decode");
    let live = e.devices.iter().filter(|d| !d.revoked).count();
    assert_eq!(peers.len(), live, "unrevoked peers");
}

async fn check_people(store: &Store, e: &Expected) {
    let users = store.users(None, 500, 0, NOW).await.expect("users decode");
    let got: HashSet<(String, bool)> = users
        .items
        .iter()
        .map(|u| (u.name.as_str().to_string(), u.disabled_at.is_some()))
        .collect();
    let want: HashSet<(String, bool)> = e.users.iter().cloned().collect();
    assert_eq!(got, want, "users (name, disabled)");
    let groups = store.groups().await.expect("groups decode");
    let got: HashSet<(String, bool)> = groups
        .iter()
        .map(|g| {
            let name = g.name.as_str().to_string();
            (name, g.policy.allows_peer_to_peer())
        })
        .collect();
    let want: HashSet<(String, bool)> = e.groups.iter().cloned().collect();
    assert_eq!(got, want, "groups (name, peer to peer)");
    let admins = store.admins().await.expect("admins decode");
    let got: HashSet<String> = admins.iter().map(|a| a.name.as_str().to_string()).collect();
    let want: HashSet<String> = e.admins.iter().cloned().collect();
    assert_eq!(got, want, "admins");
    for (id_hash, admin) in &e.sessions {
        let session = store
            .session(id_hash, NOW)
            .await
            .expect("sessions decode")
            .unwrap_or_else(|| panic!("the session of {admin} is gone"));
        assert_eq!(session.admin.name.as_str(), admin);
    }
}

async fn check_access(store: &Store, e: &Expected) {
    let tokens = store.api_tokens().await.expect("tokens decode");
    let got: HashSet<(String, bool)> = tokens
        .iter()
        .map(|t| (t.name.as_str().to_string(), t.revoked_at.is_some()))
        .collect();
    let want: HashSet<(String, bool)> = e.tokens.iter().cloned().collect();
    assert_eq!(got, want, "tokens (name, revoked)");
    let links = store.enrollment_links(500).await.expect("links decode");
    let mut got: Vec<String> = links
        .iter()
        .map(|l| l.device_name.as_str().to_string())
        .collect();
    let mut want = e.links.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "enrollment links");
    let invitations = store.invitations(500).await.expect("invitations decode");
    let mut got: Vec<(String, String)> = invitations
        .iter()
        .filter_map(|i| {
            let m = i.mail.as_ref()?;
            Some((i.device.as_str().to_string(), m.state.as_str().to_string()))
        })
        .collect();
    let mut want = e.mails.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "invitation mails (link's device, state)");
    // The backfilled owner keys find their person: l.becker's address on a version-4 link.
    if let Some(becker) = invitations
        .iter()
        .find(|i| i.device.as_str() == "Laptop-Becker")
    {
        assert_eq!(becker.email.as_deref(), Some("l.becker@stadt.example"));
    }
    let requests = store
        .access_requests(None, 500, NOW)
        .await
        .expect("requests decode");
    let got: HashSet<(String, RequestStatus)> = requests
        .iter()
        .map(|r| (r.device_name.as_str().to_string(), r.status))
        .collect();
    let want: HashSet<(String, RequestStatus)> = e.requests.iter().cloned().collect();
    assert_eq!(got, want, "access requests (device, status)");
    for r in &requests {
        assert_eq!(
            r.link_open,
            r.status == RequestStatus::Approved,
            "request {:?}: its link",
            r.device_name
        );
    }
}

/// Both of two names that differ only in case survive: the first is found by its name, the
/// later one is listed; a third spelling is refused.
async fn check_twins(store: &Store, e: &Expected) {
    for (table, first, second) in &e.twins {
        let (found, listed): (String, Vec<String>) = match *table {
            "devices" => (
                store
                    .device(&n(first))
                    .await
                    .expect("device")
                    .name
                    .to_string(),
                all_devices(store).await.into_keys().collect(),
            ),
            "users" => (
                store
                    .user(&n(first), NOW)
                    .await
                    .expect("user")
                    .name
                    .to_string(),
                names(store.users(None, 500, 0, NOW).await.unwrap().items, |u| {
                    &u.name
                }),
            ),
            "groups" => (
                store
                    .group(&n(first))
                    .await
                    .expect("group")
                    .name
                    .to_string(),
                names(store.groups().await.unwrap(), |g| &g.name),
            ),
            "api_tokens" => (
                store
                    .live_api_token(&n(first))
                    .await
                    .expect("token")
                    .name
                    .to_string(),
                names(store.api_tokens().await.unwrap(), |t| &t.name),
            ),
            "admins" => (
                store
                    .admin(&n(first))
                    .await
                    .unwrap()
                    .expect("admin")
                    .name
                    .to_string(),
                names(store.admins().await.unwrap(), |a| &a.name),
            ),
            other => panic!("no twin check for {other}"),
        };
        assert_eq!(&found, first, "{table}: {first:?} is found by its name");
        assert!(listed.contains(first), "{table}: {first:?} is listed");
        assert!(listed.contains(second), "{table}: {second:?} is listed");
    }
    if e.twins.iter().any(|(t, _, _)| *t == "devices") {
        let third = new_device("ANNA-IPAD", 201);
        match store.add_device(&root(), &third, NOW).await {
            Err(StoreError::Conflict(_)) => {}
            other => panic!("a third spelling of a twin's name was not refused: {other:?}"),
        }
    }
}

fn names<T>(items: Vec<T>, name: impl Fn(&T) -> &Name) -> Vec<String> {
    items.iter().map(|i| name(i).as_str().to_string()).collect()
}

fn root() -> Actor {
    Actor::Cli {
        user: "root".into(),
    }
}

fn new_device(name: &str, seed: u8) -> NewDevice {
    NewDevice {
        name: n(name),
        group: n("default"),
        public_key: PrivateKey::from_bytes([seed; 32]).public_key(),
        preshared_key: None,
        owner: Some(n("m.muster")),
        expires_at: None,
    }
}

/// A device enrolled after the upgrade gets addresses no other device holds (nor one
/// released within the grace period), and the revision moves on.
async fn check_write(store: &Store, before: &Snapshot, e: &Expected) {
    let revision = store.revision().await.unwrap();
    let d = store
        .add_device(&root(), &new_device("Neues-Tablet", 200), NOW)
        .await
        .unwrap_or_else(|err| panic!("enrolling a device after the upgrade failed: {err}"));
    let (pool_v4, pool_v6) = pools();
    let v4 = i64::from(u32::from(d.ipv4) - u32::from(pool_v4.network()));
    let v6 = i64::try_from(u128::from(d.ipv6) - u128::from(pool_v6.network())).unwrap();
    let taken = before.taken();
    assert!(!taken.contains(&(4, v4)), "{} doubles an address", d.ipv4);
    assert!(!taken.contains(&(6, v6)), "{} doubles an address", d.ipv6);
    assert!(store.revision().await.unwrap() > revision.max(e.revision));
    assert_eq!(store.device(&n("Neues-Tablet")).await.unwrap(), d);
}

/// The migrations as recorded: (version, checksum), and the old marker (SQLite's
/// `user_version`; PostgreSQL's newest `heimweg_schema` row and how many there are).
async fn record(url: &str, backend: Backend) -> (Vec<(i64, String)>, i64, i64) {
    let mut conn = AnyConnection::connect(url).await.expect("connect");
    let applied: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, checksum FROM heimweg_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .expect("heimweg_migrations");
    let (marker, rows): (i64, i64) = match backend {
        Backend::Sqlite => (
            sqlx::query_scalar("PRAGMA user_version")
                .fetch_one(&mut conn)
                .await
                .expect("user_version"),
            0,
        ),
        Backend::Postgres => sqlx::query_as("SELECT MAX(version), COUNT(*) FROM heimweg_schema")
            .fetch_one(&mut conn)
            .await
            .expect("heimweg_schema"),
    };
    conn.close().await.expect("close");
    (applied, marker, rows)
}

/// Every migration is recorded once with its checksum, the old marker says the current
/// version, and opening again changes nothing.
async fn check_reopen(url: &str, backend: Backend, e: &Expected) {
    let first = record(url, backend).await;
    let want: Vec<(i64, String)> = migration_files(backend)
        .iter()
        .enumerate()
        .map(|(i, (_, sql))| (i as i64 + 1, checksum(sql)))
        .collect();
    assert_eq!(first.0, want, "recorded migrations and their checksums");
    assert_eq!(first.1, SCHEMA_VERSION as i64, "the old version marker");
    let before = Snapshot::take(url, backend).await;
    let store = Store::connect(url).await.expect("reopen");
    let revision = store.revision().await.unwrap();
    let audit = store.audit_entries(None, 1, 0).await.unwrap().total;
    drop(store);
    assert_eq!(
        record(url, backend).await,
        first,
        "reopening migrated again"
    );
    assert_eq!(
        Snapshot::take(url, backend).await,
        before,
        "reopening changed rows"
    );
    assert!(revision > e.revision);
    assert_eq!(audit, e.audit + 1, "the one device enrolled since");
}
