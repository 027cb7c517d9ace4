//! What the service's test files share: a service on a scratch database, ready to enroll.

use heimweg_control::PrivateKey;
use heimweg_service::{Caller, Service};
use heimweg_store::testing::Scratch;
use heimweg_store::Backend;

/// A service with a gateway key, first-run defaults and an endpoint on a fresh database of
/// `backend`; `None` when that backend is not available here.
pub async fn service(backend: Backend, tag: &str) -> Option<(Scratch, Service)> {
    let db = Scratch::new(backend, tag).await?;
    let service =
        Service::new(db.open().await).with_gateway_key(PrivateKey::generate().public_key());
    service.init_defaults([1, 2, 3, 4, 5]).await.unwrap();
    service
        .set_endpoint(&Caller::system(), "vpn.example:51820".parse().unwrap())
        .await
        .unwrap();
    Some((db, service))
}
