//! The directory sync against a real OpenLDAP server (Debian's slapd, started per test by
//! tests/directory/slapd.sh with the memberof and ppolicy overlays, StartTLS and LDAPS with a
//! test CA, and a reading account whose size limit is OpenLDAP's default of 500) and a real
//! Active Directory (Samba's AD DC, provisioned per test by tests/directory/samba-ad.sh in a
//! network namespace of its own), on real SQLite files and PostgreSQL databases. Skipped, with
//! a note, where slapd or Samba is not installed or (for Samba's namespace) not root;
//! tests/run.sh installs both and CI runs as root.

use common::service;
use heimweg_control::directory::GroupMap;
use heimweg_control::{AuditAction, GroupPolicy, LinkHours, Name, TunnelMode};
use heimweg_service::{
    secrets, Caller, CodeStep, ConnectStep, DirectoryKind, DirectoryPreview, DirectorySettings,
    DirectorySignIn, EnrollRequest, LdapSecurity, PasswordStep, Sealer, Service,
};
use heimweg_store::{backend_tests, Backend, DeviceQuery, GroupPatch};
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

backend_tests!(
    the_directory_decides_who_is_a_user_and_in_which_group,
    a_locked_account_loses_its_devices_and_does_not_come_back_by_default,
    a_renamed_login_and_a_new_address_follow_the_same_user,
    an_unreachable_or_emptied_directory_revokes_nothing,
    a_directory_that_cannot_be_trusted_is_not_read,
    paged_results_bring_every_entry_past_the_servers_size_limit,
    active_directory_decides_and_a_disabled_account_loses_its_devices,
    staff_sign_in_with_the_directory_password_and_a_code_that_locks_after_five_wrong,
);

const SUFFIX: &str = "dc=stadt,dc=example";
const READER: &str = "cn=heimweg,ou=services,dc=stadt,dc=example";
/// jmueller is in both: the first mapping he is a member of decides.
const GROUPS: &str = r"tiefbau=cn=Straßenbau\, Tiefbau,ou=groups,dc=stadt,dc=example;staff=cn=vpn-users,ou=groups,dc=stadt,dc=example";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A scratch directory for one test server, named after its kind, the test and this process.
fn scratch(kind: &str, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "heimweg-{kind}-{tag}-{}-{}",
        std::process::id(),
        &heimweg_service::generate_token()[3..11]
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `tests/directory/SCRIPT VERB DIR ARGS…`; what it said on failure.
fn fixture(script: &str, verb: &str, dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("bash")
        .arg(repo().join("tests/directory").join(script))
        .arg(verb)
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A slapd of its own in a scratch directory, stopped and removed on drop.
struct Slapd {
    dir: PathBuf,
    port: u16,
}

impl Slapd {
    fn start(tag: &str) -> Option<Slapd> {
        if !Path::new("/usr/sbin/slapd").exists() {
            eprintln!("slapd is not installed: skipped (tests/run.sh installs it)");
            return None;
        }
        let dir = scratch("slapd", tag);
        let certs = Command::new("bash")
            .arg(repo().join("tests/mail/certs.sh"))
            .arg(&dir)
            .status()
            .unwrap();
        assert!(certs.success(), "tests/mail/certs.sh failed");
        // Two free ports in a row (LDAP and LDAPS); another test may take one meanwhile, so a
        // few tries.
        for _ in 0..5 {
            let port = free_port_pair();
            let mut s = Slapd {
                dir: dir.clone(),
                port,
            };
            if s.script(&["start", &port.to_string()]).is_ok() {
                return Some(s);
            }
            s.port = 0;
        }
        panic!("slapd did not start; see {}/slapd.log", dir.display());
    }

    fn script(&self, args: &[&str]) -> Result<(), String> {
        let (verb, rest) = args.split_first().unwrap();
        fixture("slapd.sh", verb, &self.dir, rest)
    }

    fn run(&self, args: &[&str]) {
        if let Err(e) = self.script(args) {
            panic!("slapd.sh {args:?}: {e}");
        }
    }

    /// Changes entries as the directory's administrator (`ldapmodify`, LDIF on stdin).
    fn modify(&self, ldif: &str) {
        use std::io::Write;
        let mut child = Command::new("ldapmodify")
            .args(["-x", "-H", &format!("ldap://127.0.0.1:{}", self.port)])
            .args(["-D", "cn=admin,dc=stadt,dc=example", "-w", "admin-secret"])
            .env("LDAPNOINIT", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "ldapmodify failed:\n{ldif}"
        );
    }

    /// StartTLS on the LDAP port, the test CA, the reading account.
    fn settings(&self) -> DirectorySettings {
        let mut s = DirectorySettings::new(
            DirectoryKind::Ldap,
            &format!("ldap://127.0.0.1:{}", self.port),
            &format!("ou=people,{SUFFIX}"),
            GroupMap::parse(GROUPS).unwrap(),
        )
        .unwrap();
        s.ca_pem = Some(std::fs::read(self.dir.join("ca.crt")).unwrap());
        s.bind = Some((READER.into(), "reader-secret".into()));
        s
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if self.port != 0 {
            let _ = self.script(&["stop"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port_pair() -> u16 {
    loop {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// A service connected to `slapd`, with the mapped groups created.
async fn setup(
    backend: Backend,
    tag: &str,
) -> Option<(heimweg_store::testing::Scratch, Service, Slapd)> {
    let slapd = Slapd::start(tag)?;
    let (db, service) = service(backend, tag).await?;
    let service = service.with_directory(slapd.settings());
    create_mapped_groups(&service).await;
    Some((db, service, slapd))
}

/// The heimweg groups the test directories' groups map to.
async fn create_mapped_groups(service: &Service) {
    for (group, net) in [("staff", "10.20.0.0/16"), ("tiefbau", "10.40.0.0/16")] {
        let policy =
            GroupPolicy::new(vec![net.parse().unwrap()], TunnelMode::Split, vec![]).unwrap();
        service
            .create_group(&Caller::system(), &name(group), &policy)
            .await
            .unwrap();
    }
}

/// The three people both test directories start with, all users.
fn the_three_enabled() -> Vec<(String, bool)> {
    vec![
        ("alice".into(), true),
        ("bob".into(), true),
        ("jmueller".into(), true),
    ]
}

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

async fn enroll(service: &Service, device: &str, owner: &str, group: &str) {
    service
        .enroll(
            &Caller::system(),
            EnrollRequest {
                name: name(device),
                group: name(group),
                owner: Some(name(owner)),
                public_key: None,
                expires_in: None,
            },
        )
        .await
        .unwrap();
}

/// (device, group, revoked) of every device, by name.
async fn devices(service: &Service) -> Vec<(String, String, bool)> {
    let q = DeviceQuery {
        limit: 500,
        ..DeviceQuery::default()
    };
    let mut all: Vec<(String, String, bool)> = service
        .store_for_tests()
        .devices(&q, service.now())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|d| {
            (
                d.name.to_string(),
                d.group.to_string(),
                d.revoked_at.is_some(),
            )
        })
        .collect();
    all.sort();
    all
}

/// (name, enabled) of every user, by name.
async fn users(service: &Service) -> Vec<(String, bool)> {
    let mut all: Vec<(String, bool)> = service
        .users(&Caller::system(), None, 5000, 0)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|u| (u.name.to_string(), u.disabled_at.is_none()))
        .collect();
    all.sort();
    all
}

async fn the_directory_decides_who_is_a_user_and_in_which_group(backend: Backend) {
    let Some((_db, service, _slapd)) = setup(backend, "decides").await else {
        return;
    };
    let admin = Caller::system();
    // A local user made before the directory was connected is linked, not doubled.
    service
        .create_user(&admin, &name("bob"), None)
        .await
        .unwrap();
    enroll(&service, "bob-laptop", "bob", "default").await;
    // A dry run first: what a run would do, and nothing changed or recorded.
    let DirectoryPreview::Plan(plan) = service.preview_directory(&admin).await.unwrap() else {
        panic!("the dry run did not plan");
    };
    let created: Vec<&str> = plan.create.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(created, ["alice", "jmueller"]);
    assert_eq!(plan.change.len(), 1);
    assert!(plan.change[0].link.is_some());
    assert_eq!(plan.change[0].group.as_ref().unwrap().as_str(), "staff");
    assert_eq!(users(&service).await, [("bob".into(), true)]);
    assert!(service.directory_runs(&admin, 10).await.unwrap().is_empty());
    let run = service.sync_directory(&admin).await.unwrap();
    assert_eq!(run.outcome, "ok", "{run:?}");
    assert_eq!(
        (run.entries, run.created, run.changed, run.disabled),
        (3, 2, 1, 0),
        "{run:?}"
    );
    assert_eq!(users(&service).await, the_three_enabled());
    // bob's device moved to his directory group; jmueller (cn=Müller\, Jürgen, a member of
    // both mapped groups) is in the first one the mapping names.
    assert_eq!(
        devices(&service).await,
        [("bob-laptop".into(), "staff".into(), false)]
    );
    let user = service.user(&admin, &name("bob")).await.unwrap().0;
    assert_eq!(user.email.unwrap().as_str(), "bob@stadt.example");
    assert!(user.from_directory);
    let jm = service.user(&admin, &name("jmueller")).await.unwrap().0;
    assert_eq!(jm.group.unwrap().as_str(), "tiefbau");
    enroll(&service, "jm-ipad", "jmueller", "tiefbau").await;
    // A device enrolled into another group than its owner's directory group goes to the
    // owner's group at the next run: the directory decides what a user's devices reach.
    enroll(&service, "alice-laptop", "alice", "default").await;
    let moved = service.sync_directory(&admin).await.unwrap();
    assert_eq!((moved.created, moved.changed, moved.disabled), (0, 0, 0));
    assert!(devices(&service)
        .await
        .contains(&("alice-laptop".into(), "staff".into(), false)));
    // Nothing new: nothing changes, and the run says so.
    let again = service.sync_directory(&admin).await.unwrap();
    assert_eq!(
        (
            again.outcome.as_str(),
            again.created,
            again.changed,
            again.disabled
        ),
        ("ok", 0, 0, 0)
    );
    let runs = service.directory_runs(&admin, 10).await.unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0].id, again.id);
    assert_eq!(runs[0].requested_by, "system");
    // The changes are the directory's in the audit log.
    let log = service.audit_log(&admin, 100).await.unwrap();
    assert!(log.iter().any(|e| e.action == AuditAction::UserCreate
        && e.subject == "jmueller"
        && e.actor == "directory"));
}

async fn a_locked_account_loses_its_devices_and_does_not_come_back_by_default(backend: Backend) {
    let Some((_db, service, slapd)) = setup(backend, "locked").await else {
        return;
    };
    let admin = Caller::system();
    service.sync_directory(&admin).await.unwrap();
    enroll(&service, "alice-laptop", "alice", "staff").await;
    enroll(&service, "alice-ipad", "alice", "staff").await;
    enroll(&service, "jm-ipad", "jmueller", "tiefbau").await;
    let link = service
        .create_link(
            &admin,
            &name("alice-phone"),
            &name("staff"),
            Some(&name("alice")),
            LinkHours::new(72).unwrap(),
        )
        .await
        .unwrap();
    slapd.run(&["lock", "alice"]);
    let run = service.sync_directory(&admin).await.unwrap();
    assert_eq!((run.outcome.as_str(), run.disabled), ("ok", 1), "{run:?}");
    assert_eq!(
        devices(&service).await,
        [
            ("alice-ipad".into(), "staff".into(), true),
            ("alice-laptop".into(), "staff".into(), true),
            ("jm-ipad".into(), "tiefbau".into(), false),
        ]
    );
    assert!(!users(&service).await.contains(&("alice".into(), true)));
    // Her open link is withdrawn with her devices.
    let links = service.links(&admin, 100).await.unwrap();
    let hers = links.iter().find(|l| l.id == link.link.id).unwrap();
    assert!(hers.revoked_at.is_some());
    let log = service.audit_log(&admin, 100).await.unwrap();
    for (action, subject) in [
        (AuditAction::UserDisable, "alice"),
        (AuditAction::DeviceRevoke, "alice-laptop"),
        (AuditAction::DeviceRevoke, "alice-ipad"),
    ] {
        assert!(
            log.iter()
                .any(|e| e.action == action && e.subject == subject && e.actor == "directory"),
            "{action:?} {subject} by the directory"
        );
    }
    // Unlocked again: she is back in the directory, but not in heimweg unless the setting
    // says so; and then her revoked keys stay revoked.
    slapd.run(&["unlock", "alice"]);
    let run = service.sync_directory(&admin).await.unwrap();
    assert_eq!((run.enabled, run.disabled), (0, 0));
    assert!(users(&service).await.contains(&("alice".into(), false)));
    let mut settings = slapd.settings();
    settings.policy.reenable = true;
    let service = service.with_directory(settings);
    let run = service.sync_directory(&admin).await.unwrap();
    assert_eq!(run.enabled, 1, "{run:?}");
    assert!(users(&service).await.contains(&("alice".into(), true)));
    assert!(devices(&service)
        .await
        .contains(&("alice-laptop".into(), "staff".into(), true)));
}

async fn an_unreachable_or_emptied_directory_revokes_nothing(backend: Backend) {
    let Some((_db, service, slapd)) = setup(backend, "unreachable").await else {
        return;
    };
    let admin = Caller::system();
    service.sync_directory(&admin).await.unwrap();
    for (device, owner, group) in [
        ("alice-laptop", "alice", "staff"),
        ("bob-laptop", "bob", "staff"),
        ("jm-ipad", "jmueller", "tiefbau"),
    ] {
        enroll(&service, device, owner, group).await;
    }
    let before = devices(&service).await;
    let revision = service.revision().await.unwrap();

    slapd.run(&["stop"]);
    let run = service.sync_directory(&admin).await.unwrap();
    assert_eq!(run.outcome, "failed");
    assert!(
        run.message.as_deref().unwrap().contains("connecting to"),
        "{run:?}"
    );

    slapd.run(&["start", &slapd.port.to_string()]);
    // The VPN groups emptied (a mistaken change, a half-finished migration): refused.
    slapd.run(&["empty-group", "vpn-users"]);
    slapd.run(&["empty-group", "Straßenbau, Tiefbau"]);
    let run = service.sync_directory(&admin).await.unwrap();
    assert_eq!(
        (run.outcome.as_str(), run.disabled),
        ("refused", 0),
        "{run:?}"
    );
    assert!(
        run.message.as_deref().unwrap().contains("named nobody"),
        "{run:?}"
    );

    assert_eq!(devices(&service).await, before);
    assert!(users(&service).await.iter().all(|(_, enabled)| *enabled));
    assert_eq!(
        service.revision().await.unwrap(),
        revision,
        "nothing changed"
    );
    let outcomes: Vec<String> = service
        .directory_runs(&admin, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.outcome)
        .collect();
    assert_eq!(outcomes, ["refused", "failed", "ok"]);
}

async fn paged_results_bring_every_entry_past_the_servers_size_limit(backend: Backend) {
    let Some((_db, service, slapd)) = setup(backend, "paged").await else {
        return;
    };
    slapd.run(&["add-users", "1200", "vpn-users"]);
    let run = service.sync_directory(&Caller::system()).await.unwrap();
    assert_eq!(
        (run.outcome.as_str(), run.entries, run.created),
        ("ok", 1203, 1203),
        "{run:?}"
    );
    let page = service
        .users(&Caller::system(), Some("user01200"), 10, 0)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    // Two of them leave: within the threshold.
    slapd.run(&["remove", "user00007"]);
    slapd.run(&["lock", "user01111"]);
    let run = service.sync_directory(&Caller::system()).await.unwrap();
    assert_eq!((run.outcome.as_str(), run.disabled), ("ok", 2), "{run:?}");
}

/// A wrong password, a certificate that does not verify, plain text over the network: each a
/// failed run that changes nothing, never "everyone left".
async fn a_directory_that_cannot_be_trusted_is_not_read(backend: Backend) {
    let Some((_db, service, slapd)) = setup(backend, "untrusted").await else {
        return;
    };
    let admin = Caller::system();
    assert_eq!(service.sync_directory(&admin).await.unwrap().created, 3);
    enroll(&service, "alice-laptop", "alice", "staff").await;
    let revision = service.revision().await.unwrap();
    // A wrong password for the reading account: failed, not "everyone left".
    let mut wrong = slapd.settings();
    wrong.bind = Some((READER.into(), "not-the-password".into()));
    let run = service
        .clone()
        .with_directory(wrong)
        .sync_directory(&admin)
        .await
        .unwrap();
    assert_eq!(run.outcome, "failed");
    assert!(
        run.message.as_deref().unwrap().contains("signing in"),
        "{run:?}"
    );
    // LDAPS checked against the system's roots, which do not hold the test CA: failed.
    let mut unverified = slapd.settings();
    unverified.url = format!("ldaps://127.0.0.1:{}", slapd.port + 1);
    unverified.security = LdapSecurity::Tls;
    unverified.ca_pem = None;
    let run = service
        .clone()
        .with_directory(unverified)
        .sync_directory(&admin)
        .await
        .unwrap();
    assert_eq!(run.outcome, "failed", "{run:?}");
    // Plain text to a directory elsewhere is refused before a byte is sent.
    let mut plain = slapd.settings();
    plain.url = "ldap://192.0.2.1:389".into();
    plain.security = LdapSecurity::None;
    let run = service
        .clone()
        .with_directory(plain)
        .sync_directory(&admin)
        .await
        .unwrap();
    assert!(
        run.message.as_deref().unwrap().contains("plain-text LDAP"),
        "{run:?}"
    );

    // A mapping to a heimweg group nobody created: failed, and it says which.
    let mut unmapped = slapd.settings();
    unmapped.groups =
        GroupMap::parse("verwaltung=cn=vpn-users,ou=groups,dc=stadt,dc=example").unwrap();
    let run = service
        .clone()
        .with_directory(unmapped)
        .sync_directory(&admin)
        .await
        .unwrap();
    assert_eq!(run.outcome, "failed");
    assert!(
        run.message
            .as_deref()
            .unwrap()
            .contains("\"verwaltung\", which does not exist"),
        "{run:?}"
    );
    assert_eq!(
        service.revision().await.unwrap(),
        revision,
        "nothing changed"
    );
    assert!(users(&service).await.iter().all(|(_, enabled)| *enabled));
}

/// A Samba AD DC of its own in a network namespace, stopped and removed on drop.
struct SambaAd {
    dir: PathBuf,
    octet: u8,
}

impl SambaAd {
    fn start(tag: &str) -> Option<SambaAd> {
        if !Path::new("/usr/sbin/samba").exists() || !Path::new("/usr/bin/samba-tool").exists() {
            eprintln!("Samba's AD DC is not installed: skipped (tests/run.sh installs it)");
            return None;
        }
        if effective_uid() != 0 {
            eprintln!("not root: the AD DC needs a network namespace; skipped");
            return None;
        }
        let dir = scratch("ad", tag);
        // A subnet and a namespace name of its own; a parallel test may hold one: try others.
        let mut last = String::new();
        for attempt in 0..8u32 {
            let octet = u8::try_from((std::process::id() + attempt * 37) % 200 + 20).unwrap();
            let ns = format!("hwad{}", std::process::id() % 100_000 + attempt * 100_000);
            match fixture("samba-ad.sh", "start", &dir, &[&ns, &octet.to_string()]) {
                Ok(()) => return Some(SambaAd { dir, octet }),
                Err(e) => last = e,
            }
        }
        panic!("the Samba AD DC did not start: {last}");
    }

    fn run(&self, args: &[&str]) {
        let (verb, rest) = args.split_first().unwrap();
        if let Err(e) = fixture("samba-ad.sh", verb, &self.dir, rest) {
            panic!("samba-ad.sh {args:?}: {e}");
        }
    }

    fn host(&self) -> String {
        format!("10.251.{}.2", self.octet)
    }

    /// StartTLS on 389 with the DC's CA, the ordinary domain user that reads.
    fn settings(&self) -> DirectorySettings {
        let mut s = DirectorySettings::new(
            DirectoryKind::ActiveDirectory,
            &format!("ldap://{}", self.host()),
            "OU=Mitarbeiter,DC=stadt,DC=example",
            GroupMap::parse(
                r"tiefbau=CN=Straßenbau\, Tiefbau,OU=Gruppen,DC=stadt,DC=example;staff=CN=VPN-Nutzer,OU=Gruppen,DC=stadt,DC=example",
            )
            .unwrap(),
        )
        .unwrap();
        s.ca_pem = Some(std::fs::read(self.dir.join("ca.crt")).unwrap());
        s.bind = Some((
            "CN=heimweg-reader,CN=Users,DC=stadt,DC=example".into(),
            "Reader-Secret-1".into(),
        ));
        s
    }
}

impl Drop for SambaAd {
    fn drop(&mut self) {
        let _ = fixture("samba-ad.sh", "stop", &self.dir, &[]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn effective_uid() -> u32 {
    // /proc/self/status names the effective uid second on its Uid line.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .and_then(|u| u.parse().ok())
        .unwrap_or(u32::MAX)
}

/// Active Directory's conventions end to end: sAMAccountName, objectGUID (binary), memberOf
/// with Samba's `\,` spelling of an umlaut-and-comma group, userAccountControl's bit 2, paged
/// results over 1,000 entries, StartTLS and LDAPS; an ordinary domain user reads.
async fn active_directory_decides_and_a_disabled_account_loses_its_devices(backend: Backend) {
    let Some(ad) = SambaAd::start(&format!("{backend:?}")) else {
        return;
    };
    let Some((_db, service)) = service(backend, "ad").await else {
        return;
    };
    let service = service.with_directory(ad.settings());
    create_mapped_groups(&service).await;
    let admin = Caller::system();
    let run = service.sync_directory(&admin).await.unwrap();
    // The reader itself is in CN=Users, outside the base: three people.
    assert_eq!(
        (run.outcome.as_str(), run.entries, run.created),
        ("ok", 3, 3),
        "{run:?}"
    );
    assert_eq!(users(&service).await, the_three_enabled());
    enroll(&service, "alice-laptop", "alice", "staff").await;
    enroll(&service, "jm-ipad", "jmueller", "tiefbau").await;

    // Disabled in AD: alice's device goes with her, jmueller keeps his (and stays in tiefbau:
    // Samba's `CN=Straßenbau\, Tiefbau` is the mapping's group, else he would move to staff).
    ad.run(&["disable", "alice"]);
    let run = service.sync_directory(&admin).await.unwrap();
    assert_eq!((run.outcome.as_str(), run.disabled), ("ok", 1), "{run:?}");
    assert_eq!(
        devices(&service).await,
        [
            ("alice-laptop".into(), "staff".into(), true),
            ("jm-ipad".into(), "tiefbau".into(), false),
        ]
    );

    // Over LDAPS too, past 1,000 entries (AD pages at 1,000 at most; heimweg asks for 400).
    ad.run(&["add-users", "1100", "VPN-Nutzer"]);
    let mut ldaps = ad.settings();
    ldaps.url = format!("ldaps://{}", ad.host());
    ldaps.security = LdapSecurity::Tls;
    let service = service.with_directory(ldaps);
    let run = service.sync_directory(&admin).await.unwrap();
    assert_eq!(
        (run.outcome.as_str(), run.entries, run.created),
        ("ok", 1103, 1100),
        "{run:?}"
    );
    // Back in AD, alice stays out of heimweg (the default).
    ad.run(&["enable", "alice"]);
    let run = service.sync_directory(&admin).await.unwrap();
    assert_eq!(
        (run.enabled, run.disabled, run.created),
        (0, 0, 0),
        "{run:?}"
    );
    assert!(users(&service).await.contains(&("alice".into(), false)));
}

async fn a_renamed_login_and_a_new_address_follow_the_same_user(backend: Backend) {
    let Some((_db, service, slapd)) = setup(backend, "renamed").await else {
        return;
    };
    let admin = Caller::system();
    service.sync_directory(&admin).await.unwrap();
    enroll(&service, "jm-ipad", "jmueller", "tiefbau").await;
    // A login renamed and an address changed in the directory: the same users (matched by
    // entryUUID), their devices and links follow the new name.
    slapd.modify(
        "dn: cn=Müller\\2C Jürgen,ou=people,dc=stadt,dc=example\nchangetype: modify\n\
         replace: uid\nuid: juergen.mueller\n\n\
         dn: uid=bob,ou=people,dc=stadt,dc=example\nchangetype: modify\n\
         replace: mail\nmail: bob.beispiel@stadt.example\n",
    );
    let renamed = service.sync_directory(&admin).await.unwrap();
    assert_eq!(
        (renamed.created, renamed.changed, renamed.disabled),
        (0, 2, 0),
        "{renamed:?}"
    );
    assert_eq!(
        users(&service).await,
        [
            ("alice".into(), true),
            ("bob".into(), true),
            ("juergen.mueller".into(), true)
        ]
    );
    let (_, theirs) = service
        .user(&admin, &name("juergen.mueller"))
        .await
        .unwrap();
    assert_eq!(theirs.unwrap()[0].name.as_str(), "jm-ipad");
    let bob = service.user(&admin, &name("bob")).await.unwrap().0;
    assert_eq!(bob.email.unwrap().as_str(), "bob.beispiel@stadt.example");
}

/// A client address of its own per attempt: the per-client rate limit is not under test here.
fn client(i: u8) -> Option<std::net::IpAddr> {
    Some(std::net::IpAddr::from([192, 0, 2, i]))
}

/// The code of `base32`'s secret for the time step `offset` steps from now.
fn code(base32: &str, now: i64, offset: i64) -> String {
    let secret = secrets::from_base32(base32).unwrap();
    secrets::totp_code(&secret, now.div_euclid(30) + offset)
}

/// Signing in on the staff page without an identity provider: the password by a bind as the
/// person's own entry, then a TOTP code, set up at the first sign-in. Wrong, unknown, empty and
/// wildcard logins, and an account locked in the directory, get nothing; the sign-in starts
/// sign in to connect; five wrong codes lock it (a right code then too); a reset sets up anew.
async fn staff_sign_in_with_the_directory_password_and_a_code_that_locks_after_five_wrong(
    backend: Backend,
) {
    let Some((_db, service, slapd)) = setup(backend, "staffsignin").await else {
        return;
    };
    // A filter as admins may write it, without its outer parentheses: the sign-in's own
    // searches (by login, and by the stored id on the staff page) wrap it.
    let mut settings = slapd.settings();
    settings.filter = "objectClass=inetOrgPerson".into();
    let service = service
        .with_directory(settings)
        .with_sealer(Sealer::new([7; 32]))
        .with_directory_sign_in(DirectorySignIn { device_limit: 3 });
    let admin = Caller::system();
    service.sync_directory(&admin).await.unwrap();
    enroll(&service, "bob-laptop", "bob", "staff").await;
    let patch = GroupPatch {
        sign_in_hours: Some(Some(2)),
        ..GroupPatch::default()
    };
    service
        .update_group(&admin, &name("staff"), patch)
        .await
        .unwrap();
    slapd.run(&["lock", "alice"]);
    nothing_for_wrong_logins(&service).await;
    let (session, secret) = first_sign_in(&service).await;
    let s = service
        .staff_session(&heimweg_service::token_hash(&session))
        .await
        .unwrap()
        .expect("a staff session");
    assert_eq!(s.user.name.as_str(), "bob");
    assert_eq!(service.activations(&admin).await.unwrap().len(), 1);
    // On his page: password and the next code extend it; a used code or a wrong password not.
    service.end_activation(&admin, &name("bob")).await.unwrap();
    let now = service.now();
    let connect = |password: &'static str, code: String| {
        let (service, s) = (&service, &s);
        async move {
            service
                .connect_with_password(client(11), s, password.into(), &code)
                .await
                .unwrap()
        }
    };
    let step = connect("builder", code(&secret, now, 0)).await;
    assert!(
        matches!(step, ConnectStep::WrongCode),
        "a used code: {step:?}"
    );
    let step = connect("wonderland", code(&secret, now, 1)).await;
    assert!(matches!(step, ConnectStep::WrongPassword), "{step:?}");
    assert!(service.activations(&admin).await.unwrap().is_empty());
    let step = connect("builder", code(&secret, now, 1)).await;
    assert!(matches!(step, ConnectStep::Started(true)), "{step:?}");
    assert_eq!(service.activations(&admin).await.unwrap().len(), 1);
    five_wrong_codes_lock(&service, &secret, &session).await;
}

/// Wrong, unknown, empty and wildcard logins and an account locked in the directory get
/// nothing; the third wrong password for a login within 15 minutes goes to the directory no
/// more, whose lockout would otherwise lock the city account.
async fn nothing_for_wrong_logins(service: &Service) {
    for (i, (login, password)) in [
        ("bob", "wrong"),
        ("nobody", "builder"),
        ("bob", ""),
        ("*", "builder"),
        ("b*", "builder"),
        ("alice", "wonderland"),
    ]
    .into_iter()
    .enumerate()
    {
        let step = service
            .password_sign_in(client(i as u8), login, password.into(), BROWSER)
            .await
            .unwrap();
        assert!(
            matches!(step, PasswordStep::Wrong),
            "{login}/{password}: {step:?}"
        );
    }
    for i in 0..2 {
        let step = service
            .password_sign_in(client(20 + i), "Alice", "guess".into(), BROWSER)
            .await
            .unwrap();
        assert!(matches!(step, PasswordStep::Wrong), "{step:?}");
    }
    let step = service
        .password_sign_in(client(22), "alice", "wonderland".into(), BROWSER)
        .await
        .unwrap();
    assert!(matches!(step, PasswordStep::Throttled), "{step:?}");
}

/// What this test's browser sends as its form token.
const BROWSER: &str = "form-token-of-this-browser";

/// bob's first sign-in: the password, then a new second factor set up with its first code
/// (a wrong code, another browser and an altered note get nowhere). Returns the staff
/// session and the secret (base32).
async fn first_sign_in(service: &Service) -> (String, String) {
    let PasswordStep::Code {
        note,
        setup: Some(setup),
    } = service
        .password_sign_in(client(10), "bob", "builder".into(), BROWSER)
        .await
        .unwrap()
    else {
        panic!("bob's right password did not lead to the set-up");
    };
    assert!(setup.uri.starts_with("otpauth://totp/"), "{}", setup.uri);
    let now = service.now();
    let step = service
        .finish_password_sign_in(&note, &code(&setup.base32, now, 10), BROWSER)
        .await
        .unwrap();
    assert!(matches!(step, CodeStep::Wrong(Some(_))), "{step:?}");
    let right = code(&setup.base32, now, 0);
    let step = service
        .finish_password_sign_in(&note, &right, "another-browser")
        .await
        .unwrap();
    assert!(
        matches!(step, CodeStep::Expired),
        "another browser: {step:?}"
    );
    let mut altered = note.clone();
    altered.replace_range(10..11, if &note[10..11] == "A" { "B" } else { "A" });
    let step = service
        .finish_password_sign_in(&altered, &right, BROWSER)
        .await
        .unwrap();
    assert!(matches!(step, CodeStep::Expired), "altered: {step:?}");
    let step = service
        .finish_password_sign_in(&note, &right, BROWSER)
        .await
        .unwrap();
    let CodeStep::SignedIn { session, connected } = step else {
        panic!("the right code did not sign bob in: {step:?}");
    };
    assert!(
        connected,
        "the sign-in starts sign in to connect for his laptop"
    );
    (session, setup.base32)
}

/// The next sign-in asks for a code only; five wrong ones lock it (a right one then too, and
/// bob's session ends); an admin's reset (a lost phone) sets up a new one at the next.
async fn five_wrong_codes_lock(service: &Service, secret: &str, session: &str) {
    let now = service.now();
    let PasswordStep::Code { note, setup: None } = service
        .password_sign_in(client(12), "bob", "builder".into(), BROWSER)
        .await
        .unwrap()
    else {
        panic!("bob's second sign-in did not ask for his code");
    };
    for i in 1..=5 {
        let step = service
            .finish_password_sign_in(&note, &code(secret, now, 10 + i), BROWSER)
            .await
            .unwrap();
        match (i, &step) {
            (1..=4, CodeStep::Wrong(None)) | (5, CodeStep::Locked(_)) => {}
            _ => panic!("wrong code {i}: {step:?}"),
        }
    }
    let late = code(secret, service.now(), -1);
    let step = service
        .finish_password_sign_in(&note, &late, BROWSER)
        .await
        .unwrap();
    assert!(matches!(step, CodeStep::Locked(_)), "{step:?}");
    assert!(
        service
            .staff_session(&heimweg_service::token_hash(session))
            .await
            .unwrap()
            .is_none(),
        "the lock ended his session"
    );
    let step = service
        .password_sign_in(client(13), "bob", "builder".into(), BROWSER)
        .await
        .unwrap();
    assert!(matches!(step, PasswordStep::Locked(_)), "{step:?}");
    let admin = Caller::system();
    service
        .reset_staff_factor(&admin, &name("bob"))
        .await
        .unwrap();
    let step = service
        .password_sign_in(client(14), "bob", "builder".into(), BROWSER)
        .await
        .unwrap();
    assert!(
        matches!(step, PasswordStep::Code { setup: Some(_), .. }),
        "{step:?}"
    );
    let actions: Vec<AuditAction> = service
        .store_for_tests()
        .audit_log(100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for a in [
        AuditAction::UserTotpOn,
        AuditAction::UserLock,
        AuditAction::UserTotpReset,
        AuditAction::ActivationStart,
    ] {
        assert!(actions.contains(&a), "{a:?} audited");
    }
}
