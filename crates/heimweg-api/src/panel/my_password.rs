//! The staff page's sign-in without an identity provider: the directory password, then a code
//! from the authenticator app (set up on the spot at the first sign-in). The service checks
//! both and keeps the state between the steps sealed in the code form; here they become pages
//! and the staff cookie. The forms before sign-in carry the browser's form token (see
//! [`super::guard`]), which the sealed state is bound to.

use super::my::staff_cookie_name;
use super::{csrf_field, layout, local_time, notice, set_cookie, trusted_svg, Ctx, PanelResult};
use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Form;
use heimweg_control::qr::Qr;
use heimweg_service::{CodeStep, FactorSetup, PasswordStep, ServiceError, STAFF_SESSION_SECS};
use maud::{html, Markup};
use serde::Deserialize;

/// The sign-in form of `/my`, with the login typed so far.
pub(super) fn password_form(ctx: &Ctx, login: &str) -> Markup {
    let l = ctx.lang;
    html! {
        p { (l.t("Put your laptop or iPad online for working from home: sign in with your city account and the code from your authenticator app.", "Bringen Sie Ihren Laptop oder Ihr iPad für das Homeoffice online: Melden Sie sich mit Ihrem Konto der Stadt und dem Code aus Ihrer Authenticator-App an.")) }
        form.card.narrow #password-sign-in method="post" action="/my/sign-in" {
            (csrf_field(ctx))
            label for="login" { (l.t("User name (as at your PC)", "Benutzername (wie am PC)")) }
            input id="login" name="login" value=(login) autocomplete="username" autocapitalize="none" spellcheck="false" required maxlength="256" autofocus;
            label for="password" { (l.t("Password", "Passwort")) }
            input id="password" name="password" type="password" autocomplete="current-password" required;
            button #sign-in type="submit" { (l.t("Sign in", "Anmelden")) }
        }
    }
}

/// The staff page's frame around `content`, answered with `status`.
pub(super) fn page(ctx: &Ctx, status: StatusCode, content: Markup) -> Response {
    let mut r = layout(ctx, ctx.lang.t("My devices", "Meine Geräte"), content);
    *r.status_mut() = status;
    r
}

/// The sign-in form again, with why the last attempt did not work.
fn refused(ctx: &Ctx, status: StatusCode, login: &str, why: &str) -> Response {
    page(
        ctx,
        status,
        html! { (notice("error", why)) (password_form(ctx, login)) },
    )
}

/// A directory that could not be asked: logged for the admins (its error may name the
/// directory, its reading account or its base), and a page that names none of it.
pub(super) fn unreachable(ctx: &Ctx, e: &ServiceError) -> Response {
    tracing::warn!(error = %e, "a staff sign-in with the directory password was not possible");
    let l = ctx.lang;
    page(
        ctx,
        StatusCode::SERVICE_UNAVAILABLE,
        notice(
            "error",
            l.t(
                "The city's directory cannot be reached from the gateway right now. Try again in a few minutes; if it persists, call the IT service desk.",
                "Das Verzeichnis der Stadt ist vom Gateway aus gerade nicht erreichbar. Versuchen Sie es in einigen Minuten noch einmal; hält es an, rufen Sie den IT-Service an.",
            ),
        ),
    )
}

/// Too many sign-ins from this client, or in all.
pub(super) fn busy_message(ctx: &Ctx) -> &'static str {
    ctx.lang.t(
        "Too many sign-ins right now. Try again in a minute.",
        "Gerade zu viele Anmeldungen. Versuchen Sie es in einer Minute noch einmal.",
    )
}

/// A code that is not the app's of the moment, or was used already.
pub(super) fn wrong_code_message(ctx: &Ctx) -> &'static str {
    ctx.lang.t(
        "That code is not right (or was used already). Enter the code the app shows now.",
        "Dieser Code stimmt nicht (oder wurde schon verwendet). Geben Sie den Code ein, den die App jetzt zeigt.",
    )
}

/// Three wrong passwords for a login within 15 minutes.
pub(super) fn throttled_message(ctx: &Ctx) -> &'static str {
    ctx.lang.t(
        "Too many wrong passwords for this user name. Wait 15 minutes before the next try: this keeps your city account from being locked.",
        "Zu viele falsche Passwörter für diesen Benutzernamen. Warten Sie 15 Minuten bis zum nächsten Versuch: So wird Ihr Konto der Stadt nicht gesperrt.",
    )
}

pub(super) fn lock_message(ctx: &Ctx, until: i64) -> String {
    match ctx.lang {
        super::Lang::En => format!(
            "Your sign-in is locked after too many wrong codes until {}. Wait, or ask the IT service desk to reset your second factor.",
            local_time(until)
        ),
        super::Lang::De => format!(
            "Ihre Anmeldung ist nach zu vielen falschen Codes bis {} gesperrt. Warten Sie, oder lassen Sie Ihren zweiten Faktor vom IT-Service zurücksetzen.",
            local_time(until)
        ),
    }
}

/// The code step: at the first sign-in with the new secret to add to the app first.
fn code_page(ctx: &Ctx, note: &str, setup: Option<&FactorSetup>, error: Option<&str>) -> Response {
    let l = ctx.lang;
    let content = html! {
        @if let Some(e) = error { (notice("error", e)) }
        @if let Some(setup) = setup {
            p { (l.t("This is your first sign-in here. From now on each sign-in asks for a code from an authenticator app on your phone (for example Microsoft Authenticator, Google Authenticator or FreeOTP).", "Sie melden sich zum ersten Mal hier an. Künftig fragt jede Anmeldung nach einem Code aus einer Authenticator-App auf Ihrem Telefon (zum Beispiel Microsoft Authenticator, Google Authenticator oder FreeOTP).")) }
            ol {
                li { (l.t("Scan this code with the app, or type the key below into it.", "Scannen Sie diesen Code mit der App oder tippen Sie den Schlüssel unten ein.")) }
                li { (l.t("Enter the six-digit code the app shows.", "Geben Sie den sechsstelligen Code aus der App ein.")) }
            }
            div.qr role="img" aria-label=(l.t("QR code for the authenticator app", "QR-Code für die Authenticator-App")) {
                (trusted_svg(Qr::encode(&setup.uri).map(|q| q.to_svg()).unwrap_or_default()))
            }
            p { (l.t("Key:", "Schlüssel:")) " " code #totp-secret { (setup.base32) } }
        }
        form.card.narrow #code-form method="post" action="/my/sign-in/code" {
            (csrf_field(ctx))
            input type="hidden" name="note" value=(note);
            label for="code" { (l.t("Code from your authenticator app", "Code aus Ihrer Authenticator-App")) }
            input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required autofocus maxlength="16";
            button #confirm type="submit" { (l.t("Confirm", "Bestätigen")) }
        }
    };
    let title = if setup.is_some() {
        l.t("Set up your second factor", "Zweiten Faktor einrichten")
    } else {
        l.t("Sign-in: second factor", "Anmeldung: zweiter Faktor")
    };
    layout(ctx, title, content)
}

#[derive(Deserialize)]
pub(super) struct SignInForm {
    login: String,
    password: String,
}

/// `POST /my/sign-in`: the password step.
pub(super) async fn sign_in(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<SignInForm>,
) -> PanelResult {
    let l = ctx.lang;
    let step = match st
        .service
        .password_sign_in(ctx.client, &f.login, f.password, &ctx.csrf)
        .await
    {
        Ok(step) => step,
        Err(e @ ServiceError::NotReady(_)) => return Ok(unreachable(&ctx, &e)),
        Err(e) => return Err(e.into()),
    };
    Ok(match step {
        PasswordStep::Busy => refused(
            &ctx,
            StatusCode::TOO_MANY_REQUESTS,
            &f.login,
            busy_message(&ctx),
        ),
        PasswordStep::Throttled => refused(
            &ctx,
            StatusCode::TOO_MANY_REQUESTS,
            &f.login,
            throttled_message(&ctx),
        ),
        PasswordStep::Wrong => refused(
            &ctx,
            StatusCode::UNAUTHORIZED,
            &f.login,
            l.t(
                "User name or password is wrong, or the account may not connect.",
                "Benutzername oder Passwort ist falsch, oder das Konto darf nicht verbinden.",
            ),
        ),
        PasswordStep::Locked(until) => refused(
            &ctx,
            StatusCode::LOCKED,
            &f.login,
            &lock_message(&ctx, until),
        ),
        PasswordStep::Code { note, setup } => code_page(&ctx, &note, setup.as_ref(), None),
    })
}

#[derive(Deserialize)]
pub(super) struct CodeForm {
    note: String,
    code: String,
}

/// `POST /my/sign-in/code`: the code step; signed in, on to `/my`.
pub(super) async fn sign_in_code(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<CodeForm>,
) -> PanelResult {
    let l = ctx.lang;
    let step = match st
        .service
        .finish_password_sign_in(&f.note, &f.code, &ctx.csrf)
        .await
    {
        Ok(step) => step,
        Err(e @ ServiceError::NotReady(_)) => return Ok(unreachable(&ctx, &e)),
        Err(e) => return Err(e.into()),
    };
    Ok(match step {
        CodeStep::Expired => refused(
            &ctx,
            StatusCode::UNAUTHORIZED,
            "",
            l.t(
                "The sign-in took too long or was started elsewhere. Please sign in again.",
                "Die Anmeldung hat zu lange gedauert oder wurde woanders begonnen. Bitte melden Sie sich erneut an.",
            ),
        ),
        CodeStep::Wrong(setup) => {
            let mut r = code_page(&ctx, &f.note, setup.as_ref(), Some(wrong_code_message(&ctx)));
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
        CodeStep::Locked(until) => refused(
            &ctx,
            StatusCode::LOCKED,
            "",
            &lock_message(&ctx, until),
        ),
        CodeStep::SignedIn { session, .. } => {
            let secure = st.panel.secure_cookies;
            let mut r = super::see_other("/my");
            r.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(
                    staff_cookie_name(secure),
                    &session,
                    secure,
                    Some(STAFF_SESSION_SECS),
                ),
            );
            r
        }
    })
}
