//! The service and its reconciler together, on real SQLite files and PostgreSQL databases, with
//! a data plane that records what it was given: an enrollment answers only once the data plane
//! has the peer, and a revocation only once it is gone.

use heimweg_control::{Name, PrivateKey, PublicKey};
use heimweg_service::reconcile::{
    DesiredPeer, Directory, ObservedPeer, PeerSink, ReconcileMetrics, Reconciler, SyncReport,
};
use heimweg_service::{Caller, EnrollRequest, Service};
use heimweg_store::testing::Scratch;
use heimweg_store::{backend_tests, Backend};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

backend_tests!(
    an_enrolled_device_is_a_peer_when_enroll_returns,
    a_revoked_device_is_gone_when_revoke_returns,
);

/// A data plane that keeps the last peer set it was given.
#[derive(Default)]
struct Recorder {
    peers: Mutex<HashSet<[u8; 32]>>,
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
}

impl Recorder {
    fn has(&self, key: &PublicKey) -> bool {
        self.peers.lock().unwrap().contains(key.as_bytes())
    }
}

/// A service with a running reconciler over a `Recorder`.
async fn gateway(backend: Backend, tag: &str) -> Option<(Scratch, Service, Arc<Recorder>)> {
    let db = Scratch::new(backend, tag).await?;
    let service =
        Service::new(db.open().await).with_gateway_key(PrivateKey::generate().public_key());
    service.init_defaults([1, 2, 3, 4, 5]).await.unwrap();
    service
        .set_endpoint(&Caller::system(), "vpn.example:51820".parse().unwrap())
        .await
        .unwrap();
    let sink = Arc::new(Recorder::default());
    let metrics = ReconcileMetrics::register(&prometheus::Registry::new()).unwrap();
    let (reconciler, handle) = Reconciler::new(
        service.dedicated_reader().await.unwrap(),
        sink.clone(),
        Arc::new(Directory::default()),
        metrics,
    );
    tokio::spawn(reconciler.run());
    Some((db, service.with_reconciler(handle), sink))
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
