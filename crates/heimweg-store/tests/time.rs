//! Access in time, on real SQLite files and a real PostgreSQL server: a group's usage window
//! stored and read back, absences entered, listed, ended, and what the reconciler's plan reads.

// Each test is one scenario that reads top to bottom; splitting it would hide the story.
#![allow(clippy::too_many_lines)]

backend_tests!(
    a_usage_window_is_stored_read_back_and_removed,
    an_absence_is_entered_listed_and_ended_with_its_audit_trail,
    bad_absences_change_nothing,
);

use heimweg_control::{Actor, AuditAction, Name, PrivateKey, UsageWindow};
use heimweg_store::testing::Scratch;
use heimweg_store::{backend_tests, AbsenceOf, Backend, GroupPatch, NewDevice, Store, StoreError};

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
    let d = NewDevice {
        name: n(name),
        group: n("default"),
        public_key: PrivateKey::generate().public_key(),
        preshared_key: None,
        owner,
        expires_at: None,
    };
    store.add_device(&cli(), &d, NOW).await.unwrap();
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
