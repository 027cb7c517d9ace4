//! heimweg-api: the service layer and the JSON API under `/api/v1`.
//!
//! Every route requires a bearer token whose scopes cover it (`devices:read`, `devices:write`,
//! `groups:read`, `groups:write`, `audit:read`). Errors are JSON, `{"error": {"code", "message"}}`:
//! 4xx say what to fix; 5xx carry only a reference, and the full cause goes to the log once.
//! A created device's config is in the response exactly once, with `Cache-Control: no-store`.
//!
//! It deliberately holds no business logic beyond request handling (that is in [`service`] and
//! the store) and never touches the data plane: the reconciler picks changes up from the store.

pub mod service;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use heimweg_control::{escape_markup, qr::Qr, PublicKey};
use heimweg_store::{Device, DeviceQuery, Group, NewGroup, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use service::{EnrollRequest, ServiceError};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub gateway_key: PublicKey,
}

/// Every scope a token can hold.
pub const SCOPES: [&str; 5] = [
    "devices:read",
    "devices:write",
    "groups:read",
    "groups:write",
    "audit:read",
];

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Hex SHA-256 of a token: what the store keeps.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new random token (`hw_` + 43 base64url characters = 256 bits).
pub fn generate_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    format!(
        "hw_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/devices", get(list_devices).post(create_device))
        .route("/api/v1/devices/{name}", get(show_device))
        .route("/api/v1/devices/{name}/revoke", post(revoke_device))
        .route("/api/v1/groups", get(list_groups).post(create_group))
        .route("/api/v1/audit", get(audit_log))
        .route(
            "/api/v1/enrollment-links",
            get(list_links).post(create_link),
        )
        .route("/api/v1/enrollment-links/{id}/revoke", post(revoke_link))
        // Public: the link's secret is the authorisation.
        .route("/enroll/{token}", get(redeem_link))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(state)
}

/// The one error type of the API.
#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    Forbidden(&'static str),
    BadRequest(String),
    NotFound(String),
    Conflict(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send an API token as 'Authorization: Bearer <token>'".to_string(),
            ),
            ApiError::Forbidden(scope) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this token lacks the scope {scope:?}"),
            ),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            ApiError::Internal(cause) => {
                let reference = format!(
                    "{:016x}",
                    rand_core::RngCore::next_u64(&mut rand_core::OsRng)
                );
                tracing::error!(%reference, %cause, "API request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("internal error; reference {reference} in the gateway's log"),
                )
            }
        };
        let mut resp = (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::NotFound(m) => ApiError::NotFound(m),
            StoreError::Invalid(m) => ApiError::BadRequest(m),
            e @ StoreError::PoolExhausted(_) => ApiError::Conflict(e.to_string()),
            StoreError::Db(e) => ApiError::Internal(format!("database: {e}")),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Store(e) => e.into(),
            ServiceError::Config(e) => ApiError::BadRequest(e.to_string()),
            ServiceError::NotReady(m) => ApiError::Conflict(m),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError::BadRequest(e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::BadRequest(e.body_text())
    }
}

/// The caller, authenticated by bearer token.
pub struct Caller {
    token_name: String,
    scopes: Vec<String>,
}

impl Caller {
    fn require(&self, scope: &'static str) -> Result<(), ApiError> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(scope))
        }
    }

    fn actor(&self) -> String {
        format!("token:{}", self.token_name)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .ok_or(ApiError::Unauthorized)?;
        let found = state.store.api_token_by_hash(&token_hash(token)).await?;
        let t = found.ok_or(ApiError::Unauthorized)?;
        Ok(Caller {
            token_name: t.name,
            scopes: t.scopes,
        })
    }
}

#[derive(Serialize)]
struct DeviceJson {
    id: i64,
    name: String,
    public_key: String,
    group: String,
    owner: Option<String>,
    ipv4: String,
    ipv6: String,
    status: &'static str,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    last_handshake_at: Option<i64>,
    last_endpoint: Option<String>,
}

impl From<Device> for DeviceJson {
    fn from(d: Device) -> Self {
        let status = d.status(now());
        DeviceJson {
            id: d.id,
            name: d.name,
            public_key: d.public_key.to_base64(),
            group: d.group,
            owner: d.owner,
            ipv4: d.ipv4.to_string(),
            ipv6: d.ipv6.to_string(),
            status,
            created_at: d.created_at,
            expires_at: d.expires_at,
            revoked_at: d.revoked_at,
            last_handshake_at: d.last_handshake_at,
            last_endpoint: d.last_endpoint,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    search: Option<String>,
    group: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

async fn list_devices(
    State(st): State<AppState>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require("devices:read")?;
    let Query(p) = params?;
    let limit = p.limit.unwrap_or(50);
    if limit == 0 || limit > 500 {
        return Err(ApiError::BadRequest("limit must be 1 to 500".into()));
    }
    let page = st
        .store
        .devices(&DeviceQuery {
            search: p.search,
            group: p.group,
            limit,
            offset: p.offset.unwrap_or(0),
        })
        .await?;
    let items: Vec<DeviceJson> = page.items.into_iter().map(DeviceJson::from).collect();
    Ok(Json(json!({
        "items": items,
        "total": page.total,
        "limit": limit,
        "offset": p.offset.unwrap_or(0),
    })))
}

async fn show_device(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<DeviceJson>, ApiError> {
    caller.require("devices:read")?;
    let d = st.store.device_by_name(&name).await?;
    Ok(Json(d.into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateDevice {
    name: String,
    #[serde(default = "default_group")]
    group: String,
    owner: Option<String>,
    public_key: Option<String>,
    expires_in_days: Option<u32>,
}

fn default_group() -> String {
    "default".into()
}

async fn create_device(
    State(st): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateDevice>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require("devices:write")?;
    let Json(req) = body?;
    let public_key = req
        .public_key
        .as_deref()
        .map(str::parse::<PublicKey>)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("public_key: {e}")))?;
    let enrolled = service::enroll(
        &st.store,
        st.gateway_key,
        &caller.actor(),
        EnrollRequest {
            name: req.name,
            group: req.group,
            owner: req.owner,
            public_key,
            expires_in_days: req.expires_in_days,
        },
        now(),
    )
    .await?;
    let qr_svg = Qr::encode(&enrolled.config).ok().map(|q| q.to_svg());
    let mobileconfig = mobileconfig_for(&st, &enrolled).await;
    let body = json!({
        "device": DeviceJson::from(enrolled.device),
        "config": enrolled.config,
        "config_contains_private_key": enrolled.has_private_key,
        "file_name": enrolled.file_name,
        "qr_svg": qr_svg,
        "mobileconfig": mobileconfig,
    });
    let mut resp = (StatusCode::CREATED, Json(body)).into_response();
    // The config may hold the device's private key: never cache it anywhere.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// An iOS profile for the new device, when its config is complete (has a private key).
async fn mobileconfig_for(st: &AppState, e: &service::Enrollment) -> Option<String> {
    if !e.has_private_key {
        return None;
    }
    let endpoint = st.store.settings().await.ok()?.endpoint?;
    Some(heimweg_control::mobileconfig::render(
        &e.device.name,
        &e.config,
        &endpoint,
        "heimweg",
        heimweg_control::mobileconfig::ApplePlatform::Ios,
    ))
}

async fn revoke_device(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require("devices:write")?;
    st.store
        .revoke_device(&caller.actor(), &name, now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct GroupJson {
    id: i64,
    name: String,
    allowed_prefixes: Vec<String>,
    full_tunnel: bool,
    dns: Vec<String>,
}

impl From<Group> for GroupJson {
    fn from(g: Group) -> Self {
        GroupJson {
            id: g.id,
            name: g.name,
            allowed_prefixes: g.allowed_prefixes.iter().map(|n| n.to_string()).collect(),
            full_tunnel: g.full_tunnel,
            dns: g.dns,
        }
    }
}

async fn list_groups(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require("groups:read")?;
    let items: Vec<GroupJson> = st
        .store
        .groups()
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(json!({ "items": items, "total": items.len() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGroup {
    name: String,
    allowed_prefixes: Vec<String>,
    #[serde(default)]
    full_tunnel: bool,
    #[serde(default)]
    dns: Vec<String>,
}

async fn create_group(
    State(st): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateGroup>, JsonRejection>,
) -> Result<(StatusCode, Json<GroupJson>), ApiError> {
    caller.require("groups:write")?;
    let Json(req) = body?;
    let prefixes = req
        .allowed_prefixes
        .iter()
        .map(|p| {
            p.parse::<ipnet::IpNet>().map(|n| n.trunc()).map_err(|_| {
                ApiError::BadRequest(format!("{p:?} is not a CIDR such as 10.20.0.0/16"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if prefixes.is_empty() {
        return Err(ApiError::BadRequest(
            "allowed_prefixes must name at least one network".into(),
        ));
    }
    for d in &req.dns {
        if d.parse::<std::net::IpAddr>().is_err() && !heimweg_control::clientconf::is_hostname(d) {
            return Err(ApiError::BadRequest(format!(
                "dns entry {d:?} is neither an IP address nor a domain name"
            )));
        }
    }
    let g = st
        .store
        .create_group(
            &caller.actor(),
            NewGroup {
                name: req.name,
                allowed_prefixes: prefixes,
                full_tunnel: req.full_tunnel,
                dns: req.dns,
            },
            now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(g.into())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateLink {
    device_name: String,
    #[serde(default = "default_group")]
    group: String,
    owner: Option<String>,
    /// Hours until the link stops working; 72 by default, at most 30 days.
    expires_in_hours: Option<u32>,
}

async fn create_link(
    State(st): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateLink>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require("devices:write")?;
    let Json(req) = body?;
    let hours = req.expires_in_hours.unwrap_or(72);
    if hours == 0 || hours > 720 {
        return Err(ApiError::BadRequest(
            "expires_in_hours must be 1 to 720 (30 days)".into(),
        ));
    }
    let token = generate_token();
    let now = now();
    let link = st
        .store
        .create_enrollment_link(
            &caller.actor(),
            &req.device_name,
            &req.group,
            req.owner.as_deref(),
            &token_hash(&token),
            now + i64::from(hours) * 3600,
            now,
        )
        .await?;
    let body = json!({
        "id": link.id,
        "device_name": link.device_name,
        "path": format!("/enroll/{token}"),
        "expires_at": link.expires_at,
    });
    let mut resp = (StatusCode::CREATED, Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

async fn list_links(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require("devices:read")?;
    let now = now();
    let items: Vec<serde_json::Value> = st
        .store
        .enrollment_links(500)
        .await?
        .into_iter()
        .map(|l| {
            let status = if l.used_at.is_some() {
                "used"
            } else if l.revoked_at.is_some() {
                "revoked"
            } else if l.expires_at <= now {
                "expired"
            } else {
                "open"
            };
            json!({"id": l.id, "device_name": l.device_name, "group": l.group,
                   "owner": l.owner, "created_by": l.created_by, "created_at": l.created_at,
                   "expires_at": l.expires_at, "used_at": l.used_at, "status": status})
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

async fn revoke_link(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    caller.require("devices:write")?;
    st.store
        .revoke_enrollment_link(&caller.actor(), id, now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The page a staff member opens on the device: the config once, as a QR code for the iPad's
/// camera and as a download for a laptop. Nothing on it is cached or sent as a referrer.
async fn redeem_link(State(st): State<AppState>, Path(token): Path<String>) -> Response {
    let gone = || {
        let mut r = (
            StatusCode::GONE,
            Html(page(
                "Link not valid",
                "<p>This enrollment link has been used, has expired or was withdrawn. \
                 Ask your IT department for a new one.</p>",
            )),
        )
            .into_response();
        secret_headers(&mut r);
        r
    };
    if token.len() > 128 {
        return gone();
    }
    let enrolled =
        match service::redeem_link(&st.store, st.gateway_key, &token_hash(&token), now()).await {
            Ok(Some(e)) => e,
            Ok(None) => return gone(),
            Err(e) => return ApiError::from(e).into_response(),
        };
    let qr = Qr::encode(&enrolled.config)
        .map(|q| q.to_svg())
        .unwrap_or_default();
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let profile = mobileconfig_for(&st, &enrolled).await.unwrap_or_default();
    let stem = enrolled.file_name.trim_end_matches(".conf");
    let body = format!(
        "<p>Scan this code with the WireGuard app (+ → Create from QR code), or download the \
         file and import it. This page is shown only once.</p>\
         <div class=\"qr\">{qr}</div>\
         <p><a download=\"{file}\" href=\"data:application/octet-stream;base64,{conf}\">\
         Download {file}</a></p>\
         <p><a download=\"{stem}.mobileconfig\" \
         href=\"data:application/x-apple-aspen-config;base64,{profile}\">\
         Download the iPad profile ({stem}.mobileconfig)</a></p>",
        file = escape_markup(&enrolled.file_name),
        stem = escape_markup(stem),
        conf = b64(&enrolled.config),
        profile = b64(&profile),
    );
    let mut r = Html(page("Your VPN access", &body)).into_response();
    secret_headers(&mut r);
    r
}

fn secret_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; img-src data:; style-src 'unsafe-inline'"),
    );
}

/// The shared stylesheet from `web/`, compiled into the binary.
const PAGE_CSS: &str = include_str!("../../../web/page.css");

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>{PAGE_CSS}</style></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = escape_markup(title)
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    limit: Option<u32>,
}

async fn audit_log(
    State(st): State<AppState>,
    caller: Caller,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require("audit:read")?;
    let Query(p) = params?;
    let entries = st.store.audit_log(p.limit.unwrap_or(100).min(1000)).await?;
    let items: Vec<serde_json::Value> = entries
        .into_iter()
        .map(|e| {
            json!({"at": e.at, "actor": e.actor, "action": e.action,
                   "subject": e.subject, "detail": e.detail})
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}
