//! Sign-in through the identity provider, on real SQLite files and a real PostgreSQL server:
//! how a sign-in finds its user or panel account, the staff sessions, the device limit, and
//! the second factor heimweg keeps for staff who sign in with the directory password.

backend_tests!(
    a_sign_in_links_by_subject_and_by_name_once_and_never_takes_over,
    a_disabled_user_signs_in_no_more_and_their_session_ends,
    a_provider_account_never_takes_over_a_local_one_and_follows_its_role,
    the_device_limit_holds_when_enrollments_race,
    a_sign_in_in_flight_is_used_once_and_expires,
    a_staff_second_factor_is_set_once_counts_each_code_once_and_locks,
    a_burst_of_set_ups_codes_and_wrong_codes_races_to_one_outcome,
);

use heimweg_control::{Actor, Email, Name, PrivateKey, Role};
use heimweg_store::testing::Scratch;
use heimweg_store::{
    backend_tests, Backend, NewDevice, PendingSignIn, ProviderAccount, SignInPurpose, Store,
    StoreError, SIGN_IN_SECS,
};
use std::sync::Arc;

const NOW: i64 = 1_795_000_000;

async fn fresh(backend: Backend, tag: &str) -> Option<(Scratch, Store)> {
    let db = Scratch::new(backend, tag).await?;
    let store = db.open().await;
    store
        .init_defaults([0x12, 0x34, 0x56, 0x78, 0x9a], NOW)
        .await
        .unwrap();
    Some((db, store))
}

fn n(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn cli() -> Actor {
    Actor::Cli {
        user: "root".into(),
    }
}

fn account<'a>(subject: &'a str, login: &'a Name) -> ProviderAccount<'a> {
    ProviderAccount {
        subject,
        login,
        email: None,
    }
}

async fn a_sign_in_links_by_subject_and_by_name_once_and_never_takes_over(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "idlink").await else {
        return;
    };
    let anna = n("Anna");
    let email = Email::new("anna@stadt.example").unwrap();
    let local = store
        .create_user(&cli(), &anna, Some(&email), NOW)
        .await
        .unwrap();
    // The first sign-in links the user made before the provider was connected...
    let u = store
        .staff_sign_in(&account("sub-1", &n("anna")), true, NOW)
        .await
        .unwrap();
    assert_eq!(u.id, local.id);
    assert!(
        !local.from_provider && u.from_provider,
        "the user is linked now"
    );
    // ...and from then on the subject decides, whatever login name the provider sends.
    let renamed = n("a.mueller");
    let u = store
        .staff_sign_in(&account("sub-1", &renamed), false, NOW)
        .await
        .unwrap();
    assert_eq!(u.id, local.id);
    // Another subject with her name does not get her user.
    let e = store
        .staff_sign_in(&account("sub-2", &anna), true, NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Conflict(ref m) if m.contains("another account")),
        "{e}"
    );
    // Someone unknown is created only if their groups allow it.
    let neu = n("neu");
    let e = store
        .staff_sign_in(&account("sub-3", &neu), false, NOW)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Unauthorized(_)), "{e}");
    assert!(
        store.user(&neu, NOW).await.is_err(),
        "a refused sign-in made a user"
    );
    let made = store
        .staff_sign_in(&account("sub-3", &neu), true, NOW)
        .await
        .unwrap();
    assert_eq!(made.name, neu);
}

/// Disabled: no sign-in, and the open session ends with her.
async fn a_disabled_user_signs_in_no_more_and_their_session_ends(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "iddisabled").await else {
        return;
    };
    let anna = n("Anna");
    let local = store
        .staff_sign_in(&account("sub-1", &anna), true, NOW)
        .await
        .unwrap();
    let signed_in = |log: &[heimweg_store::AuditEntry]| {
        log.iter()
            .filter(|e| e.action == heimweg_control::AuditAction::UserSignIn)
            .count()
    };
    // Found is not signed in: the session is the sign-in the audit log records.
    assert_eq!(signed_in(&store.audit_log(50).await.unwrap()), 0);
    store
        .create_staff_session(
            "session-hash",
            &local,
            &[n("default")],
            "csrf",
            NOW,
            NOW + 60,
        )
        .await
        .unwrap();
    assert_eq!(signed_in(&store.audit_log(50).await.unwrap()), 1);
    let s = store
        .staff_session("session-hash", NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (s.user.id, s.groups.clone()),
        (local.id, vec![n("default")])
    );
    assert!(
        store
            .staff_session("session-hash", NOW + 60)
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    store.disable_user(&cli(), &anna, NOW).await.unwrap();
    assert!(store
        .staff_session("session-hash", NOW)
        .await
        .unwrap()
        .is_none());
    // A sign-in found her a moment before she was disabled: no session for her.
    let e = store
        .create_staff_session("late-hash", &local, &[n("default")], "csrf", NOW, NOW + 60)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Unauthorized(_)), "{e}");
    assert!(store
        .staff_session("late-hash", NOW)
        .await
        .unwrap()
        .is_none());
    let e = store
        .staff_sign_in(&account("sub-1", &anna), true, NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Unauthorized(ref m) if m.contains("disabled")),
        "{e}"
    );
}

async fn a_provider_account_never_takes_over_a_local_one_and_follows_its_role(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "idadmin").await else {
        return;
    };
    let local = n("it-admin");
    store
        .create_admin(&cli(), &local, "$argon2id$local", Role::Admin, NOW)
        .await
        .unwrap();
    let e = store
        .admin_sign_in(&account("sub-it", &n("IT-Admin")), Role::Admin, NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Conflict(ref m) if m.contains("local")),
        "{e}"
    );
    let kept = store.admin(&local).await.unwrap().unwrap();
    assert_eq!(
        kept.password_hash, "$argon2id$local",
        "the local account is untouched"
    );

    let alice = n("alice");
    let a = store
        .admin_sign_in(&account("sub-alice", &alice), Role::Helpdesk, NOW)
        .await
        .unwrap();
    assert_eq!((a.role, a.password_hash.as_str()), (Role::Helpdesk, ""));
    // Her group changed at the provider: the next sign-in brings the role along.
    let a2 = store
        .admin_sign_in(&account("sub-alice", &alice), Role::Admin, NOW + 1)
        .await
        .unwrap();
    assert_eq!((a2.id, a2.role), (a.id, Role::Admin));
    let log = store.audit_log(50).await.unwrap();
    assert!(log
        .iter()
        .any(|e| e.action == heimweg_control::AuditAction::AdminRole
            && e.subject == "alice"
            && e.detail.starts_with("admin")));
    // Disabled in heimweg: the provider cannot bring her back.
    store.disable_admin(&cli(), &alice, NOW + 2).await.unwrap();
    assert!(matches!(
        store
            .admin_sign_in(&account("sub-alice", &alice), Role::Admin, NOW + 3)
            .await,
        Err(StoreError::Unauthorized(_))
    ));
}

async fn the_device_limit_holds_when_enrollments_race(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "idlimit").await else {
        return;
    };
    let carol = n("carol");
    let user = store
        .staff_sign_in(&account("sub-carol", &carol), true, NOW)
        .await
        .unwrap();
    let actor = Actor::Staff {
        id: user.id,
        name: carol.clone(),
    };
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let (store, actor, carol) = (store.clone(), actor.clone(), carol.clone());
            tokio::spawn(async move {
                let d = NewDevice {
                    name: n(&format!("carol-{i}")),
                    group: n("default"),
                    public_key: PrivateKey::generate().public_key(),
                    preshared_key: None,
                    owner: Some(carol),
                    expires_at: None,
                };
                store.add_own_device(&actor, &d, 2, NOW).await
            })
        })
        .collect();
    let mut made = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => made += 1,
            Err(StoreError::Conflict(m)) => assert!(m.contains("the most you may have"), "{m}"),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(made, 2, "six enrollments at once under a limit of two");
    // A revoked device frees its place.
    store.revoke_device(&actor, &n("carol-0"), NOW).await.ok();
    let devices = store
        .devices(
            &heimweg_store::DeviceQuery {
                owner: Some("carol".into()),
                ..Default::default()
            },
            NOW,
        )
        .await
        .unwrap();
    let first = devices
        .items
        .iter()
        .find(|d| d.revoked_at.is_none())
        .unwrap()
        .name
        .clone();
    store.revoke_device(&actor, &first, NOW).await.unwrap();
    let d = NewDevice {
        name: n("carol-again"),
        group: n("default"),
        public_key: PrivateKey::generate().public_key(),
        preshared_key: None,
        owner: Some(carol),
        expires_at: None,
    };
    store.add_own_device(&actor, &d, 2, NOW).await.unwrap();
}

async fn a_sign_in_in_flight_is_used_once_and_expires(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "idflight").await else {
        return;
    };
    let pending = PendingSignIn {
        state: "state".into(),
        nonce: "nonce".into(),
        pkce_verifier: "verifier".into(),
        purpose: SignInPurpose::Panel,
        next: "/devices".into(),
        begun_at: NOW,
    };
    store.save_sign_in("h1", &pending, NOW).await.unwrap();
    assert!(
        !format!("{pending:?}").contains("verifier"),
        "Debug shows no secret"
    );
    assert_eq!(
        store.take_sign_in("h1", NOW + 5).await.unwrap(),
        Some(pending.clone())
    );
    assert_eq!(
        store.take_sign_in("h1", NOW + 6).await.unwrap(),
        None,
        "used once"
    );
    store.save_sign_in("h2", &pending, NOW).await.unwrap();
    assert_eq!(
        store.take_sign_in("h2", NOW + SIGN_IN_SECS).await.unwrap(),
        None,
        "too old"
    );
    // An old one is swept when the next sign-in begins.
    store.save_sign_in("h3", &pending, NOW).await.unwrap();
    store
        .save_sign_in("h4", &pending, NOW + SIGN_IN_SECS)
        .await
        .unwrap();
    assert_eq!(store.take_sign_in("h3", NOW).await.unwrap(), None, "swept");
}

/// The second factor of the sign-in with the directory password: set up once (a second
/// browser's set-up loses), each time step once, five wrong codes in a row lock the sign-in
/// and end the sessions, a right one starts the count again, and an admin's reset forgets it.
async fn a_staff_second_factor_is_set_once_counts_each_code_once_and_locks(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "idfactor").await else {
        return;
    };
    let anna = store
        .staff_sign_in(&account("sub-1", &n("Anna")), true, NOW)
        .await
        .unwrap();
    assert_eq!(store.staff_factor(anna.id).await.unwrap(), None);
    assert!(
        !store.accept_staff_code(anna.id, 100, NOW).await.unwrap(),
        "no factor, no code"
    );
    assert!(store
        .set_staff_totp(&anna, "sealed-1", 100, NOW)
        .await
        .unwrap());
    assert!(
        !store
            .set_staff_totp(&anna, "sealed-2", 101, NOW)
            .await
            .unwrap(),
        "a second set-up does not replace the first"
    );
    let f = store.staff_factor(anna.id).await.unwrap().unwrap();
    assert_eq!(
        (f.totp_sealed.as_deref(), f.locked_until),
        (Some("sealed-1"), None)
    );
    // The set-up's code is used; the same step again is not accepted, a later one once.
    assert!(!store.accept_staff_code(anna.id, 100, NOW).await.unwrap());
    assert!(store.accept_staff_code(anna.id, 101, NOW).await.unwrap());
    assert!(!store.accept_staff_code(anna.id, 101, NOW).await.unwrap());
    five_wrong_codes_in_a_row_lock(&store, &anna).await;
    // Reset: forgotten, and the next set-up is kept.
    store
        .create_staff_session("anna-2", &anna, &[n("default")], "csrf", NOW, NOW + 600)
        .await
        .unwrap();
    store
        .reset_staff_factor(&cli(), &n("anna"), NOW)
        .await
        .unwrap();
    assert_eq!(store.staff_factor(anna.id).await.unwrap(), None);
    assert!(store.staff_session("anna-2", NOW).await.unwrap().is_none());
    assert!(store
        .set_staff_totp(&anna, "sealed-3", 5, NOW)
        .await
        .unwrap());
    let e = store
        .reset_staff_factor(&cli(), &n("nobody"), NOW)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
}

/// Four wrong codes, a right one, four wrong: no lock (the count starts again); the fifth in
/// a row locks for the time given and ends her sessions; a right code passes only after it.
async fn five_wrong_codes_in_a_row_lock(store: &Store, anna: &heimweg_store::User) {
    for round in 0..2 {
        for _ in 0..4 {
            let locked = store
                .record_staff_code_failure(anna, 5, 900, NOW)
                .await
                .unwrap();
            assert_eq!(locked, None, "round {round}");
        }
        if round == 0 {
            assert!(store.accept_staff_code(anna.id, 102, NOW).await.unwrap());
        }
    }
    store
        .create_staff_session(
            "anna-session",
            anna,
            &[n("default")],
            "csrf",
            NOW,
            NOW + 600,
        )
        .await
        .unwrap();
    let locked = store
        .record_staff_code_failure(anna, 5, 900, NOW)
        .await
        .unwrap();
    assert_eq!(locked, Some(NOW + 900), "the fifth in a row locks");
    assert!(
        store
            .staff_session("anna-session", NOW)
            .await
            .unwrap()
            .is_none(),
        "the lock ends her sessions"
    );
    assert!(
        !store
            .accept_staff_code(anna.id, 103, NOW + 899)
            .await
            .unwrap(),
        "a right code does not pass a lock"
    );
    assert!(store
        .accept_staff_code(anna.id, 103, NOW + 900)
        .await
        .unwrap());
    let log = store.audit_log(50).await.unwrap();
    let action = |a| log.iter().filter(|e| e.action == a).count();
    assert_eq!(action(heimweg_control::AuditAction::UserTotpOn), 1);
    assert_eq!(action(heimweg_control::AuditAction::UserLock), 1);
}

/// Many browsers (or gateways) at once, as a burst: of 24 set-ups one is kept; of 24 uses of
/// one code one passes; 24 wrong codes at once lock the sign-in (every fifth in a row), and
/// every lock ends up counted in the audit log.
async fn a_burst_of_set_ups_codes_and_wrong_codes_races_to_one_outcome(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "idfactorburst").await else {
        return;
    };
    let anna = store
        .staff_sign_in(&account("sub-1", &n("Anna")), true, NOW)
        .await
        .unwrap();
    let store = Arc::new(store);
    let kept = burst(&store, &anna, |store, anna, i| async move {
        store
            .set_staff_totp(&anna, &format!("sealed-{i}"), 100, NOW)
            .await
            .unwrap()
            .then_some(i)
    })
    .await;
    let kept: Vec<i64> = kept.into_iter().flatten().collect();
    assert_eq!(kept.len(), 1, "one set-up is kept");
    let f = store.staff_factor(anna.id).await.unwrap().unwrap();
    assert_eq!(f.totp_sealed, Some(format!("sealed-{}", kept[0])));
    let passed = burst(&store, &anna, |store, anna, _| async move {
        store
            .accept_staff_code(anna.id, 101, NOW)
            .await
            .unwrap()
            .then_some(())
    })
    .await;
    assert_eq!(
        passed.into_iter().flatten().count(),
        1,
        "a code counts once"
    );
    let locks = burst(&store, &anna, |store, anna, _| async move {
        store
            .record_staff_code_failure(&anna, 5, 900, NOW)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(
        locks.into_iter().flatten().count(),
        24 / 5,
        "every fifth wrong code in a row locks, none counted twice or lost"
    );
    let log = store.audit_log(100).await.unwrap();
    assert_eq!(
        log.iter()
            .filter(|e| e.action == heimweg_control::AuditAction::UserLock)
            .count(),
        24 / 5
    );
}

/// `f` 24 times at once, each on a task of its own with the store, the user and its number;
/// the outcomes in task order.
async fn burst<F, Fut, T>(store: &Arc<Store>, user: &heimweg_store::User, f: F) -> Vec<T>
where
    F: Fn(Arc<Store>, heimweg_store::User, i64) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = (0..24)
        .map(|i| tokio::spawn(f(store.clone(), user.clone(), i)))
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    outcomes
}
