//! heimweg-api: HTTP for heimweg — the JSON API under `/api/v1`, the admin panel, and the
//! public pages staff open (enrollment links, access requests).
//!
//! Every API route requires a bearer token whose scopes cover it, except three public ones
//! whose secret or purpose is the authorisation: the OpenAPI document, the staff
//! access-request form (`POST /api/v1/access-requests`), and the pages behind an enrollment
//! link or a request's status link. Errors are JSON, `{"error": {"code", "message"}}`: 4xx say
//! what to fix; 5xx carry only a reference, and the full cause goes to the log once. A config
//! is in a response exactly once, with `Cache-Control: no-store`.
//!
//! It deliberately holds no business rule: handlers parse the request into the domain's
//! types, call one function of `heimweg-service` with the caller, and render the answer. It
//! does not depend on the store (the service is the only writer) nor on the data plane.
// The OpenAPI document is one `json!`, deeper than the macro's default recursion limit.
#![recursion_limit = "256"]

mod absences;
mod activations;
mod devices;
mod directory;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod groups;
mod identity;
mod links;
pub mod metrics;
pub mod openapi;
pub mod panel;
mod requests;
mod review;
pub mod sheets;
mod tokens;
mod users;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use heimweg_control::import::MAX_IMPORT_BYTES;
use heimweg_control::{escape_markup, Name, PublicKey};
use heimweg_service::{Service, ServiceError, StoreError};
use serde::{Deserialize, Deserializer};
use serde_json::json;
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub service: Service,
    pub panel: panel::PanelConfig,
    /// This gateway's data plane, for the panel's live figures; `None` where there is none
    /// (tests of the API alone).
    pub live: Option<Arc<dyn LiveStats>>,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
}

/// The reverse proxies in front of the API and panel (`HEIMWEG_TRUSTED_PROXIES`). Only a
/// connection from one of them may say, in `X-Forwarded-For`, whom it forwards; anyone else
/// could otherwise put a new address there at every attempt and escape the per-client limits.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<Vec<ipnet::IpNet>>);

impl TrustedProxies {
    pub fn new(networks: Vec<ipnet::IpNet>) -> TrustedProxies {
        TrustedProxies(Arc::new(networks))
    }

    fn contains(&self, addr: std::net::IpAddr) -> bool {
        // An IPv4 client of a dual-stack socket arrives as ::ffff:a.b.c.d.
        let addr = match addr {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|n| n.contains(&addr))
    }

    /// The client a request comes from: the connection's peer, or, when that peer is a
    /// trusted proxy, the right-most address in `X-Forwarded-For` that is not itself a
    /// trusted proxy (each proxy appends the address it was connected from, so everything
    /// left of that is whatever the client chose to send). A malformed entry ends the walk
    /// at the last address a trusted proxy vouched for.
    pub fn client(
        &self,
        peer: std::net::IpAddr,
        headers: &axum::http::HeaderMap,
    ) -> std::net::IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for entry in forwarded.iter().rev() {
            let Ok(addr) = entry.parse::<std::net::IpAddr>() else {
                break;
            };
            client = addr;
            if !self.contains(addr) {
                break;
            }
        }
        client
    }
}

/// What the panel shows of the data plane it runs beside.
pub trait LiveStats: Send + Sync {
    fn totals(&self) -> LiveTotals;
    /// One peer's live counters, by public key; `None` if it is not a peer here.
    fn peer(&self, key: &PublicKey) -> Option<PeerLive>;
}

/// Gateway-wide counters since start, and their rates over about the last minute.
#[derive(Debug, Clone, Default)]
pub struct LiveTotals {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub handshakes: u64,
    pub peers: u64,
    pub connected_peers: u64,
    /// Per minute: received bytes, sent bytes, handshakes; `None` until a minute of samples.
    pub per_minute: Option<(f64, f64, f64)>,
}

/// A peer as the data plane sees it now.
#[derive(Debug, Clone)]
pub struct PeerLive {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Unix seconds.
    pub last_handshake_at: Option<i64>,
    pub endpoint: Option<std::net::SocketAddr>,
}

/// Every route: path and handlers. The router and the OpenAPI document are both checked
/// against this one list (see `tests/api.rs`).
pub fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/api/v1/openapi.json", get(openapi::serve)),
        ("/api/v1/devices", get(devices::list).post(devices::create)),
        (
            "/api/v1/devices/{name}",
            get(devices::show).patch(devices::update),
        ),
        ("/api/v1/devices/{name}/rotate", post(devices::rotate)),
        ("/api/v1/devices/{name}/revoke", post(devices::revoke)),
        ("/api/v1/mdm/profiles", post(devices::mdm_export)),
        ("/api/v1/rollout", get(users::rollout)),
        ("/api/v1/invitations", get(users::invitations)),
        ("/api/v1/invitations/remind", post(users::remind)),
        ("/api/v1/groups", get(groups::list).post(groups::create)),
        (
            "/api/v1/groups/{name}",
            get(groups::show).patch(groups::update),
        ),
        ("/api/v1/users", get(users::list).post(users::create)),
        ("/api/v1/users/{name}", get(users::show)),
        ("/api/v1/users/{name}/disable", post(users::disable)),
        (
            "/api/v1/absences",
            get(absences::list).post(absences::create),
        ),
        ("/api/v1/absences/{id}/end", post(absences::end)),
        ("/api/v1/activations", get(activations::list)),
        (
            "/api/v1/users/{name}/activation/end",
            post(activations::end),
        ),
        (
            "/api/v1/users/{name}/second-factor/reset",
            post(activations::reset_second_factor),
        ),
        ("/api/v1/access-review", get(review::show)),
        ("/api/v1/directory", get(directory::show)),
        ("/api/v1/directory/sync", post(directory::sync)),
        ("/api/v1/identity", get(identity::show)),
        (
            "/api/v1/import/people",
            post(users::import).layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES)),
        ),
        ("/api/v1/tokens", get(tokens::list).post(tokens::create)),
        ("/api/v1/tokens/{name}/revoke", post(tokens::revoke)),
        ("/api/v1/audit", get(links::audit_log)),
        (
            "/api/v1/enrollment-links",
            get(links::list).post(links::create),
        ),
        ("/api/v1/enrollment-links/{id}/revoke", post(links::revoke)),
        (
            "/api/v1/access-requests",
            get(requests::list).post(requests::create),
        ),
        (
            "/api/v1/access-requests/{id}/approve",
            post(requests::approve),
        ),
        (
            "/api/v1/access-requests/{id}/reject",
            post(requests::reject),
        ),
        // Public pages: the secret in the path is the authorisation.
        ("/enroll/{token}", get(links::confirm).post(links::redeem)),
        ("/request/{secret}", get(requests::status_page)),
    ]
}

/// The JSON API, the public pages and the admin panel.
pub fn router(state: AppState) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |r, (path, handlers)| r.route(path, handlers))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(axum::middleware::from_fn(json_errors))
        .with_state(state.clone())
        .merge(panel::routes(state))
}

/// Answers of `/api/` that did not come from a handler (axum's own: a body over the size
/// limit, a path parameter of the wrong type, a method the route lacks) get the documented
/// JSON error body too, with their status kept; a client never has to parse two formats.
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !api || is_json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => status
            .canonical_reason()
            .unwrap_or("the request was refused")
            .to_lowercase(),
        t => t.chars().take(200).collect(),
    };
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::NOT_FOUND => "not_found",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let body = serde_json::to_vec(&json!({"error": {"code": code, "message": message}}))
        .unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// The client's address (see [`TrustedProxies::client`]); `None` when the server was not
/// given peer addresses.
pub(crate) fn client_address(
    proxies: &TrustedProxies,
    extensions: &axum::http::Extensions,
    headers: &axum::http::HeaderMap,
) -> Option<std::net::IpAddr> {
    let peer = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())?;
    Some(proxies.client(peer, headers))
}

/// The client's address as an extractor (never fails).
pub(crate) struct ClientAddr(pub(crate) Option<std::net::IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_address(
            &st.trusted_proxies,
            &parts.extensions,
            &parts.headers,
        )))
    }
}

/// For PATCH bodies: tells "absent" (`None`) from "null" (`Some(None)`).
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A JSON body that may be left out entirely (empty, whatever the Content-Type says): then
/// every field takes its default.
fn optional_body<T: serde::de::DeserializeOwned + Default>(
    bytes: &axum::body::Bytes,
) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid: {e}")))
}

/// Answers 201 with a body that holds a secret (a config or a token): never cached.
fn created_secret(body: serde_json::Value) -> Response {
    let mut resp = (StatusCode::CREATED, Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The one error type of the API.
#[derive(Debug)]
pub enum ApiError {
    /// Without a message: no (valid) token was sent.
    Unauthorized(Option<String>),
    Forbidden(String),
    BadRequest(String),
    NotFound(String),
    Conflict(String),
    TooManyRequests(String),
    /// The store is overloaded or unreachable for the moment: 503 with `Retry-After`.
    Unavailable(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::Unauthorized(m) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                m.unwrap_or_else(|| {
                    "send an API token as 'Authorization: Bearer <token>'".to_string()
                }),
            ),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            ApiError::TooManyRequests(m) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests", m),
            ApiError::Unavailable(m) => {
                tracing::warn!(message = %m, "API request refused: the store is busy");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
            }
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
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
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
            e @ StoreError::Busy => ApiError::Unavailable(e.to_string()),
            StoreError::Unauthorized(m) => ApiError::Unauthorized(Some(m)),
            e @ StoreError::Corrupt { .. } => ApiError::Internal(e.to_string()),
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
            ServiceError::Invalid(m) => ApiError::BadRequest(m),
            ServiceError::Busy(m) => ApiError::TooManyRequests(m),
            ServiceError::Forbidden(scope) => {
                ApiError::Forbidden(format!("this token lacks the scope {:?}", scope.as_str()))
            }
            e @ ServiceError::AdminOnly(_) => ApiError::Forbidden(e.to_string()),
            ServiceError::Unauthorized(_) => ApiError::Unauthorized(None),
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
pub(crate) struct Caller(pub(crate) heimweg_service::Caller);

/// Limits of a list request.
fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(50) {
        l @ 1..=500 => Ok(l),
        _ => Err(ApiError::BadRequest("limit must be 1 to 500".into())),
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
            .ok_or(ApiError::Unauthorized(None))?;
        Ok(Caller(state.service.authenticate_token(token).await?))
    }
}

/// A name from a path or a body, for field `field`.
fn name(field: &str, raw: &str) -> Result<Name, ApiError> {
    Name::new(raw).map_err(|e| ApiError::BadRequest(format!("{field}: {e}")))
}

/// A name in a path: what exists is found by it, names older versions stored included (they
/// were validated less strictly); one that could never have been stored names nothing.
fn path_name(what: &str, raw: &str) -> Result<Name, ApiError> {
    Name::from_stored(raw)
        .map_err(|_| ApiError::NotFound(format!("there is no {what} named {raw:?}")))
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
        HeaderValue::from_static(
            "default-src 'none'; img-src data:; style-src 'unsafe-inline'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    // Frames: the CSP's frame-ancestors for current browsers, this for older ones.
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
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

#[cfg(test)]
mod tests {
    use super::TrustedProxies;
    use axum::http::HeaderMap;
    use std::net::IpAddr;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies() {
        let none = TrustedProxies::default();
        let lb = TrustedProxies::new(vec![
            "127.0.0.1/32".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        let h = headers(&["192.0.2.1"]);
        assert_eq!(none.client(ip("127.0.0.1"), &h), ip("127.0.0.1"));
        assert_eq!(lb.client(ip("198.51.100.9"), &h), ip("198.51.100.9"));
        assert_eq!(lb.client(ip("127.0.0.1"), &h), ip("192.0.2.1"));
        assert_eq!(lb.client(ip("::1"), &h), ip("192.0.2.1"));
        assert_eq!(lb.client(ip("::ffff:127.0.0.1"), &h), ip("192.0.2.1"));
        // No header: the proxy itself is all we know.
        assert_eq!(
            lb.client(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let proxies = TrustedProxies::new(vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/24".parse().unwrap(),
        ]);
        // The client wrote "6.6.6.6"; the first proxy appended the client's real address,
        // the second proxy (10.0.0.5, trusted) appended the first one's.
        let h = headers(&["6.6.6.6, 198.51.100.7, 10.0.0.5"]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &h), ip("198.51.100.7"));
        // Several header lines read as one list.
        let h = headers(&["6.6.6.6", "198.51.100.7"]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &h), ip("198.51.100.7"));
        // Garbage ends the walk at the last address a trusted proxy vouched for.
        let h = headers(&["198.51.100.7, not-an-address, 10.0.0.5"]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &h), ip("10.0.0.5"));
        // Only trusted addresses: the left-most of them is as far as anyone vouches.
        let h = headers(&["10.0.0.7, 10.0.0.5"]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &h), ip("10.0.0.7"));
    }
}
