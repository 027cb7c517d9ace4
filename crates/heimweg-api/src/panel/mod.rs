//! The admin web panel: server-rendered HTML pages over the same service as the JSON API,
//! with nothing of its own but sessions, forms and rendering. One module per page (or group
//! of pages); this one holds the routes, the guard every page passes, and what pages share.
//!
//! - **Pages** are plain HTML forms ([`maud`] escapes everything it interpolates); a small
//!   script only adds copy buttons and confirmation prompts, so every page works without it.
//!   Every asset is compiled into the binary: the panel runs on an intranet without a CDN.
//! - **Sessions** live in the store (so a logout or a disabled account ends them on every
//!   gateway); the cookie is `HttpOnly`, `SameSite=Strict` and, unless the operator runs plain
//!   HTTP on purpose, `Secure` with the `__Host-` prefix. A new session id is issued at login
//!   and again after the second factor.
//! - **CSRF**: every POST goes through [`guard`], which refuses cross-site requests by their
//!   `Sec-Fetch-Site`/`Origin` headers and requires the session's synchronizer token (before
//!   login, a double-submit token in its own cookie) in the form. No handler can forget it.
//! - **Roles**: an admin may do everything, a helpdesk account may look but not change.
//! - **Languages**: German and English, from `Accept-Language` or the switch in the header.

mod absences;
mod account;
mod admins;
mod auth;
mod devices;
mod directory;
mod groups;
mod links;
mod my;
mod my_password;
mod overview;
mod requests;
mod review;
mod rollout;
mod settings;
mod users;

#[cfg(feature = "fuzzing")]
pub(crate) mod fuzzing;

use crate::AppState;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use heimweg_control::{LinkHours, Name, Role, SessionStage};
use heimweg_service::{secrets, Caller, Session};
use maud::{html, Markup, PreEscaped, DOCTYPE};

pub(crate) use overview::{actor_label, audit_table};

/// How the panel is served.
#[derive(Debug, Clone)]
pub struct PanelConfig {
    /// Mark cookies `Secure` (and use the `__Host-` prefix). Off only for plain HTTP on
    /// purpose; browsers accept Secure cookies from `http://localhost` anyway.
    pub secure_cookies: bool,
    /// The address staff reach the gateway's pages at (`HEIMWEG_PUBLIC_URL`, checked by
    /// [`public_url`]), for the links the panel hands out. Without it a link is built from the
    /// request's `Host` and `X-Forwarded-Proto`, which only a proxy that sets both gets right.
    pub public_url: Option<String>,
}

/// Checks a public URL: `http` or `https`, a host (and port), nothing after it but one `/`;
/// returned without the slash.
pub fn public_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| format!("{s:?}: a public URL starts with https:// (or http://)"))?;
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    {
        return Err(format!(
            "{s:?}: a public URL is the scheme and the host name (and port), e.g. \
             https://vpn.stadt.example, without a path, query or user"
        ));
    }
    Ok(format!("{}{host}", &s[..s.len() - rest.len()]))
}

/// Largest form body read: the longest field is a list of networks.
const MAX_FORM_BYTES: usize = 64 * 1024;
/// The import form carries a whole people list, URL-encoded (an umlaut takes 6 bytes).
const MAX_IMPORT_FORM_BYTES: usize = 3 * heimweg_control::import::MAX_IMPORT_BYTES;

const PANEL_CSS: &str = include_str!("../../../../web/panel.css");
const PANEL_JS: &str = include_str!("../../../../web/panel.js");

/// Sign-in through the identity provider and the staff page.
fn staff_pages() -> Router<AppState> {
    Router::new()
        .route("/login/provider", get(my::panel_sign_in))
        .route("/oidc/callback", get(my::callback))
        .route("/my", get(my::my_page))
        .route(
            "/my/sign-in",
            get(my::staff_sign_in).post(my_password::sign_in),
        )
        .route("/my/sign-in/code", post(my_password::sign_in_code))
        .route("/my/connect", post(my::connect_sign_in))
        .route("/my/connect/end", post(my::connect_end))
        .route("/my/sign-out", post(my::sign_out))
        .route("/my/devices", post(my::enroll_own))
        .route("/my/devices/{name}/rotate", post(my::rotate_own))
        .route("/my/devices/{name}/revoke", post(my::revoke_own))
}

/// Absences, activations and the access review.
fn access_in_time_pages() -> Router<AppState> {
    Router::new()
        .route("/absences/{id}/end", post(absences::absence_end))
        .route("/activations/{name}/end", post(absences::activation_end))
        .route("/review", get(review::review))
        .route("/review.csv", get(review::review_csv))
        .route("/settings/review", post(review::review_update))
        .route("/settings/shared-key", post(review::shared_key_update))
}

/// The panel's routes; [`guard`] wraps all but the assets.
pub fn routes(state: AppState) -> Router {
    let pages = Router::new()
        .route("/", get(overview::overview))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/login/totp", get(auth::totp_page).post(auth::totp))
        .route("/logout", post(auth::logout))
        .route("/account", get(account::account))
        .route("/account/password", post(account::change_password))
        .route("/account/totp", post(account::totp_begin))
        .route("/account/totp/confirm", post(account::totp_confirm))
        .route("/account/totp/off", post(account::totp_off))
        .route("/lang/{code}", get(lang_switch))
        .route("/devices", get(devices::devices))
        .route(
            "/devices/new",
            get(devices::enroll_form).post(devices::enroll),
        )
        .route(
            "/devices/{name}",
            get(devices::device).post(devices::device_update),
        )
        .route("/devices/{name}/revoke", post(devices::device_revoke))
        .route("/devices/{name}/rotate", post(devices::device_rotate))
        .route("/links", get(links::links).post(links::link_create))
        .route("/links/{id}/revoke", post(links::link_revoke))
        .route("/requests", get(requests::requests))
        .route("/requests/{id}/approve", post(requests::request_approve))
        .route("/requests/{id}/reject", post(requests::request_reject))
        .route(
            "/access",
            get(requests::access_form).post(requests::access_file),
        )
        .route("/users", get(users::users).post(users::user_create))
        .route("/import", get(users::import_page).post(users::import))
        .route("/rollout", get(rollout::rollout))
        .route("/rollout/remind", post(rollout::remind))
        .route("/directory", get(directory::directory))
        .route("/directory/sync", post(directory::sync))
        .route("/users/{name}", get(users::user))
        .route("/users/{name}/disable", post(users::user_disable))
        .route(
            "/users/{name}/second-factor/reset",
            post(users::user_reset_second_factor),
        )
        .route("/groups", get(groups::groups).post(groups::group_create))
        .route(
            "/groups/{name}",
            get(groups::group).post(groups::group_update),
        )
        .route("/groups/{name}/mdm-export", post(groups::group_mdm_export))
        .route("/groups/{name}/window", post(groups::group_window))
        .route(
            "/absences",
            get(absences::absences).post(absences::absence_create),
        )
        .merge(access_in_time_pages())
        .route("/audit", get(overview::audit))
        .route(
            "/settings",
            get(settings::settings).post(settings::settings_update),
        )
        .route("/settings/admins", post(admins::admin_create))
        .route("/settings/admins/{name}/unlock", post(admins::admin_unlock))
        .route(
            "/settings/admins/{name}/disable",
            post(admins::admin_disable),
        )
        .merge(staff_pages())
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard));
    Router::new()
        .route(
            "/assets/panel.css",
            get(|| asset("text/css; charset=utf-8", PANEL_CSS)),
        )
        .route(
            "/assets/panel.js",
            get(|| asset("text/javascript; charset=utf-8", PANEL_JS)),
        )
        .merge(pages)
        .with_state(state)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// German or English.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    De,
}

impl Lang {
    /// The text in this language: both versions sit side by side where they are used, so
    /// no page can miss a translation.
    pub fn t(self, en: &'static str, de: &'static str) -> &'static str {
        match self {
            Lang::En => en,
            Lang::De => de,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
        }
    }

    /// The choice in the `heimweg_lang` cookie, else the first of German or English in
    /// `Accept-Language` (by order; the weights of real browsers follow it).
    fn from_headers(headers: &HeaderMap) -> Lang {
        match cookie(headers, LANG_COOKIE).as_deref() {
            Some("de") => return Lang::De,
            Some("en") => return Lang::En,
            _ => {}
        }
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        for part in accept.split(',') {
            let tag = part
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if tag == "de" || tag.starts_with("de-") {
                return Lang::De;
            }
            if tag == "en" || tag.starts_with("en-") {
                return Lang::En;
            }
        }
        Lang::En
    }
}

const LANG_COOKIE: &str = "heimweg_lang";

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// What [`guard`] learned about a request, for the handlers.
#[derive(Clone)]
pub struct Ctx {
    pub lang: Lang,
    session: Option<Session>,
    /// SHA-256 of the session id, to end or replace the session.
    session_hash: Option<String>,
    /// A staff member signed in on their own page (`/my` only).
    staff: Option<heimweg_service::StaffSession>,
    staff_hash: Option<String>,
    /// Whether admins may sign in through the identity provider (the login page offers it).
    provider_sign_in: bool,
    /// Whether staff may sign in on their own page.
    staff_page: bool,
    /// The token forms on this page must carry.
    pub csrf: String,
    secure: bool,
    /// The path asked for, so that a login can come back to it.
    path: String,
    /// The client's address, for per-client limits; `None` if unknown.
    pub(crate) client: Option<std::net::IpAddr>,
}

impl Ctx {
    /// The logged-in admin, or a redirect to the login page.
    fn admin(&self) -> Result<&Session, PanelError> {
        match &self.session {
            Some(s) if s.stage == SessionStage::Full => Ok(s),
            _ => Err(PanelError::Login(self.path.clone())),
        }
    }

    /// The logged-in account as the service's caller: what it may do is the service's
    /// decision (an admin everything, the helpdesk only look).
    fn caller(&self) -> Result<Caller, PanelError> {
        Ok(Caller::admin(&self.admin()?.admin))
    }

    /// Whether the logged-in account may change things: pages show their forms and buttons
    /// only then (the service refuses the change anyway). A page that is only a form says
    /// 403 at once.
    fn may_change(&self) -> bool {
        self.admin().is_ok_and(|s| s.admin.role == Role::Admin)
    }

    fn writer(&self) -> Result<&Session, PanelError> {
        let s = self.admin()?;
        if s.admin.role == Role::Admin {
            Ok(s)
        } else {
            Err(PanelError::Forbidden)
        }
    }

    fn session_cookie(&self) -> &'static str {
        session_cookie_name(self.secure)
    }
}

fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-heimweg"
    } else {
        "heimweg"
    }
}

fn form_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-heimweg_form"
    } else {
        "heimweg_form"
    }
}

/// `Set-Cookie` for a cookie of the panel: whole site, script cannot read it, never sent along
/// with a request another site started.
fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<i64>) -> HeaderValue {
    cookie_header(name, value, secure, cookie::SameSite::Strict, max_age)
}

/// `Set-Cookie` for a cookie of the panel's whole site that script cannot read, sent along as
/// `same_site` says.
fn cookie_header(
    name: &str,
    value: &str,
    secure: bool,
    same_site: cookie::SameSite,
    max_age: Option<i64>,
) -> HeaderValue {
    let mut c = cookie::Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(same_site)
        .secure(secure)
        .build();
    if let Some(age) = max_age {
        c.set_max_age(cookie::time::Duration::seconds(age));
    }
    HeaderValue::from_str(&c.to_string()).expect("cookie values are base64url")
}

/// SHA-256 of the session id in cookie `name`, if it holds one that could be an id.
fn session_id_hash(headers: &HeaderMap, name: &str) -> Option<String> {
    cookie(headers, name)
        .filter(|v| v.len() <= 64)
        .map(|v| heimweg_service::token_hash(&v))
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = PanelError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Ctx, PanelError> {
        parts
            .extensions
            .get::<Ctx>()
            .cloned()
            .ok_or_else(|| PanelError::Internal("panel route outside the guard".into()))
    }
}

/// True when the browser says the request came from another site. Browsers send
/// `Sec-Fetch-Site` (all current ones) or at least `Origin` on a cross-site POST; a request
/// with neither is not from a browser, and the CSRF token still has to match.
fn cross_site(headers: &HeaderMap) -> bool {
    let value = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    if let Some(site) = value("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match (value("origin"), value("host")) {
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
            origin_host != host
        }
        (Some(_), None) => true,
        _ => false,
    }
}

/// Runs before every panel page: language, session, the CSRF check on every POST, and the
/// security headers on every answer.
pub async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let mut resp = checked(st, req, next).await;
    harden(resp.headers_mut());
    resp
}

/// The panel session of a request, and its id's hash.
async fn admin_session(
    st: &AppState,
    headers: &HeaderMap,
) -> Result<(Option<Session>, Option<String>), PanelError> {
    let Some(hash) = session_id_hash(headers, session_cookie_name(st.panel.secure_cookies)) else {
        return Ok((None, None));
    };
    match st.service.session(&hash).await {
        Ok(Some(s)) => Ok((Some(s), Some(hash))),
        Ok(None) => Ok((None, None)),
        Err(e) => Err(PanelError::Internal(format!("reading the session: {e}"))),
    }
}

/// [`guard`] without the headers.
async fn checked(st: AppState, req: Request, next: Next) -> Response {
    let secure = st.panel.secure_cookies;
    let headers = req.headers();
    let lang = Lang::from_headers(headers);
    let (session, session_hash) = match admin_session(&st, headers).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let path = req.uri().path().to_string();
    let (staff, staff_hash) = match my::staff_session(&st, headers, &path).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    // Before login, forms carry a double-submit token from a cookie of their own.
    let mut new_form_cookie = None;
    let csrf = match (&staff, &session) {
        (Some(s), _) => s.csrf_token.clone(),
        (None, Some(s)) => s.csrf_token.clone(),
        (None, None) => match cookie(headers, form_cookie_name(secure)).filter(|v| v.len() == 43) {
            Some(v) => v,
            None => {
                let t = secrets::random_token(32);
                new_form_cookie = Some(t.clone());
                t
            }
        },
    };
    let client = crate::client_address(&st.trusted_proxies, req.extensions(), req.headers());
    let provider = st.service.identity_provider();
    let ctx = Ctx {
        lang,
        session: session.clone(),
        session_hash: session_hash.clone(),
        staff_hash,
        provider_sign_in: provider.is_some_and(|p| !p.roles.is_empty()),
        staff_page: provider.is_some() || st.service.directory_sign_in().is_some(),
        staff,
        csrf: csrf.clone(),
        secure,
        path,
        client,
    };
    let mut req = req;
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        if cross_site(req.headers()) {
            return PanelError::Csrf(lang).into_response();
        }
        let (parts, body) = req.into_parts();
        // A people list is larger than any other form: only a signed-in person may send one.
        let limit = if session.is_some() && ctx.path == "/import" {
            MAX_IMPORT_FORM_BYTES
        } else {
            MAX_FORM_BYTES
        };
        let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
            return PanelError::BadRequest(
                lang.t("The form is too large.", "Das Formular ist zu groß.")
                    .into(),
            )
            .into_response();
        };
        if !secrets::same(&sent_csrf(&bytes), &csrf) {
            return PanelError::Csrf(lang).into_response();
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }
    if let (Some(s), Some(h)) = (&session, &session_hash) {
        if let Err(e) = st.service.touch_session(h, s).await {
            tracing::warn!(error = %e, "could not extend a panel session");
        }
    }
    req.extensions_mut().insert(ctx);
    let mut resp = next.run(req).await;
    if let Some(t) = new_form_cookie {
        resp.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(form_cookie_name(secure), &t, secure, None),
        );
    }
    resp
}

/// The CSRF token a form body carries: its first `_csrf` field, or nothing.
fn sent_csrf(body: &[u8]) -> String {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "_csrf")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The security headers of every panel answer, refusals included.
fn harden(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    // Pages show staff names and, once, configs: never in a shared cache or the back button.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `path` if it is a path on this site, for redirects: it starts with one `/`, and holds only
/// printable ASCII without `\` (browsers drop tabs and newlines and read `\` as `/`, so
/// "/\t/evil" or "/\\evil" would lead to another site).
pub(crate) fn local_path(path: &str) -> Option<&str> {
    (path.starts_with('/')
        && !path.starts_with("//")
        && path.bytes().all(|b| b.is_ascii_graphic() && b != b'\\'))
    .then_some(path)
}

/// `/lang/de` or `/lang/en`: remembers the choice for a year and goes back.
async fn lang_switch(
    axum::extract::Path(code): axum::extract::Path<String>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let code = if code == "de" { "de" } else { "en" };
    let back = q.get("back").and_then(|b| local_path(b)).unwrap_or("/");
    let mut r = Redirect::to(back).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{LANG_COOKIE}={code}; Path=/; SameSite=Lax; Max-Age=31536000"
        ))
        .expect("ASCII"),
    );
    r
}

/// Everything that can go wrong in the panel, answered as a page.
#[derive(Debug)]
pub enum PanelError {
    /// Not logged in: to the login page, then back to `path`.
    Login(String),
    /// A staff page without a staff session: to the staff page's sign-in.
    StaffSignIn,
    Forbidden,
    Csrf(Lang),
    NotFound(String),
    BadRequest(String),
    TooManyRequests(String),
    Unavailable(String),
    Internal(String),
}

impl From<heimweg_service::ServiceError> for PanelError {
    fn from(e: heimweg_service::ServiceError) -> Self {
        crate::ApiError::from(e).into()
    }
}

impl From<crate::ApiError> for PanelError {
    fn from(e: crate::ApiError) -> Self {
        use crate::ApiError as A;
        match e {
            A::Unauthorized(_) => PanelError::Login("/".into()),
            A::Forbidden(_) => PanelError::Forbidden,
            A::BadRequest(m) | A::Conflict(m) => PanelError::BadRequest(m),
            A::NotFound(m) => PanelError::NotFound(m),
            A::TooManyRequests(m) => PanelError::TooManyRequests(m),
            A::Unavailable(m) => PanelError::Unavailable(m),
            A::Internal(m) => PanelError::Internal(m),
        }
    }
}

impl IntoResponse for PanelError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            PanelError::Login(path) => {
                let next: String = form_urlencoded::byte_serialize(path.as_bytes()).collect();
                return Redirect::to(&format!("/login?next={next}")).into_response();
            }
            PanelError::StaffSignIn => return Redirect::to("/my").into_response(),
            PanelError::Forbidden => (
                StatusCode::FORBIDDEN,
                "Not allowed / Nicht erlaubt",
                "Your account may look but not change anything here. \
                 Ihr Konto darf hier nur ansehen, nichts ändern."
                    .to_string(),
            ),
            PanelError::Csrf(lang) => (
                StatusCode::FORBIDDEN,
                lang.t("Request refused", "Anfrage abgelehnt"),
                lang.t(
                    "This form was sent from another site or has expired. Go back, reload the page and try again.",
                    "Dieses Formular kam von einer anderen Seite oder ist abgelaufen. Gehen Sie zurück, laden Sie die Seite neu und versuchen Sie es noch einmal.",
                )
                .to_string(),
            ),
            PanelError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found / Nicht gefunden", m),
            PanelError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Cannot do that / Nicht möglich", m),
            PanelError::TooManyRequests(m) => (StatusCode::TOO_MANY_REQUESTS, "Too many attempts / Zu viele Versuche", m),
            PanelError::Unavailable(m) => {
                tracing::warn!(message = %m, "panel request refused: the store is busy");
                (StatusCode::SERVICE_UNAVAILABLE, "Busy / Ausgelastet", m)
            }
            PanelError::Internal(cause) => {
                let reference = format!("{:016x}", rand_core::RngCore::next_u64(&mut rand_core::OsRng));
                tracing::error!(%reference, %cause, "panel request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Error / Fehler",
                    format!("Something went wrong on the gateway; reference {reference} in its log."),
                )
            }
        };
        let body = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · heimweg" }
                    link rel="stylesheet" href="/assets/panel.css";
                }
                body {
                    main.narrow {
                        h1 { (title) }
                        p.error role="alert" { (message) }
                        p { a href="/" data-back { "← Back / Zurück" } " · " a href="/" { "Overview / Übersicht" } }
                    }
                    script src="/assets/panel.js" {}
                }
            }
        };
        (status, axum::response::Html(body.into_string())).into_response()
    }
}

type PanelResult = Result<Response, PanelError>;

/// The page frame: header with navigation, account and language switch, then `content`.
fn layout(ctx: &Ctx, title: &str, content: Markup) -> Response {
    let l = ctx.lang;
    let nav: [(&str, &str); 9] = [
        ("/", l.t("Overview", "Übersicht")),
        ("/devices", l.t("Devices", "Geräte")),
        ("/devices/new", l.t("Enroll", "Einrichten")),
        ("/links", l.t("Links", "Links")),
        ("/requests", l.t("Requests", "Anfragen")),
        ("/users", l.t("Users", "Personen")),
        ("/groups", l.t("Groups", "Gruppen")),
        ("/audit", l.t("Audit log", "Protokoll")),
        ("/settings", l.t("Settings", "Einstellungen")),
    ];
    let current = |href: &str| {
        if href == "/" {
            ctx.path == "/"
        } else {
            ctx.path == href
                || (ctx.path.starts_with(href) && href != "/devices")
                || (href == "/devices"
                    && ctx.path.starts_with("/devices/")
                    && ctx.path != "/devices/new")
        }
    };
    let other = match l {
        Lang::En => ("de", "Deutsch"),
        Lang::De => ("en", "English"),
    };
    let back: String = form_urlencoded::byte_serialize(ctx.path.as_bytes()).collect();
    let admin = ctx
        .session
        .as_ref()
        .filter(|s| s.stage == SessionStage::Full);
    let body = html! {
        (DOCTYPE)
        html lang=(l.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · heimweg" }
                link rel="stylesheet" href="/assets/panel.css";
            }
            body {
                a.skip href="#main" { (l.t("Skip to content", "Zum Inhalt springen")) }
                header.top {
                    a.brand href="/" { "heimweg" }
                    @if let Some(s) = admin {
                        nav aria-label=(l.t("Main", "Hauptmenü")) {
                            ul {
                                @for (href, label) in nav {
                                    li { a href=(href) aria-current=[current(href).then_some("page")] { (label) } }
                                }
                            }
                        }
                        div.account {
                            a href="/account" { (s.admin.name) }
                            " (" (role_label(l, s.admin.role)) ") "
                            a href={ "/lang/" (other.0) "?back=" (back) } lang=(other.0) { (other.1) }
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="_csrf" value=(ctx.csrf);
                                button.link type="submit" { (l.t("Log out", "Abmelden")) }
                            }
                        }
                    } @else {
                        div.account {
                            @if let Some(s) = &ctx.staff { (s.user.name) " " }
                            a href={ "/lang/" (other.0) "?back=" (back) } lang=(other.0) { (other.1) }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (content)
                }
                script src="/assets/panel.js" {}
            }
        }
    };
    axum::response::Html(body.into_string()).into_response()
}

fn role_label(l: Lang, r: Role) -> &'static str {
    match r {
        Role::Admin => l.t("admin", "Admin"),
        Role::Helpdesk => l.t("helpdesk, read-only", "Helpdesk, nur lesen"),
    }
}

/// The hidden CSRF field every form carries.
fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="_csrf" value=(ctx.csrf); }
}

/// A notice at the top of a page.
fn notice(kind: &str, text: &str) -> Markup {
    html! { p class={ "notice " (kind) } role=(if kind == "error" { "alert" } else { "status" }) { (text) } }
}

/// "3 min ago", "never": how long ago `at` (Unix seconds) was.
fn ago(l: Lang, at: Option<i64>, now: i64) -> String {
    let Some(at) = at else {
        return l.t("never", "nie").into();
    };
    let d = (now - at).max(0);
    let (n, unit) = if d < 60 {
        (d, l.t("s", "s"))
    } else if d < 3600 {
        (d / 60, l.t("min", "Min."))
    } else if d < 86_400 {
        (d / 3600, l.t("h", "Std."))
    } else {
        (d / 86_400, l.t("days", "Tg."))
    };
    match l {
        Lang::En => format!("{n} {unit} ago"),
        Lang::De => format!("vor {n} {unit}"),
    }
}

/// A Unix time as an ISO-like UTC timestamp, for tables and the audit log.
fn timestamp(at: i64) -> String {
    match jiff::Timestamp::from_second(at) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        // Beyond year 9999: shown as stored.
        Err(_) => at.to_string(),
    }
}

/// A moment as staff read it on their own page: their local time with the zone's abbreviation
/// ("12.12.2026 10:27 CET"), as the invitation mails and sheets write it; the admin pages keep
/// UTC, which every gateway and log shares.
fn local_time(at: i64) -> String {
    heimweg_control::invitation::deadline(at)
}

/// A handshake this recent means "connected" (WireGuard rekeys every 2 minutes in use).
const CONNECTED_SECS: i64 = 180;

/// A link lifetime typed into a form, in hours (72 when left empty).
fn link_hours(l: Lang, field: &Option<String>) -> Result<LinkHours, PanelError> {
    let refused = || {
        PanelError::BadRequest(
            l.t(
                "Hours must be a whole number from 1 to 720.",
                "Stunden müssen eine ganze Zahl von 1 bis 720 sein.",
            )
            .into(),
        )
    };
    match given(field) {
        None => Ok(LinkHours::default()),
        Some(h) => h
            .parse::<u32>()
            .ok()
            .and_then(|h| LinkHours::new(h).ok())
            .ok_or_else(refused),
    }
}

/// An empty form field means "not given".
fn given(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A name typed into a form field called `label` (in the page's language).
fn form_name(label: &str, raw: &str) -> Result<Name, PanelError> {
    Name::new(raw.trim()).map_err(|e| PanelError::BadRequest(format!("{label}: {e}")))
}

/// A name in a path: what exists is found by it, names older versions stored included.
fn path_name(raw: &str) -> Result<Name, PanelError> {
    Name::from_stored(raw).map_err(|_| PanelError::NotFound(format!("nothing is named {raw:?}")))
}

/// The site's own address for links handed to staff: the configured public URL, else as the
/// browser used it.
fn base_url(st: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &st.panel.public_url {
        return url.clone();
    }
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost");
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        == Some("https");
    format!("{}://{host}", if https { "https" } else { "http" })
}

fn status_label(l: Lang, status: heimweg_control::DeviceStatus) -> &'static str {
    use heimweg_control::DeviceStatus as S;
    match status {
        S::Active => l.t("active", "aktiv"),
        S::Expired => l.t("expired", "abgelaufen"),
        S::Revoked => l.t("revoked", "gesperrt"),
    }
}

/// A name as one path segment.
fn urlpath(name: &str) -> String {
    form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The group chooser of a form, on `selected`.
async fn group_select(
    st: &AppState,
    ctx: &Ctx,
    id: &str,
    selected: &str,
) -> Result<Markup, PanelError> {
    let groups = st.service.groups(&ctx.caller()?).await?;
    Ok(html! {
        select id=(id) name="group" { @for g in &groups { option value=(g.name) selected[g.name == selected] { (g.name) } } }
    })
}

/// A redirect after a successful POST (so a reload does not send the form again).
fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Inline SVG markup we rendered ourselves (QR codes).
fn trusted_svg(svg: String) -> PreEscaped<String> {
    PreEscaped(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_url_is_a_scheme_and_a_host() {
        for (given, kept) in [
            ("https://vpn.stadt.example", "https://vpn.stadt.example"),
            ("https://vpn.stadt.example/", "https://vpn.stadt.example"),
            ("http://10.0.0.1:8080", "http://10.0.0.1:8080"),
            ("https://[2001:db8::1]:8443/", "https://[2001:db8::1]:8443"),
        ] {
            assert_eq!(public_url(given).as_deref(), Ok(kept), "{given}");
        }
        for bad in [
            "vpn.stadt.example",
            "ftp://vpn.stadt.example",
            "https://",
            "https://vpn.stadt.example/heimweg",
            "https://vpn.stadt.example?x=1",
            "https://user@vpn.stadt.example",
            "https://vpn.stadt.example\"><script>",
        ] {
            assert!(public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn language_follows_the_cookie_then_accept_language() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::from_headers(&h), Lang::En);
        h.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("de-DE,de;q=0.9,en;q=0.8"),
        );
        assert_eq!(Lang::from_headers(&h), Lang::De);
        h.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("fr-FR, en-GB;q=0.8, de;q=0.5"),
        );
        assert_eq!(Lang::from_headers(&h), Lang::En);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("x=1; heimweg_lang=de"),
        );
        assert_eq!(Lang::from_headers(&h), Lang::De);
    }

    #[test]
    fn cross_site_posts_are_recognised() {
        let mut h = HeaderMap::new();
        assert!(!cross_site(&h), "no browser headers: the token decides");
        h.insert("host", HeaderValue::from_static("vpn.example:8080"));
        h.insert(
            "origin",
            HeaderValue::from_static("http://vpn.example:8080"),
        );
        assert!(!cross_site(&h));
        h.insert("origin", HeaderValue::from_static("http://evil.example"));
        assert!(cross_site(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(
            !cross_site(&h),
            "Sec-Fetch-Site is authoritative when present"
        );
        h.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(cross_site(&h));
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(timestamp(0), "1970-01-01 00:00 UTC");
        assert_eq!(timestamp(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(timestamp(1_796_000_000), "2026-11-30 00:53 UTC");
    }
}
