//! The API on a real SQLite file and a real PostgreSQL database, through the router without a
//! server (tower `oneshot`). Every test runs on both backends.

// Each test is one scenario that reads top to bottom; splitting it would hide the story.
#![allow(clippy::too_many_lines)]

backend_tests!(
    create_list_show_and_revoke_a_device,
    validation_errors_are_clear_and_change_nothing,
    an_exhausted_pool_is_a_conflict_with_a_clear_message,
    every_route_needs_a_token_with_the_right_scope,
    an_enrollment_link_works_once_and_can_be_withdrawn,
    enrollment_links_validate_their_input,
    a_rotated_key_replaces_the_old_one_and_keeps_the_addresses,
    devices_and_groups_can_be_changed,
    disabling_a_user_revokes_their_devices,
    tokens_are_managed_over_the_api_without_escalation,
    an_approved_access_request_becomes_the_requesters_enrollment,
    the_public_request_form_is_rate_limited,
    one_client_cannot_use_up_the_request_form,
    concurrent_reads_and_changes_all_succeed,
    forwarded_for_counts_only_from_a_trusted_proxy,
    refusals_before_any_handler_are_json_errors_too,
    device_to_device_traffic_is_off_unless_a_group_asks,
    mdm_profiles_come_as_one_zip_for_writers_only,
    a_people_list_is_imported_over_the_api,
    without_a_directory_a_sync_is_a_conflict_that_says_what_to_set,
    the_identity_settings_name_the_mapping_and_never_the_secret,
    usage_windows_and_absences_are_set_over_the_api,
    sign_in_to_connect_is_set_on_a_group_and_activations_are_listed_and_ended,
    a_staff_second_factor_is_reset_by_users_write_only,
    the_access_review_lists_who_has_access_as_json_and_csv,
);

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use heimweg_api::{router, AppState};
use heimweg_control::{Name, PrivateKey, Scope, Scopes, PRIVATE_KEY_PLACEHOLDER};
use heimweg_service::{Caller, Sealer, Service};
use heimweg_store::testing::Scratch;
use heimweg_store::{backend_tests, Backend};
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

struct Env {
    _db: Scratch,
    state: AppState,
    admin: String,
    reader: String,
}

async fn env(backend: Backend, tag: &str) -> Option<Env> {
    let db = Scratch::new(backend, tag).await?;
    let service = Service::new(db.open().await)
        .with_gateway_key(PrivateKey::generate().public_key())
        .with_sealer(Sealer::new([7; 32]));
    service.init_defaults([1, 2, 3, 4, 5]).await.unwrap();
    service
        .set_endpoint(
            &Caller::system(),
            "vpn.stadt.example:51820".parse().unwrap(),
        )
        .await
        .unwrap();
    let admin = mint(&service, "admin", Scopes::all()).await;
    let reader = mint(&service, "reader", Scopes::new([Scope::DevicesRead])).await;
    Some(Env {
        _db: db,
        state: AppState {
            service,
            panel: heimweg_api::panel::PanelConfig {
                secure_cookies: true,
                public_url: None,
            },
            live: None,
            trusted_proxies: Default::default(),
        },
        admin,
        reader,
    })
}

/// A token with `scopes`, made on the gateway's command line; its secret.
async fn mint(service: &Service, name: &str, scopes: Scopes) -> String {
    service
        .create_token(&Caller::cli("test"), &Name::new(name).unwrap(), &scopes)
        .await
        .unwrap()
        .secret
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

async fn create_list_show_and_revoke_a_device(backend: Backend) {
    let Some(env) = env(backend, "crud").await else {
        return;
    };
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
    assert_is_a_template(&v);
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

async fn validation_errors_are_clear_and_change_nothing(backend: Backend) {
    let Some(env) = env(backend, "invalid").await else {
        return;
    };
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

async fn an_exhausted_pool_is_a_conflict_with_a_clear_message(backend: Backend) {
    let Some(env) = env(backend, "exhausted").await else {
        return;
    };
    env.state
        .service
        .store_for_tests()
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

async fn every_route_needs_a_token_with_the_right_scope(backend: Backend) {
    let Some(env) = env(backend, "auth").await else {
        return;
    };
    // The OpenAPI document is the list of routes: it must name exactly the router's paths,
    // and every operation in it must exist and be guarded as it says.
    let (st, doc, _) = call(&env, Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: std::collections::BTreeSet<String> =
        doc["paths"].as_object().unwrap().keys().cloned().collect();
    let routed: std::collections::BTreeSet<String> = heimweg_api::routes()
        .iter()
        .map(|(p, _)| p.to_string())
        .collect();
    assert_eq!(documented, routed, "OpenAPI paths and router paths differ");
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let uri = path
            .replace("{name}", "x")
            .replace("{id}", "1")
            .replace("{token}", "hw_x")
            .replace("{secret}", "hw_x");
        for (method, op) in ops.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = (method != Method::GET).then(|| json!({}));
            let (st, v, headers) = call(&env, method.clone(), &uri, None, body.clone()).await;
            assert_ne!(st, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
            let Some(scope) = op["x-required-scope"].as_str() else {
                assert_ne!(v["error"]["message"], "no such route", "{method} {uri}");
                assert_ne!(st, StatusCode::UNAUTHORIZED, "{method} {uri} is public");
                continue;
            };
            checked += 1;
            assert!(scope.parse::<Scope>().is_ok(), "{scope}");
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{method} {uri}");
            assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
            assert_eq!(v["error"]["code"], "unauthorized");
            let (st, _, _) = call(&env, method.clone(), &uri, Some("hw_wrong"), body.clone()).await;
            assert_eq!(
                st,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} with an unknown token"
            );
            if scope != "devices:read" {
                let (st, v, _) = call(&env, method.clone(), &uri, Some(&env.reader), body).await;
                assert_eq!(st, StatusCode::FORBIDDEN, "{method} {uri}");
                assert!(v["error"]["message"].as_str().unwrap().contains(scope));
            }
        }
    }
    assert!(
        checked >= 20,
        "only {checked} guarded operations documented"
    );
    let (st, v, _) = call(&env, Method::GET, "/api/v1/nothing", Some(&env.admin), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "not_found");
}

async fn get_page(env: &Env, path: &str) -> (StatusCode, String, axum::http::HeaderMap) {
    page_request(env, Method::GET, path).await
}

/// What the button on a link's page sends.
async fn post_page(env: &Env, path: &str) -> (StatusCode, String, axum::http::HeaderMap) {
    page_request(env, Method::POST, path).await
}

async fn page_request(
    env: &Env,
    method: Method,
    path: &str,
) -> (StatusCode, String, axum::http::HeaderMap) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap();
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

async fn an_enrollment_link_works_once_and_can_be_withdrawn(backend: Backend) {
    let Some(env) = env(backend, "links").await else {
        return;
    };
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

    // Opening it (as a mail scanner or a chat preview would) shows a button and uses nothing.
    for _ in 0..2 {
        let (st, html, _) = get_page(&env, &path).await;
        assert_eq!(st, StatusCode::OK, "{html}");
        assert!(html.contains("carla-ipad") && html.contains("method=\"post\""));
        assert!(!html.contains("PrivateKey") && !html.contains("<svg"));
    }
    assert_eq!(
        device_count(&env).await,
        0,
        "opening the link enrolls nothing"
    );
    // The staff member presses the button, without any token: the config, once.
    let (st, html, headers) = post_page(&env, &path).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
    // The page holds a private key: no other site may frame it (clickjacking a staff member
    // into revealing it), and no browser may sniff it into something else.
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
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
    let (st, _, _) = post_page(&env, &path).await;
    assert_eq!(st, StatusCode::GONE, "a second visit gets nothing");
    let (st, _, _) = get_page(&env, &path).await;
    assert_eq!(st, StatusCode::GONE, "and its page says so");
    let (st, _, _) = post_page(&env, "/enroll/hw_guessed").await;
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
    let (st, _, _) = post_page(&env, &path2).await;
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

async fn enrollment_links_validate_their_input(backend: Backend) {
    let Some(env) = env(backend, "links-invalid").await else {
        return;
    };
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
    let (st, _, _) = post_page(&env, &path).await;
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

async fn enroll(env: &Env, name: &str, owner: &str) -> Value {
    let (st, v, _) = call(
        env,
        Method::POST,
        "/api/v1/devices",
        Some(&env.admin),
        Some(json!({"name": name, "owner": owner})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v
}

/// The keys of the devices the data plane should have now.
async fn active_keys(env: &Env) -> Vec<String> {
    env.state
        .service
        .peer_directory()
        .await
        .unwrap()
        .into_keys()
        .map(|k| {
            heimweg_control::PublicKey::from_bytes(k)
                .unwrap()
                .to_base64()
        })
        .collect()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn a_rotated_key_replaces_the_old_one_and_keeps_the_addresses(backend: Backend) {
    let Some(env) = env(backend, "rotate").await else {
        return;
    };
    let before = enroll(&env, "laptop-7", "anna").await;
    let old_key = before["device"]["public_key"].as_str().unwrap().to_string();
    let (st, v, headers) = call(
        &env,
        Method::POST,
        "/api/v1/devices/laptop-7/rotate",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let new_key = v["device"]["public_key"].as_str().unwrap();
    assert_ne!(new_key, old_key);
    assert_eq!(v["device"]["ipv4"], before["device"]["ipv4"]);
    assert_eq!(v["device"]["ipv6"], before["device"]["ipv6"]);
    assert!(v["device"]["key_rotated_at"].is_i64());
    assert!(v["config"].as_str().unwrap().contains("PrivateKey = "));
    let keys = active_keys(&env).await;
    assert_eq!(
        keys,
        vec![new_key.to_string()],
        "only the new key is a peer"
    );
    // Rotating to a key another device holds, or a malformed one, changes nothing.
    let other = enroll(&env, "laptop-8", "bernd").await;
    for (key, status) in [
        (other["device"]["public_key"].clone(), StatusCode::CONFLICT),
        (json!("not-a-key"), StatusCode::BAD_REQUEST),
    ] {
        let (st, _, _) = call(
            &env,
            Method::POST,
            "/api/v1/devices/laptop-7/rotate",
            Some(&env.admin),
            Some(json!({ "public_key": key })),
        )
        .await;
        assert_eq!(st, status);
    }
    assert!(active_keys(&env).await.contains(&new_key.to_string()));
    // A device's own new public key: no private key in the config.
    let own = PrivateKey::generate().public_key().to_base64();
    let (st, v, _) = call(
        &env,
        Method::POST,
        "/api/v1/devices/laptop-7/rotate",
        Some(&env.admin),
        Some(json!({ "public_key": own })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_is_a_template(&v);
    let (st, _, _) = call(
        &env,
        Method::POST,
        "/api/v1/devices/laptop-7/revoke",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, _) = call(
        &env,
        Method::POST,
        "/api/v1/devices/laptop-7/rotate",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "a revoked device cannot be rotated"
    );
}

async fn devices_and_groups_can_be_changed(backend: Backend) {
    let Some(env) = env(backend, "patch").await else {
        return;
    };
    enroll(&env, "tablet-1", "anna").await;
    let (st, _, _) = call(
        &env,
        Method::POST,
        "/api/v1/groups",
        Some(&env.admin),
        Some(json!({"name": "bauamt", "allowed_prefixes": ["10.30.0.0/16"]})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let rev = env.state.service.revision().await.unwrap();
    let later = now() + 7 * 86_400;
    let (st, v, _) = call(
        &env,
        Method::PATCH,
        "/api/v1/devices/tablet-1",
        Some(&env.admin),
        Some(json!({"group": "bauamt", "expires_at": later, "owner": null})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["group"], "bauamt");
    assert_eq!(v["expires_at"], later);
    assert_eq!(v["owner"], Value::Null);
    assert!(
        env.state.service.revision().await.unwrap() > rev,
        "the gateway follows"
    );
    // Bad changes are refused whole.
    for (body, status) in [
        (json!({"group": "nope"}), StatusCode::NOT_FOUND),
        (json!({"expires_at": 5}), StatusCode::BAD_REQUEST),
        (json!({}), StatusCode::BAD_REQUEST),
        (json!({"colour": "red"}), StatusCode::BAD_REQUEST),
    ] {
        let (st, v, _) = call(
            &env,
            Method::PATCH,
            "/api/v1/devices/tablet-1",
            Some(&env.admin),
            Some(body.clone()),
        )
        .await;
        assert_eq!(st, status, "{body} -> {v}");
    }
    let (_, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/devices/tablet-1",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(v["group"], "bauamt");
    assert_eq!(v["expires_at"], later);
    // Permanent again.
    let (_, v, _) = call(
        &env,
        Method::PATCH,
        "/api/v1/devices/tablet-1",
        Some(&env.admin),
        Some(json!({"expires_at": null})),
    )
    .await;
    assert_eq!(v["expires_at"], Value::Null);
    // The group's policy.
    let (st, v, _) = call(
        &env,
        Method::PATCH,
        "/api/v1/groups/bauamt",
        Some(&env.admin),
        Some(json!({"allowed_prefixes": ["10.30.0.0/16", "10.31.0.9/16"], "dns": ["10.30.0.53"]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v["allowed_prefixes"],
        json!(["10.30.0.0/16", "10.31.0.0/16"])
    );
    assert_eq!(v["dns"], json!(["10.30.0.53"]));
    for body in [
        json!({"allowed_prefixes": []}),
        json!({"allowed_prefixes": ["10.30.0.0/33"]}),
        json!({"dns": ["not a name!"]}),
    ] {
        let (st, _, _) = call(
            &env,
            Method::PATCH,
            "/api/v1/groups/bauamt",
            Some(&env.admin),
            Some(body),
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
    }
    let (_, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/groups/bauamt",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(
        v["allowed_prefixes"],
        json!(["10.30.0.0/16", "10.31.0.0/16"])
    );
    let (_, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/devices?group=bauamt&status=active",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(v["total"], 1);
    let (st, _, _) = call(
        &env,
        Method::GET,
        "/api/v1/devices?status=sleeping",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

async fn disabling_a_user_revokes_their_devices(backend: Backend) {
    let Some(env) = env(backend, "users").await else {
        return;
    };
    let (st, v, _) = call(
        &env,
        Method::POST,
        "/api/v1/users",
        Some(&env.admin),
        Some(json!({"name": "anna", "email": "anna@stadt.example"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    for (body, status) in [
        (json!({"name": "anna"}), StatusCode::CONFLICT),
        (
            json!({"name": "x", "email": "nope"}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"name": ""}), StatusCode::BAD_REQUEST),
    ] {
        let (st, _, _) = call(
            &env,
            Method::POST,
            "/api/v1/users",
            Some(&env.admin),
            Some(body),
        )
        .await;
        assert_eq!(st, status);
    }
    enroll(&env, "anna-laptop", "anna").await;
    enroll(&env, "anna-ipad", "anna").await;
    enroll(&env, "bernd-laptop", "bernd").await;
    let (_, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/users?search=ANN",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(v["total"], 1);
    assert_eq!(v["items"][0]["active_devices"], 2);
    let (_, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/users/anna",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(v["devices"].as_array().unwrap().len(), 2);
    let (st, v, _) = call(
        &env,
        Method::POST,
        "/api/v1/users/anna/disable",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["devices_revoked"], 2);
    assert_eq!(
        active_keys(&env).await.len(),
        1,
        "only bernd's device is left"
    );
    let (st, v, _) = call(
        &env,
        Method::POST,
        "/api/v1/devices",
        Some(&env.admin),
        Some(json!({"name": "anna-new", "owner": "anna"})),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("disabled"));
}

async fn tokens_are_managed_over_the_api_without_escalation(backend: Backend) {
    let Some(env) = env(backend, "tokens").await else {
        return;
    };
    let (st, v, headers) = call(
        &env,
        Method::POST,
        "/api/v1/tokens",
        Some(&env.admin),
        Some(json!({"name": "monitoring", "scopes": ["devices:read"]})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let token = v["token"].as_str().unwrap().to_string();
    let (st, _, _) = call(&env, Method::GET, "/api/v1/devices", Some(&token), None).await;
    assert_eq!(st, StatusCode::OK);
    let (_, v, _) = call(&env, Method::GET, "/api/v1/tokens", Some(&env.admin), None).await;
    let listed = v.to_string();
    assert!(listed.contains("monitoring"));
    assert!(!listed.contains(&token), "secrets are never listed");
    // A token may only hand out what it holds.
    let limited = mint(
        &env.state.service,
        "limited",
        Scopes::new([Scope::TokensWrite, Scope::DevicesRead]),
    )
    .await;
    let (st, v, _) = call(
        &env,
        Method::POST,
        "/api/v1/tokens",
        Some(&limited),
        Some(json!({"name": "escalated", "scopes": ["devices:write"]})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("devices:write"));
    for body in [
        json!({"name": "x", "scopes": []}),
        json!({"name": "x", "scopes": ["root"]}),
        json!({"name": "monitoring", "scopes": ["devices:read"]}),
    ] {
        let (st, _, _) = call(
            &env,
            Method::POST,
            "/api/v1/tokens",
            Some(&env.admin),
            Some(body),
        )
        .await;
        assert!(st == StatusCode::BAD_REQUEST || st == StatusCode::CONFLICT);
    }
    let (st, _, _) = call(
        &env,
        Method::POST,
        "/api/v1/tokens/admin/revoke",
        Some(&limited),
        None,
    )
    .await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "a narrow token cannot revoke a wider one"
    );
    let (st, _, _) = call(&env, Method::GET, "/api/v1/audit", Some(&env.admin), None).await;
    assert_eq!(st, StatusCode::OK, "the admin token still works");
    let (st, _, _) = call(
        &env,
        Method::POST,
        "/api/v1/tokens/monitoring/revoke",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, _) = call(&env, Method::GET, "/api/v1/devices", Some(&token), None).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "a revoked token stops working at once"
    );
    // What a token minted dies with it, at any depth.
    let (_, v, _) = call(
        &env,
        Method::POST,
        "/api/v1/tokens",
        Some(&limited),
        Some(json!({"name": "child", "scopes": ["tokens:write", "devices:read"]})),
    )
    .await;
    let child = v["token"].as_str().unwrap().to_string();
    let (_, v, _) = call(
        &env,
        Method::POST,
        "/api/v1/tokens",
        Some(&child),
        Some(json!({"name": "grandchild", "scopes": ["devices:read"]})),
    )
    .await;
    let grandchild = v["token"].as_str().unwrap().to_string();
    let (st, _, _) = call(
        &env,
        Method::GET,
        "/api/v1/devices",
        Some(&grandchild),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = call(
        &env,
        Method::POST,
        "/api/v1/tokens/limited/revoke",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    for t in [&limited, &child, &grandchild] {
        let (st, _, _) = call(&env, Method::GET, "/api/v1/devices", Some(t), None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "revoked with its parent");
    }
    let (st, _, _) = call(&env, Method::GET, "/api/v1/devices", Some(&env.admin), None).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "tokens outside the family are untouched"
    );
}

async fn an_approved_access_request_becomes_the_requesters_enrollment(backend: Backend) {
    let Some(env) = env(backend, "requests").await else {
        return;
    };
    // Public: no token.
    let (st, v, headers) = call(
        &env,
        Method::POST,
        "/api/v1/access-requests",
        None,
        Some(
            json!({"requester": "Carla Sommer", "contact": "c.sommer@stadt.example",
                    "device_name": "carla-ipad", "reason": "Homeoffice ab Montag"}),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let status_path = v["status_path"].as_str().unwrap().to_string();
    let id = v["id"].as_i64().unwrap();
    let (st, page, _) = get_page(&env, &status_path).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("waiting"), "{page}");
    assert!(!page.contains("/enroll/"));
    // The same device name twice, a bad name, or an unknown page: refused, nothing filed.
    for body in [
        json!({"requester": "Mallory", "device_name": "carla-ipad"}),
        json!({"requester": "", "device_name": "x"}),
        json!({"requester": "M", "device_name": "x", "reason": "r".repeat(501)}),
    ] {
        let (st, _, _) = call(
            &env,
            Method::POST,
            "/api/v1/access-requests",
            None,
            Some(body),
        )
        .await;
        assert!(st == StatusCode::CONFLICT || st == StatusCode::BAD_REQUEST);
    }
    let (st, _, _) = get_page(&env, "/request/hw_guess").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/access-requests?status=pending",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(v["items"][0]["requester"], "Carla Sommer");
    assert!(
        !v.to_string().contains(&status_path[9..]),
        "the secret is not listed"
    );
    let (st, v, _) = call(
        &env,
        Method::POST,
        &format!("/api/v1/access-requests/{id}/approve"),
        Some(&env.admin),
        Some(json!({"group": "default", "expires_in_hours": 24})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "approved");
    assert_eq!(v["link_open"], true);
    let (st, _, _) = call(
        &env,
        Method::POST,
        &format!("/api/v1/access-requests/{id}/reject"),
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "a decided request stays decided");
    // The requester's page now leads to the one-time enrollment.
    let (_, page, _) = get_page(&env, &status_path).await;
    let start = page.find("/enroll/").expect("link on the approved page");
    let link: String = page[start..].chars().take_while(|c| *c != '"').collect();
    let (st, enrolled, _) = post_page(&env, &link).await;
    assert_eq!(st, StatusCode::OK);
    assert!(enrolled.contains("carla-ipad.conf"));
    let (st, _, _) = post_page(&env, &link).await;
    assert_eq!(st, StatusCode::GONE, "once");
    let (_, page, _) = get_page(&env, &status_path).await;
    assert!(page.contains("has been used"), "{page}");
    let (_, d, _) = call(
        &env,
        Method::GET,
        "/api/v1/devices/carla-ipad",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(d["owner"], "Carla Sommer");
    // A rejected request's page says so.
    let (_, v, _) = call(
        &env,
        Method::POST,
        "/api/v1/access-requests",
        None,
        Some(json!({"requester": "Dieter", "device_name": "dieter-pc"})),
    )
    .await;
    let (st, _, _) = call(
        &env,
        Method::POST,
        &format!("/api/v1/access-requests/{}/reject", v["id"]),
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (_, page, _) = get_page(&env, v["status_path"].as_str().unwrap()).await;
    assert!(page.contains("declined"));
}

/// The public form is rate-limited as a whole: a script gets 429s after the burst, and what it
/// filed stays bounded.
async fn the_public_request_form_is_rate_limited(backend: Backend) {
    let Some(env) = env(backend, "reqlimit").await else {
        return;
    };
    let mut admitted = 0;
    let mut refused = None;
    for i in 0..200 {
        let (st, v, _) = call(
            &env,
            Method::POST,
            "/api/v1/access-requests",
            None,
            Some(json!({"requester": "bot", "device_name": format!("bot-{i}")})),
        )
        .await;
        match st {
            StatusCode::CREATED => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                refused = Some(v);
                break;
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    let refused = refused.expect("a flood of filings is refused");
    assert_eq!(refused["error"]["code"], "too_many_requests");
    assert!(admitted >= 30, "the burst gets through ({admitted})");
    let (_, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/access-requests?status=pending&limit=1000",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(v["items"].as_array().unwrap().len(), admitted);
}

/// Files an access request as the client at `addr` (as `axum::serve` with connect info would
/// record it).
async fn file_from(env: &Env, addr: &str, device: &str) -> StatusCode {
    file_forwarded(env, addr, None, device).await
}

/// A filing from connection peer `addr`, with an `X-Forwarded-For` header if given.
async fn file_forwarded(
    env: &Env,
    addr: &str,
    forwarded_for: Option<&str>,
    device: &str,
) -> StatusCode {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/access-requests")
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(f) = forwarded_for {
        req = req.header("x-forwarded-for", f);
    }
    let mut req = req
        .body(Body::from(
            json!({"requester": "someone", "device_name": device}).to_string(),
        ))
        .unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(
        addr.parse::<std::net::SocketAddr>().unwrap(),
    ));
    router(env.state.clone())
        .oneshot(req)
        .await
        .unwrap()
        .status()
}

async fn one_client_cannot_use_up_the_request_form(backend: Backend) {
    let Some(env) = env(backend, "reqclient").await else {
        return;
    };
    // Addresses of their own per backend: the limiter is per process.
    let (a, b) = match backend {
        Backend::Sqlite => ("198.51.100.7:40000", "198.51.100.8:40000"),
        Backend::Postgres => ("203.0.113.7:40000", "203.0.113.8:40000"),
    };
    for i in 0..3 {
        assert_eq!(
            file_from(&env, a, &format!("a-{i}")).await,
            StatusCode::CREATED
        );
    }
    assert_eq!(
        file_from(&env, a, "a-3").await,
        StatusCode::TOO_MANY_REQUESTS,
        "a fourth filing at once from one address waits"
    );
    assert_eq!(
        file_from(&env, b, "b-0").await,
        StatusCode::CREATED,
        "another client is not held up by the first"
    );
}

/// The store's pools are small (a few connections); 20 readers of one device at once, with
/// changes, rotations and revocations beside them, all get their answer. (A request that held
/// one connection and waited for a second once made most of these time out with a 500.)
async fn concurrent_reads_and_changes_all_succeed(backend: Backend) {
    let Some(env) = env(backend, "concurrency").await else {
        return;
    };
    for i in 0..20 {
        let (st, v, _) = call(
            &env,
            Method::POST,
            "/api/v1/devices",
            Some(&env.admin),
            Some(json!({"name": format!("d{i}")})),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    let env = Arc::new(env);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60usize {
        let env = env.clone();
        tasks.spawn(async move {
            let (method, uri, token, body) = match i {
                0..=19 => (
                    Method::GET,
                    "/api/v1/devices/d0".to_string(),
                    &env.reader,
                    None,
                ),
                20..=29 => (
                    Method::GET,
                    "/api/v1/devices?search=d".to_string(),
                    &env.reader,
                    None,
                ),
                30..=41 => (
                    Method::PATCH,
                    format!("/api/v1/devices/d{}", i - 29),
                    &env.admin,
                    Some(json!({"expires_at": 1_900_000_000 + i})),
                ),
                42..=53 => (
                    Method::POST,
                    format!("/api/v1/devices/d{}/rotate", i - 41),
                    &env.admin,
                    None,
                ),
                _ => (
                    Method::POST,
                    format!("/api/v1/devices/d{}/revoke", i - 40),
                    &env.admin,
                    None,
                ),
            };
            let (st, v, _) = call(&env, method.clone(), &uri, Some(token), body).await;
            (format!("{method} {uri}"), st, v)
        });
    }
    let mut failed = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (what, st, v) = done.unwrap();
        if !st.is_success() {
            failed.push(format!("{what}: {st} {v}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 60 failed: {failed:#?}",
        failed.len()
    );
}

async fn forwarded_for_counts_only_from_a_trusted_proxy(backend: Backend) {
    let Some(mut env) = env(backend, "forwarded").await else {
        return;
    };
    // Addresses of their own per backend: the limiter is per process.
    let (proxy, client, other) = match backend {
        Backend::Sqlite => ("127.0.0.2:40000", "198.51.100.40", "198.51.100.41"),
        Backend::Postgres => ("127.0.0.3:40000", "203.0.113.40", "203.0.113.41"),
    };
    // No proxy configured: a header from a loopback peer is the sender's own say-so, and a
    // new address in it at every attempt does not make a new client.
    for i in 0..3 {
        let claimed = format!("192.0.2.{i}");
        let st = file_forwarded(&env, proxy, Some(&claimed), &format!("direct-{i}")).await;
        assert_eq!(st, StatusCode::CREATED);
    }
    let st = file_forwarded(&env, proxy, Some("192.0.2.99"), "direct-3").await;
    assert_eq!(
        st,
        StatusCode::TOO_MANY_REQUESTS,
        "rotating the header escaped the limit"
    );

    // Behind a trusted proxy that appends the address it saw: the client is the right-most
    // address no trusted proxy holds; what the client wrote left of it changes nothing.
    env.state.trusted_proxies =
        heimweg_api::TrustedProxies::new(vec!["127.0.0.0/8".parse().unwrap()]);
    for i in 0..3 {
        let chain = format!("10.9.9.{i}, {client}");
        let st = file_forwarded(&env, proxy, Some(&chain), &format!("proxied-{i}")).await;
        assert_eq!(st, StatusCode::CREATED);
    }
    let chain = format!("10.9.9.99, {client}");
    let st = file_forwarded(&env, proxy, Some(&chain), "proxied-3").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    // Another client behind the same proxy has a budget of its own.
    let st = file_forwarded(&env, proxy, Some(other), "other-0").await;
    assert_eq!(
        st,
        StatusCode::CREATED,
        "clients behind the proxy share one bucket"
    );
}

/// What axum refuses before a handler runs (too large, wrong path type, wrong method) has the
/// same JSON error body as every other refusal, and keeps its status.
async fn refusals_before_any_handler_are_json_errors_too(backend: Backend) {
    let Some(env) = env(backend, "raw_refusals").await else {
        return;
    };
    let cases = [
        (
            Method::POST,
            "/api/v1/devices/anna/rotate",
            Body::from(vec![b' '; 3 << 20]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            Method::POST,
            "/api/v1/enrollment-links/not-a-number/revoke",
            Body::empty(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::DELETE,
            "/api/v1/devices",
            Body::empty(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, uri, body, status, code) in cases {
        let req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", env.admin))
            .body(body)
            .unwrap();
        let resp = router(env.state.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), status, "{method} {uri}");
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "application/json",
            "{method} {uri}"
        );
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"]["code"], code, "{method} {uri}: {v}");
        assert!(
            !v["error"]["message"].as_str().unwrap().is_empty(),
            "{method} {uri}"
        );
    }
}

async fn device_to_device_traffic_is_off_unless_a_group_asks(backend: Backend) {
    let Some(env) = env(backend, "peer_to_peer").await else {
        return;
    };
    // A new gateway's default group reaches the gateway's own addresses, not the device pools.
    let (_, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/groups/default",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(v["allowed_prefixes"][0], "10.77.0.1/32", "{v}");
    assert_eq!(v["peer_to_peer"], false);
    let (st, v, _) = call(
        &env,
        Method::POST,
        "/api/v1/groups",
        Some(&env.admin),
        Some(json!({"name": "lab", "allowed_prefixes": ["10.40.0.0/16"], "peer_to_peer": true})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["peer_to_peer"], true);
    let (st, v, _) = call(
        &env,
        Method::PATCH,
        "/api/v1/groups/lab",
        Some(&env.admin),
        Some(json!({"peer_to_peer": false})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["peer_to_peer"], false);
    assert_eq!(v["allowed_prefixes"][0], "10.40.0.0/16", "the rest stays");
}

/// A config for a device that made its own key: the placeholder where the key goes and no key
/// line, no QR code (no app imports it), and what to do.
fn assert_is_a_template(v: &Value) {
    let config = v["config"].as_str().unwrap();
    assert_eq!(v["config_contains_private_key"], false);
    assert!(config.starts_with(&format!("[Interface]\n{PRIVATE_KEY_PLACEHOLDER}\n")));
    assert!(!config.lines().any(|l| l.starts_with("PrivateKey")));
    assert!(
        v["qr_svg"].is_null(),
        "no QR code of a config without its key"
    );
    assert!(v["next_step"].as_str().unwrap().contains("# PrivateKey"));
}

async fn public_key_of(env: &Env, device: &str) -> Value {
    let (_, v, _) = call(
        env,
        Method::GET,
        &format!("/api/v1/devices/{device}"),
        Some(&env.admin),
        None,
    )
    .await;
    v["public_key"].clone()
}

/// `POST /api/v1/mdm/profiles`: a zip nobody caches, for a token that may change devices; a
/// refused export changes no key.
async fn mdm_profiles_come_as_one_zip_for_writers_only(backend: Backend) {
    let Some(env) = env(backend, "mdm").await else {
        return;
    };
    for name in ["ipad-1", "ipad-2"] {
        let (st, v, _) = call(
            &env,
            Method::POST,
            "/api/v1/devices",
            Some(&env.admin),
            Some(json!({ "name": name })),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    let before = public_key_of(&env, "ipad-1").await;
    let export = |token: &str, body: Value| {
        let token = token.to_string();
        let env = &env;
        async move {
            call(
                env,
                Method::POST,
                "/api/v1/mdm/profiles",
                Some(&token),
                Some(body),
            )
            .await
        }
    };
    let (st, _, _) = export(&env.reader, json!({ "group": "default" })).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v, _) = export(&env.admin, json!({ "devices": ["ipad-1", "nope"] })).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, v, _) = export(
        &env.admin,
        json!({ "group": "default", "platform": "android" }),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v, _) = export(&env.admin, json!({})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        public_key_of(&env, "ipad-1").await,
        before,
        "nothing changed"
    );

    let (st, v, headers) = export(
        &env.admin,
        json!({ "group": "default", "platform": "macos" }),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/zip");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert!(v.as_str().unwrap().starts_with("PK"), "a zip archive");
    assert_ne!(public_key_of(&env, "ipad-1").await, before, "a new key");
}

/// Sends `csv` as the body of a POST to `uri`.
async fn post_csv(env: &Env, uri: &str, token: &str, csv: Vec<u8>) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "text/csv")
        .body(Body::from(csv))
        .unwrap();
    let resp = router(env.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// `POST /api/v1/import/people`: a dry run, the import with its links once, the same file
/// again changing nothing; refused for a reader, for a bad file and for one too large.
async fn a_people_list_is_imported_over_the_api(backend: Backend) {
    let Some(env) = env(backend, "import").await else {
        return;
    };
    let csv = "\u{feff}Benutzer;E-Mail;Gerät\r\nJürgen;j@stadt.example;Jürgens iPad\r\nAnna;kaputt;a1\r\n";
    let uri = "/api/v1/import/people";
    let (st, _) = post_csv(&env, uri, &env.reader, csv.into()).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = post_csv(&env, &format!("{uri}?dry_run=true"), &env.admin, csv.into()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["dry_run"], true);
    assert_eq!(
        v["counts"],
        json!({"users_created": 1, "invited": 1, "unchanged": 0, "refused": 1, "mailed": 0})
    );
    assert_eq!(v["rows"][1]["line"], 3);
    assert!(v["rows"][1]["reason"]
        .as_str()
        .unwrap()
        .starts_with("email:"));
    assert_eq!(v["invitations"], json!([]));

    let (st, v) = post_csv(
        &env,
        &format!("{uri}?link_hours=24"),
        &env.admin,
        csv.into(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["rows"][0]["user_outcome"], "created");
    assert_eq!(v["rows"][0]["device_outcome"], "invited");
    let path = v["invitations"][0]["path"].as_str().unwrap();
    let (st, page, _) = call(&env, Method::GET, path, None, None).await;
    assert_eq!(st, StatusCode::OK, "the link opens");
    assert!(page.as_str().unwrap().contains("Jürgens iPad"));

    let (_, v) = post_csv(&env, uri, &env.admin, csv.into()).await;
    assert_eq!(
        v["counts"],
        json!({"users_created": 0, "invited": 0, "unchanged": 1, "refused": 1, "mailed": 0})
    );

    // By mail: the link is in the queue, not in the answer; the list shows it waiting, and a
    // reminder leaves a mail that is still waiting alone.
    let mailed = "user;email;device\nKarl;k@stadt.example;Karls iPad\nLea;;Leas iPad\n";
    let (st, v) = post_csv(&env, &format!("{uri}?mail=true"), &env.admin, mailed.into()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["counts"]["mailed"], 1);
    assert_eq!(
        v["invitations"].as_array().unwrap().len(),
        1,
        "only Lea's link, by hand"
    );
    assert_eq!(v["invitations"][0]["user"], "Lea");
    // Mail addresses: devices:read alone does not list them.
    let invitations = "/api/v1/invitations";
    let (st, _, _) = call(&env, Method::GET, invitations, Some(&env.reader), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, list, _) = call(&env, Method::GET, invitations, Some(&env.admin), None).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let karl = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["device"] == "Karls iPad")
        .unwrap()
        .clone();
    assert_eq!(karl["mail"]["state"], "queued");
    assert_eq!(karl["email"], "k@stadt.example");
    let remind = "/api/v1/invitations/remind";
    let (st, _, _) = call(
        &env,
        Method::POST,
        remind,
        Some(&env.reader),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v, _) = call(
        &env,
        Method::POST,
        remind,
        Some(&env.admin),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Karl's mail waits; Jürgen (a link from the list) and Lea have no mail yet: Jürgen has an
    // address, Lea none.
    assert_eq!(v, json!({"queued": 1, "without_address": 1, "pending": 1}));
    let (st, _, _) = call(
        &env,
        Method::POST,
        remind,
        Some(&env.admin),
        Some(json!({"group": "nope"})),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _, _) = call(
        &env,
        Method::POST,
        remind,
        Some(&env.admin),
        Some(json!({"link_hours": 0})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    let (st, v) = post_csv(&env, uri, &env.admin, b"user;phone\nx;1\n".to_vec()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v["error"]["message"].as_str().unwrap().contains("phone"));
    let (st, _) = post_csv(&env, &format!("{uri}?link_hours=0"), &env.admin, csv.into()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let huge = vec![b'x'; heimweg_control::import::MAX_IMPORT_BYTES + 1];
    let (st, _) = post_csv(&env, uri, &env.admin, huge).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
}

/// A gateway with no directory connected: the settings are null, and a sync says what to set
/// rather than recording a run. (With a real directory: tests/netns/directory.sh.)
async fn without_a_directory_a_sync_is_a_conflict_that_says_what_to_set(backend: Backend) {
    let Some(env) = env(backend, "directory").await else {
        return;
    };
    let (st, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/directory",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"settings": null, "runs": []}));
    let (st, v, _) = call(
        &env,
        Method::POST,
        "/api/v1/directory/sync",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("HEIMWEG_LDAP_URL"),
        "{v}"
    );
    let (st, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/directory?limit=0&x=1",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
}

/// The identity provider's settings over the API (null without one; never the client
/// secret), and the staff pages when the provider cannot be reached or the answer belongs to
/// no sign-in. (With a real provider: tests/netns/oidc.sh.)
async fn the_identity_settings_name_the_mapping_and_never_the_secret(backend: Backend) {
    use heimweg_control::identity::{ClaimGroupMap, RoleClaims};
    let Some(mut env) = env(backend, "identity").await else {
        return;
    };
    let (st, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/identity",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!((st, v), (StatusCode::OK, json!({"provider": null})));
    let (st, body, _) = get_page(&env, "/my").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        body.contains("/access"),
        "without a provider /my points to the request form"
    );

    // Nobody listens at this issuer: the sign-in cannot begin, and says so.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let settings = heimweg_service::OidcSettings {
        issuer: format!("http://{}", closed.local_addr().unwrap()),
        client_id: "heimweg".into(),
        client_secret: "very-secret-value".into(),
        public_url: "https://vpn.stadt.example".into(),
        ca_pem: None,
        scopes: vec!["profile".into(), "groups".into()],
        login_claim: "preferred_username".into(),
        groups_claim: "groups".into(),
        groups: ClaimGroupMap::parse("tiefbau=Straßenbau, Tiefbau;staff=vpn-users").unwrap(),
        roles: RoleClaims::parse("heimweg-admins", ""),
        device_limit: 3,
        connect_amr: Vec::new(),
        clock_skew: std::time::Duration::from_secs(60),
    };
    drop(closed);
    env.state.service = env
        .state
        .service
        .clone()
        .with_identity_provider(heimweg_service::IdentityProvider::new(settings).unwrap());
    let (st, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/identity",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(!v.to_string().contains("very-secret-value"), "{v}");
    assert_eq!(
        v["provider"]["groups"],
        json!([{"group": "tiefbau", "provider_group": "Straßenbau, Tiefbau"},
               {"group": "staff", "provider_group": "vpn-users"}])
    );
    assert_eq!(
        v["provider"]["redirect_uri"],
        "https://vpn.stadt.example/oidc/callback"
    );
    assert_eq!(v["provider"]["admin_groups"], json!(["heimweg-admins"]));
    let (st, body, headers) = get_page(&env, "/my/sign-in").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("cannot be used"), "{body}");
    assert!(
        !headers
            .get_all(header::SET_COOKIE)
            .iter()
            .any(|c| c.to_str().unwrap().contains("heimweg_signin")),
        "no sign-in began: {headers:?}"
    );
    let (_, login, _) = get_page(&env, "/login").await;
    assert!(
        login.contains("/login/provider"),
        "the login page offers the provider"
    );
    // An answer that belongs to no sign-in of this browser.
    let (st, body, _) = get_page(&env, "/oidc/callback?code=abc&state=def").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("started no sign-in"), "{body}");
    // The staff pages' forms need a staff session.
    let (st, _, headers) = page_request(&env, Method::POST, "/my/sign-out").await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "a form without its token: {headers:?}"
    );
}

/// A group's usage window and absences over the API: set, shown with where they stand now,
/// refused with the reason when wrong (and nothing changed), removed, and guarded by scope.
async fn usage_windows_and_absences_are_set_over_the_api(backend: Backend) {
    let Some(env) = env(backend, "time").await else {
        return;
    };
    let patch = |body: Value| {
        call(
            &env,
            Method::PATCH,
            "/api/v1/groups/default",
            Some(&env.admin),
            Some(body),
        )
    };
    // Open all week: open now, and it never changes.
    let (st, v, _) = patch(json!({"usage_window": {"schedule": "Mo-So 00:00-24:00"}})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let w = &v["usage_window"];
    assert_eq!(w["schedule"], "Mon-Sun 00:00-24:00");
    assert_eq!(w["time_zone"], "Europe/Berlin", "the default zone");
    assert_eq!(w["open_now"], true);
    assert_eq!(w["next_change"], Value::Null);
    // Today and tomorrow closed (in Berlin): closed now, open again the day after tomorrow.
    let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
    let today = jiff::Timestamp::now().to_zoned(berlin.clone()).date();
    let tomorrow = today.tomorrow().unwrap();
    let reopens = berlin
        .to_ambiguous_timestamp(tomorrow.tomorrow().unwrap().at(0, 0, 0, 0))
        .compatible()
        .unwrap()
        .as_second();
    let (st, v, _) = patch(json!({"usage_window": {"schedule": "Mon-Sun 00:00-24:00",
        "time_zone": "Europe/Berlin", "closed_dates": [today.to_string(), tomorrow.to_string()]}}))
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["usage_window"]["open_now"], false, "{v}");
    assert_eq!(v["usage_window"]["next_change"], reopens);
    assert_eq!(v["usage_window"]["closed_dates"][0], today.to_string());
    // Wrong windows are refused with the reason, and the window stays as it was.
    for (body, says) in [
        (
            json!({"usage_window": {"schedule": "Mon-Fri 6-20"}}),
            "time range",
        ),
        (
            json!({"usage_window": {"schedule": "Mon-Fri 06:00-20:00", "time_zone": "Europe/Bonn"}}),
            "time zone",
        ),
        (
            json!({"usage_window": {"schedule": "Mon-Fri 06:00-20:00", "closed_dates": ["24.12.2026"]}}),
            "date",
        ),
        (json!({"usage_window": {"schedule": ""}}), "at least one"),
        (
            json!({"usage_window": {"schedule": "Mon 08:00-09:00", "extra": 1}}),
            "unknown field",
        ),
    ] {
        let (st, v, _) = patch(body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    let (_, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/groups/default",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(v["usage_window"]["open_now"], false, "unchanged: {v}");
    // A change of the networks keeps the window; null removes it.
    let (_, v, _) = patch(json!({"allowed_prefixes": ["10.20.0.0/16"]})).await;
    assert_eq!(v["usage_window"]["schedule"], "Mon-Sun 00:00-24:00");
    let (st, v, _) = patch(json!({"usage_window": null})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["usage_window"], Value::Null);

    // Absences.
    enroll(&env, "anna-laptop", "anna").await;
    let absence = |token: &str, body: Value| {
        let token = token.to_string();
        let env = &env;
        async move {
            call(
                env,
                Method::POST,
                "/api/v1/absences",
                Some(&token),
                Some(body),
            )
            .await
        }
    };
    let (st, v, _) = absence(
        &env.admin,
        json!({"user": "anna", "from": today.to_string(), "until": tomorrow.to_string(),
               "reason": "Fortbildung"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["user"], "anna");
    assert_eq!(v["device"], Value::Null);
    assert_eq!(v["active"], true, "from the start of today");
    assert_eq!(
        v["ends_at"], reopens,
        "until the end of tomorrow, Berlin time"
    );
    assert_eq!(v["created_by"], "token:admin");
    let id = v["id"].as_i64().unwrap();
    for (body, says) in [
        (
            json!({"user": "anna", "device": "anna-laptop", "from": "2030-01-01", "until": "2030-01-02"}),
            "either",
        ),
        (
            json!({"from": "2030-01-01", "until": "2030-01-02"}),
            "either",
        ),
        (
            json!({"device": "anna-laptop", "from": "2030-01-05", "until": "2030-01-02"}),
            "end after",
        ),
        (
            json!({"device": "anna-laptop", "from": "soon", "until": "2030-01-02"}),
            "date",
        ),
        (
            json!({"device": "anna-laptop", "from": "2030-01-01", "until": "2030-01-02", "time_zone": "Mars/Base"}),
            "time zone",
        ),
        (
            json!({"device": "anna-laptop", "from": "2020-01-01", "until": "2020-01-02"}),
            "already be over",
        ),
    ] {
        let (st, v, _) = absence(&env.admin, body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{body}: {v}"
        );
    }
    let (st, _, _) = absence(
        &env.admin,
        json!({"user": "nobody", "from": "2030-01-01", "until": "2030-01-02"}),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // A token that may change users but not devices suspends people, not single devices.
    let people = mint(
        &env.state.service,
        "people",
        Scopes::new([Scope::UsersWrite, Scope::UsersRead]),
    )
    .await;
    let (st, v, _) = absence(
        &people,
        json!({"device": "anna-laptop", "from": "2030-01-01", "until": "2030-01-02"}),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("devices:write"));
    let (st, v, _) = absence(
        &people,
        json!({"user": "anna", "from": "2030-01-01", "until": "2030-01-02"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v, _) = call(&env, Method::GET, "/api/v1/absences", Some(&people), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["total"], 2);
    assert_eq!(v["items"][0]["id"], id, "the running one first");
    // Ended now: no longer listed, and the audit log has both steps.
    let (st, v, _) = call(
        &env,
        Method::POST,
        &format!("/api/v1/absences/{id}/end"),
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["active"], false);
    let (_, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/absences",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(v["total"], 1);
    let (st, _, _) = call(
        &env,
        Method::POST,
        "/api/v1/absences/999999/end",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/audit?limit=20",
        Some(&env.admin),
        None,
    )
    .await;
    let actions: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"absence.create") && actions.contains(&"absence.end"),
        "{actions:?}"
    );
}

/// The access review over the API: every device with access, its networks and window, by
/// whose decision; as CSV for a spreadsheet with formulas defused; the setting bounded and for
/// administrators only.
async fn the_access_review_lists_who_has_access_as_json_and_csv(backend: Backend) {
    let Some(env) = env(backend, "review").await else {
        return;
    };
    enroll(&env, "anna-laptop", "anna").await;
    // A name a spreadsheet would run as a formula, if it were not defused.
    enroll(&env, "-cmd-laptop", "bernd").await;
    enroll(&env, "bernd-old", "bernd").await;
    let (st, _, _) = call(
        &env,
        Method::POST,
        "/api/v1/devices/bernd-old/revoke",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    enroll(&env, "bernd-ipad", "bernd").await;
    let (st, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/access-review",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["total"], 3, "revoked devices have no access: {v}");
    assert_eq!(v["unseen_days"], 0, "off by default");
    let row = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["device"] == "anna-laptop")
        .unwrap();
    assert_eq!(row["user"], "anna");
    assert_eq!(row["group"], "default");
    assert_eq!(row["enrolled_by"], "token:admin");
    assert_eq!(row["usage_window"], Value::Null);
    assert!(row["networks"].as_array().is_some_and(|n| !n.is_empty()));
    let (st, v, headers) = call(
        &env,
        Method::GET,
        "/api/v1/access-review?format=csv",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let csv = v.as_str().unwrap();
    assert!(
        csv.starts_with("\u{feff}user;device;group;networks;usage_window;since;enrolled_by;"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 4, "a header and three devices: {csv}");
    assert!(csv.contains("\"'-cmd-laptop\""), "defused: {csv}");
    assert!(
        csv.contains("\"bernd\";\"bernd-ipad\";\"default\""),
        "{csv}"
    );
    assert!(csv.contains("\"any time\""));
    let (st, _, _) = call(
        &env,
        Method::GET,
        "/api/v1/access-review?format=xml",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // users:read alone is not enough: the list names devices too.
    let people = mint(
        &env.state.service,
        "people",
        Scopes::new([Scope::UsersRead]),
    )
    .await;
    let (st, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/access-review",
        Some(&people),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("devices:read"));
    // The setting: 0 or 14 to 3650 days.
    for bad in [1, 13, 3651] {
        assert!(
            env.state
                .service
                .set_review(&Caller::cli("test"), bad)
                .await
                .is_err(),
            "{bad}"
        );
    }
    env.state
        .service
        .set_review(&Caller::cli("test"), 90)
        .await
        .unwrap();
    let (_, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/access-review",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(v["unseen_days"], 90);
    assert_eq!(
        v["revoked_soon"],
        json!([]),
        "everything was enrolled just now"
    );
    assert!(env.state.service.review_pass().await.unwrap().is_empty());
}

async fn sign_in_to_connect_is_set_on_a_group_and_activations_are_listed_and_ended(
    backend: Backend,
) {
    let Some(env) = env(backend, "connect").await else {
        return;
    };
    let patch = |body: Value| {
        call(
            &env,
            Method::PATCH,
            "/api/v1/groups/default",
            Some(&env.admin),
            Some(body),
        )
    };
    let (st, v, _) = patch(json!({"sign_in_hours": 8})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["sign_in_hours"], 8);
    // Out of range or not a number: refused, and the setting stays.
    for bad in [json!(25), json!(300), json!(-1), json!("8")] {
        let (st, v, _) = patch(json!({ "sign_in_hours": bad })).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
    let (_, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/groups/default",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(v["sign_in_hours"], 8, "unchanged: {v}");
    // Another change keeps it; 0 (or null) turns it off.
    let (_, v, _) = patch(json!({"allowed_prefixes": ["10.20.0.0/16"]})).await;
    assert_eq!(v["sign_in_hours"], 8);
    let (_, v, _) = patch(json!({"sign_in_hours": 0})).await;
    assert_eq!(v["sign_in_hours"], Value::Null);

    enroll(&env, "anna-laptop", "anna").await;
    let (st, v, _) = call(
        &env,
        Method::GET,
        "/api/v1/activations",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["total"], 0);
    // Nothing to end: said so; an unknown user likewise.
    for who in ["anna", "nobody"] {
        let (st, v, _) = call(
            &env,
            Method::POST,
            &format!("/api/v1/users/{who}/activation/end"),
            Some(&env.admin),
            None,
        )
        .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{who}: {v}");
    }
    // A reader may list, not end.
    let reader = mint(
        &env.state.service,
        "activations-reader",
        Scopes::new([Scope::UsersRead]),
    )
    .await;
    let (st, _, _) = call(
        &env,
        Method::GET,
        "/api/v1/activations",
        Some(&reader),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v, _) = call(
        &env,
        Method::POST,
        "/api/v1/users/anna/activation/end",
        Some(&reader),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
}

/// Resetting a staff member's second factor (the sign-in with the directory password) needs
/// users:write; an unknown user is a 404; the reset is audited.
async fn a_staff_second_factor_is_reset_by_users_write_only(backend: Backend) {
    let Some(env) = env(backend, "factorreset").await else {
        return;
    };
    enroll(&env, "anna-laptop", "anna").await;
    let reset = |who: &'static str, token: String| {
        let env = &env;
        async move {
            call(
                env,
                Method::POST,
                &format!("/api/v1/users/{who}/second-factor/reset"),
                Some(&token),
                None,
            )
            .await
        }
    };
    let reader = mint(
        &env.state.service,
        "factor-reader",
        Scopes::new([Scope::UsersRead]),
    )
    .await;
    let (st, v, _) = reset("anna", reader).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v, _) = reset("nobody", env.admin.clone()).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, v, _) = reset("anna", env.admin.clone()).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let log = env
        .state
        .service
        .store_for_tests()
        .audit_log(20)
        .await
        .unwrap();
    assert_eq!(
        log.iter()
            .filter(|e| e.action == heimweg_control::AuditAction::UserTotpReset)
            .count(),
        1
    );
}
