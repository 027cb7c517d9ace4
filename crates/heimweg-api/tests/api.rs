//! The API on a real SQLite file, through the router without a server (tower `oneshot`).

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use heimweg_api::{generate_token, router, token_hash, AppState, SCOPES};
use heimweg_control::PrivateKey;
use heimweg_store::Store;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use tower::ServiceExt;

struct Env {
    dir: PathBuf,
    state: AppState,
    admin: String,
    reader: String,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn env(tag: &str) -> Env {
    let dir = std::env::temp_dir().join(format!("heimweg-api-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&dir.join("heimweg.db")).await.unwrap();
    store
        .init_defaults([1, 2, 3, 4, 5], 1_795_000_000)
        .await
        .unwrap();
    store
        .set_endpoint("test", "vpn.stadt.example:51820", 1_795_000_000)
        .await
        .unwrap();
    let admin = generate_token();
    let all: Vec<String> = SCOPES.iter().map(|s| s.to_string()).collect();
    store
        .create_api_token("test", "admin", &token_hash(&admin), &all, 0)
        .await
        .unwrap();
    let reader = generate_token();
    store
        .create_api_token(
            "test",
            "reader",
            &token_hash(&reader),
            &["devices:read".into()],
            0,
        )
        .await
        .unwrap();
    Env {
        dir,
        state: AppState {
            store: Arc::new(store),
            gateway_key: PrivateKey::generate().public_key(),
        },
        admin,
        reader,
    }
}

async fn call(
    env: &Env,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value, axum::http::HeaderMap) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let resp = router(env.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, v, headers)
}

async fn device_count(env: &Env) -> u64 {
    let (_, v, _) = call(env, Method::GET, "/api/v1/devices", Some(&env.admin), None).await;
    v["total"].as_u64().unwrap()
}

#[tokio::test]
async fn create_list_show_and_revoke_a_device() {
    let env = env("crud").await;
    let (st, v, headers) = call(
        &env,
        Method::POST,
        "/api/v1/devices",
        Some(&env.admin),
        Some(json!({"name": "anna-ipad", "owner": "anna"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let config = v["config"].as_str().unwrap();
    assert!(config.contains("PrivateKey = "));
    assert!(config.contains("Endpoint = vpn.stadt.example:51820"));
    assert!(config.contains("Address = 10.77.0.2/32"));
    assert_eq!(v["file_name"], "anna-ipad.conf");
    assert!(v["qr_svg"].as_str().unwrap().contains("<svg"));
    assert_eq!(v["device"]["status"], "active");
    let profile = v["mobileconfig"].as_str().unwrap();
    assert!(profile.contains("com.wireguard.ios") && profile.contains("PrivateKey = "));

    // A device that brings its own key gets a template without a private key.
    let own = PrivateKey::generate().public_key().to_base64();
    let (st, v, _) = call(
        &env,
        Method::POST,
        "/api/v1/devices",
        Some(&env.admin),
        Some(json!({"name": "bernd-laptop", "public_key": own})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert!(!v["config"].as_str().unwrap().contains("PrivateKey"));
    assert_eq!(v["config_contains_private_key"], false);
    assert!(
        v["mobileconfig"].is_null(),
        "no profile without a complete config"
    );

    let (st, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/devices?search=anna&limit=10",
        Some(&env.reader),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["total"], 1);
    assert_eq!(v["items"][0]["name"], "anna-ipad");
    assert!(
        v["items"][0].get("config").is_none(),
        "a list never shows configs"
    );

    let (st, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/devices/bernd-laptop",
        Some(&env.reader),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["public_key"], own);

    let (st, _, _) = call(
        &env,
        Method::POST,
        "/api/v1/devices/anna-ipad/revoke",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/devices/anna-ipad",
        Some(&env.reader),
        None,
    )
    .await;
    assert_eq!(v["status"], "revoked");
    let (st, v, _) = call(
        &env,
        Method::POST,
        "/api/v1/devices/anna-ipad/revoke",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");

    let (st, v, _) = call(&env, Method::GET, "/api/v1/audit", Some(&env.admin), None).await;
    assert_eq!(st, StatusCode::OK);
    let actions: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        &actions[..3],
        ["device.revoke", "device.create", "device.create"]
    );
    assert_eq!(v["items"][0]["actor"], "token:admin");
}

#[tokio::test]
async fn validation_errors_are_clear_and_change_nothing() {
    let env = env("invalid").await;
    let post = |body: Value| {
        call(
            &env,
            Method::POST,
            "/api/v1/devices",
            Some(&env.admin),
            Some(body),
        )
    };
    let (st, v, _) = post(json!({"name": "a"})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let before = device_count(&env).await;
    let cases = [
        (
            json!({"name": "x", "public_key": "not-a-key"}),
            StatusCode::BAD_REQUEST,
            "public_key",
        ),
        (json!({"name": "a"}), StatusCode::CONFLICT, "already exists"),
        (
            json!({"name": "y", "group": "nope"}),
            StatusCode::NOT_FOUND,
            "no group",
        ),
        (json!({"name": ""}), StatusCode::BAD_REQUEST, "name"),
        (
            json!({"nam": "typo"}),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (json!({"name": 7}), StatusCode::BAD_REQUEST, "invalid type"),
    ];
    for (body, want, text) in cases {
        let (st, v, _) = post(body.clone()).await;
        assert_eq!(st, want, "{body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(text), "{body}: {msg}");
        assert!(v["error"]["code"].is_string());
    }
    // Malformed JSON.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/devices")
        .header(header::AUTHORIZATION, format!("Bearer {}", env.admin))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"name\":"))
        .unwrap();
    let resp = router(env.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        device_count(&env).await,
        before,
        "failed requests left nothing behind"
    );

    let groups = |body: Value| {
        call(
            &env,
            Method::POST,
            "/api/v1/groups",
            Some(&env.admin),
            Some(body),
        )
    };
    let (st, v, _) = groups(json!({"name": "rathaus", "allowed_prefixes": ["10.20.0.0/33"]})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("CIDR"));
    let (st, _, _) = groups(json!({"name": "rathaus", "allowed_prefixes": []})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _, _) = groups(
        json!({"name": "rathaus", "allowed_prefixes": ["10.20.0.0/16"], "dns": ["bad dns"]}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, v, _) = groups(
        json!({"name": "rathaus", "allowed_prefixes": ["10.20.1.7/16"], "dns": ["10.20.0.53"]}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["allowed_prefixes"][0], "10.20.0.0/16",
        "host bits are masked"
    );
    let (st, _, _) = groups(json!({"name": "rathaus", "allowed_prefixes": ["10.21.0.0/16"]})).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (_, v, _) = call(&env, Method::GET, "/api/v1/groups", Some(&env.admin), None).await;
    assert_eq!(v["total"], 2);

    let (st, _, _) = call(
        &env,
        Method::GET,
        "/api/v1/devices?limit=0",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _, _) = call(
        &env,
        Method::GET,
        "/api/v1/devices?limit=abc",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_exhausted_pool_is_a_conflict_with_a_clear_message() {
    let env = env("exhausted").await;
    env.state
        .store
        .set_setting_for_tests("pool_v4", "10.9.9.0/30")
        .await
        .unwrap();
    let post = |name: &str| {
        call(
            &env,
            Method::POST,
            "/api/v1/devices",
            Some(&env.admin),
            Some(json!({"name": name})),
        )
    };
    assert_eq!(post("only").await.0, StatusCode::CREATED);
    let (st, v, _) = post("one-too-many").await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("exhausted"));
    assert_eq!(device_count(&env).await, 1);
}

#[tokio::test]
async fn every_route_needs_a_token_with_the_right_scope() {
    let env = env("auth").await;
    let routes = [
        (Method::GET, "/api/v1/devices", "devices:read"),
        (Method::POST, "/api/v1/devices", "devices:write"),
        (Method::GET, "/api/v1/devices/x", "devices:read"),
        (Method::POST, "/api/v1/devices/x/revoke", "devices:write"),
        (Method::GET, "/api/v1/groups", "groups:read"),
        (Method::POST, "/api/v1/groups", "groups:write"),
        (Method::GET, "/api/v1/audit", "audit:read"),
    ];
    for (method, uri, scope) in routes {
        let body = (method == Method::POST).then(|| json!({}));
        let (st, v, headers) = call(&env, method.clone(), uri, None, body.clone()).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{method} {uri}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(v["error"]["code"], "unauthorized");
        let (st, _, _) = call(&env, method.clone(), uri, Some("hw_wrong"), body.clone()).await;
        assert_eq!(
            st,
            StatusCode::UNAUTHORIZED,
            "{method} {uri} with an unknown token"
        );
        if scope != "devices:read" {
            let (st, v, _) = call(&env, method.clone(), uri, Some(&env.reader), body).await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{method} {uri}");
            assert!(v["error"]["message"].as_str().unwrap().contains(scope));
        }
    }
    let (st, v, _) = call(&env, Method::GET, "/api/v1/nothing", Some(&env.admin), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "not_found");
}

async fn get_page(env: &Env, path: &str) -> (StatusCode, String, axum::http::HeaderMap) {
    let req = Request::builder().uri(path).body(Body::empty()).unwrap();
    let resp = router(env.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        String::from_utf8_lossy(&bytes).into_owned(),
        headers,
    )
}

#[tokio::test]
async fn an_enrollment_link_works_once_and_can_be_withdrawn() {
    let env = env("links").await;
    let (st, v, headers) = call(
        &env,
        Method::POST,
        "/api/v1/enrollment-links",
        Some(&env.admin),
        Some(json!({"device_name": "carla-ipad", "owner": "carla", "expires_in_hours": 24})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let path = v["path"].as_str().unwrap().to_string();
    assert!(path.starts_with("/enroll/hw_"));
    assert_eq!(
        device_count(&env).await,
        0,
        "nothing is enrolled before the link is opened"
    );

    // The staff member opens it, without any token: the config, once.
    let (st, html, headers) = get_page(&env, &path).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
    assert!(html.contains("<svg") && html.contains("download=\"carla-ipad.conf\""));
    assert!(html.contains("download=\"carla-ipad.mobileconfig\""));
    let (_, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/devices/carla-ipad",
        Some(&env.reader),
        None,
    )
    .await;
    assert_eq!(v["owner"], "carla");
    assert_eq!(v["status"], "active");
    let (st, _, _) = get_page(&env, &path).await;
    assert_eq!(st, StatusCode::GONE, "a second visit gets nothing");
    let (st, _, _) = get_page(&env, "/enroll/hw_guessed").await;
    assert_eq!(st, StatusCode::GONE);

    // A withdrawn link is dead too, and the list says which link is which.
    let (_, v, _) = call(
        &env,
        Method::POST,
        "/api/v1/enrollment-links",
        Some(&env.admin),
        Some(json!({"device_name": "dieter-laptop"})),
    )
    .await;
    let (id, path2) = (
        v["id"].as_i64().unwrap(),
        v["path"].as_str().unwrap().to_string(),
    );
    let (st, _, _) = call(
        &env,
        Method::POST,
        &format!("/api/v1/enrollment-links/{id}/revoke"),
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, _) = get_page(&env, &path2).await;
    assert_eq!(st, StatusCode::GONE);
    let (st, _, _) = call(
        &env,
        Method::POST,
        &format!("/api/v1/enrollment-links/{id}/revoke"),
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/enrollment-links",
        Some(&env.reader),
        None,
    )
    .await;
    let statuses: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["revoked", "used"]);
    assert_eq!(device_count(&env).await, 1);
}

#[tokio::test]
async fn enrollment_links_validate_their_input() {
    let env = env("links-invalid").await;
    let post = |b: Value| {
        call(
            &env,
            Method::POST,
            "/api/v1/enrollment-links",
            Some(&env.admin),
            Some(b),
        )
    };
    assert_eq!(
        post(json!({"device_name": "x", "expires_in_hours": 0}))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(json!({"device_name": "x", "expires_in_hours": 10000}))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(json!({"device_name": "x", "group": "nope"})).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post(json!({"device_name": ""})).await.0,
        StatusCode::BAD_REQUEST
    );
    let (st, _, _) = call(
        &env,
        Method::POST,
        "/api/v1/enrollment-links",
        Some(&env.reader),
        Some(json!({"device_name": "x"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // A link for a name that gets taken in the meantime fails on use and stays usable.
    let (_, v, _) = post(json!({"device_name": "race"})).await;
    let path = v["path"].as_str().unwrap().to_string();
    let (st, _, _) = call(
        &env,
        Method::POST,
        "/api/v1/devices",
        Some(&env.admin),
        Some(json!({"name": "race"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _, _) = get_page(&env, &path).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (_, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/enrollment-links",
        Some(&env.reader),
        None,
    )
    .await;
    assert_eq!(
        v["items"][0]["status"], "open",
        "the failed use gave the claim back"
    );
}
