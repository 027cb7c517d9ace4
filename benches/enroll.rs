//! 10,000 devices enrolled through the JSON API (the router in-process, without a socket, so
//! the figures are the server's own time), then p50/p99 of listing and searching at that size,
//! through the API and as the admin panel's rendered device list pages, on SQLite and, when `HEIMWEG_TEST_POSTGRES` names a server (as in `tests/run.sh`), on
//! PostgreSQL. Prints a Markdown table per backend for BENCHMARKS.md.
//! Run: `cargo bench --bench enroll`.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use heimweg_api::{router, AppState};
use heimweg_control::{Name, PrivateKey, Role, Scopes, SessionStage};
use heimweg_service::{Backend, Caller, Sealer, Service};
use heimweg_store::testing::Scratch;
use std::time::{Duration, Instant};
use tower::ServiceExt;

const DEVICES: usize = 10_000;
const QUERIES: usize = 300;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// How a request authenticates: a bearer token (API) or a session cookie (panel).
#[derive(Clone, Copy)]
enum Auth<'a> {
    Bearer(&'a str),
    Session(&'a str),
}

async fn request(
    app: &axum::Router,
    auth: Auth<'_>,
    method: Method,
    uri: &str,
    body: Option<String>,
) -> StatusCode {
    let mut req = Request::builder().method(method).uri(uri);
    req = match auth {
        Auth::Bearer(token) => req.header(header::AUTHORIZATION, format!("Bearer {token}")),
        Auth::Session(id) => req.header(header::COOKIE, format!("__Host-heimweg={id}")),
    };
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let req = req.body(body.map_or_else(Body::empty, Body::from)).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let _ = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .unwrap();
    status
}

async fn timed(app: &axum::Router, auth: Auth<'_>, uris: &[String]) -> Vec<Duration> {
    let mut t = Vec::with_capacity(uris.len());
    for uri in uris {
        let start = Instant::now();
        assert_eq!(
            request(app, auth, Method::GET, uri, None).await,
            StatusCode::OK
        );
        t.push(start.elapsed());
    }
    t.sort();
    t
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            if let Some(db) = Scratch::new(backend, "bench_enroll").await {
                println!("\n{backend:?}:\n");
                run(&db).await;
            }
        }
    });
}

/// A service on `db` ready to enroll (defaults, an endpoint), the router over it, and a
/// token with every scope.
async fn setup(db: &Scratch) -> (Service, axum::Router, String) {
    let service = Service::connect(db.url())
        .await
        .unwrap()
        .with_gateway_key(PrivateKey::generate().public_key())
        .with_sealer(Sealer::new([7; 32]));
    service.init_defaults([1, 2, 3, 4, 5]).await.unwrap();
    let system = Caller::system();
    service
        .set_endpoint(&system, "vpn.stadt.example:51820".parse().unwrap())
        .await
        .unwrap();
    let token = service
        .create_token(&system, &Name::new("bench").unwrap(), &Scopes::all())
        .await
        .unwrap()
        .secret;
    let app = router(AppState {
        service: service.clone(),
        panel: heimweg_api::panel::PanelConfig {
            secure_cookies: true,
            public_url: None,
        },
        live: None,
        trusted_proxies: Default::default(),
    });
    (service, app, token)
}

/// Enrolls [`DEVICES`] devices one request at a time: the total, and each request's time
/// (sorted).
async fn enroll_all(app: &axum::Router, token: &str) -> (Duration, Vec<Duration>) {
    let start = Instant::now();
    let mut per = Vec::with_capacity(DEVICES);
    for i in 0..DEVICES {
        let body = format!(
            r#"{{"name": "device-{i:05}", "owner": "staff-{:04}"}}"#,
            i % 3000
        );
        let t = Instant::now();
        let st = request(
            app,
            Auth::Bearer(token),
            Method::POST,
            "/api/v1/devices",
            Some(body),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED);
        per.push(t.elapsed());
    }
    per.sort();
    (start.elapsed(), per)
}

/// A logged-in admin's session id, for the panel's pages.
async fn panel_session(service: &Service) -> String {
    let (admin, _) = service
        .create_admin(
            &Caller::system(),
            &Name::new("bench").unwrap(),
            Role::Admin,
            Some("bench-password-1".into()),
        )
        .await
        .unwrap();
    service
        .start_session(None, admin.id, SessionStage::Full)
        .await
        .unwrap()
        .id
}

/// One table row: `measure`, then p50 / p99 of sorted times.
fn row(measure: &str, sorted: &[Duration]) {
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    println!(
        "| {measure} | {} / {} |",
        ms(percentile(sorted, 0.5)),
        ms(percentile(sorted, 0.99))
    );
}

async fn run(db: &Scratch) {
    let (service, app, token) = setup(db).await;
    let (total, per) = enroll_all(&app, &token).await;
    let size = db.size_bytes().await;

    let lists: Vec<String> = (0..QUERIES)
        .map(|i| format!("/api/v1/devices?limit=50&offset={}", (i * 37) % DEVICES))
        .collect();
    let searches: Vec<String> = (0..QUERIES)
        .map(|i| {
            format!(
                "/api/v1/devices?limit=50&search=staff-{:04}",
                (i * 7) % 3000
            )
        })
        .collect();
    let list_t = timed(&app, Auth::Bearer(&token), &lists).await;
    let search_t = timed(&app, Auth::Bearer(&token), &searches).await;

    // The panel: a logged-in admin's session, then the rendered device list (50 rows, the
    // group filter's options, pagination) while paging through and searching.
    let session = panel_session(&service).await;
    let pages: Vec<String> = (0..QUERIES)
        .map(|i| format!("/devices?status=all&page={}", 1 + (i * 37) % (DEVICES / 50)))
        .collect();
    let panel_searches: Vec<String> = (0..QUERIES)
        .map(|i| format!("/devices?q=staff-{:04}", (i * 7) % 3000))
        .collect();
    let page_t = timed(&app, Auth::Session(&session), &pages).await;
    let panel_search_t = timed(&app, Auth::Session(&session), &panel_searches).await;

    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| enroll {DEVICES} devices, total | {:.1} s ({:.0} per second) |",
        total.as_secs_f64(),
        DEVICES as f64 / total.as_secs_f64()
    );
    row("enroll, p50 / p99 per request", &per);
    println!("| database size | {:.1} MB |", size as f64 / 1e6);
    row(
        &format!("list 50 (page through {DEVICES}), p50 / p99"),
        &list_t,
    );
    row("search by owner, p50 / p99", &search_t);
    row(
        &format!("panel: device list page (50 of {DEVICES}), p50 / p99"),
        &page_t,
    );
    row("panel: search by owner, p50 / p99", &panel_search_t);
}
