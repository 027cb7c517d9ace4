//! The access review's pass over time, on real SQLite files and PostgreSQL databases: a
//! fixed clock stands at the moment the setting is made and a week later.

use common::service;
use heimweg_control::{Actor, Name, PrivateKey};
use heimweg_service::{AbsenceOf, AbsenceRequest, Caller};
use heimweg_store::{backend_tests, Backend, NewDevice, PeerStatus};

mod common;

backend_tests!(the_review_gives_a_weeks_notice_and_spares_the_absent,);

const DAY: i64 = 86_400;
const T: i64 = 1_800_000_000;

fn n(s: &str) -> Name {
    Name::new(s).unwrap()
}

async fn the_review_gives_a_weeks_notice_and_spares_the_absent(backend: Backend) {
    let Some((db, service)) = service(backend, "review_pass").await else {
        return;
    };
    let service = service.with_fixed_clock(T);
    let store = service.store_for_tests();
    // Enrolled 200 days ago: one never seen since, one seen yesterday, and one whose owner
    // came back from parental leave ten days ago.
    for (name, owner) in [
        ("kiosk", None),
        ("anna-laptop", Some("anna")),
        ("bea-laptop", Some("bea")),
    ] {
        let d = NewDevice {
            name: n(name),
            group: n("default"),
            public_key: PrivateKey::generate().public_key(),
            preshared_key: None,
            owner: owner.map(n),
            expires_at: None,
        };
        store
            .add_device(&Actor::System, &d, T - 200 * DAY)
            .await
            .unwrap();
    }
    let anna = store.device(&n("anna-laptop")).await.unwrap().public_key;
    store
        .record_status(&[PeerStatus {
            public_key: anna,
            last_handshake_at: Some(T - DAY),
            last_endpoint: None,
        }])
        .await
        .unwrap();
    let earlier = service.clone().with_fixed_clock(T - 150 * DAY);
    earlier
        .add_absence(
            &Caller::cli("root"),
            &AbsenceRequest {
                of: AbsenceOf::User(n("bea")),
                from: "2026-07-01".into(),
                until: "2027-01-05".into(),
                time_zone: String::new(),
                reason: "Elternzeit".into(),
            },
        )
        .await
        .unwrap();
    // 2027-01-05 in Berlin ends 2027-01-06 00:00 +01:00, ten days before T (2027-01-15).
    service.set_review(&Caller::cli("root"), 90).await.unwrap();
    let (_, due) = service.review_due(&Caller::system()).await.unwrap();
    let due: Vec<(String, i64)> = due
        .into_iter()
        .map(|d| (d.device.name.to_string(), d.due_at))
        .collect();
    assert_eq!(
        due,
        [("kiosk".to_string(), T + 7 * DAY)],
        "long overdue, but announced a week from the change"
    );
    assert!(
        service.review_pass().await.unwrap().is_empty(),
        "nothing revoked in the week of notice"
    );
    let week_later = service.clone().with_fixed_clock(T + 7 * DAY);
    let revoked: Vec<String> = week_later
        .review_pass()
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        revoked,
        ["kiosk"],
        "the one seen and the one back from leave stay"
    );
    assert!(week_later.review_pass().await.unwrap().is_empty(), "once");
    drop(db);
}
