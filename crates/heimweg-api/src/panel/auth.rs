//! Logging in (password, then the second factor) and out. The decisions (rate limits,
//! lockout, one-time codes) are the service's; here they become pages and cookies.

use super::{
    csrf_field, layout, local_path, notice, see_other, session_cookie_name, set_cookie, Ctx,
    PanelResult,
};
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Form;
use heimweg_control::SessionStage;
use heimweg_service::{LoginOutcome, SecondFactorOutcome};
use maud::html;
use serde::Deserialize;

/// Where to go after login: a path of this site, never another site or the login page.
pub(super) fn safe_next(next: Option<&str>) -> String {
    match next.and_then(local_path) {
        Some(n) if !n.starts_with("/login") => n.to_string(),
        _ => "/".into(),
    }
}

/// Ends the current session (if any) and starts a new one with a fresh id (the service's
/// rule), as a cookie.
pub(super) async fn start_session(
    st: &AppState,
    ctx: &Ctx,
    admin_id: i64,
    stage: SessionStage,
) -> Result<axum::http::HeaderValue, super::PanelError> {
    let session = st
        .service
        .start_session(ctx.session_hash.as_deref(), admin_id, stage)
        .await?;
    Ok(set_cookie(
        session_cookie_name(st.panel.secure_cookies),
        &session.id,
        st.panel.secure_cookies,
        None,
    ))
}

fn redirect_with_cookie(to: &str, cookie: axum::http::HeaderValue) -> Response {
    let mut r = see_other(to);
    r.headers_mut().append(header::SET_COOKIE, cookie);
    r
}

#[derive(Deserialize, Default)]
pub(super) struct NextParam {
    pub(super) next: Option<String>,
}

fn login_form(ctx: &Ctx, next: &str, name: &str, error: Option<&str>) -> maud::Markup {
    let l = ctx.lang;
    let next_param: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
    html! {
        @if let Some(e) = error { (notice("error", e)) }
        @if ctx.provider_sign_in {
            p { a.button #provider-sign-in href={ "/login/provider?next=" (next_param) } { (l.t("Sign in with your city account", "Mit dem Konto der Stadt anmelden")) } }
            p.hint { (l.t("Or with a local account (first admin, emergency access):", "Oder mit einem lokalen Konto (erste Admin, Notfallzugang):")) }
        }
        form.card.narrow method="post" action="/login" {
            (csrf_field(ctx))
            input type="hidden" name="next" value=(next);
            label for="name" { (l.t("Name", "Name")) }
            input id="name" name="name" autocomplete="username" required value=(name) autofocus;
            label for="password" { (l.t("Password", "Passwort")) }
            input id="password" name="password" type="password" autocomplete="current-password" required;
            button type="submit" { (l.t("Log in", "Anmelden")) }
        }
        p.hint { (l.t(
            "No account yet? On the gateway, run: heimweg admin add NAME",
            "Noch kein Konto? Auf dem Gateway: heimweg admin add NAME")) }
        p { a href="/access" { (l.t("Staff: ask for VPN access for your device", "Mitarbeitende: VPN-Zugang für Ihr Gerät anfragen")) } }
        @if ctx.staff_page { p { a href="/my" { (l.t("Staff: put your own device online", "Mitarbeitende: eigenes Gerät online bringen")) } } }
    }
}

pub(super) async fn login_page(ctx: Ctx, Query(q): Query<NextParam>) -> Response {
    if ctx.admin().is_ok() {
        return see_other(&safe_next(q.next.as_deref()));
    }
    let next = safe_next(q.next.as_deref());
    layout(
        &ctx,
        ctx.lang.t("Log in to heimweg", "Bei heimweg anmelden"),
        login_form(&ctx, &next, "", None),
    )
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    pub(super) name: String,
    pub(super) password: String,
    pub(super) next: Option<String>,
}

pub(super) fn lock_message(ctx: &Ctx, until: i64) -> String {
    match ctx.lang {
        super::Lang::En => format!(
            "This account is locked after too many failed logins until {}. Wait, or ask another admin to unlock it (heimweg admin unlock NAME).",
            super::timestamp(until)
        ),
        super::Lang::De => format!(
            "Dieses Konto ist nach zu vielen Fehlversuchen bis {} gesperrt. Warten Sie, oder lassen Sie es von einer anderen Admin entsperren (heimweg admin unlock NAME).",
            super::timestamp(until)
        ),
    }
}

pub(super) async fn login(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<LoginForm>,
) -> PanelResult {
    let l = ctx.lang;
    let next = safe_next(f.next.as_deref());
    let title = l.t("Log in to heimweg", "Bei heimweg anmelden");
    let refuse = |status: StatusCode, msg: &str| {
        let mut r = layout(&ctx, title, login_form(&ctx, &next, &f.name, Some(msg)));
        *r.status_mut() = status;
        r
    };
    let wrong = l.t(
        "Name or password is wrong.",
        "Name oder Passwort ist falsch.",
    );
    match st
        .service
        .login(ctx.client, &f.name, f.password.clone())
        .await?
    {
        LoginOutcome::Busy => Ok(refuse(
            StatusCode::TOO_MANY_REQUESTS,
            l.t(
                "Too many logins right now. Try again in a minute.",
                "Gerade zu viele Anmeldungen. Versuchen Sie es in einer Minute noch einmal.",
            ),
        )),
        LoginOutcome::Wrong => Ok(refuse(StatusCode::UNAUTHORIZED, wrong)),
        LoginOutcome::Locked(until) => Ok(refuse(StatusCode::LOCKED, &lock_message(&ctx, until))),
        LoginOutcome::SecondFactorDue(admin) => {
            let cookie = start_session(&st, &ctx, admin.id, SessionStage::Password).await?;
            let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
            Ok(redirect_with_cookie(
                &format!("/login/totp?next={next}"),
                cookie,
            ))
        }
        LoginOutcome::Done(admin) => {
            let cookie = start_session(&st, &ctx, admin.id, SessionStage::Full).await?;
            Ok(redirect_with_cookie(&next, cookie))
        }
    }
}

fn totp_form(ctx: &Ctx, next: &str, error: Option<&str>) -> maud::Markup {
    let l = ctx.lang;
    html! {
        @if let Some(e) = error { (notice("error", e)) }
        form.card.narrow method="post" action="/login/totp" {
            (csrf_field(ctx))
            input type="hidden" name="next" value=(next);
            label for="code" { (l.t("Code from your authenticator app, or a recovery code", "Code aus Ihrer Authenticator-App oder ein Wiederherstellungscode")) }
            input id="code" name="code" autocomplete="one-time-code" required autofocus;
            button type="submit" { (l.t("Confirm", "Bestätigen")) }
        }
    }
}

pub(super) async fn totp_page(ctx: Ctx, Query(q): Query<NextParam>) -> Response {
    if !matches!(&ctx.session, Some(s) if s.stage == SessionStage::Password) {
        return see_other("/login");
    }
    let next = safe_next(q.next.as_deref());
    layout(
        &ctx,
        ctx.lang.t("Second factor", "Zweiter Faktor"),
        totp_form(&ctx, &next, None),
    )
}

#[derive(Deserialize)]
pub(super) struct TotpForm {
    pub(super) code: String,
    pub(super) next: Option<String>,
}

pub(super) async fn totp(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<TotpForm>,
) -> PanelResult {
    let l = ctx.lang;
    let Some(s) = ctx
        .session
        .as_ref()
        .filter(|s| s.stage == SessionStage::Password)
    else {
        return Ok(see_other("/login"));
    };
    let next = safe_next(f.next.as_deref());
    match st.service.second_factor(&s.admin, &f.code).await? {
        SecondFactorOutcome::Accepted => {
            let cookie = start_session(&st, &ctx, s.admin.id, SessionStage::Full).await?;
            Ok(redirect_with_cookie(&next, cookie))
        }
        SecondFactorOutcome::Locked(until) => locked_out(&st, &ctx, until).await,
        SecondFactorOutcome::Wrong => {
            let mut r = layout(
                &ctx,
                l.t("Second factor", "Zweiter Faktor"),
                totp_form(
                    &ctx,
                    &next,
                    Some(l.t(
                        "That code is not valid (or was used already).",
                        "Dieser Code ist ungültig (oder wurde schon benutzt).",
                    )),
                ),
            );
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            Ok(r)
        }
    }
}

/// Ends a partial session of a locked account and says until when it is locked.
pub(super) async fn locked_out(st: &AppState, ctx: &Ctx, until: i64) -> PanelResult {
    if let Some(h) = &ctx.session_hash {
        st.service.end_session(h).await?;
    }
    let l = ctx.lang;
    let content = html! {
        (notice("error", &lock_message(ctx, until)))
        p { a href="/login" { (l.t("Back to the login", "Zurück zur Anmeldung")) } }
    };
    let mut r = layout(ctx, l.t("Account locked", "Konto gesperrt"), content);
    *r.status_mut() = StatusCode::LOCKED;
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(ctx.session_cookie(), "", st.panel.secure_cookies, Some(0)),
    );
    Ok(r)
}

pub(super) async fn logout(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    if let Some(h) = &ctx.session_hash {
        st.service.end_session(h).await?;
    }
    let mut r = see_other("/login");
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(ctx.session_cookie(), "", st.panel.secure_cookies, Some(0)),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn login_returns_only_to_this_site() {
        assert_eq!(safe_next(Some("/devices?q=x")), "/devices?q=x");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        // Browsers drop tabs and newlines from URLs: "/\t/x" would become "//x".
        assert_eq!(safe_next(Some("/\t/evil.example")), "/");
        assert_eq!(safe_next(Some("/\n/evil.example")), "/");
        assert_eq!(safe_next(Some("/login")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
