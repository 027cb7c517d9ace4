//! Access in time, on real SQLite files and a real PostgreSQL server: a group's usage window
//! stored and read back, absences entered, listed, ended, and what the reconciler's plan reads.

// Each test is one scenario that reads top to bottom; splitting it would hide the story.
#![allow(clippy::too_many_lines)]

backend_tests!(
    a_usage_window_is_stored_read_back_and_removed,
    an_absence_is_entered_listed_and_ended_with_its_audit_trail,
    bad_absences_change_nothing,
    the_review_revokes_devices_unseen_for_long_once_and_lists_who_has_access,
    a_shared_key_is_flagged_once_an_hour_and_suspended_if_set,
    sign_in_to_connect_is_stored_and_an_activation_starts_ends_and_is_replaced,
);

use heimweg_control::{Actor, AuditAction, Name, PrivateKey, UsageWindow};
use heimweg_store::testing::Scratch;
use heimweg_store::{
    backend_tests, AbsenceOf, Backend, GroupPatch, NewDevice, PeerStatus, SettingsChange, Store,
    StoreError,
};

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

async fn device(store: &Store, name: &str, owner: Option<Name>) {
    device_at(store, name, owner, NOW).await;
}

async fn device_at(store: &Store, name: &str, owner: Option<Name>, at: i64) {
    let d = NewDevice {
        name: n(name),
        group: n("default"),
        public_key: PrivateKey::generate().public_key(),
        preshared_key: None,
        owner,
        expires_at: None,
    };
    store.add_device(&cli(), &d, at).await.unwrap();
}

async fn a_usage_window_is_stored_read_back_and_removed(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "window").await else {
        return;
    };
    let window = UsageWindow::new(
        "Mo-Fr 06:00-20:00; Sa 08:00-12:00",
        "Europe/Berlin",
        "2026-12-24,2026-12-25",
    )
    .unwrap();
    let before = store.revision().await.unwrap();
    let g = store
        .update_group(
            &cli(),
            &n("default"),
            GroupPatch {
                window: Some(Some(window.clone())),
                ..GroupPatch::default()
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(g.window.as_ref(), Some(&window));
    assert!(
        store.revision().await.unwrap() > before,
        "the reconcilers are told"
    );
    // Read back as stored, by both readers.
    let read = store.group(&n("default")).await.unwrap();
    assert_eq!(read.window.as_ref(), Some(&window));
    assert_eq!(
        read.window.unwrap().schedule(),
        "Mon-Fri 06:00-20:00; Sat 08:00-12:00"
    );
    assert_eq!(
        store.groups().await.unwrap()[0].window.as_ref(),
        Some(&window)
    );
    // A policy change leaves the window as it is.
    let g = store
        .update_group(
            &cli(),
            &n("default"),
            GroupPatch {
                peer_to_peer: Some(true),
                ..GroupPatch::default()
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(g.window.as_ref(), Some(&window));
    let log = store.audit_log(5).await.unwrap();
    assert!(
        log.iter().any(|e| e.action == AuditAction::GroupUpdate
            && e.detail
                .contains("window=Mon-Fri 06:00-20:00; Sat 08:00-12:00 (Europe/Berlin)")),
        "{log:?}"
    );
    // Removed: any time again.
    let g = store
        .update_group(
            &cli(),
            &n("default"),
            GroupPatch {
                window: Some(None),
                ..GroupPatch::default()
            },
            NOW,
        )
        .await
        .unwrap();
    assert!(g.window.is_none());
    assert!(store.group(&n("default")).await.unwrap().window.is_none());
}

async fn an_absence_is_entered_listed_and_ended_with_its_audit_trail(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "absence").await else {
        return;
    };
    let carol = n("carol");
    store.create_user(&cli(), &carol, None, NOW).await.unwrap();
    device(&store, "carol-laptop", Some(carol.clone())).await;
    device(&store, "kiosk", None).await;
    let peers = store.unrevoked_peers().await.unwrap();
    let carol_id = store.user(&carol, NOW).await.unwrap().id;
    let laptop = peers
        .iter()
        .find(|p| p.name.as_str() == "carol-laptop")
        .unwrap();
    assert_eq!(
        laptop.owner_id,
        Some(carol_id),
        "the plan knows whose it is"
    );

    let before = store.revision().await.unwrap();
    let away = store
        .add_absence(
            &cli(),
            &AbsenceOf::User(n("Carol")),
            (NOW - 60, NOW + 86_400),
            "Elternzeit",
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(away.of, AbsenceOf::User(carol.clone()));
    assert_eq!(away.created_by, "cli:root", "whose decision it was");
    let later = store
        .add_absence(
            &cli(),
            &AbsenceOf::Device(n("kiosk")),
            (NOW + 3_600, NOW + 7_200),
            "",
            NOW,
        )
        .await
        .unwrap();
    assert!(store.revision().await.unwrap() > before);
    let listed = store.absences(NOW).await.unwrap();
    assert_eq!(
        listed.iter().map(|a| a.id).collect::<Vec<_>>(),
        [away.id, later.id],
        "earliest start first"
    );
    let spans = store.absence_spans(NOW).await.unwrap();
    assert!(spans
        .iter()
        .any(|s| s.user_id == Some(carol_id) && s.starts_at == NOW - 60));
    // Ending the running one keeps its record with the real end; the planned one is
    // withdrawn.
    let ended = store.end_absence(&cli(), away.id, NOW + 10).await.unwrap();
    assert_eq!(ended.ends_at, NOW + 10);
    assert_eq!(store.absence(away.id).await.unwrap().ends_at, NOW + 10);
    store.end_absence(&cli(), later.id, NOW + 10).await.unwrap();
    assert!(matches!(
        store.absence(later.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.absences(NOW + 10).await.unwrap().is_empty());
    assert!(store.absence_spans(NOW + 10).await.unwrap().is_empty());
    // Ending one that is over says so.
    assert!(matches!(
        store.end_absence(&cli(), away.id, NOW + 20).await,
        Err(StoreError::Conflict(_))
    ));
    let log = store.audit_log(10).await.unwrap();
    let created: Vec<_> = log
        .iter()
        .filter(|e| e.action == AuditAction::AbsenceCreate)
        .collect();
    assert_eq!(created.len(), 2);
    assert!(created
        .iter()
        .any(|e| e.subject == "carol" && e.detail.contains("Elternzeit")));
    assert_eq!(
        log.iter()
            .filter(|e| e.action == AuditAction::AbsenceEnd)
            .count(),
        2
    );
}

async fn bad_absences_change_nothing(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "absbad").await else {
        return;
    };
    store
        .create_user(&cli(), &n("carol"), None, NOW)
        .await
        .unwrap();
    let revision = store.revision().await.unwrap();
    let user = AbsenceOf::User(n("carol"));
    for (span, reason) in [
        ((NOW + 10, NOW + 10), ""),
        ((NOW - 100, NOW - 1), ""),
        ((NOW, NOW + 100), "a\nsecond line"),
        ((NOW, NOW + 100), &"x".repeat(201)),
    ] {
        let e = store
            .add_absence(&cli(), &user, span, reason, NOW)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    }
    for of in [
        AbsenceOf::User(n("nobody")),
        AbsenceOf::Device(n("no-device")),
    ] {
        let e = store
            .add_absence(&cli(), &of, (NOW, NOW + 100), "", NOW)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    }
    assert!(store.absences(NOW).await.unwrap().is_empty());
    assert_eq!(store.revision().await.unwrap(), revision, "nothing written");
}

async fn the_review_revokes_devices_unseen_for_long_once_and_lists_who_has_access(
    backend: Backend,
) {
    let Some((_db, store)) = fresh(backend, "review").await else {
        return;
    };
    const DAY: i64 = 86_400;
    let start = NOW - 200 * DAY;
    // Enrolled 200 days ago: one seen yesterday, one 100 days ago, one never; and one
    // enrolled a week ago that never connected.
    for name in ["seen", "stale", "never"] {
        device_at(&store, name, Some(n("carol")), start).await;
    }
    device_at(&store, "fresh", None, NOW - 7 * DAY).await;
    let key = |name: &'static str| {
        let store = &store;
        async move { store.device(&n(name)).await.unwrap().public_key }
    };
    store
        .record_status(&[
            PeerStatus {
                public_key: key("seen").await,
                last_handshake_at: Some(NOW - DAY),
                last_endpoint: Some("198.51.100.7:41000".into()),
            },
            PeerStatus {
                public_key: key("stale").await,
                last_handshake_at: Some(NOW - 100 * DAY),
                last_endpoint: None,
            },
        ])
        .await
        .unwrap();
    let listed: Vec<String> = store
        .unseen_devices(NOW - 90 * DAY, NOW)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name.to_string())
        .collect();
    assert_eq!(listed, ["never", "stale"], "the longest unseen first");
    // The auditor's list: every device with access, by whose decision.
    let review = store.access_review(NOW).await.unwrap();
    assert_eq!(review.len(), 4);
    assert!(review
        .iter()
        .all(|r| r.enrolled_by.as_deref() == Some("cli:root")));
    assert_eq!(review[0].device.group.as_str(), "default");

    let revision = store.revision().await.unwrap();
    let revoked = store
        .revoke_unseen(&Actor::System, NOW - 90 * DAY, "not seen for 90 days", NOW)
        .await
        .unwrap();
    let mut names: Vec<String> = revoked.iter().map(ToString::to_string).collect();
    names.sort();
    assert_eq!(names, ["never", "stale"]);
    assert!(
        store.revision().await.unwrap() > revision,
        "the gateways follow"
    );
    let peers: Vec<String> = store
        .unrevoked_peers()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name.to_string())
        .collect();
    assert!(!peers.contains(&"stale".to_string()) && peers.len() == 2);
    let log = store.audit_log(10).await.unwrap();
    assert_eq!(
        log.iter()
            .filter(|e| e.action == AuditAction::DeviceRevoke
                && e.actor == "system"
                && e.detail == "not seen for 90 days")
            .count(),
        2
    );
    // A second gateway's run in the same hour finds nothing and writes nothing.
    let revision = store.revision().await.unwrap();
    assert!(store
        .revoke_unseen(&Actor::System, NOW - 90 * DAY, "again", NOW)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.revision().await.unwrap(), revision);
    assert_eq!(store.access_review(NOW).await.unwrap().len(), 2);
    // The setting is stored and audited.
    let settings = store
        .update_settings(
            &cli(),
            &SettingsChange {
                review_unseen_days: Some(90),
                ..SettingsChange::default()
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(settings.review_unseen_days, 90);
    assert_eq!(store.settings().await.unwrap().review_unseen_days, 90);
    assert!(store
        .audit_log(1)
        .await
        .unwrap()
        .iter()
        .any(|e| e.action == AuditAction::SettingsReview));
}

async fn a_shared_key_is_flagged_once_an_hour_and_suspended_if_set(backend: Backend) {
    let Some((_db, store)) = fresh(backend, "shared").await else {
        return;
    };
    device(&store, "anna-laptop", Some(n("anna"))).await;
    device(&store, "bernd-laptop", Some(n("bernd"))).await;
    let key = store.device(&n("anna-laptop")).await.unwrap().public_key;
    let places = "198.51.100.7 and 203.0.113.9";
    let revision = store.revision().await.unwrap();
    let flagged = store.flag_shared_key(&key, places, 0, NOW).await.unwrap();
    assert_eq!(flagged.as_ref().map(Name::as_str), Some("anna-laptop"));
    assert_eq!(
        store.device(&n("anna-laptop")).await.unwrap().shared_key_at,
        Some(NOW)
    );
    assert!(store
        .device(&n("bernd-laptop"))
        .await
        .unwrap()
        .shared_key_at
        .is_none());
    assert_eq!(
        store.revision().await.unwrap(),
        revision,
        "flagged only: the peers stay"
    );
    // Within the hour: no second flag, no second audit entry.
    assert!(store
        .flag_shared_key(&key, places, 0, NOW + 600)
        .await
        .unwrap()
        .is_none());
    let entries = |log: &[heimweg_store::AuditEntry]| {
        log.iter()
            .filter(|e| e.action == AuditAction::DeviceSharedKey)
            .count()
    };
    assert_eq!(entries(&store.audit_log(20).await.unwrap()), 1);
    // An hour later, with suspension set: flagged again and suspended for two hours.
    let later = NOW + 3_600;
    store
        .flag_shared_key(&key, places, 2, later)
        .await
        .unwrap()
        .unwrap();
    assert!(
        store.revision().await.unwrap() > revision,
        "the reconcilers are told"
    );
    let absences = store.absences(later).await.unwrap();
    assert_eq!(absences.len(), 1);
    assert_eq!(absences[0].of, AbsenceOf::Device(n("anna-laptop")));
    assert_eq!(
        (absences[0].starts_at, absences[0].ends_at),
        (later, later + 7_200)
    );
    assert_eq!(absences[0].created_by, "system");
    let log = store.audit_log(20).await.unwrap();
    assert_eq!(entries(&log), 2);
    assert!(log.iter().any(
        |e| e.action == AuditAction::DeviceSharedKey && e.detail.ends_with("suspended for 2 h")
    ));
    // A key no device has (any more) flags nothing.
    let stranger = PrivateKey::generate().public_key();
    assert!(store
        .flag_shared_key(&stranger, places, 2, later)
        .await
        .unwrap()
        .is_none());
}

async fn sign_in_to_connect_is_stored_and_an_activation_starts_ends_and_is_replaced(
    backend: Backend,
) {
    let Some((_db, store)) = fresh(backend, "activation").await else {
        return;
    };
    let default = n("default");
    let patch = |h| GroupPatch {
        sign_in_hours: Some(h),
        ..GroupPatch::default()
    };
    let g = store
        .update_group(&cli(), &default, patch(Some(8)), NOW)
        .await
        .unwrap();
    assert_eq!(g.sign_in_hours, Some(8));
    assert_eq!(store.group(&default).await.unwrap().sign_in_hours, Some(8));
    // Out of range: refused, the stored value stays.
    for bad in [0, 25] {
        assert!(matches!(
            store
                .update_group(&cli(), &default, patch(Some(bad)), NOW)
                .await,
            Err(StoreError::Invalid(_))
        ));
    }
    assert_eq!(store.group(&default).await.unwrap().sign_in_hours, Some(8));

    let carol = n("carol");
    store.create_user(&cli(), &carol, None, NOW).await.unwrap();
    let carol_id = store.user(&carol, NOW).await.unwrap().id;
    let staff = Actor::Staff {
        id: carol_id,
        name: carol.clone(),
    };
    assert_eq!(store.activation_of(&carol, NOW).await.unwrap(), None);
    let before = store.revision().await.unwrap();
    let a = store
        .start_activation(&staff, &n("Carol"), 8, NOW)
        .await
        .unwrap();
    assert_eq!((a.user.as_str(), a.ends_at), ("carol", NOW + 8 * 3_600));
    assert_eq!(a.created_by, "staff:carol");
    assert!(
        store.revision().await.unwrap() > before,
        "every gateway follows"
    );
    let spans = store.activation_spans(NOW + 60).await.unwrap();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        (spans[0].user_id, spans[0].starts_at),
        (carol_id, NOW),
        "what the plan reads"
    );
    // Signing in again replaces it: one runs at a time.
    let again = store
        .start_activation(&staff, &carol, 2, NOW + 600)
        .await
        .unwrap();
    assert_eq!(store.activations(NOW + 601).await.unwrap(), [again]);
    assert_eq!(store.activation_spans(NOW + 601).await.unwrap().len(), 1);
    // An admin ends it: gone from what the plan reads at that moment.
    store
        .end_activation(&cli(), &carol, NOW + 900)
        .await
        .unwrap();
    assert!(store.activation_spans(NOW + 900).await.unwrap().is_empty());
    assert_eq!(store.activation_of(&carol, NOW + 900).await.unwrap(), None);
    assert!(matches!(
        store.end_activation(&cli(), &carol, NOW + 901).await,
        Err(StoreError::NotFound(_))
    ));
    // Disabling her ends a running one.
    store
        .start_activation(&staff, &carol, 8, NOW + 950)
        .await
        .unwrap();
    assert_eq!(store.activation_spans(NOW + 951).await.unwrap().len(), 1);
    // Nobody unknown, no zero hours, nobody disabled.
    assert!(matches!(
        store.start_activation(&cli(), &n("nobody"), 8, NOW).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.start_activation(&staff, &carol, 0, NOW).await,
        Err(StoreError::Invalid(_))
    ));
    store
        .disable_user(&cli(), &carol, NOW + 1_000)
        .await
        .unwrap();
    assert!(
        store
            .activation_spans(NOW + 1_000)
            .await
            .unwrap()
            .is_empty(),
        "disabling her ended it"
    );
    assert!(matches!(
        store.start_activation(&cli(), &carol, 8, NOW + 1_001).await,
        Err(StoreError::Conflict(_))
    ));
    let log = store.audit_log(20).await.unwrap();
    let actions: Vec<_> = log
        .iter()
        .filter(|e| e.subject == "carol")
        .map(|e| (e.actor.clone(), e.action))
        .collect();
    assert!(actions.contains(&("staff:carol".into(), AuditAction::ActivationStart)));
    assert!(actions.contains(&("cli:root".into(), AuditAction::ActivationEnd)));
    // Turned off again.
    let g = store
        .update_group(&cli(), &default, patch(None), NOW)
        .await
        .unwrap();
    assert_eq!(g.sign_in_hours, None);
}
