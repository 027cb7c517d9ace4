//! Importing a people list, on real SQLite files and PostgreSQL databases: a dry run changes
//! nothing, the import prepares each invitation once, importing the same file again changes
//! nothing, and a row that cannot be imported is refused alone.

use common::service;
use heimweg_control::{GroupPolicy, LinkHours, Name, TunnelMode};
use heimweg_service::{
    Caller, DeviceOutcome, ImportCounts, ImportOptions, PersonOutcome, Service, IMPORT_BATCH,
};
use heimweg_store::{backend_tests, Backend, PeerStatus};

mod common;

backend_tests!(
    a_dry_run_changes_nothing_and_the_import_happens_once,
    leavers_and_other_peoples_devices_are_refused_alone,
    a_list_longer_than_a_batch_is_imported_whole,
    the_rollout_counts_invitations_devices_and_connections,
    concurrent_imports_of_one_list_invite_each_device_once,
);

fn options(dry_run: bool) -> ImportOptions {
    ImportOptions {
        dry_run,
        link_hours: LinkHours::new(168).unwrap(),
        mail: false,
    }
}

async fn user_count(service: &Service) -> u64 {
    service
        .users(&Caller::system(), None, 500, 0)
        .await
        .unwrap()
        .total
}

async fn link_count(service: &Service) -> usize {
    service.links(&Caller::system(), 500).await.unwrap().len()
}

/// Excel in a German office: a byte-order mark, semicolons, umlauts, CRLF, empty lines, a
/// repeated device, an unknown group and a broken address.
const LIST: &str = "\u{feff}Benutzer;E-Mail;Gruppe;Gerät\r\n\
    Jürgen Müller;jm@stadt.example;Kämmerei;Jürgens Laptop\r\n\
    Jürgen Müller;jm@stadt.example;Kämmerei;Jürgens iPad\r\n\
    ;;;\r\n\
    Anna Weiß;aw@stadt.example;;\r\n\
    Bernd Öz;bo@stadt.example;default;Bernds iPad\r\n\
    Carla;c@stadt.example;Bauamt;Carlas Laptop\r\n\
    Dora;kein-mail;default;Doras Laptop\r\n\
    Erik;e@stadt.example;default;JÜRGENS LAPTOP\r\n";

async fn a_dry_run_changes_nothing_and_the_import_happens_once(backend: Backend) {
    let Some((_db, service)) = service(backend, "import").await else {
        return;
    };
    let admin = Caller::system();
    let policy = GroupPolicy::new(
        vec!["10.30.0.0/16".parse().unwrap()],
        TunnelMode::Split,
        vec![],
    )
    .unwrap();
    service
        .create_group(&admin, &Name::new("Kämmerei").unwrap(), &policy)
        .await
        .unwrap();
    let expected = ImportCounts {
        users_created: 3,
        invited: 3,
        unchanged: 0,
        refused: 3,
    };

    let dry = service
        .import_people(&admin, LIST.as_bytes(), options(true))
        .await
        .unwrap();
    assert_eq!(dry.counts(), expected);
    assert!(dry.invitations.is_empty(), "a dry run hands out no link");
    assert_eq!(user_count(&service).await, 0, "a dry run changes nothing");
    assert_eq!(link_count(&service).await, 0);
    let refused: Vec<(u64, String)> = dry
        .rows
        .iter()
        .filter_map(|r| match &r.outcome {
            PersonOutcome::Refused(why) => Some((r.line, why.clone())),
            PersonOutcome::Done { .. } => None,
        })
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(
        refused[0].0 == 7 && refused[0].1.contains("Bauamt"),
        "{refused:?}"
    );
    assert!(refused[1].0 == 8 && refused[1].1.starts_with("email:"));
    assert!(refused[2].0 == 9 && refused[2].1.contains("already on line 2"));

    let done = service
        .import_people(&admin, LIST.as_bytes(), options(false))
        .await
        .unwrap();
    assert_eq!(
        done.counts(),
        expected,
        "the import does what the dry run said"
    );
    assert_eq!(user_count(&service).await, 3);
    assert_eq!(done.invitations.len(), 3);
    for inv in &done.invitations {
        let link = service.open_link(&inv.secret).await.unwrap().unwrap();
        assert_eq!(link.device_name, inv.device);
        assert_eq!(link.owner.as_ref(), Some(&inv.user));
        assert_eq!(link.group, inv.group);
    }

    let again = service
        .import_people(&admin, LIST.as_bytes(), options(false))
        .await
        .unwrap();
    assert_eq!(
        again.counts(),
        ImportCounts {
            users_created: 0,
            invited: 0,
            unchanged: 4,
            refused: 3,
        },
        "the same file again changes nothing"
    );
    assert!(again.invitations.is_empty());
    assert_eq!(link_count(&service).await, 3);
    assert_eq!(user_count(&service).await, 3);
}

async fn leavers_and_other_peoples_devices_are_refused_alone(backend: Backend) {
    let Some((_db, service)) = service(backend, "import_refused").await else {
        return;
    };
    let admin = Caller::system();
    let first = "user;email;device\nanna;a@x.de;ipad-a\nbernd;b@x.de;ipad-b\n";
    let done = service
        .import_people(&admin, first.as_bytes(), options(false))
        .await
        .unwrap();
    assert_eq!(done.invitations.len(), 2);
    // Anna sets her iPad up; Bernd leaves.
    let anna = &done.invitations[0];
    service.redeem_link(&anna.secret).await.unwrap().unwrap();
    service
        .disable_user(&admin, &Name::new("bernd").unwrap())
        .await
        .unwrap();

    let second = "user;email;device\n\
                  anna;a@x.de;ipad-a\n\
                  bernd;b@x.de;ipad-b2\n\
                  dora;d@x.de;ipad-d\n";
    let report = service
        .import_people(&admin, second.as_bytes(), options(false))
        .await
        .unwrap();
    let outcome = |line: u64| &report.rows.iter().find(|r| r.line == line).unwrap().outcome;
    assert!(matches!(
        outcome(2),
        PersonOutcome::Done {
            device: DeviceOutcome::AlreadyEnrolled,
            ..
        }
    ));
    assert!(matches!(outcome(3), PersonOutcome::Refused(why) if why.contains("disabled")));
    assert!(matches!(
        outcome(4),
        PersonOutcome::Done {
            device: DeviceOutcome::Invited(_),
            ..
        }
    ));
    assert_eq!(report.invitations.len(), 1);
    assert_eq!(report.invitations[0].device.as_str(), "ipad-d");
    // Anna's iPad (in another case) for Carla: the name is taken.
    let third = service
        .import_people(&admin, b"user;device\ncarla;IPAD-A\n", options(false))
        .await
        .unwrap();
    assert!(
        matches!(&third.rows[0].outcome, PersonOutcome::Refused(why) if why.contains("someone else's")),
        "{:?}",
        third.rows[0]
    );
    assert_eq!(
        user_count(&service).await,
        3,
        "carla, refused, was not created"
    );
}

async fn a_list_longer_than_a_batch_is_imported_whole(backend: Backend) {
    let Some((_db, service)) = service(backend, "import_batches").await else {
        return;
    };
    let rows = IMPORT_BATCH * 2 + 17;
    let mut file = String::from("user;email;device\n");
    for i in 0..rows {
        file.push_str(&format!("person {i};p{i}@x.de;device {i}\n"));
    }
    let admin = Caller::system();
    let dry = service
        .import_people(&admin, file.as_bytes(), options(true))
        .await
        .unwrap();
    assert_eq!(dry.counts().invited, rows);
    assert_eq!(user_count(&service).await, 0);
    let done = service
        .import_people(&admin, file.as_bytes(), options(false))
        .await
        .unwrap();
    assert_eq!(done.counts().users_created, rows);
    assert_eq!(done.invitations.len(), rows);
    assert_eq!(user_count(&service).await, rows as u64);
    let lines: Vec<u64> = done.rows.iter().map(|r| r.line).collect();
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "rows in file order");
}

/// The rollout view's figures follow what people did: invited, set up, connected (now and
/// long ago), and a link that expired unused.
async fn the_rollout_counts_invitations_devices_and_connections(backend: Backend) {
    let Some((db, service)) = service(backend, "rollout").await else {
        return;
    };
    let admin = Caller::system();
    let list = "user;device\nanna;a1\nbernd;b1\ncarla;c1\n";
    let done = service
        .import_people(&admin, list.as_bytes(), options(false))
        .await
        .unwrap();
    let a1 = service
        .redeem_link(&done.invitations[0].secret)
        .await
        .unwrap()
        .unwrap();
    let b1 = service
        .redeem_link(&done.invitations[1].secret)
        .await
        .unwrap()
        .unwrap();
    let now = service.now();
    // a1 connected just now, b1 a month ago (the other gateway's status write-back).
    db.open()
        .await
        .record_status(&[
            PeerStatus {
                public_key: a1.device.public_key,
                last_handshake_at: Some(now),
                last_endpoint: None,
            },
            PeerStatus {
                public_key: b1.device.public_key,
                last_handshake_at: Some(now - 30 * 86_400),
                last_endpoint: None,
            },
        ])
        .await
        .unwrap();
    let rows = service.rollout(&admin).await.unwrap();
    let default = rows.iter().find(|r| r.group.as_str() == "default").unwrap();
    assert_eq!(
        (
            default.invited,
            default.open_invitations,
            default.expired_invitations,
            default.enrolled,
            default.connected_ever,
            default.connected_recently
        ),
        (3, 1, 0, 2, 2, 1)
    );
}

/// Ten admins import the same list at once (and an MDM export runs beside them): every import
/// succeeds, and together they prepare each device's link exactly once.
async fn concurrent_imports_of_one_list_invite_each_device_once(backend: Backend) {
    let Some((_db, service)) = service(backend, "import_race").await else {
        return;
    };
    let admin = Caller::system();
    let ipad = service
        .enroll(
            &admin,
            heimweg_service::EnrollRequest {
                name: Name::new("ipad-0").unwrap(),
                group: Name::new("default").unwrap(),
                owner: None,
                public_key: None,
                expires_in: None,
            },
        )
        .await
        .unwrap();
    let rows = IMPORT_BATCH + 50;
    let mut file = String::from("user;device\n");
    for i in 0..rows {
        file.push_str(&format!("p{i};d{i}\n"));
    }
    let imports = (0..10).map(|_| {
        let (service, admin, file) = (service.clone(), admin.clone(), file.clone());
        tokio::spawn(async move {
            service
                .import_people(&admin, file.as_bytes(), options(false))
                .await
        })
    });
    let export = {
        let (service, admin) = (service.clone(), admin.clone());
        tokio::spawn(async move {
            let req = heimweg_service::MdmExport {
                group: None,
                devices: vec![Name::new("ipad-0").unwrap()],
                platform: heimweg_control::mobileconfig::ApplePlatform::Ios,
            };
            service.mdm_export(&admin, req).await
        })
    };
    let mut invited = 0;
    for i in imports {
        invited += i.await.unwrap().unwrap().invitations.len();
    }
    let exported = export.await.unwrap().unwrap();
    assert_ne!(exported.devices[0].public_key, ipad.device.public_key);
    assert_eq!(invited, rows, "each device invited once across all imports");
    assert_eq!(user_count(&service).await, rows as u64);
}
