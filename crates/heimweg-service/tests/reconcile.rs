//! The service and its reconciler together, on real SQLite files and PostgreSQL databases, with
//! a data plane that records what it was given: an enrollment answers only once the data plane
//! has the peer, and a revocation only once it is gone.

use heimweg_control::mobileconfig::ApplePlatform;
use heimweg_control::{GroupPolicy, TunnelMode};
use heimweg_control::{Name, PrivateKey, PublicKey};
use heimweg_service::reconcile::{
    DesiredPeer, Directory, Handle, ObservedPeer, PeerSink, ReconcileMetrics, Reconciler,
    SyncReport,
};
use heimweg_service::{AbsenceOf, AbsenceRequest, Caller, EnrollRequest, MdmExport, Service};
use heimweg_store::testing::Scratch;
use heimweg_store::{backend_tests, Backend, PeerStatus};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

mod common;

backend_tests!(
    an_enrolled_device_is_a_peer_when_enroll_returns,
    a_revoked_device_is_gone_when_revoke_returns,
    the_data_plane_learns_where_other_gateways_saw_devices,
    a_returning_device_gets_its_last_endpoint_as_a_hint,
    an_mdm_export_rekeys_a_group_at_once_and_keeps_each_identifier,
    an_mdm_export_with_an_unknown_or_revoked_device_changes_nothing,
    a_signed_mdm_export_verifies_against_the_city_ca,
);

/// A data plane that keeps the last peer set it was given.
#[derive(Default)]
struct Recorder {
    peers: Mutex<HashSet<[u8; 32]>>,
    /// Every endpoint hint it was given.
    hints: Mutex<Vec<([u8; 32], SocketAddr)>>,
}

impl PeerSink for Recorder {
    fn sync(&self, peers: &[DesiredPeer]) -> SyncReport {
        let mut now = self.peers.lock().unwrap();
        let before = now.len();
        *now = peers.iter().map(|p| p.public_key).collect();
        SyncReport {
            added: now.len().saturating_sub(before),
            ..SyncReport::default()
        }
    }

    fn observed(&self) -> Vec<ObservedPeer> {
        Vec::new()
    }

    fn endpoint_hints(&self, hints: &[([u8; 32], SocketAddr)]) {
        self.hints.lock().unwrap().extend(hints.iter().copied());
    }
}

impl Recorder {
    fn has(&self, key: &PublicKey) -> bool {
        self.peers.lock().unwrap().contains(key.as_bytes())
    }
}

/// A service with a running reconciler over a `Recorder`.
async fn gateway(backend: Backend, tag: &str) -> Option<(Scratch, Service, Arc<Recorder>)> {
    let (db, service) = common::service(backend, tag).await?;
    let (sink, handle) = start_reconciler(&service).await;
    Some((db, service.with_reconciler(handle), sink))
}

/// A reconciler for `service` running over a fresh `Recorder`.
async fn start_reconciler(service: &Service) -> (Arc<Recorder>, Handle) {
    let sink = Arc::new(Recorder::default());
    let metrics = ReconcileMetrics::register(&prometheus::Registry::new()).unwrap();
    let (reconciler, handle) = Reconciler::new(
        service.dedicated_reader().await.unwrap(),
        sink.clone(),
        Arc::new(Directory::default()),
        metrics,
    );
    tokio::spawn(reconciler.run());
    (sink, handle)
}

fn request(name: &str) -> EnrollRequest {
    EnrollRequest {
        name: Name::new(name).unwrap(),
        group: Name::new("default").unwrap(),
        owner: None,
        public_key: None,
        expires_in: None,
    }
}

async fn an_enrolled_device_is_a_peer_when_enroll_returns(backend: Backend) {
    let Some((_db, service, sink)) = gateway(backend, "sync_enroll").await else {
        return;
    };
    // Ten in a row: without the wait, the reconciler's 200 ms poll would have to fall into
    // the moment between the commit and the answer every time.
    for i in 0..10 {
        let e = service
            .enroll(&Caller::system(), request(&format!("d{i}")))
            .await
            .unwrap();
        assert!(sink.has(&e.device.public_key), "enrollment {i}");
    }
}

async fn a_revoked_device_is_gone_when_revoke_returns(backend: Backend) {
    let Some((_db, service, sink)) = gateway(backend, "sync_revoke").await else {
        return;
    };
    for i in 0..10 {
        let name = format!("r{i}");
        let e = service
            .enroll(&Caller::system(), request(&name))
            .await
            .unwrap();
        // Whatever brought it there: the device is a peer before it is revoked.
        for _ in 0..100 {
            if sink.has(&e.device.public_key) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(sink.has(&e.device.public_key));
        service
            .revoke(&Caller::system(), &Name::new(&name).unwrap())
            .await
            .unwrap();
        assert!(!sink.has(&e.device.public_key), "revocation {i}");
    }
}

/// Another gateway on the database saw a device and wrote back where: this gateway's data plane
/// gets that address as an endpoint hint (for a failover), and only for devices that are not
/// revoked.
async fn the_data_plane_learns_where_other_gateways_saw_devices(backend: Backend) {
    let Some((db, service)) = common::service(backend, "hints").await else {
        return;
    };
    let seen = service
        .enroll(&Caller::system(), request("seen"))
        .await
        .unwrap();
    let gone = service
        .enroll(&Caller::system(), request("gone"))
        .await
        .unwrap();
    let other_gateway = db.open().await;
    let status = |key: &PublicKey, endpoint: &str| PeerStatus {
        public_key: *key,
        last_handshake_at: Some(service.now()),
        last_endpoint: Some(endpoint.to_string()),
    };
    other_gateway
        .record_status(&[
            status(&seen.device.public_key, "198.51.100.7:41000"),
            status(&gone.device.public_key, "198.51.100.8:41000"),
        ])
        .await
        .unwrap();
    service
        .revoke(&Caller::system(), &Name::new("gone").unwrap())
        .await
        .unwrap();
    let (sink, _handle) = start_reconciler(&service).await;
    // The first read happens when the reconciler starts. The first pass adds the peer and
    // hands over the same hint again (a returning device's): a hint given twice is one hint.
    let mut hints = Vec::new();
    for _ in 0..500 {
        hints = sink.hints.lock().unwrap().clone();
        if !hints.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    hints.dedup();
    assert_eq!(
        hints,
        [(
            *seen.device.public_key.as_bytes(),
            "198.51.100.7:41000".parse().unwrap()
        )]
    );
}

/// The profiles of an export, by file name: (PayloadIdentifier, the public key of the private
/// key in its config).
fn read_archive(archive: &[u8]) -> Vec<(String, String, PublicKey)> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).unwrap();
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
        let after = |marker: &str| {
            let rest = &text[text.find(marker).unwrap() + marker.len()..];
            rest[..rest.find(['<', '\n']).unwrap()].to_string()
        };
        let identifier = after("<key>PayloadIdentifier</key>\n    <string>");
        let private: PrivateKey = after("PrivateKey = ").parse().unwrap();
        out.push((entry.name().to_string(), identifier, private.public_key()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The iPads of one group get new keys and their profiles in one export: the data plane has the
/// new keys when it returns, each profile's key is its device's, a device of another group is
/// untouched, and a second export replaces each profile under the same identifier.
async fn an_mdm_export_rekeys_a_group_at_once_and_keeps_each_identifier(backend: Backend) {
    let Some((_db, service, sink)) = gateway(backend, "mdm").await else {
        return;
    };
    let admin = Caller::system();
    let ipads = Name::new("iPads").unwrap();
    let policy = GroupPolicy::new(
        vec!["10.20.0.0/16".parse().unwrap()],
        TunnelMode::Split,
        vec![],
    )
    .unwrap();
    service.create_group(&admin, &ipads, &policy).await.unwrap();
    let mut before = Vec::new();
    for name in ["ipad-1", "Büro iPad", "日本語"] {
        let mut r = request(name);
        r.group = ipads.clone();
        before.push(service.enroll(&admin, r).await.unwrap().device);
    }
    let laptop = service
        .enroll(&admin, request("laptop"))
        .await
        .unwrap()
        .device;
    let export = MdmExport {
        group: Some(ipads.clone()),
        devices: vec![],
        platform: ApplePlatform::Ios,
    };
    let first = service.mdm_export(&admin, export.clone()).await.unwrap();
    assert_eq!(first.devices.len(), 3);
    let profiles = read_archive(&first.archive);
    assert_eq!(profiles.len(), 3, "one profile per device, no name twice");
    for d in &first.devices {
        let old = before.iter().find(|b| b.id == d.id).unwrap();
        assert_ne!(d.public_key, old.public_key, "{} has a new key", d.name);
        assert!(sink.has(&d.public_key) && !sink.has(&old.public_key));
        let (_, id, _) = profiles.iter().find(|p| p.2 == d.public_key).unwrap();
        assert!(id.ends_with(&format!(".device.{}", d.id)), "{id}");
    }
    assert!(
        sink.has(&laptop.public_key),
        "another group's device keeps its key"
    );
    let still = service.device(&admin, &laptop.name).await.unwrap();
    assert_eq!(still.public_key, laptop.public_key);

    let second = read_archive(&service.mdm_export(&admin, export).await.unwrap().archive);
    for (a, b) in profiles.iter().zip(&second) {
        assert_eq!((&a.0, &a.1), (&b.0, &b.1), "same file and identifier");
        assert_ne!(a.2, b.2, "a new key");
    }
    let rotations = service
        .audit_log(&admin, 100)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action.as_str() == "device.rotate")
        .count();
    assert_eq!(rotations, 6, "each device's rotation is in the audit log");
}

/// One name in the export that is not an active device, and no key changes.
async fn an_mdm_export_with_an_unknown_or_revoked_device_changes_nothing(backend: Backend) {
    let Some((_db, service, sink)) = gateway(backend, "mdm_refused").await else {
        return;
    };
    let admin = Caller::system();
    let kept = service
        .enroll(&admin, request("ipad-1"))
        .await
        .unwrap()
        .device;
    let gone = service
        .enroll(&admin, request("ipad-2"))
        .await
        .unwrap()
        .device;
    service.revoke(&admin, &gone.name).await.unwrap();
    for other in ["ipad-2", "nobody"] {
        let export = MdmExport {
            group: None,
            devices: vec![kept.name.clone(), Name::new(other).unwrap()],
            platform: ApplePlatform::MacOs,
        };
        assert!(service.mdm_export(&admin, export).await.is_err(), "{other}");
        let now = service.device(&admin, &kept.name).await.unwrap();
        assert_eq!(now.public_key, kept.public_key, "{other}: nothing changed");
        assert!(sink.has(&kept.public_key));
    }
    let nothing = MdmExport {
        group: None,
        devices: vec![],
        platform: ApplePlatform::Ios,
    };
    assert!(service.mdm_export(&admin, nothing).await.is_err());
}

/// With the organisation's certificate, every profile of an export is CMS SignedData that
/// OpenSSL verifies against the city's CA, and whose content is the profile (the device's key
/// and identifier); against another CA it does not verify.
async fn a_signed_mdm_export_verifies_against_the_city_ca(backend: Backend) {
    let Some((_db, service, _sink)) = gateway(backend, "mdm-signed").await else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("heimweg-sign-{}-{backend:?}", std::process::id()));
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for d in [&dir, &other] {
        let ok = std::process::Command::new("bash")
            .arg(repo.join("tests/mail/certs.sh"))
            .arg(d)
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let signer = heimweg_control::signing::ProfileSigner::from_pem(
        &read("tls.crt"),
        &read("tls.key"),
        service.now(),
    )
    .unwrap();
    let service = service.with_profile_signer(signer);
    let admin = Caller::system();
    let device = service
        .enroll(&admin, request("ipad-signed"))
        .await
        .unwrap()
        .device;
    let export = MdmExport {
        group: None,
        devices: vec![device.name.clone()],
        platform: ApplePlatform::Ios,
    };
    let out = service.mdm_export(&admin, export).await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(out.archive)).unwrap();
    let mut signed = Vec::new();
    std::io::Read::read_to_end(&mut zip.by_index(0).unwrap(), &mut signed).unwrap();
    assert!(
        !signed.starts_with(b"<?xml"),
        "a signed profile is DER, not the bare plist"
    );
    std::fs::write(dir.join("p.mobileconfig"), &signed).unwrap();
    let verify = |ca: &std::path::Path| {
        std::process::Command::new("openssl")
            .args(["cms", "-verify", "-inform", "DER", "-purpose", "any", "-in"])
            .arg(dir.join("p.mobileconfig"))
            .arg("-CAfile")
            .arg(ca)
            .arg("-out")
            .arg(dir.join("content.plist"))
            .output()
            .unwrap()
    };
    let ok = verify(&dir.join("ca.crt"));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let plist = std::fs::read_to_string(dir.join("content.plist")).unwrap();
    assert!(
        plist.contains(&format!(".device.{}</string>", device.id)),
        "{plist}"
    );
    let rotated = service.device(&admin, &device.name).await.unwrap();
    let private = plist[plist.find("PrivateKey = ").unwrap() + 13..]
        .split(['\n', '<'])
        .next()
        .unwrap()
        .parse::<PrivateKey>()
        .unwrap();
    assert_eq!(private.public_key(), rotated.public_key);
    assert!(
        !verify(&other.join("ca.crt")).status.success(),
        "another CA must not verify it"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A device cut off and back within minutes (here by an absence entered and ended) gets the
/// endpoint the store last saw as a hint in the pass that adds it again: its first packet under
/// the session the gateway dropped makes the gateway start the handshake, instead of the stock
/// client waiting 15 s for its own.
async fn a_returning_device_gets_its_last_endpoint_as_a_hint(backend: Backend) {
    let Some((_db, service, sink)) = gateway(backend, "returning").await else {
        return;
    };
    let e = service
        .enroll(&Caller::system(), request("laptop"))
        .await
        .unwrap();
    let key = e.device.public_key;
    assert!(sink.has(&key));
    let endpoint: SocketAddr = "198.51.100.9:51000".parse().unwrap();
    service
        .store_for_tests()
        .record_status(&[PeerStatus {
            public_key: key,
            last_handshake_at: Some(service.now()),
            last_endpoint: Some(endpoint.to_string()),
        }])
        .await
        .unwrap();
    let absence = service
        .add_absence(
            &Caller::cli("root"),
            &AbsenceRequest {
                of: AbsenceOf::Device(Name::new("laptop").unwrap()),
                from: "2000-01-01".into(),
                until: "2099-12-31".into(),
                time_zone: String::new(),
                reason: String::new(),
            },
        )
        .await
        .unwrap();
    assert!(!sink.has(&key), "cut off when the absence was entered");
    sink.hints.lock().unwrap().clear();
    service
        .end_absence(&Caller::cli("root"), absence.id)
        .await
        .unwrap();
    assert!(sink.has(&key), "back when it ended");
    assert!(
        sink.hints
            .lock()
            .unwrap()
            .contains(&(*key.as_bytes(), endpoint)),
        "its last endpoint came with it"
    );
}
