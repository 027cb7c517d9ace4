//! 10,000 devices enrolled through the JSON API (the router in-process, without a socket, so
//! the figures are the server's own time), then p50/p99 of listing and searching at that size,
//! through the API and as the admin panel's rendered device list pages, on SQLite and, when `HEIMWEG_TEST_POSTGRES` names a server (as in `tests/run.sh`), on
//! PostgreSQL. Prints a Markdown table per backend for BENCHMARKS.md.
//! Run: `cargo bench --bench enroll`.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use heimweg_api::{generate_token, router, token_hash, AppState, SCOPES};
use heimweg_control::PrivateKey;
use heimweg_store::testing::Scratch;
use heimweg_store::{Backend, Role, SessionStage};
use std::sync::Arc;
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

async fn run(db: &Scratch) {
    let store = Arc::new(db.open().await);
    store.init_defaults([1, 2, 3, 4, 5], 0).await.unwrap();
    store
        .set_endpoint("bench", "vpn.stadt.example:51820", 0)
        .await
        .unwrap();
    let token = generate_token();
    let scopes: Vec<String> = SCOPES.iter().map(|s| s.to_string()).collect();
    store
        .create_api_token("bench", "bench", &token_hash(&token), &scopes, 0)
        .await
        .unwrap();
    let app = router(AppState {
        store: store.clone(),
        gateway_key: PrivateKey::generate().public_key(),
        panel: heimweg_api::panel::PanelConfig {
            secure_cookies: true,
            sealer: heimweg_api::panel::Sealer::new([7; 32]),
        },
        live: None,
        trusted_proxies: Default::default(),
    });

    let start = Instant::now();
    let mut per = Vec::with_capacity(DEVICES);
    for i in 0..DEVICES {
        let body = format!(
            r#"{{"name": "device-{i:05}", "owner": "staff-{:04}"}}"#,
            i % 3000
        );
        let t = Instant::now();
        let st = request(
            &app,
            Auth::Bearer(&token),
            Method::POST,
            "/api/v1/devices",
            Some(body),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED);
        per.push(t.elapsed());
    }
    let total = start.elapsed();
    per.sort();
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
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let admin = store
        .create_admin("bench", "bench", "$argon2id$unused", Role::Admin, wall)
        .await
        .unwrap();
    let session = generate_token();
    store
        .create_session(
            &token_hash(&session),
            admin.id,
            SessionStage::Full,
            "csrf",
            wall,
            wall + 3600,
        )
        .await
        .unwrap();
    let pages: Vec<String> = (0..QUERIES)
        .map(|i| format!("/devices?status=all&page={}", 1 + (i * 37) % (DEVICES / 50)))
        .collect();
    let panel_searches: Vec<String> = (0..QUERIES)
        .map(|i| format!("/devices?q=staff-{:04}", (i * 7) % 3000))
        .collect();
    let page_t = timed(&app, Auth::Session(&session), &pages).await;
    let panel_search_t = timed(&app, Auth::Session(&session), &panel_searches).await;

    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| enroll {DEVICES} devices, total | {:.1} s ({:.0} per second) |",
        total.as_secs_f64(),
        DEVICES as f64 / total.as_secs_f64()
    );
    println!(
        "| enroll, p50 / p99 per request | {} / {} |",
        ms(percentile(&per, 0.5)),
        ms(percentile(&per, 0.99))
    );
    println!("| database size | {:.1} MB |", size as f64 / 1e6);
    println!(
        "| list 50 (page through {DEVICES}), p50 / p99 | {} / {} |",
        ms(percentile(&list_t, 0.5)),
        ms(percentile(&list_t, 0.99))
    );
    println!(
        "| search by owner, p50 / p99 | {} / {} |",
        ms(percentile(&search_t, 0.5)),
        ms(percentile(&search_t, 0.99))
    );
    println!(
        "| panel: device list page (50 of {DEVICES}), p50 / p99 | {} / {} |",
        ms(percentile(&page_t, 0.5)),
        ms(percentile(&page_t, 0.99))
    );
    println!(
        "| panel: search by owner, p50 / p99 | {} / {} |",
        ms(percentile(&panel_search_t, 0.5)),
        ms(percentile(&panel_search_t, 0.99))
    );
}
