//! The admin panel through the router without a server (tower `oneshot`), on a real SQLite
//! file and a real PostgreSQL database: logins, the second factor, sessions, CSRF, roles,
//! escaping and the pages themselves. Every test runs on both backends.
//!
//! A small cookie jar ([`Browser`]) plays the browser, so the tests see exactly the cookies
//! and tokens a real one would send, and nothing more.

// Each test is one scenario that reads top to bottom; splitting it would hide the story.
#![allow(clippy::too_many_lines)]

backend_tests!(
    login_rotates_the_session_and_sets_hardened_cookies,
    wrong_passwords_lock_the_account,
    cross_site_and_tokenless_posts_are_refused,
    helpdesk_can_look_but_not_change,
    second_factor_is_required_once_set_up_and_codes_work_once,
    logout_ends_the_session,
    pages_render_for_an_admin_in_both_languages,
    html_in_names_is_escaped,
    unknown_names_and_bad_input_change_nothing,
    a_lock_holds_in_every_session_waiting_for_the_second_factor,
    redirects_never_leave_the_site,
    twenty_helpdesk_page_loads_at_once_all_succeed,
    links_start_with_the_public_url,
    a_groups_devices_get_their_mdm_profiles_as_one_zip,
    a_staff_list_is_checked_then_imported_from_the_panel,
    usage_windows_and_absences_are_set_in_the_panel,
    the_access_review_announces_and_lists_and_downloads,
    sign_in_to_connect_is_set_and_activations_ended_in_the_panel,
);

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use heimweg_api::panel::PanelConfig;
use heimweg_api::{router, AppState};
use heimweg_control::PrivateKey;
use heimweg_control::{Actor, Name, Role};
use heimweg_service::secrets::{
    hash_password, new_recovery_codes, new_totp_secret, recovery_code_hash, totp_code,
};
use heimweg_service::{token_hash, Caller, EnrollRequest, Sealer, Service};
use heimweg_store::testing::Scratch;
use heimweg_store::{backend_tests, Backend, DeviceQuery, NewDevice, Store};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const SESSION_COOKIE: &str = "__Host-heimweg";
const FORM_COOKIE: &str = "__Host-heimweg_form";
/// The site as the browser addresses it; `Origin` checks compare against it.
const HOST: &str = "vpn.example:8443";
const ADMIN: &str = "anna";
const PASSWORD: &str = "correct horse battery staple";

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct Env {
    _db: Scratch,
    state: AppState,
}

impl Env {
    /// The store behind the service: tests set up states (a known TOTP secret, a lock
    /// lifted) and look at what was written.
    fn store(&self) -> &Store {
        self.state.service.store_for_tests()
    }

    /// What the gateway seals second factors with.
    fn sealer(&self) -> Sealer {
        Sealer::new([7; 32])
    }

    async fn add_admin(&self, name: &str, role: Role) {
        self.store()
            .create_admin(
                &Actor::System,
                &n(name),
                &hash_password(PASSWORD),
                role,
                unix_now(),
            )
            .await
            .unwrap();
    }

    async fn device_count(&self) -> u64 {
        let q = DeviceQuery {
            limit: 500,
            ..DeviceQuery::default()
        };
        self.store().devices(&q, unix_now()).await.unwrap().total
    }

    /// Enrolls a device behind the panel's back, as the API or CLI would.
    async fn enroll(&self, name: &str, owner: Option<&str>) {
        self.state
            .service
            .enroll(
                &Caller::system(),
                EnrollRequest {
                    name: n(name),
                    group: n("default"),
                    owner: owner.map(n),
                    public_key: None,
                    expires_in: None,
                },
            )
            .await
            .unwrap();
    }
}

/// A store with the default group, an endpoint and one admin ([`ADMIN`], no second factor).
fn n(name: &str) -> Name {
    Name::new(name).unwrap()
}

async fn env(backend: Backend, tag: &str) -> Option<Env> {
    let db = Scratch::new(backend, &format!("panel_{tag}")).await?;
    let service = Service::new(db.open().await)
        .with_gateway_key(PrivateKey::generate().public_key())
        .with_sealer(Sealer::new([7; 32]));
    service.init_defaults([1, 2, 3, 4, 5]).await.unwrap();
    service
        .set_endpoint(&Caller::system(), "vpn.example:51820".parse().unwrap())
        .await
        .unwrap();
    let env = Env {
        _db: db,
        state: AppState {
            service,
            panel: PanelConfig {
                secure_cookies: true,
                public_url: None,
            },
            live: None,
            trusted_proxies: Default::default(),
        },
    };
    env.add_admin(ADMIN, Role::Admin).await;
    Some(env)
}

/// An answer of the panel.
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .map_or("", |v| v.to_str().unwrap())
    }

    /// The whole `Set-Cookie` line for cookie `name`, attributes included.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|c| c.split_once('=').is_some_and(|(k, _)| k == name))
    }

    /// The CSRF token the forms on this page carry.
    fn csrf(&self) -> String {
        let marker = r#"name="_csrf" value=""#;
        let start = self
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no CSRF field on this page: {}", self.excerpt()))
            + marker.len();
        let len = self.body[start..].find('"').unwrap();
        self.body[start..start + len].to_string()
    }

    /// Enough of the answer to tell what went wrong in an assertion message.
    fn excerpt(&self) -> String {
        let main = self.body.find("<main").unwrap_or(0);
        let text: String = self.body[main..].chars().take(600).collect();
        format!("{} {} {text}", self.status, self.location())
    }
}

fn form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// How often, and how far apart, a login refused by the password-check rate limit is sent
/// again (see [`Browser::submit_login`]): up to 36 s, for a bucket that refills 2 a second.
const RATE_LIMIT_RETRIES: u32 = 60;
const RATE_LIMIT_WAIT: Duration = Duration::from_millis(600);

/// A browser: keeps the cookies the panel sets and sends them back, and says `Host` (and,
/// on a POST, `Sec-Fetch-Site: same-origin`) like a real one.
#[derive(Clone, Default)]
struct Browser {
    jar: BTreeMap<String, String>,
    language: Option<&'static str>,
}

impl Browser {
    fn german() -> Browser {
        Browser {
            language: Some("de-DE,de;q=0.9,en;q=0.5"),
            ..Browser::default()
        }
    }

    fn session(&self) -> Option<String> {
        self.jar.get(SESSION_COOKIE).cloned()
    }

    fn request(&self, method: Method, uri: &str) -> axum::http::request::Builder {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, HOST);
        if !self.jar.is_empty() {
            let cookies: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            b = b.header(header::COOKIE, cookies.join("; "));
        }
        if let Some(l) = self.language {
            b = b.header(header::ACCEPT_LANGUAGE, l);
        }
        b
    }

    async fn send(&mut self, env: &Env, req: Request<Body>) -> Page {
        let resp = router(env.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 4 << 20)
            .await
            .unwrap();
        for line in headers.get_all(header::SET_COOKIE) {
            let line = line.to_str().unwrap();
            let (pair, attrs) = line.split_once(';').unwrap_or((line, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || attrs.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_string(), value.to_string());
            }
        }
        Page {
            status,
            headers,
            // Lossy: a download (a zip) is no text; every page is UTF-8 and stays as it is.
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&mut self, env: &Env, uri: &str) -> Page {
        let req = self.request(Method::GET, uri).body(Body::empty()).unwrap();
        self.send(env, req).await
    }

    /// A form submitted from one of the panel's own pages.
    async fn post(&mut self, env: &Env, uri: &str, fields: &[(&str, &str)]) -> Page {
        self.post_with(env, uri, fields, &[("sec-fetch-site", "same-origin")])
            .await
    }

    /// A form POST with exactly the extra request headers given.
    async fn post_with(
        &mut self,
        env: &Env,
        uri: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut b = self
            .request(Method::POST, uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Body::from(form(fields))).unwrap();
        self.send(env, req).await
    }

    /// The token this browser's forms carry: the session's once logged in (the login page then
    /// redirects, so it comes from the account page), else the pre-login double-submit token.
    async fn csrf(&mut self, env: &Env) -> String {
        let page = self.get(env, "/login").await;
        if page.status == StatusCode::OK {
            return page.csrf();
        }
        let page = self.get(env, "/account").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.excerpt());
        page.csrf()
    }

    /// Sends the login form. Every password check draws on one process-wide token bucket
    /// (`PASSWORD_CHECKS` in panel/auth.rs: 20 at once, then 2 a second). Under nextest each
    /// test is its own process and stays well inside it; under `cargo test` all tests of this
    /// file (on both backends) share it, so a 429 here means only "the bucket is empty": wait
    /// for it to refill and send the same form again, a bounded number of times. A 429 says
    /// nothing about the account, so it never counts for or against what a test checks.
    async fn submit_login(&mut self, env: &Env, name: &str, password: &str) -> Page {
        let csrf = self.csrf(env).await;
        let fields = [
            ("_csrf", csrf.as_str()),
            ("name", name),
            ("password", password),
            ("next", "/"),
        ];
        for _ in 0..RATE_LIMIT_RETRIES {
            let page = self.post(env, "/login", &fields).await;
            if page.status != StatusCode::TOO_MANY_REQUESTS {
                return page;
            }
            tokio::time::sleep(RATE_LIMIT_WAIT).await;
        }
        panic!("the password-check rate limit never admitted this login");
    }

    /// Logs in with [`PASSWORD`] (no second factor) and checks that it worked.
    async fn login(&mut self, env: &Env, name: &str) {
        let page = self.submit_login(env, name, PASSWORD).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.excerpt());
        assert_eq!(page.location(), "/");
        assert!(self.session().is_some(), "no session cookie after login");
    }
}

/// A redirect to the login page, coming back to `path` afterwards.
fn assert_sent_to_login(page: &Page, path: &str) {
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.excerpt());
    let next: String = form_urlencoded::byte_serialize(path.as_bytes()).collect();
    assert_eq!(page.location(), format!("/login?next={next}"));
}

async fn login_rotates_the_session_and_sets_hardened_cookies(backend: Backend) {
    let Some(env) = env(backend, "login").await else {
        return;
    };
    let mut b = Browser::default();

    // The pre-login token lives in a cookie of its own, as hardened as the session's.
    let page = b.get(&env, "/login").await;
    assert_eq!(page.status, StatusCode::OK);
    let form_cookie = page
        .set_cookie(FORM_COOKIE)
        .expect("a form cookie before login");
    let form_token = page.csrf();
    assert!(form_cookie.starts_with(&format!("{FORM_COOKIE}={form_token};")));
    for attr in ["Path=/", "HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(form_cookie.contains(attr), "{form_cookie} lacks {attr}");
    }

    let page = b.submit_login(&env, ADMIN, PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.excerpt());
    let cookie = page.set_cookie(SESSION_COOKIE).expect("a session cookie");
    for attr in ["; Path=/", "; HttpOnly", "; SameSite=Strict", "; Secure"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    // A __Host- cookie must not name a domain: it belongs to this host alone.
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
    let first = b.session().unwrap();
    assert_ne!(
        first, form_token,
        "the session id is not the pre-login token"
    );
    let mut old = b.clone();
    assert_eq!(b.get(&env, "/").await.status, StatusCode::OK);

    // Logging in again from the same browser (sending the first session) issues a new id and
    // ends the old session: an id planted or seen before login is worth nothing after it.
    let page = b.submit_login(&env, ADMIN, PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.excerpt());
    let second = b.session().unwrap();
    assert_ne!(first, second);
    assert_eq!(b.get(&env, "/").await.status, StatusCode::OK);
    assert_sent_to_login(&old.get(&env, "/").await, "/");
    let stored = env
        .store()
        .session(&token_hash(&first), unix_now())
        .await
        .unwrap();
    assert!(stored.is_none(), "the first session is gone from the store");
}

async fn wrong_passwords_lock_the_account(backend: Backend) {
    let Some(env) = env(backend, "lockout").await else {
        return;
    };
    let mut b = Browser::default();
    for attempt in 1..=5 {
        let page = b.submit_login(&env, ADMIN, "not the password at all").await;
        assert!(b.session().is_none(), "attempt {attempt} set a session");
        if attempt < 5 {
            assert_eq!(
                page.status,
                StatusCode::UNAUTHORIZED,
                "attempt {attempt}: {}",
                page.excerpt()
            );
            assert!(page.body.contains("Name or password is wrong."));
        } else {
            assert_eq!(
                page.status,
                StatusCode::LOCKED,
                "attempt {attempt}: {}",
                page.excerpt()
            );
            assert!(page.body.contains("locked"), "{}", page.excerpt());
        }
    }
    let admin = env.store().admin(&n(ADMIN)).await.unwrap().unwrap();
    assert!(admin.locked_until.is_some_and(|u| u > unix_now()));

    // While locked, even the right password does not open it.
    let page = b.submit_login(&env, ADMIN, PASSWORD).await;
    assert_eq!(page.status, StatusCode::LOCKED, "{}", page.excerpt());
    assert!(page.body.contains("locked"));
    assert!(b.session().is_none());

    env.store()
        .unlock_admin(&Actor::System, &n(ADMIN), unix_now())
        .await
        .unwrap();
    b.login(&env, ADMIN).await;
    assert_eq!(b.get(&env, "/devices").await.status, StatusCode::OK);
}

async fn cross_site_and_tokenless_posts_are_refused(backend: Backend) {
    let Some(env) = env(backend, "csrf").await else {
        return;
    };
    // Login itself is a form: without the double-submit token it is refused before any
    // password is checked.
    let mut stranger = Browser::default();
    let page = stranger
        .post(
            &env,
            "/login",
            &[("_csrf", "forged"), ("name", ADMIN), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.excerpt());
    assert!(stranger.session().is_none());

    let mut b = Browser::default();
    b.login(&env, ADMIN).await;
    let csrf = b.csrf(&env).await;
    let same_origin = [("sec-fetch-site", "same-origin")];

    // (a) The browser says another site (or a sibling subdomain) sent it: refused, token or not.
    for site in ["cross-site", "same-site"] {
        let page = enroll_with(
            &env,
            &mut b,
            "dev-a",
            Some(&csrf),
            &[("sec-fetch-site", site)],
        )
        .await;
        assert_eq!(
            page.status,
            StatusCode::FORBIDDEN,
            "{site}: {}",
            page.excerpt()
        );
    }
    // (b) An older browser without Sec-Fetch-Site, but with a foreign Origin.
    let evil = [("origin", "http://evil.example")];
    let page = enroll_with(&env, &mut b, "dev-a", Some(&csrf), &evil).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.excerpt());
    // (c) Same origin, but the token is wrong, empty or missing.
    for token in [Some("wrong"), Some(""), None] {
        let page = enroll_with(&env, &mut b, "dev-a", token, &same_origin).await;
        assert_eq!(
            page.status,
            StatusCode::FORBIDDEN,
            "token {token:?}: {}",
            page.excerpt()
        );
    }
    assert_eq!(
        env.device_count().await,
        0,
        "a refused form changed nothing"
    );

    // (d) The panel's own form with the session's token goes through and shows the config once.
    let page = enroll_with(&env, &mut b, "dev-a", Some(&csrf), &same_origin).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.excerpt());
    assert!(page.body.contains("[Interface]"), "{}", page.excerpt());
    assert!(page.body.contains("data:application/octet-stream;base64,"));
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
    let device = env.store().device(&n("dev-a")).await.unwrap();
    assert_eq!(device.status(unix_now()).as_str(), "active");
    // ... and so does one from a browser that sends only an Origin, when it is this site.
    let origin = format!("http://{HOST}");
    let page = enroll_with(&env, &mut b, "dev-b", Some(&csrf), &[("origin", &origin)]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.excerpt());
    assert_eq!(env.device_count().await, 2);
}

/// POSTs the enroll form for device `name` with `token` as its CSRF field (`None`: no field)
/// and exactly the request headers given.
async fn enroll_with(
    env: &Env,
    b: &mut Browser,
    name: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> Page {
    let mut fields = vec![("name", name), ("group", "default")];
    if let Some(t) = token {
        fields.push(("_csrf", t));
    }
    b.post_with(env, "/devices/new", &fields, headers).await
}

async fn helpdesk_can_look_but_not_change(backend: Backend) {
    let Some(env) = env(backend, "helpdesk").await else {
        return;
    };
    env.add_admin("hugo", Role::Helpdesk).await;
    env.enroll("anna-ipad", Some("anna")).await;
    let mut b = Browser::default();
    b.login(&env, "hugo").await;

    let page = b.get(&env, "/devices").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.excerpt());
    assert!(page.body.contains("anna-ipad"));
    let page = b.get(&env, "/devices/anna-ipad").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !page.body.contains("/revoke"),
        "no revoke button for the helpdesk"
    );

    let page = b.get(&env, "/devices/new").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.excerpt());

    // The helpdesk's own (valid) token does not make a change allowed.
    let csrf = b.csrf(&env).await;
    let page = b
        .post(
            &env,
            "/devices/new",
            &[
                ("_csrf", &csrf),
                ("name", "hugo-laptop"),
                ("group", "default"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.excerpt());
    assert!(env.store().device(&n("hugo-laptop")).await.is_err());

    let page = b
        .post(&env, "/devices/anna-ipad/revoke", &[("_csrf", &csrf)])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.excerpt());
    let device = env.store().device(&n("anna-ipad")).await.unwrap();
    assert_eq!(device.status(unix_now()).as_str(), "active");

    let page = b
        .post(
            &env,
            "/settings/admins",
            &[("_csrf", &csrf), ("name", "eve"), ("role", "admin")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.excerpt());
    assert!(
        env.store().admin(&n("eve")).await.unwrap().is_none(),
        "no account of its own making"
    );

    // The directory's runs are there to read; a run is for admins.
    let page = b.get(&env, "/directory").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.excerpt());
    assert!(page.body.contains(r#"id="no-directory""#));
    let page = b.post(&env, "/directory/sync", &[("_csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.excerpt());
}

/// The current TOTP code of `secret`, as an authenticator app shows it.
fn current_code(secret: &[u8]) -> String {
    format!("{:06}", totp_code(secret, unix_now().div_euclid(30)))
}

async fn second_factor_is_required_once_set_up_and_codes_work_once(backend: Backend) {
    let Some(env) = env(backend, "totp").await else {
        return;
    };
    let secret = new_totp_secret();
    let codes = new_recovery_codes();
    let hashes: Vec<String> = codes.iter().map(|c| recovery_code_hash(c)).collect();
    let sealed = env.sealer().seal(&secret);
    env.store()
        .set_admin_totp(
            &Actor::System,
            &n(ADMIN),
            Some((&sealed, &hashes)),
            unix_now(),
        )
        .await
        .unwrap();

    // The password alone gives a partial session that sees nothing but the code form.
    let mut b = Browser::default();
    let page = b.submit_login(&env, ADMIN, PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.excerpt());
    assert!(
        page.location().starts_with("/login/totp"),
        "{}",
        page.location()
    );
    let partial = b.session().expect("a partial session");
    assert_sent_to_login(&b.get(&env, "/devices").await, "/devices");
    assert_sent_to_login(&b.get(&env, "/").await, "/");
    let page = b.get(&env, "/login/totp").await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.csrf();

    let code = current_code(&secret);
    let page = b
        .post(
            &env,
            "/login/totp",
            &[("_csrf", &csrf), ("code", &code), ("next", "/devices")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.excerpt());
    assert_eq!(page.location(), "/devices");
    let full = b.session().unwrap();
    assert_ne!(partial, full, "a new session id after the second factor");
    assert_eq!(b.get(&env, "/devices").await.status, StatusCode::OK);

    // The same code, replayed in another login while still within its time window: refused.
    let mut other = Browser::default();
    let page = other.submit_login(&env, ADMIN, PASSWORD).await;
    assert!(
        page.location().starts_with("/login/totp"),
        "{}",
        page.excerpt()
    );
    let csrf = other.csrf(&env).await;
    let page = other
        .post(&env, "/login/totp", &[("_csrf", &csrf), ("code", &code)])
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.excerpt());
    assert_sent_to_login(&other.get(&env, "/devices").await, "/devices");

    // A recovery code (typed in capitals, as people do) works in its place, once.
    let typed = codes[0].to_uppercase();
    let page = other
        .post(&env, "/login/totp", &[("_csrf", &csrf), ("code", &typed)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.excerpt());
    assert_eq!(other.get(&env, "/devices").await.status, StatusCode::OK);
    let id = env.store().admin(&n(ADMIN)).await.unwrap().unwrap().id;
    assert_eq!(env.store().recovery_codes_left(id).await.unwrap(), 9);

    let mut third = Browser::default();
    let page = third.submit_login(&env, ADMIN, PASSWORD).await;
    assert!(
        page.location().starts_with("/login/totp"),
        "{}",
        page.excerpt()
    );
    let csrf = third.csrf(&env).await;
    let page = third
        .post(
            &env,
            "/login/totp",
            &[("_csrf", &csrf), ("code", &codes[0])],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.excerpt());
    assert_sent_to_login(&third.get(&env, "/devices").await, "/devices");
}

async fn logout_ends_the_session(backend: Backend) {
    let Some(env) = env(backend, "logout").await else {
        return;
    };
    let mut b = Browser::default();
    b.login(&env, ADMIN).await;
    let id = b.session().unwrap();
    let mut old = b.clone();
    let csrf = b.csrf(&env).await;

    // A logout another site triggers (no token) does nothing.
    let page = b.post(&env, "/logout", &[]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(b.get(&env, "/devices").await.status, StatusCode::OK);

    let page = b.post(&env, "/logout", &[("_csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.excerpt());
    assert_eq!(page.location(), "/login");
    let cleared = page
        .set_cookie(SESSION_COOKIE)
        .expect("the session cookie is cleared");
    assert!(
        cleared.starts_with(&format!("{SESSION_COOKIE}=;")),
        "{cleared}"
    );
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(b.session().is_none());

    // The cookie a browser (or a thief) kept opens nothing any more.
    assert_sent_to_login(&old.get(&env, "/devices").await, "/devices");
    let stored = env
        .store()
        .session(&token_hash(&id), unix_now())
        .await
        .unwrap();
    assert!(stored.is_none());
}

async fn pages_render_for_an_admin_in_both_languages(backend: Backend) {
    let Some(env) = env(backend, "pages").await else {
        return;
    };
    env.enroll("anna-ipad", Some("anna")).await;
    let mut en = Browser::default();
    en.login(&env, ADMIN).await;
    // The German browser shares the session: the language follows the request, not the login.
    let mut de = Browser {
        jar: en.jar.clone(),
        ..Browser::german()
    };
    let pages = [
        "/",
        "/devices",
        "/devices/new",
        "/devices/anna-ipad",
        "/links",
        "/requests",
        "/users",
        "/users/anna",
        "/groups",
        "/groups/default",
        "/audit",
        "/settings",
        "/account",
        "/directory",
    ];
    for path in pages {
        let page = en.get(&env, path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.excerpt());
        assert!(page.body.contains(r#"<html lang="en">"#), "{path}");
        assert!(page.body.contains(">Devices<"), "{path}");
        let csp = page.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert_eq!(page.headers[header::CACHE_CONTROL], "no-store", "{path}");
        assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY", "{path}");
        assert_eq!(
            page.headers[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff",
            "{path}"
        );

        let page = de.get(&env, path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.excerpt());
        assert!(page.body.contains(r#"<html lang="de">"#), "{path}");
        assert!(page.body.contains(">Geräte<"), "{path}");
        assert!(page.body.contains("Abmelden"), "{path}");
    }

    // The switch in the header remembers the choice over Accept-Language.
    let page = en.get(&env, "/lang/de?back=/devices").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/devices");
    let page = en.get(&env, "/devices").await;
    assert!(page.body.contains(r#"<html lang="de">"#));
}

async fn html_in_names_is_escaped(backend: Backend) {
    let Some(env) = env(backend, "escape").await else {
        return;
    };
    let owner = "<script>alert(1)</script>";
    env.enroll("anna-ipad", Some(owner)).await;
    let mut b = Browser::default();
    b.login(&env, ADMIN).await;

    // A name typed into the panel's own form, breaking out of an attribute if it could.
    let csrf = b.csrf(&env).await;
    let evil = r#"x"><img src=x onerror=alert(2)>"#;
    let page = b
        .post(
            &env,
            "/devices/new",
            &[
                ("_csrf", &csrf),
                ("name", evil),
                ("group", "default"),
                ("owner", owner),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.excerpt());
    assert!(
        !page.body.contains("<img src=x"),
        "the config page shows the name raw"
    );

    let user_page = format!("/users/{}", segment(owner));
    let device_page = format!("/devices/{}", segment(evil));
    // The same link the device list gives, so the page below is the one an admin reaches.
    assert!(b
        .get(&env, "/devices")
        .await
        .body
        .contains(&format!("href=\"{device_page}\"")));
    for path in [
        "/",
        "/devices",
        "/devices/anna-ipad",
        "/users",
        "/audit",
        &user_page,
        &device_page,
    ] {
        let page = b.get(&env, path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.excerpt());
        assert!(
            !page.body.contains("<script>alert"),
            "{path} shows the owner raw"
        );
        assert!(
            !page.body.contains("<img src=x"),
            "{path} shows the device name raw"
        );
        // Every one of these pages does show one of the names, escaped.
        assert!(
            page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;")
                || page
                    .body
                    .contains("x&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"),
            "{path}: {}",
            page.excerpt()
        );
    }
}

/// `name` as one path segment (a space is `%20` there, not `+`).
fn segment(name: &str) -> String {
    form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

async fn unknown_names_and_bad_input_change_nothing(backend: Backend) {
    let Some(env) = env(backend, "badinput").await else {
        return;
    };
    let mut b = Browser::default();
    b.login(&env, ADMIN).await;
    let csrf = b.csrf(&env).await;

    // A malformed key: the same form again, entries kept, the reason on top, nothing stored.
    let page = b
        .post(
            &env,
            "/devices/new",
            &[
                ("_csrf", &csrf),
                ("name", "bernd-laptop"),
                ("group", "default"),
                ("public_key", "not-a-key"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.excerpt());
    assert!(
        page.body.contains(r#"action="/devices/new""#),
        "{}",
        page.excerpt()
    );
    assert!(page.body.contains(r#"value="bernd-laptop""#));
    assert!(page.body.contains(r#"value="not-a-key""#));
    assert!(page.body.contains("Public key"), "{}", page.excerpt());
    assert!(!page.body.contains("[Interface]"));

    // An unknown group and a zero expiry come back the same way.
    for (field, value) in [("group", "nope"), ("expires_in_days", "0")] {
        let mut fields = vec![
            ("_csrf", csrf.as_str()),
            ("name", "bernd-laptop"),
            ("group", "default"),
        ];
        fields.retain(|(k, _)| *k != field);
        fields.push((field, value));
        let page = b.post(&env, "/devices/new", &fields).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{field}={value}: {}",
            page.excerpt()
        );
        assert!(page.body.contains(r#"action="/devices/new""#));
    }
    assert_eq!(env.device_count().await, 0);

    let page = b
        .post(
            &env,
            "/groups",
            &[
                ("_csrf", &csrf),
                ("name", "lab"),
                ("allowed_prefixes", "10.20.0.0/33"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.excerpt());
    assert!(page.body.contains("10.20.0.0/33"), "{}", page.excerpt());
    assert!(
        env.store().group(&n("lab")).await.is_err(),
        "no group from a bad CIDR"
    );

    // Unknown names are a clear 404, not an error page of the server.
    let page = b
        .post(&env, "/devices/nobody/revoke", &[("_csrf", &csrf)])
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.excerpt());
    let page = b.get(&env, "/devices/nobody").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.excerpt());
    let page = b.get(&env, "/groups/nope").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.excerpt());
}

async fn a_lock_holds_in_every_session_waiting_for_the_second_factor(backend: Backend) {
    let Some(env) = env(backend, "totp_lock").await else {
        return;
    };
    let secret = new_totp_secret();
    let sealed = env.sealer().seal(&secret);
    env.store()
        .set_admin_totp(&Actor::System, &n(ADMIN), Some((&sealed, &[])), unix_now())
        .await
        .unwrap();
    // Someone with the password opens two partial sessions, then guesses codes in one.
    let (mut a, mut c) = (Browser::default(), Browser::default());
    for b in [&mut a, &mut c] {
        let page = b.submit_login(&env, ADMIN, PASSWORD).await;
        assert!(
            page.location().starts_with("/login/totp"),
            "{}",
            page.excerpt()
        );
    }
    let csrf = a.csrf(&env).await;
    let mut last = StatusCode::OK;
    for _ in 0..5 {
        last = a
            .post(&env, "/login/totp", &[("_csrf", &csrf), ("code", "000000")])
            .await
            .status;
    }
    assert_eq!(
        last,
        StatusCode::LOCKED,
        "the fifth wrong code locks the account"
    );
    // The other partial session gets nothing now, not even with the right code.
    let csrf = c.csrf(&env).await;
    let code = current_code(&secret);
    let page = c
        .post(&env, "/login/totp", &[("_csrf", &csrf), ("code", &code)])
        .await;
    // (The lock ended C's partial session, so C is sent back to the login page.)
    assert!(
        page.status != StatusCode::SEE_OTHER || page.location().starts_with("/login"),
        "{}",
        page.excerpt()
    );
    assert_sent_to_login(&c.get(&env, "/devices").await, "/devices");
    // The code was not spent by the refused attempt: after an unlock it still works.
    env.store()
        .unlock_admin(&Actor::System, &n(ADMIN), unix_now())
        .await
        .unwrap();
    let mut d = Browser::default();
    d.submit_login(&env, ADMIN, PASSWORD).await;
    let csrf = d.csrf(&env).await;
    let page = d
        .post(&env, "/login/totp", &[("_csrf", &csrf), ("code", &code)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.excerpt());
}

async fn redirects_never_leave_the_site(backend: Backend) {
    let Some(env) = env(backend, "redirects").await else {
        return;
    };
    let mut b = Browser::default();
    // Browsers drop tabs and newlines from URLs and read "\\" as "/": each of these would
    // become "//evil.example", another site.
    for back in [
        "/%09/evil.example",
        "/%0A/evil.example",
        "/%5Cevil.example",
        "//evil.example",
    ] {
        let page = b.get(&env, &format!("/lang/de?back={back}")).await;
        assert_eq!(page.location(), "/", "back={back}");
        let page = b.get(&env, &format!("/login?next={back}")).await;
        assert!(
            page.body.contains(r#"name="next" value="/""#),
            "next={back}"
        );
    }
    let page = b.get(&env, "/lang/de?back=/devices%3Fq%3Dx").await;
    assert_eq!(
        page.location(),
        "/devices?q=x",
        "a path of this site is kept"
    );
}

async fn twenty_helpdesk_page_loads_at_once_all_succeed(backend: Backend) {
    let Some(env) = env(backend, "crowd").await else {
        return;
    };
    env.add_admin("hugo", Role::Helpdesk).await;
    for i in 0..5 {
        env.enroll(&format!("ipad-{i}"), Some("anna")).await;
    }
    let mut b = Browser::default();
    b.login(&env, "hugo").await;
    let env = Arc::new(env);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (env, mut b) = (env.clone(), b.clone());
        tasks.spawn(async move {
            let uri = if i % 2 == 0 {
                "/devices"
            } else {
                "/devices/ipad-1"
            };
            let page = b.get(&env, uri).await;
            (page.status, page.excerpt())
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (status, excerpt) = done.unwrap();
        assert_eq!(status, StatusCode::OK, "{excerpt}");
    }
}

/// An enrollment link starts with the configured public URL, whatever `Host` and
/// `X-Forwarded-Proto` the admin's request carried; without one, with the address the
/// browser used.
async fn links_start_with_the_public_url(backend: Backend) {
    let Some(mut env) = env(backend, "public_url").await else {
        return;
    };
    let mut b = Browser::default();
    b.login(&env, ADMIN).await;
    let link = |page: &Page| -> String {
        let at = page.body.find("id=\"link-url\"").expect("a link box");
        let value = &page.body[at..];
        let start = value.find("value=\"").unwrap() + 7;
        value[start..start + value[start..].find('"').unwrap()].to_string()
    };
    let token = b.csrf(&env).await;
    let fields = [
        ("device_name", "tablet-1"),
        ("group", "default"),
        ("_csrf", token.as_str()),
    ];
    let page = b.post(&env, "/links", &fields).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.excerpt());
    assert!(
        link(&page).starts_with(&format!("http://{HOST}/enroll/")),
        "{}",
        link(&page)
    );

    env.state.panel.public_url = Some("https://vpn.stadt.example".into());
    let fields = [
        ("device_name", "tablet-2"),
        ("group", "default"),
        ("_csrf", token.as_str()),
    ];
    let headers = [
        ("sec-fetch-site", "same-origin"),
        ("x-forwarded-proto", "http"),
    ];
    let page = b.post_with(&env, "/links", &fields, &headers).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.excerpt());
    assert!(
        link(&page).starts_with("https://vpn.stadt.example/enroll/"),
        "{}",
        link(&page)
    );
}

/// The group page's MDM export: an admin who confirms gets the zip (never cached) and the
/// devices new keys; without the confirmation, or as the helpdesk, nothing changes.
async fn a_groups_devices_get_their_mdm_profiles_as_one_zip(backend: Backend) {
    let Some(env) = env(backend, "mdm_panel").await else {
        return;
    };
    env.add_admin("hugo", Role::Helpdesk).await;
    env.enroll("ipad-1", None).await;
    let key = || async { env.store().device(&n("ipad-1")).await.unwrap().public_key };
    let before = key().await;

    let mut helpdesk = Browser::default();
    helpdesk.login(&env, "hugo").await;
    let page = helpdesk.get(&env, "/groups/default").await;
    assert!(
        !page.body.contains("mdm-export"),
        "no export form for the helpdesk"
    );
    let csrf = helpdesk.csrf(&env).await;
    let fields = [
        ("_csrf", csrf.as_str()),
        ("platform", "ios"),
        ("confirm", "on"),
    ];
    let page = helpdesk
        .post(&env, "/groups/default/mdm-export", &fields)
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.excerpt());

    let mut admin = Browser::default();
    admin.login(&env, ADMIN).await;
    let page = admin.get(&env, "/groups/default").await;
    assert!(page.body.contains("/groups/default/mdm-export"));
    let csrf = admin.csrf(&env).await;
    let page = admin
        .post(
            &env,
            "/groups/default/mdm-export",
            &[("_csrf", &csrf), ("platform", "ios")],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "unconfirmed");
    assert_eq!(key().await, before, "nothing changed");

    let page = admin
        .post(
            &env,
            "/groups/default/mdm-export",
            &[("_csrf", &csrf), ("platform", "macos"), ("confirm", "on")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.excerpt());
    assert_eq!(page.headers[header::CONTENT_TYPE], "application/zip");
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
    assert!(page.body.starts_with("PK"));
    assert_ne!(key().await, before, "a new key");
}

/// The import page: a check that changes nothing, the import with its invitation list offered
/// once as a download, a list far larger than an ordinary form for a signed-in admin only, and
/// nothing for the helpdesk.
/// The file a page offers as a `data:` download of `mime`, decoded.
fn download(body: &str, mime: &str) -> String {
    let b64 = body
        .split(&format!("data:{mime};base64,"))
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap();
    String::from_utf8(bytes).unwrap()
}

async fn a_staff_list_is_checked_then_imported_from_the_panel(backend: Backend) {
    let Some(env) = env(backend, "import_panel").await else {
        return;
    };
    env.add_admin("hugo", Role::Helpdesk).await;
    // Cells copied from Excel arrive tab-separated; 1,500 people are far over 64 KB.
    let mut list = String::from("Benutzer\tE-Mail\tGerät\n");
    for i in 0..1500 {
        list.push_str(&format!(
            "Mitarbeiterin Nummer {i}\tm{i}@stadt.example\tDienst-iPad {i}\n"
        ));
    }
    list.push_str("Kaputt\tkeine-adresse\tx\n");
    assert!(list.len() > 64 * 1024);

    let mut helpdesk = Browser::default();
    helpdesk.login(&env, "hugo").await;
    assert_eq!(
        helpdesk.get(&env, "/import").await.status,
        StatusCode::FORBIDDEN
    );
    let csrf = helpdesk.csrf(&env).await;
    let page = helpdesk
        .post(
            &env,
            "/import",
            &[("_csrf", &csrf), ("csv", "user\nx\n"), ("action", "import")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);

    let mut admin = Browser::default();
    admin.login(&env, ADMIN).await;
    let page = admin.get(&env, "/import").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r##"data-fill="#csv""##));
    let csrf = admin.csrf(&env).await;
    let page = admin
        .post(
            &env,
            "/import",
            &[("_csrf", &csrf), ("csv", &list), ("action", "check")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.excerpt());
    assert!(page.body.contains(r#"id="import-check""#));
    assert!(
        page.body.contains("keine-adresse"),
        "the refused row and why"
    );
    let users = env.store().users(None, 10, 0, unix_now()).await.unwrap();
    assert_eq!(users.total, 0, "a check changes nothing");

    let page = admin
        .post(
            &env,
            "/import",
            &[("_csrf", &csrf), ("csv", &list), ("action", "import")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.excerpt());
    assert!(page.body.contains(r#"id="import-done""#));
    let users = env.store().users(None, 10, 0, unix_now()).await.unwrap();
    assert_eq!(users.total, 1500);
    let csv = download(&page.body, "text/csv");
    assert_eq!(
        csv.lines().count(),
        1501,
        "a header and one link per device"
    );
    let link = csv
        .lines()
        .nth(1)
        .unwrap()
        .split(';')
        .nth(4)
        .unwrap()
        .trim_matches('"');
    let secret = link
        .strip_prefix(&format!("http://{HOST}/enroll/"))
        .unwrap();
    assert!(
        env.state.service.open_link(secret).await.unwrap().is_some(),
        "{link}"
    );

    assert!(
        !page.body.contains("download-sheets"),
        "1,500 sheets are not put in a page"
    );
    assert!(page.body.contains("heimweg user import --sheets"));

    // A small list: its instruction sheets come with it, whom to call on each.
    let small = "user;device\nBerta;Berta-Laptop\nCem;Cem-iPad\n";
    let page = admin
        .post(
            &env,
            "/import",
            &[
                ("_csrf", &csrf),
                ("csv", small),
                ("helpdesk", "IT-Service <42>"),
                ("action", "import"),
            ],
        )
        .await;
    let sheets = download(&page.body, "text/html");
    assert_eq!(sheets.matches("<section class=\"sheet\">").count(), 2);
    assert!(sheets.contains("Cem-iPad") && sheets.contains("IT-Service &lt;42&gt;"));

    // By mail: Dora's invitation waits in the queue, not in the list; Emil has no address.
    let mailed = "user;email;device\nDora;dora@stadt.example;Doras iPad\nEmil;;Emils iPad\n";
    let page = admin
        .post(
            &env,
            "/import",
            &[
                ("_csrf", &csrf),
                ("csv", mailed),
                ("mail", "1"),
                ("action", "import"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.excerpt());
    assert!(page.body.contains(r#"id="import-mailed""#));
    let csv = download(&page.body, "text/csv");
    assert!(
        csv.contains("Emils iPad") && !csv.contains("Doras iPad"),
        "{csv}"
    );
    assert_eq!(env.state.service.mail_counts().await.unwrap().queued, 1);

    // The rollout view counts every invitation of the three lists and lists Dora's mail.
    let page = admin.get(&env, "/rollout").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<td>1504</td>"), "{}", page.excerpt());
    assert!(page.body.contains(r#"id="remind""#) && page.body.contains("dora@stadt.example"));

    // The helpdesk sees it but cannot remind; an admin reminds everyone with an unused link
    // and an address, except Dora, whose first mail still waits.
    let page = helpdesk.get(&env, "/rollout").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains(r#"id="remind""#));
    let hcsrf = helpdesk.csrf(&env).await;
    let page = helpdesk
        .post(
            &env,
            "/rollout/remind",
            &[("_csrf", &hcsrf), ("expires_in_hours", "48")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(env.state.service.mail_counts().await.unwrap().queued, 1);
    let page = admin
        .post(
            &env,
            "/rollout/remind",
            &[("_csrf", &csrf), ("expires_in_hours", "48")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.excerpt());
    assert_eq!(env.state.service.mail_counts().await.unwrap().queued, 1501);

    // Without a session a body that large is refused before any handler.
    let mut stranger = Browser::default();
    let csrf = stranger.csrf(&env).await;
    let page = stranger
        .post(
            &env,
            "/import",
            &[("_csrf", &csrf), ("csv", &list), ("action", "import")],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.excerpt());
}

/// A group's usage window and absences from the panel: set by an admin, refused with the
/// reason when wrong, shown on the device page as the reason it passes no traffic, and only
/// looked at by the helpdesk.
async fn usage_windows_and_absences_are_set_in_the_panel(backend: Backend) {
    let Some(env) = env(backend, "time_panel").await else {
        return;
    };
    env.add_admin("hugo", Role::Helpdesk).await;
    env.enroll("anna-laptop", Some("anna")).await;
    let mut admin = Browser::default();
    admin.login(&env, ADMIN).await;
    let csrf = admin.csrf(&env).await;
    let page = admin.get(&env, "/groups/default").await;
    assert!(
        page.body.contains("id=\"usage-window\""),
        "{}",
        page.excerpt()
    );
    assert!(page.body.contains("Any time"));
    // A window in the wrong format is refused with the reason, and nothing changes.
    let page = admin
        .post(
            &env,
            "/groups/default/window",
            &[
                ("_csrf", &csrf),
                ("schedule", "Mo-Fr 6-20"),
                ("time_zone", "Europe/Berlin"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("time range"), "{}", page.excerpt());
    assert!(env
        .store()
        .group(&n("default"))
        .await
        .unwrap()
        .window
        .is_none());
    // Closed today and tomorrow (Berlin): the device is paused, and its page says until when.
    let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
    let today = jiff::Timestamp::now().to_zoned(berlin).date();
    let closed = format!("{today}\n{}", today.tomorrow().unwrap());
    let page = admin
        .post(
            &env,
            "/groups/default/window",
            &[
                ("_csrf", &csrf),
                ("schedule", "Mo-So 00:00-24:00"),
                ("time_zone", "Europe/Berlin"),
                ("closed_dates", &closed),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.excerpt());
    let page = admin.get(&env, "/groups/default").await;
    assert!(
        page.body
            .contains("Mon-Sun 00:00-24:00 (Europe/Berlin), closed"),
        "{}",
        page.excerpt()
    );
    assert!(page.body.contains("Closed now; opens"));
    let page = admin.get(&env, "/groups").await;
    assert!(page.body.contains("Mon-Sun 00:00-24:00"));
    let page = admin.get(&env, "/devices/anna-laptop").await;
    assert!(page.body.contains("id=\"hold\""), "{}", page.excerpt());
    assert!(
        page.body.contains("outside its group&apos;s usage window")
            || page.body.contains("outside its group's usage window"),
        "{}",
        page.excerpt()
    );
    // Removed (an empty schedule): any time again, and the device is not paused.
    let page = admin
        .post(
            &env,
            "/groups/default/window",
            &[("_csrf", &csrf), ("schedule", "")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(env
        .store()
        .group(&n("default"))
        .await
        .unwrap()
        .window
        .is_none());
    let page = admin.get(&env, "/devices/anna-laptop").await;
    assert!(!page.body.contains("id=\"hold\""));

    // An absence for anna: listed, shown on her device's page, ended.
    let tomorrow = today.tomorrow().unwrap().to_string();
    let page = admin
        .post(
            &env,
            "/absences",
            &[
                ("_csrf", &csrf),
                ("kind", "user"),
                ("name", "anna"),
                ("from", &today.to_string()),
                ("until", &tomorrow),
                ("reason", "Kur"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.excerpt());
    let page = admin.get(&env, "/absences").await;
    assert!(
        page.body.contains("Kur") && page.body.contains("away now"),
        "{}",
        page.excerpt()
    );
    let page = admin.get(&env, "/devices/anna-laptop").await;
    assert!(
        page.body.contains("paused: absent until"),
        "{}",
        page.excerpt()
    );
    for (kind, name, from, until) in [
        ("user", "nobody", today.to_string(), tomorrow.clone()),
        ("nobody", "anna", today.to_string(), tomorrow.clone()),
        ("user", "anna", tomorrow.clone(), today.to_string()),
        ("user", "anna", "gestern".to_string(), tomorrow.clone()),
    ] {
        let page = admin
            .post(
                &env,
                "/absences",
                &[
                    ("_csrf", &csrf),
                    ("kind", kind),
                    ("name", name),
                    ("from", &from),
                    ("until", &until),
                ],
            )
            .await;
        assert!(
            page.status.is_client_error(),
            "{kind} {name} {from} {until}: {}",
            page.status
        );
    }
    assert_eq!(
        env.store().absences(unix_now()).await.unwrap().len(),
        1,
        "nothing else entered"
    );

    // The helpdesk sees the list and the window, and changes neither.
    let mut helpdesk = Browser::default();
    helpdesk.login(&env, "hugo").await;
    let hcsrf = helpdesk.csrf(&env).await;
    let page = helpdesk.get(&env, "/absences").await;
    assert!(page.body.contains("Kur"));
    assert!(!page.body.contains("absence-form"));
    let page = helpdesk.get(&env, "/groups/default").await;
    assert!(!page.body.contains("id=\"usage-window\""));
    let id = env.store().absences(unix_now()).await.unwrap()[0].id;
    let page = helpdesk
        .post(&env, &format!("/absences/{id}/end"), &[("_csrf", &hcsrf)])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let page = helpdesk
        .post(
            &env,
            "/groups/default/window",
            &[("_csrf", &hcsrf), ("schedule", "Mon 08:00-09:00")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);

    let page = admin
        .post(&env, &format!("/absences/{id}/end"), &[("_csrf", &csrf)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(env.store().absences(unix_now()).await.unwrap().is_empty());
    let page = admin.get(&env, "/devices/anna-laptop").await;
    assert!(!page.body.contains("id=\"hold\""));
}

/// The access review in the panel: the setting (admins only, bounded), the notice on the
/// overview a week before a device loses its access, the list and its CSV download.
async fn the_access_review_announces_and_lists_and_downloads(backend: Backend) {
    let Some(env) = env(backend, "review_panel").await else {
        return;
    };
    env.add_admin("hugo", Role::Helpdesk).await;
    env.enroll("anna-laptop", Some("anna")).await;
    // Enrolled 85 days ago and never connected: with a 90-day review, due in five days.
    let old = NewDevice {
        name: n("kiosk-eingang"),
        group: n("default"),
        public_key: PrivateKey::generate().public_key(),
        preshared_key: None,
        owner: None,
        expires_at: None,
    };
    env.store()
        .add_device(&Actor::System, &old, unix_now() - 85 * 86_400)
        .await
        .unwrap();
    let mut admin = Browser::default();
    admin.login(&env, ADMIN).await;
    let csrf = admin.csrf(&env).await;
    let page = admin.get(&env, "/review").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("id=\"review-off\""),
        "{}",
        page.excerpt()
    );
    assert!(page.body.contains("kiosk-eingang") && page.body.contains("anna-laptop"));
    assert!(!admin.get(&env, "/").await.body.contains("review-notice"));
    for bad in ["5", "abc", "4000"] {
        let page = admin
            .post(
                &env,
                "/settings/review",
                &[("_csrf", &csrf), ("unseen_days", bad)],
            )
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let page = admin
        .post(
            &env,
            "/settings/review",
            &[("_csrf", &csrf), ("unseen_days", "90")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.excerpt());
    assert_eq!(env.store().settings().await.unwrap().review_unseen_days, 90);
    let page = admin.get(&env, "/").await;
    assert!(
        page.body.contains("id=\"review-notice\""),
        "{}",
        page.excerpt()
    );
    let page = admin.get(&env, "/review").await;
    let due = page
        .body
        .split("id=\"review-due\"")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .expect("a list of due devices");
    assert!(due.contains("kiosk-eingang") && !due.contains("anna-laptop"));
    let csv = admin.get(&env, "/review.csv").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .contains("heimweg-access-review.csv"));
    assert!(
        csv.body.contains("\"kiosk-eingang\"") && csv.body.contains("\"anna\";\"anna-laptop\"")
    );
    // The helpdesk reads the review and cannot change the setting.
    let mut helpdesk = Browser::default();
    helpdesk.login(&env, "hugo").await;
    let hcsrf = helpdesk.csrf(&env).await;
    assert_eq!(helpdesk.get(&env, "/review").await.status, StatusCode::OK);
    let page = helpdesk
        .post(
            &env,
            "/settings/review",
            &[("_csrf", &hcsrf), ("unseen_days", "0")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(env.store().settings().await.unwrap().review_unseen_days, 90);
}

/// Posts the group form's time part with `hours` of sign in to connect (no window).
async fn set(env: &Env, admin: &mut Browser, csrf: &str, hours: &str) -> Page {
    admin
        .post(
            env,
            "/groups/default/window",
            &[("_csrf", csrf), ("schedule", ""), ("sign_in_hours", hours)],
        )
        .await
}

/// Sign in to connect in the panel: the group's setting (bounded), the device's page saying
/// why it passes nothing, the running activations on the absences page, ended by an admin and
/// not by the helpdesk.
async fn sign_in_to_connect_is_set_and_activations_ended_in_the_panel(backend: Backend) {
    let Some(env) = env(backend, "connect_panel").await else {
        return;
    };
    env.add_admin("hugo", Role::Helpdesk).await;
    env.enroll("anna-laptop", Some("anna")).await;
    let mut admin = Browser::default();
    admin.login(&env, ADMIN).await;
    let csrf = admin.csrf(&env).await;
    for bad in ["25", "acht", "-1"] {
        let page = set(&env, &mut admin, &csrf, bad).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let page = set(&env, &mut admin, &csrf, "8").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.excerpt());
    let group = env.store().group(&n("default")).await.unwrap();
    assert_eq!(group.sign_in_hours, Some(8));
    // A form without the field (a page from before) leaves it on.
    let page = admin
        .post(
            &env,
            "/groups/default/window",
            &[("_csrf", &csrf), ("schedule", "")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let group = env.store().group(&n("default")).await.unwrap();
    assert_eq!(group.sign_in_hours, Some(8), "left as it was");
    let page = admin.get(&env, "/groups/default").await;
    assert!(
        page.body.contains("id=\"sign-in-state\"") && page.body.contains("8 hours after"),
        "{}",
        page.excerpt()
    );
    let page = admin.get(&env, "/devices/anna-laptop").await;
    assert!(
        page.body.contains("requires sign in to connect"),
        "{}",
        page.excerpt()
    );

    // Anna signed in to connect (as the staff page's sign-in does): listed, her device passes.
    let store = env.store();
    let anna = store.user(&n("anna"), unix_now()).await.unwrap();
    let staff = Actor::Staff {
        id: anna.id,
        name: anna.name.clone(),
    };
    store
        .start_activation(&staff, &anna.name, 8, unix_now())
        .await
        .unwrap();
    let page = admin.get(&env, "/devices/anna-laptop").await;
    assert!(!page.body.contains("id=\"hold\""), "{}", page.excerpt());
    let page = admin.get(&env, "/absences").await;
    assert!(
        page.body.contains("action=\"/activations/anna/end\""),
        "{}",
        page.excerpt()
    );
    // The helpdesk sees it and may not end it.
    let mut helpdesk = Browser::default();
    helpdesk.login(&env, "hugo").await;
    let hcsrf = helpdesk.csrf(&env).await;
    let page = helpdesk.get(&env, "/absences").await;
    assert!(page.body.contains("id=\"activations\""));
    assert!(!page.body.contains("/activations/anna/end"));
    let page = helpdesk
        .post(&env, "/activations/anna/end", &[("_csrf", &hcsrf)])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(store.activations(unix_now()).await.unwrap().len(), 1);
    // The admin ends it: gone, and the device is held again.
    let page = admin
        .post(&env, "/activations/anna/end", &[("_csrf", &csrf)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.excerpt());
    assert!(store.activations(unix_now()).await.unwrap().is_empty());
    let page = admin.get(&env, "/devices/anna-laptop").await;
    assert!(page.body.contains("id=\"hold\""), "{}", page.excerpt());
    // Turned off (empty): no sign-in needed.
    assert_eq!(
        set(&env, &mut admin, &csrf, "").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        env.store()
            .group(&n("default"))
            .await
            .unwrap()
            .sign_in_hours,
        None
    );
}
