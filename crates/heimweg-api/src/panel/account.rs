//! The logged-in account's own page: its password and its second factor.

use super::auth::{lock_message, start_session};
use super::{
    csrf_field, layout, notice, role_label, see_other, trusted_svg, Ctx, Lang, PanelError,
    PanelResult,
};
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Form;
use heimweg_control::qr::Qr;
use heimweg_control::SessionStage;
use heimweg_service::{
    new_password_problem, NewPasswordProblem, PasswordCheck, TotpConfirm, TotpSetup,
};
use maud::html;
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub(super) struct AccountParams {
    pub(super) done: Option<String>,
}

pub(super) async fn account(
    State(st): State<AppState>,
    ctx: Ctx,
    Query(q): Query<AccountParams>,
) -> PanelResult {
    let s = ctx.admin()?;
    let l = ctx.lang;
    let codes_left = st.service.recovery_codes_left(&s.admin).await?;
    let done = match q.done.as_deref() {
        Some("password") => Some(l.t(
            "Your password was changed. Other sessions of your account have ended.",
            "Ihr Passwort wurde geändert. Andere Sitzungen Ihres Kontos wurden beendet.",
        )),
        Some("totp_off") => Some(l.t("The second factor is off.", "Der zweite Faktor ist aus.")),
        _ => None,
    };
    // An account the identity provider made has no password here: the provider keeps its
    // password and second factor.
    if s.admin.password_hash.is_empty() {
        let content = html! {
            dl.facts {
                dt { (l.t("Name", "Name")) } dd { (s.admin.name) }
                dt { (l.t("Role", "Rolle")) } dd { (role_label(l, s.admin.role)) }
            }
            p #provider-account { (l.t(
                "This account signs in through the city's identity provider: its password and second factor are kept there, and its role follows its groups there at every sign-in.",
                "Dieses Konto meldet sich über den Anmeldedienst der Stadt an: Passwort und zweiter Faktor liegen dort, und seine Rolle folgt bei jeder Anmeldung seinen Gruppen dort.")) }
        };
        return Ok(layout(&ctx, l.t("Your account", "Ihr Konto"), content));
    }
    let content = html! {
        @if let Some(d) = done { (notice("ok", d)) }
        dl.facts {
            dt { (l.t("Name", "Name")) } dd { (s.admin.name) }
            dt { (l.t("Role", "Rolle")) } dd { (role_label(l, s.admin.role)) }
            dt { (l.t("Second factor", "Zweiter Faktor")) }
            dd {
                @if s.admin.totp_sealed.is_some() {
                    (l.t("on", "an")) " · " (codes_left) " " (l.t("recovery codes left", "Wiederherstellungscodes übrig"))
                } @else {
                    strong { (l.t("off", "aus")) }
                }
            }
        }
        @if s.admin.totp_sealed.is_none() {
            section.card {
                h2 { (l.t("Set up a second factor", "Zweiten Faktor einrichten")) }
                p { (l.t("With an authenticator app (such as FreeOTP, Aegis, Google or Microsoft Authenticator), a stolen password alone no longer opens the panel.",
                         "Mit einer Authenticator-App (etwa FreeOTP, Aegis, Google oder Microsoft Authenticator) öffnet ein gestohlenes Passwort allein das Panel nicht mehr.")) }
                form method="post" action="/account/totp" {
                    (csrf_field(&ctx))
                    button type="submit" { (l.t("Set up", "Einrichten")) }
                }
            }
        } @else {
            section.card {
                h2 { (l.t("Turn the second factor off", "Zweiten Faktor ausschalten")) }
                form method="post" action="/account/totp/off" {
                    (csrf_field(&ctx))
                    label for="off-password" { (l.t("Your password", "Ihr Passwort")) }
                    input id="off-password" name="password" type="password" autocomplete="current-password" required;
                    button.danger type="submit" { (l.t("Turn off", "Ausschalten")) }
                }
            }
        }
        section.card {
            h2 { (l.t("Change your password", "Passwort ändern")) }
            form method="post" action="/account/password" {
                (csrf_field(&ctx))
                label for="current" { (l.t("Current password", "Aktuelles Passwort")) }
                input id="current" name="current" type="password" autocomplete="current-password" required;
                label for="new" { (l.t("New password (at least 12 characters)", "Neues Passwort (mindestens 12 Zeichen)")) }
                input id="new" name="new" type="password" autocomplete="new-password" minlength="12" required;
                label for="repeat" { (l.t("New password again", "Neues Passwort wiederholen")) }
                input id="repeat" name="repeat" type="password" autocomplete="new-password" minlength="12" required;
                button type="submit" { (l.t("Change password", "Passwort ändern")) }
            }
        }
    };
    Ok(layout(&ctx, l.t("Your account", "Ihr Konto"), content))
}

#[derive(Deserialize)]
pub(super) struct PasswordForm {
    pub(super) current: String,
    pub(super) new: String,
    pub(super) repeat: String,
}

fn password_problem_text(l: Lang, p: NewPasswordProblem) -> &'static str {
    match p {
        NewPasswordProblem::TooShort => l.t(
            "The new password must have at least 12 characters.",
            "Das neue Passwort braucht mindestens 12 Zeichen.",
        ),
        NewPasswordProblem::TooLong => l.t(
            "The new password is too long.",
            "Das neue Passwort ist zu lang.",
        ),
        NewPasswordProblem::Mismatch => l.t(
            "The two new passwords differ.",
            "Die beiden neuen Passwörter sind verschieden.",
        ),
    }
}

/// Checks the logged-in admin's own password before a change to the account (the service
/// counts a wrong one towards the lockout and, when it locks, ends this session).
async fn confirm_password(
    st: &AppState,
    ctx: &Ctx,
    s: &heimweg_service::Session,
    password: String,
) -> Result<(), PanelError> {
    let check = st
        .service
        .confirm_password(&s.admin, ctx.session_hash.as_deref(), password)
        .await?;
    refusal(ctx, check).map_or(Ok(()), Err)
}

/// What a failed password check says; `None` when it was right.
fn refusal(ctx: &Ctx, check: PasswordCheck) -> Option<PanelError> {
    let l = ctx.lang;
    match check {
        PasswordCheck::Right => None,
        PasswordCheck::Busy => Some(PanelError::TooManyRequests(
            l.t(
                "Too many attempts; try again in a minute.",
                "Zu viele Versuche; bitte in einer Minute noch einmal.",
            )
            .into(),
        )),
        PasswordCheck::Locked(until) => Some(PanelError::BadRequest(lock_message(ctx, until))),
        PasswordCheck::Wrong => Some(PanelError::BadRequest(
            l.t("The password is wrong.", "Das Passwort ist falsch.")
                .into(),
        )),
    }
}

pub(super) async fn change_password(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<PasswordForm>,
) -> PanelResult {
    let s = ctx.admin()?;
    let l = ctx.lang;
    confirm_password(&st, &ctx, s, f.current).await?;
    if let Some(p) = new_password_problem(&f.new, &f.repeat) {
        return Err(PanelError::BadRequest(password_problem_text(l, p).into()));
    }
    // Ends every session of the account, this one too; a new one keeps this browser in.
    st.service.set_own_password(&s.admin, f.new).await?;
    let cookie = start_session(&st, &ctx, s.admin.id, SessionStage::Full).await?;
    let mut r = see_other("/account?done=password");
    r.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(r)
}

/// Step one: a new secret, shown as a QR code and as text. It is not stored until a code
/// from it proves the app has it; meanwhile it travels sealed in the confirmation form.
pub(super) async fn totp_begin(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    let s = ctx.admin()?;
    if s.admin.totp_sealed.is_some() {
        return Ok(see_other("/account"));
    }
    let setup = st.service.begin_totp(&s.admin)?;
    Ok(totp_setup_page(&ctx, &setup, None))
}

fn totp_setup_page(ctx: &Ctx, setup: &TotpSetup, error: Option<&str>) -> Response {
    let l = ctx.lang;
    let qr = Qr::encode(&setup.uri)
        .map(|q| q.to_svg())
        .unwrap_or_default();
    let content = html! {
        @if let Some(e) = error { (notice("error", e)) }
        ol {
            li { (l.t("Scan this code with your authenticator app, or type the key below into it.", "Scannen Sie diesen Code mit Ihrer Authenticator-App oder tippen Sie den Schlüssel unten ein.")) }
            li { (l.t("Enter the six-digit code the app shows.", "Geben Sie den sechsstelligen Code aus der App ein.")) }
        }
        div.qr role="img" aria-label=(l.t("QR code for the authenticator app", "QR-Code für die Authenticator-App")) { (trusted_svg(qr)) }
        p { (l.t("Key:", "Schlüssel:")) " " code #totp-secret { (setup.base32) } }
        form.card method="post" action="/account/totp/confirm" {
            (csrf_field(ctx))
            input type="hidden" name="sealed" value=(setup.sealed);
            label for="code" { (l.t("Code from the app", "Code aus der App")) }
            input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required autofocus;
            label for="totp-password" { (l.t("Your password", "Ihr Passwort")) }
            input id="totp-password" name="password" type="password" autocomplete="current-password" required;
            button type="submit" { (l.t("Turn on", "Einschalten")) }
        }
    };
    layout(
        ctx,
        l.t("Set up a second factor", "Zweiten Faktor einrichten"),
        content,
    )
}

#[derive(Deserialize)]
pub(super) struct TotpConfirmForm {
    pub(super) sealed: String,
    pub(super) code: String,
    pub(super) password: String,
}

pub(super) async fn totp_confirm(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<TotpConfirmForm>,
) -> PanelResult {
    let s = ctx.admin()?;
    let l = ctx.lang;
    // Replacing a second factor means turning it off first, which asks for the password.
    if s.admin.totp_sealed.is_some() {
        return Ok(see_other("/account"));
    }
    let outcome = st
        .service
        .confirm_totp(
            &s.admin,
            ctx.session_hash.as_deref(),
            &f.sealed,
            &f.code,
            f.password,
        )
        .await?;
    let codes = match outcome {
        TotpConfirm::On(codes) => codes,
        TotpConfirm::FormAltered => {
            return Err(PanelError::BadRequest(
                l.t(
                    "The setup form was altered; start again.",
                    "Das Formular wurde verändert; bitte neu beginnen.",
                )
                .into(),
            ))
        }
        TotpConfirm::Password(check) => {
            return Err(refusal(&ctx, check).unwrap_or(PanelError::Forbidden));
        }
        TotpConfirm::CodeMismatch(setup) => {
            let mut r = totp_setup_page(&ctx, &setup,
                Some(l.t("That code does not match. Check the time on your phone and try the next code.", "Der Code passt nicht. Prüfen Sie die Uhrzeit Ihres Telefons und versuchen Sie den nächsten Code.")));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(r);
        }
    };
    let content = html! {
        (notice("ok", l.t("The second factor is on.", "Der zweite Faktor ist an.")))
        p.warning { strong { (l.t("Write these recovery codes down now and keep them somewhere safe. Each works once, in place of a code from the app. They are shown only this once.",
            "Schreiben Sie diese Wiederherstellungscodes jetzt auf und bewahren Sie sie sicher auf. Jeder gilt einmal anstelle eines App-Codes. Sie werden nur dieses eine Mal angezeigt.")) } }
        ul.codes #recovery-codes { @for c in &codes { li { code { (c) } } } }
        p { a href="/account" { (l.t("Done", "Fertig")) } }
    };
    Ok(layout(
        &ctx,
        l.t("Recovery codes", "Wiederherstellungscodes"),
        content,
    ))
}

#[derive(Deserialize)]
pub(super) struct PasswordOnly {
    pub(super) password: String,
}

pub(super) async fn totp_off(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<PasswordOnly>,
) -> PanelResult {
    let s = ctx.admin()?;
    confirm_password(&st, &ctx, s, f.password).await?;
    st.service.own_totp_off(&s.admin).await?;
    Ok(see_other("/account?done=totp_off"))
}
