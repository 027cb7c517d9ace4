//! The store on real SQLite files and a real PostgreSQL server: every test runs on both.

backend_tests!(
    first_run_creates_defaults_once_and_reopens,
    enrollment_gives_unique_addresses_and_audits,
    bad_requests_change_nothing,
    revoked_addresses_wait_out_the_grace_period,
    an_exhausted_pool_is_a_clear_error,
    concurrent_enrollment_never_hands_out_an_address_twice,
    listing_is_paginated_and_searchable,
    observed_status_is_recorded_without_a_revision,
    two_gateways_share_one_database,
    users_tokens_and_requests_keep_their_invariants,
    concurrent_group_changes_do_not_undo_each_other,
    no_operation_waits_for_a_second_connection,
    concurrent_reads_and_writes_all_succeed_with_few_connections,
    the_reconcilers_reader_does_not_queue_behind_other_readers,
    names_are_unique_without_regard_to_case,
    a_revoked_tokens_writes_change_nothing,
    a_parent_revoked_while_minting_leaves_no_live_child,
    a_changed_migration_is_refused,
    a_link_for_a_disabled_owner_is_refused,
    a_failed_redemption_leaves_the_link_open,
    expiring_devices_are_counted_by_window,
);

use heimweg_control::{
    Actor, AuditAction, DnsEntry, GroupPolicy, Name, PrivateKey, RequestStatus, Scope, Scopes,
    TunnelMode,
};
use heimweg_store::testing::Scratch;
use heimweg_store::{
    backend_tests, ActivePeer, Backend, DeviceQuery, DeviceUpdate, GroupPatch, NewAccessRequest,
    NewDevice, NewLink, PeerStatus, PoolOptions, SettingsChange, Store, StoreError,
};
use sqlx::Connection;
use std::collections::HashSet;
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

/// A valid name (the tests' names are).
fn n(s: &str) -> Name {
    Name::new(s).unwrap()
}

/// An admin on the gateway's command line: the actor of most changes here.
fn cli(user: &str) -> Actor {
    Actor::Cli { user: user.into() }
}

fn admin() -> Actor {
    cli("admin")
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

/// The devices that are peers at `now`: not revoked, not expired (what the reconciler's plan
/// decides from [`Store::unrevoked_peers`]).
async fn active(store: &Store, now: i64) -> Vec<ActivePeer> {
    store
        .unrevoked_peers()
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.expires_at.is_none_or(|e| e > now))
        .collect()
}

/// When the next peer expires after `now`, if any does.
async fn next_expiry(store: &Store, now: i64) -> Option<i64> {
    store
        .unrevoked_peers()
        .await
        .unwrap()
        .iter()
        .filter_map(|p| p.expires_at)
        .filter(|&e| e > now)
        .min()
}

async fn total_devices(store: &Store) -> u64 {
    store
        .devices(&DeviceQuery::default(), NOW)
        .await
        .unwrap()
        .total
}

async fn audit_count(store: &Store) -> u64 {
    store.audit_entries(None, 1, 0).await.unwrap().total
}

async fn first_run_creates_defaults_once_and_reopens(backend: Backend) {
    let Some((db, store)) = fresh(backend, "init").await else {
        return;
    };
    assert!(
        !store.init_defaults([9; 5], NOW).await.unwrap(),
        "second init is a no-op"
    );
    let s = store.settings().await.unwrap();
    assert_eq!(s.pool_v4.to_string(), "10.77.0.0/16");
    assert_eq!(s.pool_v6.to_string(), "fd12:3456:789a::/64");
    assert_eq!(store.groups().await.unwrap()[0].name, "default");
    store
        .add_device(&admin(), &device("laptop-1"), NOW)
        .await
        .unwrap();
    drop(store);
    let again = Store::connect(db.url()).await.unwrap();
    let page = again.devices(&DeviceQuery::default(), NOW).await.unwrap();
    assert_eq!(page.total, 1, "enrolled devices survive a reopen");
}

async fn enrollment_gives_unique_addresses_and_audits(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "enroll").await else {
        return;
    };
    let a = store
        .add_device(&admin(), &device("ipad-a"), NOW)
        .await
        .unwrap();
    let b = store
        .add_device(&admin(), &device("ipad-b"), NOW)
        .await
        .unwrap();
    assert_eq!(a.ipv4.to_string(), "10.77.0.2");
    assert_eq!(b.ipv4.to_string(), "10.77.0.3");
    assert_eq!(a.ipv6.to_string(), "fd12:3456:789a::2");
    assert_ne!(a.ipv6, b.ipv6);
    let log = store.audit_log(10).await.unwrap();
    assert_eq!(log[0].action, AuditAction::DeviceCreate);
    assert_eq!(log[0].subject, "ipad-b");
    assert_eq!(active(&store, NOW).await.len(), 2);
}

async fn bad_requests_change_nothing(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "bad").await else {
        return;
    };
    let first = store
        .add_device(&admin(), &device("laptop"), NOW)
        .await
        .unwrap();
    let rev = store.revision().await.unwrap();
    let dup_name = store.add_device(&admin(), &device("laptop"), NOW).await;
    assert!(matches!(dup_name, Err(StoreError::Conflict(ref m)) if m.contains("laptop")));
    let mut dup_key = device("other");
    dup_key.public_key = first.public_key;
    assert!(matches!(
        store.add_device(&admin(), &dup_key, NOW).await,
        Err(StoreError::Conflict(_))
    ));
    let mut no_group = device("x");
    no_group.group = n("nope");
    assert!(matches!(
        store.add_device(&admin(), &no_group, NOW).await,
        Err(StoreError::NotFound(_))
    ));
    // Invalid names cannot even be expressed any more: a `NewDevice` needs a `Name`, and
    // `Name::new` refuses them, so they never reach the store.
    assert!(Name::new("").is_err());
    assert!(Name::new("bad\u{7}name").is_err());
    assert_eq!(
        store.revision().await.unwrap(),
        rev,
        "no revision bump for failures"
    );
    assert_eq!(total_devices(&store).await, 1);
    // The failed attempts consumed no addresses.
    let next = store
        .add_device(&admin(), &device("next"), NOW)
        .await
        .unwrap();
    assert_eq!(next.ipv4.to_string(), "10.77.0.3");
}

async fn revoked_addresses_wait_out_the_grace_period(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "grace").await else {
        return;
    };
    store
        .update_settings(
            &admin(),
            &SettingsChange {
                address_grace: Some(Duration::from_secs(3600)),
                ..SettingsChange::default()
            },
            NOW,
        )
        .await
        .unwrap();
    let a = store
        .add_device(&admin(), &device("old"), NOW)
        .await
        .unwrap();
    store.revoke_device(&admin(), &n("old"), NOW).await.unwrap();
    assert!(active(&store, NOW).await.is_empty());
    assert!(matches!(
        store.revoke_device(&admin(), &n("old"), NOW).await,
        Err(StoreError::NotFound(_))
    ));
    let soon = store
        .add_device(&admin(), &device("soon"), NOW + 60)
        .await
        .unwrap();
    assert_ne!(soon.ipv4, a.ipv4, "not reused within the grace period");
    let later = store
        .add_device(&admin(), &device("later"), NOW + 3601)
        .await
        .unwrap();
    assert_eq!(later.ipv4, a.ipv4, "reused after it");
    assert_eq!(later.ipv6, a.ipv6);
}

async fn an_exhausted_pool_is_a_clear_error(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "exhaust").await else {
        return;
    };
    // Shrink the IPv4 pool to a /29: offsets 2..=6 are usable.
    sqlx_set(&store, "pool_v4", "10.9.9.0/29").await;
    for i in 0..5 {
        store
            .add_device(&admin(), &device(&format!("d{i}")), NOW)
            .await
            .unwrap();
    }
    let err = store
        .add_device(&admin(), &device("one-too-many"), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::PoolExhausted(4)), "{err}");
    assert!(err.to_string().contains("exhausted"));
}

/// Test-only backdoor to shrink a pool without an admin API for it yet.
async fn sqlx_set(store: &Store, key: &str, value: &str) {
    store.set_setting_for_tests(key, value).await.unwrap();
}

async fn concurrent_enrollment_never_hands_out_an_address_twice(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "concurrent").await else {
        return;
    };
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(
                async move { s.add_device(&admin(), &device(&format!("c{i}")), NOW).await },
            )
        })
        .collect();
    let mut v4 = HashSet::new();
    let mut v6 = HashSet::new();
    for t in tasks {
        let d = t.await.unwrap().unwrap();
        assert!(v4.insert(d.ipv4), "duplicate {}", d.ipv4);
        assert!(v6.insert(d.ipv6), "duplicate {}", d.ipv6);
    }
    assert_eq!(v4.len(), 40);
}

async fn listing_is_paginated_and_searchable(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "list").await else {
        return;
    };
    for i in 0..30 {
        let mut d = device(&format!("dev-{i:02}"));
        d.owner = Some(n(if i % 2 == 0 { "anna" } else { "bernd" }));
        store.add_device(&admin(), &d, NOW).await.unwrap();
    }
    let page = store
        .devices(
            &DeviceQuery {
                limit: 10,
                offset: 0,
                ..Default::default()
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(page.total, 30);
    assert_eq!(page.items.len(), 10);
    assert_eq!(page.items[0].name, "dev-29", "newest first");
    let anna = store
        .devices(
            &DeviceQuery {
                search: Some("anna".into()),
                limit: 100,
                ..Default::default()
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(anna.total, 15);
    let shouted = store
        .devices(
            &DeviceQuery {
                search: Some("ANNA".into()),
                ..Default::default()
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(shouted.total, 15, "search ignores case on both backends");
    let pct = store
        .devices(
            &DeviceQuery {
                search: Some("%".into()),
                ..Default::default()
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(pct.total, 0, "LIKE wildcards in the search are literal");
    let g = store
        .create_group(
            &admin(),
            &n("rathaus"),
            &GroupPolicy::parse(&["10.20.0.0/16"], TunnelMode::Split, &["10.20.0.53"]).unwrap(),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(store.group(&n("rathaus")).await.unwrap(), g);
    let none = store
        .devices(
            &DeviceQuery {
                group: Some("rathaus".into()),
                ..Default::default()
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(none.total, 0);
}

async fn observed_status_is_recorded_without_a_revision(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "status").await else {
        return;
    };
    let d = store
        .add_device(&admin(), &device("seen"), NOW)
        .await
        .unwrap();
    let rev = store.revision().await.unwrap();
    store
        .record_status(&[
            PeerStatus {
                public_key: d.public_key,
                last_handshake_at: Some(NOW + 5),
                last_endpoint: Some("198.51.100.7:41000".into()),
            },
            PeerStatus {
                public_key: PrivateKey::generate().public_key(),
                last_handshake_at: Some(NOW),
                last_endpoint: None,
            },
        ])
        .await
        .unwrap();
    let got = store.device(&n("seen")).await.unwrap();
    assert_eq!(got.last_handshake_at, Some(NOW + 5));
    assert_eq!(got.last_endpoint.as_deref(), Some("198.51.100.7:41000"));
    assert_eq!(
        store.revision().await.unwrap(),
        rev,
        "observations are not changes"
    );
}

/// Two gateways on one database (PostgreSQL in production; an SQLite file opened twice here
/// is the same contract): writes from both never collide, and each sees the other's changes.
async fn two_gateways_share_one_database(backend: Backend) {
    let Some((db, first)) = fresh(backend, "twogw").await else {
        return;
    };
    let second = Arc::new(Store::connect(db.url()).await.unwrap());
    // On PostgreSQL the first gateway hears of the second's commits; SQLite has no watcher.
    let mut watcher = first.watch().await.unwrap();
    assert_eq!(watcher.is_some(), backend == Backend::Postgres);
    if let Some(w) = watcher.as_mut() {
        second
            .add_device(&admin(), &device("notify"), NOW)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), w.changed())
            .await
            .expect("a commit on one gateway wakes the other");
        second
            .revoke_device(&admin(), &n("notify"), NOW)
            .await
            .unwrap();
    }
    let first = Arc::new(first);
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let s = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            tokio::spawn(
                async move { s.add_device(&admin(), &device(&format!("g{i}")), NOW).await },
            )
        })
        .collect();
    let mut v4 = HashSet::new();
    for t in tasks {
        assert!(v4.insert(t.await.unwrap().unwrap().ipv4));
    }
    assert_eq!(
        first.revision().await.unwrap(),
        second.revision().await.unwrap()
    );
    second.revoke_device(&admin(), &n("g0"), NOW).await.unwrap();
    assert_eq!(active(&first, NOW).await.len(), 29);
    // Status from a gateway that saw an older handshake does not overwrite a newer one.
    let key = first.device(&n("g1")).await.unwrap().public_key;
    let seen = |at: i64, from: &str| PeerStatus {
        public_key: key,
        last_handshake_at: Some(at),
        last_endpoint: Some(from.into()),
    };
    first
        .record_status(&[seen(NOW + 100, "198.51.100.1:1")])
        .await
        .unwrap();
    second
        .record_status(&[seen(NOW + 50, "203.0.113.9:2")])
        .await
        .unwrap();
    let d = second.device(&n("g1")).await.unwrap();
    assert_eq!(d.last_handshake_at, Some(NOW + 100));
    assert_eq!(d.last_endpoint.as_deref(), Some("198.51.100.1:1"));
}

async fn users_tokens_and_requests_keep_their_invariants(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "admin").await else {
        return;
    };
    a_leaver_loses_devices_and_links(&store).await;
    revoked_tokens_no_longer_authenticate(&store).await;
    a_failed_approval_leaves_the_request_pending(&store).await;
}

async fn a_leaver_loses_devices_and_links(store: &Store) {
    store
        .add_device(&admin(), &device("m-laptop"), NOW)
        .await
        .unwrap();
    store
        .create_enrollment_link(
            &admin(),
            &NewLink {
                device_name: n("m-phone"),
                group: n("default"),
                owner: Some(n("m.muster")),
                token_hash: "h1".into(),
                expires_at: NOW + 99,
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .disable_user(&admin(), &n("m.muster"), NOW)
            .await
            .unwrap(),
        1
    );
    assert!(active(store, NOW).await.is_empty());
    assert!(
        store
            .redeem_enrollment_link("h1", PrivateKey::generate().public_key(), NOW)
            .await
            .unwrap()
            .is_none(),
        "a leaver's open links die with the account"
    );
    assert!(matches!(
        store.disable_user(&admin(), &n("m.muster"), NOW).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Revoked tokens no longer authenticate.
async fn revoked_tokens_no_longer_authenticate(store: &Store) {
    store
        .create_api_token(
            &admin(),
            &n("ci"),
            "th",
            &Scopes::new([Scope::DevicesRead]),
            NOW,
        )
        .await
        .unwrap();
    assert!(store.api_token_by_hash("th").await.unwrap().is_some());
    store
        .revoke_api_token(&admin(), &n("ci"), NOW)
        .await
        .unwrap();
    assert!(store.api_token_by_hash("th").await.unwrap().is_none());
    assert_eq!(store.api_tokens().await.unwrap()[0].revoked_at, Some(NOW));
}

/// Approving a request whose device name was taken meanwhile fails whole and leaves it pending.
async fn a_failed_approval_leaves_the_request_pending(store: &Store) {
    let req = NewAccessRequest {
        requester: n("Otto"),
        contact: String::new(),
        device_name: n("otto-pc"),
        reason: String::new(),
    };
    let r = store
        .create_access_request(&req, "rq", "lk", NOW)
        .await
        .unwrap();
    let mut taken = device("otto-pc");
    taken.owner = None;
    store.add_device(&admin(), &taken, NOW).await.unwrap();
    assert!(matches!(
        store
            .approve_access_request(&admin(), r.id, &n("default"), NOW + 10, NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.access_request(r.id, NOW).await.unwrap().status,
        RequestStatus::Pending
    );
    let rejected = store
        .reject_access_request(&admin(), r.id, NOW)
        .await
        .unwrap();
    assert_eq!(rejected.status, RequestStatus::Rejected);
    assert!(store
        .redeem_enrollment_link("lk", PrivateKey::generate().public_key(), NOW)
        .await
        .unwrap()
        .is_none());
}

/// Two admins changing different fields of one group at the same moment both keep their change.
async fn concurrent_group_changes_do_not_undo_each_other(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "grouprace").await else {
        return;
    };
    let store = Arc::new(store);
    for round in 0..20u8 {
        let net: ipnet::IpNet = format!("10.{round}.0.0/16").parse().unwrap();
        let dns: DnsEntry = format!("10.{round}.0.53").parse().unwrap();
        let (a, b) = (store.clone(), store.clone());
        let nets = tokio::spawn(async move {
            a.update_group(
                &cli("admin-a"),
                &n("default"),
                GroupPatch {
                    networks: Some(vec![net]),
                    ..Default::default()
                },
                NOW,
            )
            .await
        });
        let resolvers = tokio::spawn({
            let dns = dns.clone();
            async move {
                b.update_group(
                    &cli("admin-b"),
                    &n("default"),
                    GroupPatch {
                        dns: Some(vec![dns]),
                        ..Default::default()
                    },
                    NOW,
                )
                .await
            }
        });
        nets.await.unwrap().unwrap();
        resolvers.await.unwrap().unwrap();
        let g = store.group(&n("default")).await.unwrap();
        assert_eq!(g.policy.networks(), [net], "round {round}");
        assert_eq!(g.policy.dns(), [dns], "round {round}");
    }
}

/// One read and one write connection, and a short wait for them: a method that holds a
/// connection while it waits for another one deadlocks against itself here, and the wait ends
/// in `Busy` instead of the test hanging.
fn one_connection_each() -> PoolOptions {
    PoolOptions {
        reads: 1,
        writes: 1,
        acquire_timeout: Duration::from_secs(3),
    }
}

async fn tiny(backend: Backend, tag: &str, options: PoolOptions) -> Option<(Scratch, Store)> {
    let db = Scratch::new(backend, tag).await?;
    let store = db.open_with(options).await;
    assert!(store
        .init_defaults([0x12, 0x34, 0x56, 0x78, 0x9a], NOW)
        .await
        .unwrap());
    Some((db, store))
}

async fn no_operation_waits_for_a_second_connection(backend: Backend) {
    let Some((_db, store)) = tiny(backend, "one_conn", one_connection_each()).await else {
        return;
    };
    let none: [&str; 0] = [];
    store
        .create_group(
            &admin(),
            &n("rathaus"),
            &GroupPolicy::parse(&["10.20.0.0/16"], TunnelMode::Split, &none).unwrap(),
            NOW,
        )
        .await
        .unwrap();
    store.add_device(&admin(), &device("a"), NOW).await.unwrap();
    store.add_device(&admin(), &device("b"), NOW).await.unwrap();
    store.devices(&DeviceQuery::default(), NOW).await.unwrap();
    store.device(&n("a")).await.unwrap();
    store.unrevoked_peers().await.unwrap();
    store
        .rotate_device_key(&admin(), &n("a"), PrivateKey::generate().public_key(), NOW)
        .await
        .unwrap();
    store
        .update_device(
            &admin(),
            &n("a"),
            &DeviceUpdate {
                group: Some(n("rathaus")),
                ..DeviceUpdate::default()
            },
            NOW,
        )
        .await
        .unwrap();
    store
        .update_group(
            &admin(),
            &n("rathaus"),
            GroupPatch {
                tunnel: Some(TunnelMode::Full),
                ..GroupPatch::default()
            },
            NOW,
        )
        .await
        .unwrap();
    store.users(None, 10, 0, NOW).await.unwrap();
    store.user(&n("m.muster"), NOW).await.unwrap();
    store.audit_entries(Some("a"), 10, 0).await.unwrap();
    store.device_counts(NOW, 180).await.unwrap();
    store.revoke_device(&admin(), &n("b"), NOW).await.unwrap();
    assert_eq!(
        store
            .disable_user(&admin(), &n("m.muster"), NOW)
            .await
            .unwrap(),
        1
    );
    assert!(active(&store, NOW).await.is_empty());
}

async fn concurrent_reads_and_writes_all_succeed_with_few_connections(backend: Backend) {
    let options = PoolOptions {
        reads: 2,
        writes: 1,
        acquire_timeout: Duration::from_secs(10),
    };
    let Some((_db, store)) = tiny(backend, "crowd", options).await else {
        return;
    };
    let store = Arc::new(store);
    for i in 0..12 {
        store
            .add_device(&admin(), &device(&format!("d{i}")), NOW)
            .await
            .unwrap();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60 {
        let s = store.clone();
        tasks.spawn(async move {
            let name = n(&format!("d{}", i % 12));
            match i % 6 {
                0 | 1 => s.device(&name).await.map(drop),
                2 => s.devices(&DeviceQuery::default(), NOW).await.map(drop),
                3 => s.unrevoked_peers().await.map(drop),
                4 => s
                    .update_device(
                        &admin(),
                        &name,
                        &DeviceUpdate {
                            expires_at: Some(Some(NOW + 1000 + i64::from(i))),
                            ..DeviceUpdate::default()
                        },
                        NOW,
                    )
                    .await
                    .map(drop),
                _ => s
                    .rotate_device_key(&admin(), &name, PrivateKey::generate().public_key(), NOW)
                    .await
                    .map(drop),
            }
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.unwrap() {
            failures.push(e.to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
}

async fn the_reconcilers_reader_does_not_queue_behind_other_readers(backend: Backend) {
    let options = PoolOptions {
        reads: 2,
        writes: 1,
        acquire_timeout: Duration::from_secs(1),
    };
    let Some((_db, store)) = tiny(backend, "reconciler_reader", options).await else {
        return;
    };
    store
        .add_device(&admin(), &device("lost-ipad"), NOW)
        .await
        .unwrap();
    let reconciler = store.dedicated_reader().await.unwrap();
    // Every shared read connection is busy, as under a crowd of panel and API readers.
    let _crowd = store.hold_reads(2).await;
    assert!(
        matches!(store.revision().await, Err(StoreError::Busy)),
        "the crowd holds every shared reader"
    );
    // A revocation is a write and does not need a reader; the reconciler sees it at once.
    let before = reconciler.revision().await.unwrap();
    store
        .revoke_device(&admin(), &n("lost-ipad"), NOW)
        .await
        .unwrap();
    assert!(reconciler.revision().await.unwrap() > before);
    assert!(active(&reconciler, NOW).await.is_empty());
    assert!(reconciler.groups().await.unwrap().len() == 1);
    assert_eq!(next_expiry(&reconciler, NOW).await, None);
}

/// `Anna-iPad` and `anna-ipad` are one name: the second is refused, and any spelling finds the
/// first, which keeps the spelling it was given.
async fn names_are_unique_without_regard_to_case(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "namecase").await else {
        return;
    };
    store
        .add_device(&admin(), &device("anna-ipad"), NOW)
        .await
        .unwrap();
    let rev = store.revision().await.unwrap();
    assert!(matches!(
        store.add_device(&admin(), &device("Anna-iPad"), NOW).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.revision().await.unwrap(), rev);
    assert_eq!(total_devices(&store).await, 1);
    let found = store.device(&n("ANNA-IPAD")).await.unwrap();
    assert_eq!(found.name, "anna-ipad", "kept as first written");
    // The same holds for groups and tokens.
    let none: [&str; 0] = [];
    let policy = GroupPolicy::parse(&["10.20.0.0/16"], TunnelMode::Split, &none).unwrap();
    assert!(matches!(
        store
            .create_group(&admin(), &n("Default"), &policy, NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .create_api_token(&admin(), &n("ci"), "h-ci", &Scopes::all(), NOW)
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_api_token(&admin(), &n("CI"), "h-CI", &Scopes::all(), NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.live_api_token(&n("Ci")).await.unwrap().name, "ci");
}

/// A token revoked a moment ago changes nothing, whatever it tries: the actor is checked in
/// the transaction that would make the change.
async fn a_revoked_tokens_writes_change_nothing(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "revokedactor").await else {
        return;
    };
    let parent = store
        .create_api_token(&admin(), &n("parent"), "h-parent", &Scopes::all(), NOW)
        .await
        .unwrap();
    let as_parent = Actor::Token {
        id: parent.id,
        name: parent.name.clone(),
    };
    // While live, it can mint a child (and revoking it takes the child along).
    store
        .create_api_token(&as_parent, &n("child"), "h-child", &Scopes::all(), NOW)
        .await
        .unwrap();
    assert_eq!(
        store
            .revoke_api_token(&admin(), &n("parent"), NOW)
            .await
            .unwrap(),
        1
    );
    let tokens = store.api_tokens().await.unwrap().len();
    let audited = audit_count(&store).await;
    let rev = store.revision().await.unwrap();
    let minted = store
        .create_api_token(&as_parent, &n("late"), "h-late", &Scopes::all(), NOW)
        .await;
    assert!(
        matches!(minted, Err(StoreError::Unauthorized(_))),
        "{minted:?}"
    );
    let added = store
        .add_device(&as_parent, &device("late-ipad"), NOW)
        .await;
    assert!(
        matches!(added, Err(StoreError::Unauthorized(_))),
        "{added:?}"
    );
    assert_eq!(
        store.api_tokens().await.unwrap().len(),
        tokens,
        "no token row"
    );
    assert!(store.api_token_by_hash("h-late").await.unwrap().is_none());
    assert_eq!(total_devices(&store).await, 0, "no device");
    assert_eq!(audit_count(&store).await, audited, "no audit entry");
    assert_eq!(store.revision().await.unwrap(), rev, "no revision bump");
}

/// Revoking a parent while it mints children: each child either was minted before the
/// revocation committed (and went with it) or was refused; none outlives its parent.
async fn a_parent_revoked_while_minting_leaves_no_live_child(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "mintrace").await else {
        return;
    };
    let store = Arc::new(store);
    let parent = store
        .create_api_token(&admin(), &n("parent"), "h-parent", &Scopes::all(), NOW)
        .await
        .unwrap();
    let as_parent = Actor::Token {
        id: parent.id,
        name: parent.name.clone(),
    };
    let mut mints = tokio::task::JoinSet::new();
    let mut revocation = None;
    for i in 0..20 {
        if i == 10 {
            let s = store.clone();
            revocation = Some(tokio::spawn(async move {
                s.revoke_api_token(&admin(), &n("parent"), NOW).await
            }));
        }
        let (s, actor) = (store.clone(), as_parent.clone());
        mints.spawn(async move {
            s.create_api_token(
                &actor,
                &n(&format!("child-{i}")),
                &format!("h-child-{i}"),
                &Scopes::all(),
                NOW,
            )
            .await
        });
    }
    let mut minted = 0;
    while let Some(done) = mints.join_next().await {
        match done.unwrap() {
            Ok(_) => minted += 1,
            Err(StoreError::Unauthorized(_)) => {}
            Err(e) => panic!("a mint failed otherwise: {e}"),
        }
    }
    let descendants = revocation.unwrap().await.unwrap().unwrap();
    assert_eq!(
        descendants, minted,
        "every child minted before the revocation went with it"
    );
    let tokens = store.api_tokens().await.unwrap();
    let children: Vec<_> = tokens
        .iter()
        .filter(|t| t.name.as_str().starts_with("child-"))
        .collect();
    assert_eq!(children.len() as u64, minted, "refused mints left no row");
    let live: Vec<_> = children.iter().filter(|t| t.revoked_at.is_none()).collect();
    assert!(live.is_empty(), "children outlived their parent: {live:?}");
    for i in 0..20 {
        assert!(store
            .api_token_by_hash(&format!("h-child-{i}"))
            .await
            .unwrap()
            .is_none());
    }
}

/// A migration edited after release would leave gateways with different schemas under one
/// version: a database migrated with other SQL than this build's is refused.
async fn a_changed_migration_is_refused(backend: Backend) {
    let Some((db, store)) = fresh(backend, "checksum").await else {
        return;
    };
    drop(store);
    // Opening again with the same migrations is fine.
    drop(Store::connect(db.url()).await.unwrap());
    let mut raw = sqlx::AnyConnection::connect(db.url()).await.unwrap();
    let changed = sqlx::query("UPDATE heimweg_migrations SET checksum = 'x' WHERE version = 1")
        .execute(&mut raw)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(changed, 1);
    raw.close().await.unwrap();
    let err = match Store::connect(db.url()).await {
        Ok(_) => panic!("a database with a changed migration was opened"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("migration 1"), "{err}");
}

/// A link for someone who left would only break when the staff member opens it: refused when
/// it is made.
async fn a_link_for_a_disabled_owner_is_refused(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "disabledlink").await else {
        return;
    };
    store
        .create_user(&admin(), &n("leaver"), None, NOW)
        .await
        .unwrap();
    store
        .disable_user(&admin(), &n("leaver"), NOW)
        .await
        .unwrap();
    let audited = audit_count(&store).await;
    for owner in ["leaver", "LEAVER"] {
        let made = store
            .create_enrollment_link(
                &admin(),
                &NewLink {
                    device_name: n("leaver-ipad"),
                    group: n("default"),
                    owner: Some(n(owner)),
                    token_hash: "h-leaver".into(),
                    expires_at: NOW + 3600,
                },
                NOW,
            )
            .await;
        assert!(matches!(made, Err(StoreError::Conflict(_))), "{made:?}");
    }
    assert!(store.enrollment_links(10).await.unwrap().is_empty());
    assert!(store
        .open_enrollment_link("h-leaver", NOW)
        .await
        .unwrap()
        .is_none());
    assert_eq!(audit_count(&store).await, audited);
}

/// Claiming a link and enrolling its device are one transaction: when the enrollment fails,
/// the link stays open and can be redeemed once it can succeed, and then only once.
async fn a_failed_redemption_leaves_the_link_open(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "redeem").await else {
        return;
    };
    // Room for one device: a /30 leaves offset 2 only.
    sqlx_set(&store, "pool_v4", "10.9.9.0/30").await;
    store
        .add_device(&admin(), &device("first"), NOW)
        .await
        .unwrap();
    let link = store
        .create_enrollment_link(
            &admin(),
            &NewLink {
                device_name: n("tablet"),
                group: n("default"),
                owner: None,
                token_hash: "h-tablet".into(),
                expires_at: NOW + 200_000,
            },
            NOW,
        )
        .await
        .unwrap();
    let rev = store.revision().await.unwrap();
    let key = PrivateKey::generate().public_key();
    let err = store
        .redeem_enrollment_link("h-tablet", key, NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::PoolExhausted(4)), "{err}");
    assert_eq!(store.revision().await.unwrap(), rev);
    assert!(matches!(
        store.device(&n("tablet")).await,
        Err(StoreError::NotFound(_))
    ));
    let open = store.open_enrollment_link("h-tablet", NOW).await.unwrap();
    assert_eq!(open.map(|l| l.id), Some(link.id), "the link is still open");
    // Once the address is free again (revoked, grace period over), the same link works.
    store
        .revoke_device(&admin(), &n("first"), NOW)
        .await
        .unwrap();
    let later = NOW + 86_401;
    let redeemed = store
        .redeem_enrollment_link("h-tablet", key, later)
        .await
        .unwrap()
        .expect("the link is redeemable later");
    assert_eq!(redeemed.link.id, link.id);
    assert_eq!(redeemed.link.used_at, Some(later));
    assert_eq!(redeemed.device.name, "tablet");
    assert_eq!(redeemed.device.public_key, key);
    assert_eq!(redeemed.device.ipv4.to_string(), "10.9.9.2");
    assert!(
        store
            .redeem_enrollment_link("h-tablet", PrivateKey::generate().public_key(), later)
            .await
            .unwrap()
            .is_none(),
        "and only once"
    );
}

async fn expiring_devices_are_counted_by_window(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "expiring").await else {
        return;
    };
    for (name, expires_at) in [
        ("permanent", None),
        ("soon", Some(NOW + 3_600)),
        ("this-week", Some(NOW + 3 * 86_400)),
        ("later", Some(NOW + 30 * 86_400)),
    ] {
        let mut d = device(name);
        d.expires_at = expires_at;
        store.add_device(&admin(), &d, NOW).await.unwrap();
    }
    let mut gone = device("gone");
    gone.expires_at = Some(NOW + 60);
    store.add_device(&admin(), &gone, NOW).await.unwrap();
    store
        .revoke_device(&admin(), &n("gone"), NOW)
        .await
        .unwrap();
    assert_eq!(store.count_expiring(NOW, NOW + 86_400).await.unwrap(), 1);
    assert_eq!(
        store.count_expiring(NOW, NOW + 7 * 86_400).await.unwrap(),
        2
    );
    assert_eq!(
        store
            .count_expiring(NOW + 3_600, NOW + 86_400)
            .await
            .unwrap(),
        0,
        "a device expired at the window's start no longer counts"
    );
}
