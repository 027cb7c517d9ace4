//! Sign-in through the identity provider, and a staff member's own page (`/my`): their
//! devices, connected or not, and enrolling, rotating and revoking their own. The decisions
//! (state, tokens, groups, the device limit) are the service's; here they become pages and
//! cookies.
//!
//! Two cookies: one binds a sign-in to the browser that started it (`SameSite=Lax`, since the
//! provider's redirect back is a cross-site navigation, which a `Strict` cookie would miss);
//! the staff session itself is `Strict` like the panel's. A `Strict` cookie set on that
//! cross-site navigation is stored but not sent along a redirect it starts, so the answer
//! page moves on by itself (meta refresh: a same-site navigation) rather than by a 303.

use super::auth::{safe_next, start_session};
use super::devices::config_page;
use super::my_password;
use super::{
    ago, cookie, cookie_header, csrf_field, layout, local_time, notice, set_cookie, status_label,
    urlpath, Ctx, Lang, PanelError, PanelResult, CONNECTED_SECS,
};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use cookie::SameSite;
use heimweg_control::{DeviceStatus, Name, PublicKey, UsageWindow};
use heimweg_service::{
    Absence, AbsenceOf, Activation, ConnectStep, Device, ProviderAnswer, ServiceError,
    SignInPurpose, SignedIn, StaffSession, StoreError, SIGN_IN_SECS, STAFF_SESSION_SECS,
};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;

pub(super) fn staff_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-heimweg_staff"
    } else {
        "heimweg_staff"
    }
}

/// The staff session of a request for a staff page, and its id's hash. It counts on the staff
/// pages only: it opens nothing of the panel.
pub(super) async fn staff_session(
    st: &AppState,
    headers: &axum::http::HeaderMap,
    path: &str,
) -> Result<(Option<StaffSession>, Option<String>), PanelError> {
    if path != "/my" && !path.starts_with("/my/") {
        return Ok((None, None));
    }
    let Some(hash) = super::session_id_hash(headers, staff_cookie_name(st.panel.secure_cookies))
    else {
        return Ok((None, None));
    };
    match st.service.staff_session(&hash).await {
        Ok(Some(s)) => Ok((Some(s), Some(hash))),
        Ok(None) => Ok((None, None)),
        Err(e) => Err(PanelError::Internal(format!(
            "reading a staff session: {e}"
        ))),
    }
}

fn sign_in_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-heimweg_signin"
    } else {
        "heimweg_signin"
    }
}

/// How the browser is sent on to the provider.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Onward {
    /// A redirect, for a link followed.
    Redirect,
    /// A page that moves on by itself, for a form: the panel's CSP allows forms to post only to
    /// this site (`form-action 'self'`), which browsers apply to a form's redirect too.
    Page,
}

/// `/my/sign-in`, `/login/provider` and `/my/connect`: off to the provider, with this
/// browser's binding.
async fn begin(
    st: &AppState,
    ctx: &Ctx,
    purpose: SignInPurpose,
    next: String,
    onward: Onward,
) -> PanelResult {
    let l = ctx.lang;
    let start = match st.service.begin_sign_in(ctx.client, purpose, &next).await {
        Ok(s) => s,
        Err(e @ ServiceError::NotReady(_)) => {
            tracing::warn!(error = %e, "sign-in through the identity provider not possible");
            return Ok(sign_in_failed(
                ctx,
                StatusCode::SERVICE_UNAVAILABLE,
                l.t(
                    "The city's sign-in service cannot be reached from the gateway right now. Try again in a few minutes; if it persists, call the IT service desk.",
                    "Der Anmeldedienst der Stadt ist vom Gateway aus gerade nicht erreichbar. Versuchen Sie es in einigen Minuten noch einmal; hält es an, rufen Sie den IT-Service an.",
                ),
                &e.to_string(),
                purpose,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let mut r = match onward {
        Onward::Redirect => Redirect::to(&start.url).into_response(),
        Onward::Page => axum::response::Html(
            moving_on(
                l,
                &start.url,
                html! { a #continue href=(start.url) { (l.t("On to the city's sign-in", "Weiter zur Anmeldung der Stadt")) } },
            )
            .into_string(),
        )
        .into_response(),
    };
    r.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(
            sign_in_cookie_name(st.panel.secure_cookies),
            &start.cookie,
            st.panel.secure_cookies,
            SameSite::Lax,
            Some(SIGN_IN_SECS),
        ),
    );
    Ok(r)
}

pub(super) async fn staff_sign_in(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    // With the directory password, the sign-in is the form on /my (a reload or a bookmark
    // of this address lands there).
    if st.service.directory_sign_in().is_some() {
        return Ok(super::see_other("/my"));
    }
    begin(
        &st,
        &ctx,
        SignInPurpose::Staff,
        "/my".into(),
        Onward::Redirect,
    )
    .await
}

#[derive(Deserialize)]
pub(super) struct ConnectForm {
    password: Option<String>,
    code: Option<String>,
}

/// `POST /my/connect` (the staff page's form, so its CSRF token): a fresh sign-in at the
/// provider, its second factor included, that starts an activation when it comes back; or,
/// with the directory password, password and code checked here.
pub(super) async fn connect_sign_in(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<ConnectForm>,
) -> PanelResult {
    let s = signed_in(&ctx)?;
    if st.service.directory_sign_in().is_some() {
        return connect_with_password(&st, &ctx, s, f).await;
    }
    begin(
        &st,
        &ctx,
        SignInPurpose::Connect,
        "/my".into(),
        Onward::Page,
    )
    .await
}

async fn connect_with_password(
    st: &AppState,
    ctx: &Ctx,
    s: &StaffSession,
    f: ConnectForm,
) -> PanelResult {
    let l = ctx.lang;
    let step = match st
        .service
        .connect_with_password(
            ctx.client,
            s,
            f.password.unwrap_or_default(),
            f.code.as_deref().unwrap_or_default(),
        )
        .await
    {
        Ok(step) => step,
        Err(e @ ServiceError::NotReady(_)) => return Ok(my_password::unreachable(ctx, &e)),
        Err(e) => return Err(e.into()),
    };
    let (status, why) = match step {
        ConnectStep::Started(_) => return Ok(super::see_other("/my")),
        ConnectStep::Locked(until) => {
            // The lock ended the staff sessions, this one too.
            let message = my_password::lock_message(ctx, until);
            return Ok(my_password::page(
                ctx,
                StatusCode::LOCKED,
                notice("error", &message),
            ));
        }
        ConnectStep::Busy => (
            StatusCode::TOO_MANY_REQUESTS,
            my_password::busy_message(ctx),
        ),
        ConnectStep::Throttled => (
            StatusCode::TOO_MANY_REQUESTS,
            my_password::throttled_message(ctx),
        ),
        ConnectStep::WrongPassword => (
            StatusCode::UNAUTHORIZED,
            l.t("The password is wrong.", "Das Passwort ist falsch."),
        ),
        ConnectStep::WrongCode => (
            StatusCode::UNAUTHORIZED,
            my_password::wrong_code_message(ctx),
        ),
    };
    let mut r = own_page(st, ctx, s, Some(why)).await?;
    *r.status_mut() = status;
    Ok(r)
}

/// Ends the staff member's own activation now.
pub(super) async fn connect_end(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    let s = signed_in(&ctx)?;
    match st.service.end_own_activation(s).await {
        Ok(()) => Ok(super::see_other("/my")),
        Err(e) => refused_or(&st, &ctx, s, e).await,
    }
}

pub(super) async fn panel_sign_in(
    State(st): State<AppState>,
    ctx: Ctx,
    Query(q): Query<super::auth::NextParam>,
) -> PanelResult {
    let next = safe_next(q.next.as_deref());
    begin(&st, &ctx, SignInPurpose::Panel, next, Onward::Redirect).await
}

/// The provider's answer: checked, then a session, then on (see the module documentation).
pub(super) async fn callback(
    State(st): State<AppState>,
    ctx: Ctx,
    headers: axum::http::HeaderMap,
    Query(answer): Query<ProviderAnswer>,
) -> PanelResult {
    let secure = st.panel.secure_cookies;
    let l = ctx.lang;
    let binding = cookie(&headers, sign_in_cookie_name(secure));
    let result = st.service.finish_sign_in(binding.as_deref(), &answer).await;
    let forget = cookie_header(
        sign_in_cookie_name(secure),
        "",
        secure,
        SameSite::Lax,
        Some(0),
    );
    let (session_cookie, next) = match result {
        Ok(SignedIn::Staff { session, next }) => (
            set_cookie(
                staff_cookie_name(secure),
                &session,
                secure,
                Some(STAFF_SESSION_SECS),
            ),
            next,
        ),
        Ok(SignedIn::Panel { admin, next }) => (
            start_session(&st, &ctx, admin.id, heimweg_control::SessionStage::Full).await?,
            next,
        ),
        Err(e) => {
            let Some((status, headline)) = refusal(l, &e) else {
                return Err(e.into());
            };
            tracing::info!(error = %e, "sign-in through the identity provider refused");
            let mut r =
                sign_in_failed(&ctx, status, headline, &e.to_string(), SignInPurpose::Staff);
            r.headers_mut().append(header::SET_COOKIE, forget);
            return Ok(r);
        }
    };
    let next = super::local_path(&next).unwrap_or("/").to_string();
    let body = moving_on(
        l,
        &next,
        html! { (l.t("Signed in.", "Angemeldet.")) " " a #continue href=(next) { (l.t("Continue", "Weiter")) } },
    );
    let mut r = axum::response::Html(body.into_string()).into_response();
    r.headers_mut().append(header::SET_COOKIE, forget);
    r.headers_mut().append(header::SET_COOKIE, session_cookie);
    Ok(r)
}

/// A page that moves on to `to` by itself (a meta refresh), with `text` for a browser that
/// does not.
fn moving_on(l: Lang, to: &str, text: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(l.code()) {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content={ "0; url=" (to) };
                title { "heimweg" }
                link rel="stylesheet" href="/assets/panel.css";
            }
            body { main.narrow { p { (text) } } }
        }
    }
}

/// How a sign-in the service refused is answered; `None` for a failure that is no refusal.
fn refusal(l: Lang, e: &ServiceError) -> Option<(StatusCode, &'static str)> {
    match e {
        ServiceError::Store(StoreError::Conflict(_)) => Some((
            StatusCode::CONFLICT,
            l.t(
                "Your account cannot be used here as it is.",
                "Ihr Konto kann hier so nicht verwendet werden.",
            ),
        )),
        ServiceError::Store(StoreError::Unauthorized(_)) | ServiceError::Unauthorized(_) => Some((
            StatusCode::UNAUTHORIZED,
            l.t(
                "The sign-in did not work.",
                "Die Anmeldung hat nicht funktioniert.",
            ),
        )),
        _ => None,
    }
}

fn sign_in_failed(
    ctx: &Ctx,
    status: StatusCode,
    headline: &str,
    detail: &str,
    purpose: SignInPurpose,
) -> Response {
    let l = ctx.lang;
    let content = html! {
        (notice("error", headline))
        p #sign-in-detail { (detail) }
        p {
            a.button href=(if purpose == SignInPurpose::Panel { "/login" } else { "/my" }) { (l.t("Sign in again", "Erneut anmelden")) }
            @if purpose == SignInPurpose::Staff { " " a href="/login" { (l.t("Admin sign-in", "Anmeldung für Admins")) } }
        }
    };
    let mut r = layout(ctx, l.t("Sign-in", "Anmeldung"), content);
    *r.status_mut() = status;
    r
}

/// `/my`: the sign-in button, or the staff member's devices and the enrollment form.
pub(super) async fn my_page(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    let l = ctx.lang;
    let Some(s) = &ctx.staff else {
        let content = if st.service.directory_sign_in().is_some() {
            my_password::password_form(&ctx, "")
        } else if st.service.identity_provider().is_some() {
            html! {
                p { (l.t("Put your laptop or iPad online for working from home: sign in with your city account.", "Bringen Sie Ihren Laptop oder Ihr iPad für das Homeoffice online: Melden Sie sich mit Ihrem Konto der Stadt an.")) }
                p { a.button #sign-in href="/my/sign-in" { (l.t("Sign in with your city account", "Mit dem Konto der Stadt anmelden")) } }
            }
        } else {
            html! { p { (l.t("Self-service is not set up on this gateway. Ask the IT service desk for access, or use", "Die Selbstbedienung ist auf diesem Gateway nicht eingerichtet. Fragen Sie den IT-Service nach einem Zugang, oder nutzen Sie")) " " a href="/access" { "/access" } "." } }
        };
        return Ok(layout(&ctx, l.t("My devices", "Meine Geräte"), content));
    };
    own_page(&st, &ctx, s, None).await
}

async fn own_page(st: &AppState, ctx: &Ctx, s: &StaffSession, error: Option<&str>) -> PanelResult {
    let l = ctx.lang;
    let devices = st.service.own_devices(s).await?;
    let now = st.service.now();
    let limit = st.service.own_device_limit().unwrap_or(0);
    let (windows, absences) = st.service.own_access_times(s, &devices).await?;
    let (activation, sign_in_hours) = st.service.own_activation(s, &devices).await?;
    let active = devices
        .iter()
        .filter(|d| d.status(now) == DeviceStatus::Active)
        .count();
    let content = html! {
        @if let Some(e) = error { (notice("error", e)) }
        p #who { (l.t("Signed in as", "Angemeldet als")) " " strong { (s.user.name) } ". "
            (l.t("Session ends", "Sitzung endet")) " " (local_time(s.expires_at)) "." }
        (devices_table(l, &devices, now, ctx))
        (connect_section(ctx, activation.as_ref(), sign_in_hours, now, st.service.directory_sign_in().is_some()))
        (access_times(l, &windows, &absences, now))
        h2 { (l.t("Add a device", "Gerät hinzufügen")) }
        @if active >= limit as usize {
            p #limit-reached { (l.t("You have as many devices as you may have. Revoke one you no longer use to add another.", "Sie haben so viele Geräte, wie Sie haben dürfen. Sperren Sie eines, das Sie nicht mehr nutzen, um ein weiteres hinzuzufügen.")) }
        } @else {
            form.card #enroll method="post" action="/my/devices" {
                (csrf_field(ctx))
                label for="label" { (l.t("What is it? (e.g. laptop, ipad)", "Was ist es? (z. B. laptop, ipad)")) }
                input id="label" name="label" required maxlength="40" value="laptop";
                label for="group" { (l.t("Access", "Zugang")) }
                select id="group" name="group" { @for g in &s.groups { option value=(g) { (g) } } }
                details {
                    summary { (l.t("The device made its own key (advanced)", "Das Gerät hat einen eigenen Schlüssel (fortgeschritten)")) }
                    label for="public_key" { (l.t("Its public key", "Sein öffentlicher Schlüssel")) }
                    input id="public_key" name="public_key" autocomplete="off" spellcheck="false";
                }
                button type="submit" { (l.t("Add device", "Gerät hinzufügen")) }
                p.hint { (active) " / " (limit) " " (l.t("devices in use.", "Geräte in Gebrauch.")) }
            }
        }
        form.inline method="post" action="/my/sign-out" {
            (csrf_field(ctx))
            button.link #sign-out type="submit" { (l.t("Sign out", "Abmelden")) }
        }
    };
    Ok(layout(ctx, l.t("My devices", "Meine Geräte"), content))
}

/// How long before an activation's end the page warns.
const WARN_SECS: i64 = 15 * 60;

/// Sign in to connect: the running activation (and a warning before it ends), or the button
/// that starts one. Nothing when none of the staff member's devices needs it. With the
/// directory `password`, the form asks for the password and a code again.
fn connect_section(
    ctx: &Ctx,
    a: Option<&Activation>,
    hours: Option<u8>,
    now: i64,
    password: bool,
) -> Markup {
    let l = ctx.lang;
    let factors = html! {
        @if password {
            label for="connect-password" { (l.t("Password", "Passwort")) }
            input id="connect-password" name="password" type="password" autocomplete="current-password" required;
            label for="connect-code" { (l.t("Code from your authenticator app", "Code aus Ihrer Authenticator-App")) }
            input id="connect-code" name="code" inputmode="numeric" autocomplete="one-time-code" required maxlength="16";
        }
    };
    html! {
        @if let Some(a) = a {
            h2 { (l.t("Connected for work", "Zum Arbeiten verbunden")) }
            // panel.js shows the warning when the time comes and reloads the page at the end.
            p #connect-state data-ends-at=(a.ends_at) { (l.t("Your devices may connect until", "Ihre Geräte dürfen verbinden bis")) " " strong { (local_time(a.ends_at)) } "." }
            p.notice.warn #connect-warning role="alert" hidden[a.ends_at - now > WARN_SECS] {
                (l.t("Your connection time ends soon. Sign in again to go on working; at its end the VPN stops passing traffic.", "Ihre Verbindungszeit endet bald. Melden Sie sich erneut an, um weiterzuarbeiten; an ihrem Ende leitet das VPN keinen Verkehr mehr."))
            }
            p {
                @if !password {
                    form.inline method="post" action="/my/connect" {
                        (csrf_field(ctx))
                        button #connect type="submit" { (l.t("Sign in again to extend", "Erneut anmelden und verlängern")) }
                    }
                    " "
                }
                form.inline method="post" action="/my/connect/end" {
                    (csrf_field(ctx))
                    button.link #connect-end type="submit" { (l.t("End now", "Jetzt beenden")) }
                }
            }
            @if password {
                details #extend {
                    summary { (l.t("Sign in again to extend", "Erneut anmelden und verlängern")) }
                    form.card.narrow method="post" action="/my/connect" {
                        (csrf_field(ctx))
                        (factors)
                        button #connect type="submit" { (l.t("Extend", "Verlängern")) }
                    }
                }
            }
        } @else if let Some(h) = hours {
            h2 { (l.t("Sign in to connect", "Anmelden zum Verbinden")) }
            p #connect-state { (l.t("Your devices pass no traffic until you sign in with your second factor. A sign-in lets them connect for", "Ihre Geräte leiten keinen Verkehr, bis Sie sich mit Ihrem zweiten Faktor anmelden. Eine Anmeldung lässt sie verbinden für")) " " (h) " " (l.t("hours.", "Stunden.")) }
            form.card.narrow[password] method="post" action="/my/connect" {
                (csrf_field(ctx))
                (factors)
                button #connect type="submit" { (l.t("Sign in to connect", "Anmelden und verbinden")) }
            }
        }
    }
}

/// When the staff member can connect: their groups' usage windows and their absences.
fn access_times(
    l: Lang,
    windows: &[(Name, UsageWindow)],
    absences: &[Absence],
    now: i64,
) -> Markup {
    html! {
        @if !windows.is_empty() || !absences.is_empty() {
            h2 { (l.t("When you can connect", "Wann Sie verbinden können")) }
            ul #access-times {
                @for (group, w) in windows {
                    li { strong { (group) } ": " (w.to_string()) ". " (super::groups::window_state(l, w, now)) "." }
                }
                @for a in absences {
                    li.absence {
                        @match &a.of {
                            AbsenceOf::User(_) => { (l.t("You are entered as absent", "Sie sind als abwesend eingetragen")) },
                            AbsenceOf::Device(d) => { (l.t("Device", "Gerät")) " " (d) " " (l.t("is paused", "ist pausiert")) },
                        }
                        " " (l.t("from", "vom")) " " (local_time(a.starts_at)) " " (l.t("until", "bis")) " " (local_time(a.ends_at))
                        ": " (l.t("no connection in that time.", "keine Verbindung in dieser Zeit."))
                    }
                }
            }
            p.hint { (l.t("Outside these times your device cannot connect; the WireGuard app may still show it as active. It connects again by itself when the time begins.",
                          "Außerhalb dieser Zeiten kann Ihr Gerät nicht verbinden; die WireGuard-App zeigt es eventuell trotzdem als aktiv an. Es verbindet sich von selbst wieder, wenn die Zeit beginnt.")) }
        }
    }
}

fn devices_table(l: Lang, devices: &[Device], now: i64, ctx: &Ctx) -> Markup {
    html! {
        @if devices.is_empty() {
            p #no-devices { (l.t("No devices yet.", "Noch keine Geräte.")) }
        } @else {
            div.scroll { table #my-devices {
                thead { tr {
                    th scope="col" { (l.t("Device", "Gerät")) }
                    th scope="col" { (l.t("Access", "Zugang")) }
                    th scope="col" { (l.t("State", "Zustand")) }
                    th scope="col" { (l.t("Last connection", "Letzte Verbindung")) }
                    th scope="col" { (l.t("Change", "Ändern")) }
                } }
                tbody { @for d in devices {
                    @let active = d.status(now) == DeviceStatus::Active;
                    @let connected = active && d.last_handshake_at.is_some_and(|t| now - t <= CONNECTED_SECS);
                    tr {
                        td { (d.name) }
                        td { (d.group) }
                        td { @if connected { strong { (l.t("connected now", "jetzt verbunden")) } } @else { (status_label(l, d.status(now))) } }
                        td { (ago(l, d.last_handshake_at, now)) }
                        td { @if active {
                            form.inline method="post" action={ "/my/devices/" (urlpath(d.name.as_str())) "/rotate" } {
                                (csrf_field(ctx))
                                button.link type="submit" data-confirm=(l.t("The device's current config stops working. Continue?", "Die bisherige Konfiguration des Geräts funktioniert dann nicht mehr. Fortfahren?")) { (l.t("New config", "Neue Konfiguration")) }
                            }
                            " · "
                            form.inline method="post" action={ "/my/devices/" (urlpath(d.name.as_str())) "/revoke" } {
                                (csrf_field(ctx))
                                button.link.danger type="submit" data-confirm=(l.t("Revoke this device for good?", "Dieses Gerät endgültig sperren?")) { (l.t("Revoke", "Sperren")) }
                            }
                        } }
                    }
                } }
            } }
        }
    }
}

fn signed_in(ctx: &Ctx) -> Result<&StaffSession, PanelError> {
    ctx.staff.as_ref().ok_or(PanelError::StaffSignIn)
}

#[derive(Deserialize)]
pub(super) struct OwnEnrollForm {
    label: String,
    group: String,
    public_key: Option<String>,
}

/// A refusal the staff member can act on is shown on their page; anything else is an error.
async fn refused_or(st: &AppState, ctx: &Ctx, s: &StaffSession, e: ServiceError) -> PanelResult {
    match PanelError::from(e) {
        PanelError::BadRequest(m) | PanelError::NotFound(m) => {
            let mut r = own_page(st, ctx, s, Some(&m)).await?;
            *r.status_mut() = StatusCode::BAD_REQUEST;
            Ok(r)
        }
        other => Err(other),
    }
}

pub(super) async fn enroll_own(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<OwnEnrollForm>,
) -> PanelResult {
    let s = signed_in(&ctx)?;
    let l = ctx.lang;
    let key = match super::given(&f.public_key)
        .map(str::parse::<PublicKey>)
        .transpose()
    {
        Ok(k) => k,
        Err(e) => {
            let m = format!("{}: {e}", l.t("Public key", "Öffentlicher Schlüssel"));
            return refused_or(&st, &ctx, s, ServiceError::Invalid(m)).await;
        }
    };
    let group = match Name::new(f.group.trim()) {
        Ok(g) => g,
        Err(e) => {
            return refused_or(&st, &ctx, s, ServiceError::Invalid(format!("group: {e}"))).await
        }
    };
    match st.service.enroll_own(s, &f.label, &group, key).await {
        Ok(e) => Ok(config_page(
            &ctx,
            e,
            l.t("Device added", "Gerät hinzugefügt"),
            true,
        )),
        Err(e) => refused_or(&st, &ctx, s, e).await,
    }
}

pub(super) async fn rotate_own(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PanelResult {
    let s = signed_in(&ctx)?;
    let name = super::path_name(&name)?;
    match st.service.rotate_own(s, &name).await {
        Ok(e) => Ok(config_page(
            &ctx,
            e,
            ctx.lang.t("New config", "Neue Konfiguration"),
            true,
        )),
        Err(e) => refused_or(&st, &ctx, s, e).await,
    }
}

pub(super) async fn revoke_own(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PanelResult {
    let s = signed_in(&ctx)?;
    let name = super::path_name(&name)?;
    match st.service.revoke_own(s, &name).await {
        Ok(()) => Ok(super::see_other("/my")),
        Err(e) => refused_or(&st, &ctx, s, e).await,
    }
}

pub(super) async fn sign_out(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    if let Some(h) = &ctx.staff_hash {
        st.service.end_staff_session(h).await?;
    }
    let secure = st.panel.secure_cookies;
    let mut r = super::see_other("/my");
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(staff_cookie_name(secure), "", secure, Some(0)),
    );
    Ok(r)
}
