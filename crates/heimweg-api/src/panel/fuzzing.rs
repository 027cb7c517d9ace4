//! The panel's form decoding for the fuzz target `panel_forms` (feature `fuzzing`): a body
//! decoded into every form the panel's handlers take, by axum's own `Form` extractor, and on
//! success the conversions the handler makes before it calls the service (names, lifetimes,
//! policies, dates, keys, return paths), each checked against what it promises. The CSRF
//! token is taken out of the body as the guard takes it. No store, no service: nothing here
//! is more than the handlers' own parsing.
//!
//! The query strings of the pages (`Query`) go through the same deserializer
//! (`serde_urlencoded` over `form_urlencoded::parse`), so they are decoded here from the body
//! too.

use super::{
    account, admins, auth, devices, form_name, given, groups, link_hours, links, local_path,
    overview, requests, sent_csrf, settings, users, Lang, PanelError,
};
use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, Method};
use axum::response::IntoResponse;
use axum::Form;
use heimweg_control::{
    DeviceStatus, Email, Endpoint, ExpiryDays, GroupPolicy, LinkHours, Name, PublicKey, Role,
};
use heimweg_service::{new_password_problem, secrets, RequestForm};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Decodes `body` as the panel decodes a form sent to each of its pages, and checks what the
/// handlers make of it. Panics on a broken promise.
pub fn decode_forms(body: &[u8]) {
    let l = if body.len() % 2 == 0 {
        Lang::En
    } else {
        Lang::De
    };
    csrf(body);
    accounts(l, body);
    devices(l, body);
    access(l, body);
    settings(l, body);
}

/// The login, the account page, panel accounts and users.
fn accounts(l: Lang, body: &[u8]) {
    if let Some(f) = form::<admins::NewAdmin>(body) {
        if let Ok(role) = f.role.parse::<Role>() {
            assert_eq!(role.as_str(), f.role);
        }
        check_name(l.t("Name", "Name"), &f.name);
    }
    if let Some(f) = form::<users::UserForm>(body) {
        check_name(l.t("Name", "Name"), &f.name);
        if let Some(e) = given(&f.email) {
            if let Ok(email) = Email::new(e) {
                assert_eq!(email.as_str(), e.trim());
            }
        }
    }
    if let Some(f) = form::<users::Search>(body) {
        let _ = given(&f.q);
    }
}

/// Links and access requests.
fn access(l: Lang, body: &[u8]) {
    if let Some(f) = form::<requests::ApproveForm>(body) {
        check_hours(l, &f.expires_in_hours);
        if let Some(g) = given(&f.group) {
            check_name(l.t("Group", "Gruppe"), g);
        }
    }
    if let Some(f) = form::<requests::AccessForm>(body) {
        // The handler hands these to the service as they came.
        let r = RequestForm {
            requester: f.requester,
            contact: f.contact.unwrap_or_default(),
            device_name: f.device_name,
            reason: f.reason.unwrap_or_default(),
        };
        let _ = (r.requester, r.contact, r.device_name, r.reason);
    }
    if let Some(f) = form::<links::LinkForm>(body) {
        check_hours(l, &f.expires_in_hours);
        check_name(l.t("Device name", "Gerätename"), &f.device_name);
        check_name(l.t("Group", "Gruppe"), &f.group);
        if let Some(o) = given(&f.owner) {
            check_name(l.t("Owner", "Person"), o);
        }
    }
    if let Some(f) = form::<auth::LoginForm>(body) {
        check_next(f.next.as_deref());
        let _ = (f.name, f.password);
    }
    if let Some(f) = form::<auth::TotpForm>(body) {
        check_next(f.next.as_deref());
        let _ = f.code;
    }
    if let Some(f) = form::<auth::NextParam>(body) {
        check_next(f.next.as_deref());
    }
    if let Some(f) = form::<account::PasswordForm>(body) {
        if new_password_problem(&f.new, &f.repeat).is_none() {
            assert_eq!(f.new, f.repeat);
            assert!(secrets::password_problem(&f.new).is_none());
        }
        let _ = f.current;
    }
    if let Some(f) = form::<account::TotpConfirmForm>(body) {
        let _ = (f.sealed, f.code, f.password);
    }
    if let Some(f) = form::<account::PasswordOnly>(body) {
        let _ = f.password;
    }
    if let Some(f) = form::<account::AccountParams>(body) {
        let _ = f.done;
    }
}

/// Devices: enrolling, editing, the list.
fn devices(l: Lang, body: &[u8]) {
    if let Some(f) = form::<devices::EnrollForm>(body) {
        if let Some(Ok(k)) = given(&f.public_key).map(str::parse::<PublicKey>) {
            assert_eq!(k.to_base64().parse::<PublicKey>(), Ok(k));
        }
        if let Some(d) = given(&f.expires_in_days) {
            if let Some(days) = d.parse::<u32>().ok().and_then(|d| ExpiryDays::new(d).ok()) {
                assert!((ExpiryDays::MIN..=ExpiryDays::MAX).contains(&days.get()));
            }
        }
        check_name(l.t("Device name", "Gerätename"), &f.name);
        check_name(l.t("Group", "Gruppe"), &f.group);
        if let Some(o) = given(&f.owner) {
            check_name(l.t("Owner", "Person"), o);
        }
    }
    if let Some(f) = form::<devices::DeviceEdit>(body) {
        if let Some(at) = given(&f.expires_on).and_then(devices::end_of_date) {
            assert_eq!(
                at.rem_euclid(86_400),
                86_399,
                "not the last second of a day"
            );
        }
        check_name(l.t("Group", "Gruppe"), &f.group);
        if let Some(o) = given(&f.owner) {
            check_name(l.t("Owner", "Person"), o);
        }
    }
    if let Some(f) = form::<devices::DeviceFilter>(body) {
        // As the device list reads it.
        let status = given(&f.status).unwrap_or("active");
        if status != "all" {
            if let Ok(s) = status.parse::<DeviceStatus>() {
                assert_eq!(s.as_str(), status);
            }
        }
        let page = f.page.unwrap_or(1).max(1);
        let _ = (page - 1).saturating_mul(50);
        let _ = (given(&f.q), given(&f.group), given(&f.owner));
    }
}

/// Groups, the gateway's settings, the audit log.
fn settings(l: Lang, body: &[u8]) {
    if let Some(f) = form::<groups::GroupForm>(body) {
        check_name(l.t("Name", "Name"), f.name.as_deref().unwrap_or(""));
        match f.policy() {
            Ok(p) => {
                assert!((1..=GroupPolicy::MAX_NETWORKS).contains(&p.networks().len()));
                assert!(p.dns().len() <= GroupPolicy::MAX_DNS);
                assert!(p.networks().iter().all(|n| *n == n.trunc()));
                assert_eq!(p.tunnel().is_full(), f.full_tunnel.is_some());
                assert_eq!(p.allows_peer_to_peer(), f.peer_to_peer.is_some());
            }
            Err(e) => refusal_is_escaped(e),
        }
    }
    if let Some(f) = form::<settings::SettingsForm>(body) {
        if let Ok(e) = f.endpoint.trim().parse::<Endpoint>() {
            assert_eq!(e.to_string().parse::<Endpoint>(), Ok(e));
        }
    }
    if let Some(f) = form::<overview::AuditParams>(body) {
        let page = f.page.unwrap_or(1).max(1);
        let _ = (page - 1).saturating_mul(100);
        let _ = given(&f.subject);
    }
}

/// What axum's `Form` makes of `body` sent as a POST form, as the handlers receive it.
fn form<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_vec()))
        .expect("a request with a fixed method, path and header");
    ready(Form::<T>::from_request(req, &()))
        .ok()
        .map(|Form(v)| v)
}

/// The output of a future that never waits (everything here is in memory).
fn ready<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("work on bytes in memory waited"),
    }
}

/// The guard's CSRF check: the token is the first `_csrf` field, and the form decodes as
/// well with the field as without (the guard leaves it in the body).
fn csrf(body: &[u8]) {
    let sent = sent_csrf(body);
    assert!(secrets::same(&sent, &sent));
    let token = "A".repeat(43);
    let mut with = format!("_csrf={token}&").into_bytes();
    with.extend_from_slice(body);
    assert!(secrets::same(&sent_csrf(&with), &token));
    if sent != token {
        assert!(!secrets::same(&sent, &token));
    }
    assert_eq!(
        form::<links::LinkForm>(body).is_some(),
        form::<links::LinkForm>(&with).is_some(),
        "the CSRF field changes how a form decodes"
    );
}

/// A name typed into a form: accepted exactly when the domain accepts it, trimmed.
fn check_name(label: &str, raw: &str) {
    match form_name(label, raw) {
        Ok(n) => assert_eq!(Name::new(raw.trim()), Ok(n)),
        Err(e) => {
            assert!(Name::new(raw.trim()).is_err());
            refusal_is_escaped(e);
        }
    }
}

/// A link lifetime: 72 hours when not given, else what the field says within the bounds.
fn check_hours(l: Lang, field: &Option<String>) {
    match link_hours(l, field) {
        Ok(h) => {
            assert!((LinkHours::MIN..=LinkHours::MAX).contains(&h.get()));
            if given(field).is_none() {
                assert_eq!(h, LinkHours::default());
            }
        }
        Err(e) => refusal_is_escaped(e),
    }
}

/// Where a login returns to: a path of this site, never the login page itself.
fn check_next(next: Option<&str>) {
    let to = auth::safe_next(next);
    assert!(local_path(&to).is_some(), "{to:?} is not a local path");
    assert!(!to.starts_with("/login"));
}

/// The page a refusal renders holds its message only as text: no markup from the input.
fn refusal_is_escaped(e: PanelError) {
    let PanelError::BadRequest(message) = e else {
        panic!("a form field refused as something other than a bad request: {e:?}");
    };
    let page = |m: String| {
        let resp = PanelError::BadRequest(m).into_response();
        let body = ready(axum::body::to_bytes(resp.into_body(), usize::MAX))
            .expect("a rendered page in memory");
        String::from_utf8(body.to_vec()).expect("pages are UTF-8")
    };
    let tags = |s: &str| s.bytes().filter(|b| *b == b'<').count();
    let shown = page(message.clone());
    assert_eq!(
        tags(&shown),
        tags(&page(String::new())),
        "the refusal {message:?} added markup to the page"
    );
}
