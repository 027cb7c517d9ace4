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
);

use heimweg_control::PrivateKey;
use heimweg_store::testing::Scratch;
use heimweg_store::{
    backend_tests, Backend, DeviceQuery, DeviceUpdate, GroupUpdate, NewDevice, NewGroup,
    PeerStatus, PoolOptions, Store, StoreError,
};
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

fn device(name: &str) -> NewDevice {
    NewDevice {
        name: name.into(),
        group: "default".into(),
        public_key: PrivateKey::generate().public_key(),
        preshared_key: None,
        owner: Some("m.muster".into()),
        expires_at: None,
    }
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
        .add_device("admin", device("laptop-1"), NOW)
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
        .add_device("admin", device("ipad-a"), NOW)
        .await
        .unwrap();
    let b = store
        .add_device("admin", device("ipad-b"), NOW)
        .await
        .unwrap();
    assert_eq!(a.ipv4.to_string(), "10.77.0.2");
    assert_eq!(b.ipv4.to_string(), "10.77.0.3");
    assert_eq!(a.ipv6.to_string(), "fd12:3456:789a::2");
    assert_ne!(a.ipv6, b.ipv6);
    let log = store.audit_log(10).await.unwrap();
    assert_eq!(log[0].action, "device.create");
    assert_eq!(log[0].subject, "ipad-b");
    assert_eq!(store.active_peers(NOW).await.unwrap().len(), 2);
}

async fn bad_requests_change_nothing(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "bad").await else {
        return;
    };
    let first = store
        .add_device("admin", device("laptop"), NOW)
        .await
        .unwrap();
    let rev = store.revision().await.unwrap();
    let dup_name = store.add_device("admin", device("laptop"), NOW).await;
    assert!(matches!(dup_name, Err(StoreError::Conflict(ref m)) if m.contains("laptop")));
    let mut dup_key = device("other");
    dup_key.public_key = first.public_key;
    assert!(matches!(
        store.add_device("admin", dup_key, NOW).await,
        Err(StoreError::Conflict(_))
    ));
    let mut no_group = device("x");
    no_group.group = "nope".into();
    assert!(matches!(
        store.add_device("admin", no_group, NOW).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.add_device("admin", device(""), NOW).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.add_device("admin", device("bad\u{7}name"), NOW).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        store.revision().await.unwrap(),
        rev,
        "no revision bump for failures"
    );
    assert_eq!(
        store
            .devices(&DeviceQuery::default(), NOW)
            .await
            .unwrap()
            .total,
        1
    );
    // The failed attempts consumed no addresses.
    let next = store
        .add_device("admin", device("next"), NOW)
        .await
        .unwrap();
    assert_eq!(next.ipv4.to_string(), "10.77.0.3");
}

async fn revoked_addresses_wait_out_the_grace_period(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "grace").await else {
        return;
    };
    store
        .set_address_grace(Duration::from_secs(3600))
        .await
        .unwrap();
    let a = store.add_device("admin", device("old"), NOW).await.unwrap();
    store.revoke_device("admin", "old", NOW).await.unwrap();
    assert!(store.active_peers(NOW).await.unwrap().is_empty());
    assert!(matches!(
        store.revoke_device("admin", "old", NOW).await,
        Err(StoreError::NotFound(_))
    ));
    let soon = store
        .add_device("admin", device("soon"), NOW + 60)
        .await
        .unwrap();
    assert_ne!(soon.ipv4, a.ipv4, "not reused within the grace period");
    let later = store
        .add_device("admin", device("later"), NOW + 3601)
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
            .add_device("admin", device(&format!("d{i}")), NOW)
            .await
            .unwrap();
    }
    let err = store
        .add_device("admin", device("one-too-many"), NOW)
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
            tokio::spawn(async move { s.add_device("admin", device(&format!("c{i}")), NOW).await })
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
        d.owner = Some(if i % 2 == 0 { "anna" } else { "bernd" }.into());
        store.add_device("admin", d, NOW).await.unwrap();
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
            "admin",
            NewGroup {
                name: "rathaus".into(),
                allowed_prefixes: vec!["10.20.0.0/16".parse().unwrap()],
                full_tunnel: false,
                dns: vec!["10.20.0.53".into()],
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(store.group("rathaus").await.unwrap(), g);
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
        .add_device("admin", device("seen"), NOW)
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
    let got = store.device_by_name("seen").await.unwrap();
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
            .add_device("admin", device("notify"), NOW)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), w.changed())
            .await
            .expect("a commit on one gateway wakes the other");
        second.revoke_device("admin", "notify", NOW).await.unwrap();
    }
    let first = Arc::new(first);
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let s = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            tokio::spawn(async move { s.add_device("admin", device(&format!("g{i}")), NOW).await })
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
    second.revoke_device("admin", "g0", NOW).await.unwrap();
    assert_eq!(first.active_peers(NOW).await.unwrap().len(), 29);
    // Status from a gateway that saw an older handshake does not overwrite a newer one.
    let key = first.device_by_name("g1").await.unwrap().public_key;
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
    let d = second.device_by_name("g1").await.unwrap();
    assert_eq!(d.last_handshake_at, Some(NOW + 100));
    assert_eq!(d.last_endpoint.as_deref(), Some("198.51.100.1:1"));
}

async fn users_tokens_and_requests_keep_their_invariants(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "admin").await else {
        return;
    };
    store
        .add_device("admin", device("m-laptop"), NOW)
        .await
        .unwrap();
    store
        .create_enrollment_link(
            "admin",
            "m-phone",
            "default",
            Some("m.muster"),
            "h1",
            NOW + 99,
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(
        store.disable_user("admin", "m.muster", NOW).await.unwrap(),
        1
    );
    assert!(store.active_peers(NOW).await.unwrap().is_empty());
    assert!(
        store
            .claim_enrollment_link("h1", NOW)
            .await
            .unwrap()
            .is_none(),
        "a leaver's open links die with the account"
    );
    assert!(matches!(
        store.disable_user("admin", "m.muster", NOW).await,
        Err(StoreError::NotFound(_))
    ));
    // Tokens: revoked ones no longer authenticate.
    store
        .create_api_token("admin", "ci", "th", &["devices:read".into()], NOW)
        .await
        .unwrap();
    assert!(store.api_token_by_hash("th").await.unwrap().is_some());
    store.revoke_api_token("admin", "ci", NOW).await.unwrap();
    assert!(store.api_token_by_hash("th").await.unwrap().is_none());
    assert_eq!(store.api_tokens().await.unwrap()[0].revoked_at, Some(NOW));
    // Requests: approving with a taken device name fails whole and leaves it pending.
    let req = heimweg_store::NewAccessRequest {
        requester: "Otto".into(),
        contact: String::new(),
        device_name: "otto-pc".into(),
        reason: String::new(),
    };
    let r = store
        .create_access_request(&req, "rq", "lk", NOW)
        .await
        .unwrap();
    let mut taken = device("otto-pc");
    taken.owner = None;
    store.add_device("admin", taken, NOW).await.unwrap();
    assert!(matches!(
        store
            .approve_access_request("admin", r.id, "default", NOW + 10, NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.access_request(r.id, NOW).await.unwrap().status,
        "pending"
    );
    let rejected = store
        .reject_access_request("admin", r.id, NOW)
        .await
        .unwrap();
    assert_eq!(rejected.status, "rejected");
    assert!(store
        .claim_enrollment_link("lk", NOW)
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
        let dns = format!("10.{round}.0.53");
        let (a, b) = (store.clone(), store.clone());
        let nets = tokio::spawn(async move {
            a.update_group(
                "admin-a",
                "default",
                heimweg_store::GroupUpdate {
                    allowed_prefixes: Some(vec![net]),
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
                    "admin-b",
                    "default",
                    heimweg_store::GroupUpdate {
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
        let g = store.group("default").await.unwrap();
        assert_eq!(g.allowed_prefixes, vec![net], "round {round}");
        assert_eq!(g.dns, vec![dns], "round {round}");
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
    store
        .create_group(
            "admin",
            NewGroup {
                name: "rathaus".into(),
                allowed_prefixes: vec!["10.20.0.0/16".parse().unwrap()],
                full_tunnel: false,
                dns: vec![],
            },
            NOW,
        )
        .await
        .unwrap();
    store.add_device("admin", device("a"), NOW).await.unwrap();
    store.add_device("admin", device("b"), NOW).await.unwrap();
    store.devices(&DeviceQuery::default(), NOW).await.unwrap();
    store.device_by_name("a").await.unwrap();
    store.active_peers(NOW).await.unwrap();
    store
        .rotate_device_key("admin", "a", PrivateKey::generate().public_key(), NOW)
        .await
        .unwrap();
    store
        .update_device(
            "admin",
            "a",
            DeviceUpdate {
                group: Some("rathaus".into()),
                ..DeviceUpdate::default()
            },
            NOW,
        )
        .await
        .unwrap();
    store
        .update_group(
            "admin",
            "rathaus",
            GroupUpdate {
                full_tunnel: Some(true),
                ..GroupUpdate::default()
            },
            NOW,
        )
        .await
        .unwrap();
    store.users(None, 10, 0, NOW).await.unwrap();
    store.user("m.muster", NOW).await.unwrap();
    store.audit_entries(Some("a"), 10, 0).await.unwrap();
    store.device_counts(NOW, 180).await.unwrap();
    store.revoke_device("admin", "b", NOW).await.unwrap();
    assert_eq!(
        store.disable_user("admin", "m.muster", NOW).await.unwrap(),
        1
    );
    assert!(store.active_peers(NOW).await.unwrap().is_empty());
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
            .add_device("admin", device(&format!("d{i}")), NOW)
            .await
            .unwrap();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60 {
        let s = store.clone();
        tasks.spawn(async move {
            let name = format!("d{}", i % 12);
            match i % 6 {
                0 | 1 => s.device_by_name(&name).await.map(drop),
                2 => s.devices(&DeviceQuery::default(), NOW).await.map(drop),
                3 => s.active_peers(NOW).await.map(drop),
                4 => s
                    .update_device(
                        "admin",
                        &name,
                        DeviceUpdate {
                            expires_at: Some(Some(NOW + 1000 + i64::from(i))),
                            ..DeviceUpdate::default()
                        },
                        NOW,
                    )
                    .await
                    .map(drop),
                _ => s
                    .rotate_device_key("admin", &name, PrivateKey::generate().public_key(), NOW)
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
        .add_device("admin", device("lost-ipad"), NOW)
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
        .revoke_device("admin", "lost-ipad", NOW)
        .await
        .unwrap();
    assert!(reconciler.revision().await.unwrap() > before);
    assert!(reconciler.active_peers(NOW).await.unwrap().is_empty());
    assert!(reconciler.groups().await.unwrap().len() == 1);
    assert_eq!(reconciler.next_expiry(NOW).await.unwrap(), None);
}
