//! Invitations by mail against a real SMTP server (aiosmtpd from PyPI, STARTTLS required and
//! AUTH, started by `SmtpServer`; tests/run.sh installs it and names its Python in
//! HEIMWEG_TEST_SMTP_PYTHON), on real SQLite files and PostgreSQL databases. The mails are
//! read back with Python's own mail parser.

use common::service;
use heimweg_control::{LinkHours, Name};
use heimweg_service::{
    Caller, ImportOptions, MailSettings, MailState, Mailer, Sealer, SendRound, Service,
    SmtpSecurity, MAX_ATTEMPTS,
};
use heimweg_store::{backend_tests, Backend, FreshSecret};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use tokio::sync::watch;

mod common;

backend_tests!(
    a_sender_whose_lease_ran_out_changes_nothing,
    a_device_invited_twice_is_reminded_once_through_its_newest_link,
    invitations_are_mailed_once_with_a_working_link_and_no_key,
    a_failed_attempt_is_retried_later_with_the_same_link,
    a_stopped_sender_hands_back_its_claims_and_none_is_lost_or_sent_twice,
    two_gateways_share_the_queue_and_send_each_mail_once,
    a_reminder_mails_a_new_link_and_the_old_one_stops_working,
);

const USER: &str = "heimweg";
const PASSWORD: &str = "smtp-secret";

/// The test SMTP server in a process of its own, with its certificate and its mail directory.
struct SmtpServer {
    child: Child,
    port: u16,
    dir: PathBuf,
    python: PathBuf,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl SmtpServer {
    /// `None` (and a note) when aiosmtpd is not installed here; tests/run.sh installs it.
    fn start(tag: &str) -> Option<SmtpServer> {
        let Some(python) = std::env::var_os("HEIMWEG_TEST_SMTP_PYTHON") else {
            eprintln!("HEIMWEG_TEST_SMTP_PYTHON is not set: skipped (tests/run.sh sets it)");
            return None;
        };
        let dir = std::env::temp_dir().join(format!(
            "heimweg-smtp-{tag}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(dir.join("mail")).unwrap();
        let certs = Command::new("bash")
            .arg(repo().join("tests/mail/certs.sh"))
            .arg(&dir)
            .status()
            .unwrap();
        assert!(certs.success(), "tests/mail/certs.sh failed");
        let mut child = Command::new(&python)
            .arg(repo().join("tests/mail/smtp_server.py"))
            .arg(dir.join("mail"))
            .arg(dir.join("tls.crt"))
            .arg(dir.join("tls.key"))
            .args([USER, PASSWORD])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("the SMTP server did not start: {line:?}"));
        Some(SmtpServer {
            child,
            port,
            dir,
            python: python.into(),
        })
    }

    fn settings(&self) -> MailSettings {
        settings_for(self.port, std::fs::read(self.dir.join("ca.crt")).unwrap())
    }

    /// Every mail it accepted, in order, parsed.
    fn mails(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.join("mail"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return vec![];
        }
        let out = Command::new(&self.python)
            .arg(repo().join("tests/mail/read_mail.py"))
            .args(&files)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

fn rand_suffix() -> String {
    heimweg_service::generate_token()[3..11].to_string()
}

fn settings_for(port: u16, ca_pem: Vec<u8>) -> MailSettings {
    MailSettings {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::StartTls,
        ca_pem: Some(ca_pem),
        credentials: Some((USER.into(), PASSWORD.into())),
        from: "VPN der Stadt <vpn@stadt.example>".into(),
        public_url: "https://vpn.stadt.example".into(),
        helpdesk: Some("IT-Service, Tel. 1234".into()),
        // The pace is the server's business here: as fast as it goes.
        per_minute: 600_000,
        hello_name: Some("gateway.test".into()),
    }
}

/// The same service, sealing with a fixed gateway key, its clock at `now`.
fn sealed(service: &Service, now: i64) -> Service {
    service
        .clone()
        .with_sealer(Sealer::for_gateway(&[7; 32]))
        .with_fixed_clock(now)
}

fn go() -> watch::Receiver<bool> {
    watch::channel(false).1
}

async fn import(service: &Service, list: &str) -> heimweg_service::ImportReport {
    service
        .import_people(
            &Caller::system(),
            list.as_bytes(),
            ImportOptions {
                dry_run: false,
                link_hours: LinkHours::new(168).unwrap(),
                mail: true,
            },
        )
        .await
        .unwrap()
}

/// A list of `n` people, each with an address and a device.
fn people(n: usize) -> String {
    let mut list = String::from("user;email;device\n");
    for i in 0..n {
        list.push_str(&format!("P{i};p{i}@stadt.example;Dev-{i}\n"));
    }
    list
}

/// How many different people the mails went to.
fn recipients(mails: &[Value]) -> usize {
    let to: std::collections::HashSet<&str> = mails
        .iter()
        .map(|m| m["envelope_to"].as_str().unwrap())
        .collect();
    to.len()
}

/// The link's secret in a mail's text part.
fn secret_in(mail: &Value) -> String {
    let text = mail["text"].as_str().unwrap();
    let at = text
        .find("https://vpn.stadt.example/enroll/")
        .expect("a link");
    text[at + "https://vpn.stadt.example/enroll/".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

const LIST: &str = "Benutzer;E-Mail;Gruppe;Gerät\n\
    Jürgen Müller;jm@stadt.example;default;Jürgens Laptop\n\
    Anna Weiß;aw@stadt.example;default;Annas iPad\n\
    Bernd;;default;Bernds Laptop\n";

async fn invitations_are_mailed_once_with_a_working_link_and_no_key(backend: Backend) {
    let Some((_db, service)) = service(backend, "mail").await else {
        return;
    };
    let Some(smtp) = SmtpServer::start("once") else {
        return;
    };
    let now = service.now();
    let service = sealed(&service, now);
    let report = import(&service, LIST).await;
    assert_eq!(report.mailed, 2);
    // Bernd has no address: his link is handed out as before.
    assert_eq!(report.invitations.len(), 1);
    assert_eq!(report.invitations[0].user.as_str(), "Bernd");

    let mut mailer = Mailer::new(service.clone(), smtp.settings()).unwrap();
    let round = mailer.send_due(&go()).await.unwrap();
    assert_eq!(
        round,
        SendRound {
            sent: 2,
            ..SendRound::default()
        }
    );
    assert_eq!(mailer.send_due(&go()).await.unwrap(), SendRound::default());

    let mails = smtp.mails();
    assert_eq!(mails.len(), 2);
    let jm = mails
        .iter()
        .find(|m| m["envelope_to"] == "jm@stadt.example")
        .unwrap();
    assert_eq!(jm["auth_user"], USER);
    assert_eq!(jm["content_type"], "multipart/alternative");
    assert!(jm["subject"].as_str().unwrap().contains("Jürgens Laptop"));
    assert!(jm["from"].as_str().unwrap().contains("vpn@stadt.example"));
    let text = jm["text"].as_str().unwrap();
    let html = jm["html"].as_str().unwrap();
    assert!(
        text.find("Guten Tag Jürgen Müller").unwrap() < text.find("Hello Jürgen Müller").unwrap()
    );
    assert!(text.contains("Hilfe: IT-Service, Tel. 1234"));
    for part in [text, html] {
        assert!(!part.contains("PrivateKey") && !part.contains("[Interface]"));
    }
    let secret = secret_in(jm);
    assert!(html.contains(&format!(
        "href=\"https://vpn.stadt.example/enroll/{secret}\""
    )));

    // The link opens (noted), sets the device up once, and the list says so.
    assert!(service.view_link(&secret).await.unwrap().is_some());
    let enrolled = service.redeem_link(&secret).await.unwrap().unwrap();
    assert!(!text.contains(&enrolled.config[..60]));
    assert!(service.redeem_link(&secret).await.unwrap().is_none());
    let list = service.invitations(&Caller::system(), 50).await.unwrap();
    let row = list
        .iter()
        .find(|i| i.device.as_str() == "Jürgens Laptop")
        .unwrap();
    let mail = row.mail.as_ref().unwrap();
    assert_eq!(mail.state, MailState::Sent);
    assert_eq!(mail.attempts, 1);
    assert!(row.opened_at.is_some() && row.used_at.is_some());
    let bernd = list
        .iter()
        .find(|i| i.device.as_str() == "Bernds Laptop")
        .unwrap();
    assert!(bernd.mail.is_none());
    let counts = service.mail_counts().await.unwrap();
    assert_eq!((counts.sent, counts.queued, counts.sending), (2, 0, 0));
    // The queue keeps no secret once the mail is out.
    let sealed: Vec<Option<String>> = sqlx_sealed(&service).await;
    assert!(sealed.iter().all(Option::is_none), "{sealed:?}");
}

/// The sealed secrets the queue holds, one per mail.
async fn sqlx_sealed(service: &Service) -> Vec<Option<String>> {
    service
        .store_for_tests()
        .mail_sealed_secrets_for_tests()
        .await
        .unwrap()
}

async fn a_failed_attempt_is_retried_later_with_the_same_link(backend: Backend) {
    let Some((_db, service)) = service(backend, "mail-retry").await else {
        return;
    };
    let Some(smtp) = SmtpServer::start("retry") else {
        return;
    };
    let t0 = service.now();
    let at = |t: i64| sealed(&service, t);
    import(
        &at(t0),
        "user;email;device\nAnna;aw@stadt.example;Annas iPad\n\
         Bounce;bounce@stadt.example;Bounce-iPad\nBusy;busy@stadt.example;Busy-iPad\n",
    )
    .await;
    // Nobody listens on this port: the server is down.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ca = std::fs::read(smtp.dir.join("ca.crt")).unwrap();
    let mut mailer = Mailer::new(at(t0), settings_for(down, ca.clone())).unwrap();
    let round = mailer.send_due(&go()).await.unwrap();
    // One try, then the round ends; a server that is down is no fault of the mails: none is
    // charged an attempt, and the error is noted.
    assert_eq!((round.sent, round.deferred, round.released), (0, 0, 3));
    let list = at(t0).invitations(&Caller::system(), 10).await.unwrap();
    let tried: Vec<_> = list.iter().filter_map(|i| i.mail.as_ref()).collect();
    assert!(tried.iter().all(|m| m.state == MailState::Queued));
    assert_eq!(tried.iter().map(|m| m.attempts).sum::<i64>(), 0);
    assert!(tried.iter().any(|m| m.last_error.is_some()));

    // The server is back; a minute later everything due goes out, the refused recipient fails
    // for good, the busy one waits.
    let mut mailer = Mailer::new(at(t0 + 61), smtp.settings()).unwrap();
    let round = mailer.send_due(&go()).await.unwrap();
    assert_eq!(
        (round.sent, round.failed, round.deferred),
        (1, 1, 1),
        "{round:?}"
    );
    let mut mailer = Mailer::new(at(t0 + 62), smtp.settings()).unwrap();
    // The rest of the round was handed back when the busy one failed; nothing of it is lost.
    let round2 = mailer.send_due(&go()).await.unwrap();
    let list = at(t0).invitations(&Caller::system(), 10).await.unwrap();
    let state = |dev: &str| {
        list.iter()
            .find(|i| i.device.as_str() == dev)
            .and_then(|i| i.mail.clone())
            .unwrap()
    };
    assert_eq!(state("Annas iPad").state, MailState::Sent, "{round2:?}");
    assert_eq!(state("Bounce-iPad").state, MailState::Failed);
    assert!(state("Bounce-iPad").last_error.unwrap().contains("550"));
    assert_eq!(state("Busy-iPad").state, MailState::Queued);
    assert_eq!(smtp.mails().len(), 1);

    // The busy mailbox is retried until MAX_ATTEMPTS, always with the same link, then fails.
    let mut t = t0 + 62;
    for _ in 0..MAX_ATTEMPTS {
        t += 3600;
        let mut mailer = Mailer::new(at(t), smtp.settings()).unwrap();
        mailer.send_due(&go()).await.unwrap();
    }
    let list = at(t).invitations(&Caller::system(), 10).await.unwrap();
    let busy = list
        .iter()
        .find(|i| i.device.as_str() == "Busy-iPad")
        .unwrap();
    let m = busy.mail.as_ref().unwrap();
    assert_eq!((m.state, m.attempts), (MailState::Failed, MAX_ATTEMPTS));
    assert!(m.last_error.as_ref().unwrap().contains("451"));
    assert_eq!(smtp.mails().len(), 1);
}

async fn a_stopped_sender_hands_back_its_claims_and_none_is_lost_or_sent_twice(backend: Backend) {
    let Some((_db, service)) = service(backend, "mail-stop").await else {
        return;
    };
    let Some(smtp) = SmtpServer::start("stop") else {
        return;
    };
    let now = service.now();
    let s = sealed(&service, now);
    assert_eq!(import(&s, &people(60)).await.mailed, 60);

    // Stopped once a dozen mails are on the server: the one in flight is finished and marked,
    // the rest of its claims go back.
    let (stop, stopped) = watch::channel(false);
    let dir = smtp.dir.join("mail");
    let watcher = tokio::spawn(async move {
        while std::fs::read_dir(&dir).unwrap().count() < 12 {
            tokio::task::yield_now().await;
        }
        stop.send(true).unwrap();
    });
    // Paced at 10 ms a mail, so that the stop comes while the queue is far from empty.
    let paced = MailSettings {
        per_minute: 6_000,
        ..smtp.settings()
    };
    let mut a = Mailer::new(s.clone(), paced).unwrap();
    let first = a.send_due(&stopped).await.unwrap();
    watcher.await.unwrap();
    assert!(first.sent >= 12 && first.sent < 60, "{first:?}");
    assert_eq!(smtp.mails().len(), first.sent);
    let c = s.mail_counts().await.unwrap();
    assert_eq!(
        (c.sent, c.queued, c.sending),
        (first.sent as i64, 60 - first.sent as i64, 0)
    );

    // A sender that died holding claims: they wait for the lease, then go out once.
    let sealer = Sealer::for_gateway(&[7; 32]);
    let fresh = (0..5)
        .map(|i| FreshSecret {
            token_hash: heimweg_service::token_hash(&format!("dead-{i}")),
            sealed: sealer.seal(format!("dead-{i}").as_bytes()),
            message_id: format!("<dead-{i}@stadt.example>"),
        })
        .collect();
    let held = s
        .store_for_tests()
        .claim_mails(now, 120, fresh)
        .await
        .unwrap();
    assert_eq!(held.len(), 5);
    let mut b = Mailer::new(sealed(&service, now + 1), smtp.settings()).unwrap();
    let second = b.send_due(&go()).await.unwrap();
    assert_eq!(second.sent, 60 - first.sent - 5);
    let mut b = Mailer::new(sealed(&service, now + 121), smtp.settings()).unwrap();
    assert_eq!(b.send_due(&go()).await.unwrap().sent, 5);
    let mails = smtp.mails();
    assert_eq!(mails.len(), 60);
    assert_eq!(recipients(&mails), 60, "each person exactly once");
    // Every mail's link works, including those handed back and those a dead sender held.
    for m in &mails {
        assert!(
            s.open_link(&secret_in(m)).await.unwrap().is_some(),
            "{}",
            m["envelope_to"]
        );
    }
}

async fn two_gateways_share_the_queue_and_send_each_mail_once(backend: Backend) {
    let Some((db, service)) = service(backend, "mail-two").await else {
        return;
    };
    let Some(smtp) = SmtpServer::start("two") else {
        return;
    };
    let now = service.now();
    import(&sealed(&service, now), &people(80)).await;
    let other = Service::new(db.open().await);
    let mut a = Mailer::new(sealed(&service, now), smtp.settings()).unwrap();
    let mut b = Mailer::new(sealed(&other, now), smtp.settings()).unwrap();
    let (ra, rb) = tokio::join!(async { a.send_due(&go()).await.unwrap() }, async {
        b.send_due(&go()).await.unwrap()
    },);
    assert_eq!(ra.sent + rb.sent, 80, "{ra:?} {rb:?}");
    let mails = smtp.mails();
    assert_eq!((mails.len(), recipients(&mails)), (80, 80));
}

async fn a_reminder_mails_a_new_link_and_the_old_one_stops_working(backend: Backend) {
    let Some((_db, service)) = service(backend, "mail-remind").await else {
        return;
    };
    let Some(smtp) = SmtpServer::start("remind") else {
        return;
    };
    let t0 = service.now();
    let s = sealed(&service, t0);
    import(&s, LIST).await;
    Mailer::new(s.clone(), smtp.settings())
        .unwrap()
        .send_due(&go())
        .await
        .unwrap();
    let first = smtp.mails();
    let anna_old = secret_in(
        first
            .iter()
            .find(|m| m["envelope_to"] == "aw@stadt.example")
            .unwrap(),
    );
    let jm = secret_in(
        first
            .iter()
            .find(|m| m["envelope_to"] == "jm@stadt.example")
            .unwrap(),
    );
    s.redeem_link(&jm).await.unwrap().unwrap();

    // Ten days on, Anna's link has expired unused; Jürgen set up; Bernd has no address.
    let later = sealed(&service, t0 + 10 * 86_400);
    assert!(later.open_link(&anna_old).await.unwrap().is_none());
    let r = later
        .remind(&Caller::system(), None, LinkHours::new(48).unwrap())
        .await
        .unwrap();
    assert_eq!((r.queued, r.without_address, r.pending), (1, 1, 0));
    // Asked twice, nothing more is queued while the first reminder waits.
    let again = later
        .remind(
            &Caller::system(),
            Some(&Name::new("default").unwrap()),
            LinkHours::new(48).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!((again.queued, again.pending), (0, 1));
    Mailer::new(later.clone(), smtp.settings())
        .unwrap()
        .send_due(&go())
        .await
        .unwrap();
    let mails = smtp.mails();
    assert_eq!(mails.len(), 3);
    let reminder = &mails[2];
    assert_eq!(reminder["envelope_to"], "aw@stadt.example");
    assert!(reminder["subject"]
        .as_str()
        .unwrap()
        .starts_with("Erinnerung"));
    let anna_new = secret_in(reminder);
    assert_ne!(anna_new, anna_old);
    assert!(later.open_link(&anna_old).await.unwrap().is_none());
    let link = later.open_link(&anna_new).await.unwrap().unwrap();
    assert_eq!(link.expires_at, t0 + 10 * 86_400 + 48 * 3600);
    let audit = later.audit_log(&Caller::system(), 50).await.unwrap();
    assert!(audit
        .iter()
        .any(|e| e.action.as_str() == "link.remind" && e.subject == "Annas iPad"));
}

/// Settings that would send in the clear over a network, or that cannot be read, are refused
/// before anything is sent, each saying which setting is wrong.
#[tokio::test]
async fn wrong_mail_settings_are_refused_with_the_setting_named() {
    let Some((_db, service)) = service(Backend::Sqlite, "mail-settings").await else {
        return;
    };
    let service = sealed(&service, 0);
    let good = MailSettings {
        ca_pem: None,
        ..settings_for(587, vec![])
    };
    let refused = |s: MailSettings| {
        let e = Mailer::new(service.clone(), s).unwrap_err();
        e.to_string()
    };
    assert!(refused(MailSettings {
        from: "not an address".into(),
        ..good.clone()
    })
    .contains("HEIMWEG_MAIL_FROM"));
    assert!(refused(MailSettings {
        per_minute: 0,
        ..good.clone()
    })
    .contains("HEIMWEG_MAIL_PER_MINUTE"));
    assert!(refused(MailSettings {
        host: "mail.stadt.example".into(),
        security: SmtpSecurity::None,
        ..good.clone()
    })
    .contains("HEIMWEG_SMTP_SECURITY"));
    assert!(refused(MailSettings {
        ca_pem: Some(b"-----BEGIN CERTIFICATE-----\nnot base64\n".to_vec()),
        ..good.clone()
    })
    .contains("HEIMWEG_SMTP_CA_FILE"));
    // A CA file cut short is refused too, and without the gateway key nothing can be sealed.
    let unsealed = Mailer::new(service.clone().with_fixed_clock(0), good.clone());
    assert!(unsealed.is_ok(), "{:?}", unsealed.err());
    assert!(Mailer::new(
        common::service(Backend::Sqlite, "mail-nokey")
            .await
            .unwrap()
            .1,
        good
    )
    .is_err());
}

/// A claim is fenced: once its lease ran out and another sender claimed the mail, the first
/// one's "sent", "failed" or "hand back" changes nothing, and the second one's counts.
async fn a_sender_whose_lease_ran_out_changes_nothing(backend: Backend) {
    let Some((_db, service)) = service(backend, "mail-fence").await else {
        return;
    };
    let now = service.now();
    import(&sealed(&service, now), &people(1)).await;
    let store = service.store_for_tests();
    let fresh = |tag: &str| {
        let sealer = Sealer::for_gateway(&[7; 32]);
        vec![FreshSecret {
            token_hash: heimweg_service::token_hash(tag),
            sealed: sealer.seal(tag.as_bytes()),
            message_id: format!("<{tag}@stadt.example>"),
        }]
    };
    let first = store.claim_mails(now, 120, fresh("a")).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(store
        .claim_mails(now + 60, 120, fresh("b"))
        .await
        .unwrap()
        .is_empty());
    let second = store.claim_mails(now + 121, 120, fresh("c")).await.unwrap();
    assert_eq!(second.len(), 1);
    let (id, stale, live) = (first[0].id, first[0].claim, second[0].claim);
    assert_ne!(stale, live);
    let state = || async {
        sealed(&service, now)
            .invitations(&Caller::system(), 5)
            .await
            .unwrap()[0]
            .mail
            .clone()
            .unwrap()
    };
    store.release_mails(&[(id, stale)], None).await.unwrap();
    store.mail_failed(id, stale, "late", None).await.unwrap();
    store.mail_sent(id, stale, now + 130).await.unwrap();
    assert_eq!(
        state().await.state,
        MailState::Sending,
        "the stale claim changed nothing"
    );
    store.mail_sent(id, live, now + 131).await.unwrap();
    let m = state().await;
    assert_eq!((m.state, m.sent_at), (MailState::Sent, Some(now + 131)));
}

/// A list imported again after its links expired invites the same device a second time; a
/// reminder goes out once, through the newest link, and leaves the old one expired.
async fn a_device_invited_twice_is_reminded_once_through_its_newest_link(backend: Backend) {
    let Some((_db, service)) = service(backend, "mail-twice").await else {
        return;
    };
    let t0 = service.now();
    let at = |t: i64| sealed(&service, t);
    let list = "user;email;device\nAnna;aw@stadt.example;Annas iPad\n";
    import(&at(t0), list).await;
    let later = t0 + 8 * 86_400;
    import(&at(later), list).await;
    let links = at(later).links(&Caller::system(), 10).await.unwrap();
    assert_eq!(links.len(), 2, "the expired link and a new one");
    let r = at(later)
        .remind(&Caller::system(), None, LinkHours::new(48).unwrap())
        .await
        .unwrap();
    // The second import queued a mail for the new link: it is only kept open.
    assert_eq!((r.queued, r.pending, r.without_address), (0, 1, 0));
    let links = at(later).links(&Caller::system(), 10).await.unwrap();
    let old = links.iter().min_by_key(|l| l.id).unwrap();
    let new = links.iter().max_by_key(|l| l.id).unwrap();
    assert!(old.expires_at <= later, "the old link stays expired");
    assert_eq!(new.expires_at, later + 168 * 3600);
}
