//! Login, the second factor, logout, the admin's own account, and admin accounts.

use super::secrets::{self, Sealer};
use super::{
    csrf_field, layout, notice, role_label, see_other, session_cookie_name, set_cookie,
    trusted_svg, Ctx, PanelError, PanelResult, SESSION_IDLE_SECS, SESSION_PARTIAL_SECS,
};
use crate::{now, token_hash, AppState, KeyedRateLimit, RateLimit};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Form;
use heimweg_control::qr::Qr;
use heimweg_store::{Role, SessionStage};
use maud::html;
use serde::Deserialize;

/// Wrong passwords in a row that lock an account, and for how long.
const MAX_FAILED_LOGINS: i64 = 5;
const LOCKOUT_SECS: i64 = 15 * 60;

/// Password checks across the process, a backstop for the gateway's cores: each costs an
/// argon2id hash (19 MiB, tens of milliseconds).
static PASSWORD_CHECKS: RateLimit = RateLimit::new(5.0, 30.0);
/// Login attempts per client address: a burst of 10, then one every 6 s. One client guessing
/// or flooding runs out of its own tokens long before it could crowd out everyone else.
static LOGINS_PER_CLIENT: std::sync::LazyLock<KeyedRateLimit> =
    std::sync::LazyLock::new(|| KeyedRateLimit::new(1.0 / 6.0, 10.0));
/// At most this many argon2id computations at once: memory (19 MiB each) and cores stay
/// bounded however many requests wait.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Where to go after login: a path of this site, never another site or the login page.
fn safe_next(next: Option<&str>) -> String {
    match next.and_then(super::local_path) {
        Some(n) if !n.starts_with("/login") => n.to_string(),
        _ => "/".into(),
    }
}

async fn check_password(phc: String, password: String) -> bool {
    let Ok(_permit) = HASHING.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || secrets::verify_password(&phc, &password))
        .await
        .unwrap_or(false)
}

async fn hash_password(password: String) -> Result<String, PanelError> {
    let _permit = HASHING
        .acquire()
        .await
        .map_err(|e| PanelError::Internal(format!("hashing a password: {e}")))?;
    tokio::task::spawn_blocking(move || secrets::hash_password(&password))
        .await
        .map_err(|e| PanelError::Internal(format!("hashing a password: {e}")))
}

/// Ends the current session (if any) and starts a new one with a fresh id: the id changes
/// at login and again after the second factor, so a planted id is worth nothing.
async fn start_session(
    st: &AppState,
    ctx: &Ctx,
    admin_id: i64,
    stage: SessionStage,
) -> Result<axum::http::HeaderValue, PanelError> {
    let now = now();
    if let Some(h) = &ctx.session_hash {
        st.store.delete_session(h).await?;
    }
    // Sessions that ran out are swept here, at a rate bounded by logins.
    st.store.delete_expired_sessions(now).await?;
    let id = secrets::random_token(32);
    let lifetime = match stage {
        SessionStage::Full => SESSION_IDLE_SECS,
        SessionStage::Password => SESSION_PARTIAL_SECS,
    };
    st.store
        .create_session(
            &token_hash(&id),
            admin_id,
            stage,
            &secrets::random_token(32),
            now,
            now + lifetime,
        )
        .await?;
    Ok(set_cookie(
        session_cookie_name(st.panel.secure_cookies),
        &id,
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
    next: Option<String>,
}

fn login_form(ctx: &Ctx, next: &str, name: &str, error: Option<&str>) -> maud::Markup {
    let l = ctx.lang;
    html! {
        @if let Some(e) = error { (notice("error", e)) }
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
    name: String,
    password: String,
    next: Option<String>,
}

fn lock_message(ctx: &Ctx, until: i64) -> String {
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
    if !LOGINS_PER_CLIENT.admit(ctx.client) || !PASSWORD_CHECKS.admit() {
        return Ok(refuse(
            StatusCode::TOO_MANY_REQUESTS,
            l.t(
                "Too many logins right now. Try again in a minute.",
                "Gerade zu viele Anmeldungen. Versuchen Sie es in einer Minute noch einmal.",
            ),
        ));
    }
    let now = now();
    let wrong = l.t(
        "Name or password is wrong.",
        "Name oder Passwort ist falsch.",
    );
    let admin = st
        .store
        .admin(f.name.trim())
        .await?
        .filter(|a| a.disabled_at.is_none());
    let Some(admin) = admin else {
        // As slow as a real check, so response times do not tell which names exist.
        check_password(secrets::dummy_hash().to_string(), f.password).await;
        return Ok(refuse(StatusCode::UNAUTHORIZED, wrong));
    };
    if let Some(until) = admin.locked_until.filter(|&u| u > now) {
        return Ok(refuse(StatusCode::LOCKED, &lock_message(&ctx, until)));
    }
    if !check_password(admin.password_hash.clone(), f.password).await {
        let locked = st
            .store
            .record_login_failure(admin.id, MAX_FAILED_LOGINS, LOCKOUT_SECS, now)
            .await?;
        return Ok(match locked {
            Some(until) => refuse(StatusCode::LOCKED, &lock_message(&ctx, until)),
            None => refuse(StatusCode::UNAUTHORIZED, wrong),
        });
    }
    if admin.totp_sealed.is_some() {
        let cookie = start_session(&st, &ctx, admin.id, SessionStage::Password).await?;
        let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
        return Ok(redirect_with_cookie(
            &format!("/login/totp?next={next}"),
            cookie,
        ));
    }
    st.store.record_login(admin.id, "password", now).await?;
    let cookie = start_session(&st, &ctx, admin.id, SessionStage::Full).await?;
    Ok(redirect_with_cookie(&next, cookie))
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
    code: String,
    next: Option<String>,
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
    let now = now();
    // A lock set through any session (or by the password step) holds here too: otherwise each
    // partial session opened before the lock would go on guessing codes.
    if let Some(until) = s.admin.locked_until.filter(|&u| u > now) {
        return locked_out(&st, &ctx, until).await;
    }
    let secret = s
        .admin
        .totp_sealed
        .as_deref()
        .and_then(|sealed| st.panel.sealer.open(sealed));
    let how = match secret.and_then(|secret| secrets::totp_match(&secret, &f.code, now)) {
        Some(step) if st.store.accept_totp_step(s.admin.id, step, now).await? => {
            Some("password+totp")
        }
        Some(_) => None,
        None if f.code.trim().len() > 6
            && st
                .store
                .use_recovery_code(s.admin.id, &secrets::recovery_code_hash(&f.code), now)
                .await? =>
        {
            Some("password+recovery code")
        }
        None => None,
    };
    let Some(how) = how else {
        let locked = st
            .store
            .record_login_failure(s.admin.id, MAX_FAILED_LOGINS, LOCKOUT_SECS, now)
            .await?;
        if let Some(until) = locked {
            return locked_out(&st, &ctx, until).await;
        }
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
        return Ok(r);
    };
    st.store.record_login(s.admin.id, how, now).await?;
    let cookie = start_session(&st, &ctx, s.admin.id, SessionStage::Full).await?;
    Ok(redirect_with_cookie(&next, cookie))
}

/// Ends a partial session of a locked account and says until when it is locked.
async fn locked_out(st: &AppState, ctx: &Ctx, until: i64) -> PanelResult {
    if let Some(h) = &ctx.session_hash {
        st.store.delete_session(h).await?;
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
        st.store.delete_session(h).await?;
    }
    let mut r = see_other("/login");
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(ctx.session_cookie(), "", st.panel.secure_cookies, Some(0)),
    );
    Ok(r)
}

#[derive(Deserialize, Default)]
pub(super) struct AccountParams {
    done: Option<String>,
}

pub(super) async fn account(
    State(st): State<AppState>,
    ctx: Ctx,
    Query(q): Query<AccountParams>,
) -> PanelResult {
    let s = ctx.admin()?;
    let l = ctx.lang;
    let codes_left = st.store.recovery_codes_left(s.admin.id).await?;
    let done = match q.done.as_deref() {
        Some("password") => Some(l.t(
            "Your password was changed. Other sessions of your account have ended.",
            "Ihr Passwort wurde geändert. Andere Sitzungen Ihres Kontos wurden beendet.",
        )),
        Some("totp_off") => Some(l.t("The second factor is off.", "Der zweite Faktor ist aus.")),
        _ => None,
    };
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
    current: String,
    new: String,
    repeat: String,
}

fn password_problem_text(l: super::Lang, p: &str) -> &'static str {
    match p {
        "short" => l.t(
            "The new password must have at least 12 characters.",
            "Das neue Passwort braucht mindestens 12 Zeichen.",
        ),
        _ => l.t(
            "The new password is too long.",
            "Das neue Passwort ist zu lang.",
        ),
    }
}

/// Checks the logged-in admin's own password before a change to the account. A wrong one
/// counts towards the lockout like a failed login, so a stolen session cannot guess it; when
/// it locks the account, this session ends too.
async fn confirm_password(
    st: &AppState,
    ctx: &Ctx,
    s: &heimweg_store::Session,
    password: String,
) -> Result<(), PanelError> {
    let l = ctx.lang;
    if !PASSWORD_CHECKS.admit() {
        return Err(PanelError::TooManyRequests(
            l.t(
                "Too many attempts; try again in a minute.",
                "Zu viele Versuche; bitte in einer Minute noch einmal.",
            )
            .into(),
        ));
    }
    if check_password(s.admin.password_hash.clone(), password).await {
        return Ok(());
    }
    let now = now();
    let locked = st
        .store
        .record_login_failure(s.admin.id, MAX_FAILED_LOGINS, LOCKOUT_SECS, now)
        .await?;
    if let Some(until) = locked {
        if let Some(h) = &ctx.session_hash {
            st.store.delete_session(h).await?;
        }
        return Err(PanelError::BadRequest(lock_message(ctx, until)));
    }
    Err(PanelError::BadRequest(
        l.t("The password is wrong.", "Das Passwort ist falsch.")
            .into(),
    ))
}

pub(super) async fn change_password(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<PasswordForm>,
) -> PanelResult {
    let s = ctx.admin()?;
    let l = ctx.lang;
    confirm_password(&st, &ctx, s, f.current).await?;
    if let Some(p) = secrets::password_problem(&f.new) {
        return Err(PanelError::BadRequest(password_problem_text(l, p).into()));
    }
    if f.new != f.repeat {
        return Err(PanelError::BadRequest(
            l.t(
                "The two new passwords differ.",
                "Die beiden neuen Passwörter sind verschieden.",
            )
            .into(),
        ));
    }
    let hash = hash_password(f.new).await?;
    let actor = format!("admin:{}", s.admin.name);
    // Ends every session of the account, this one too; a new one keeps this browser in.
    st.store
        .set_admin_password(&actor, &s.admin.name, &hash, now())
        .await?;
    let cookie = start_session(&st, &ctx, s.admin.id, SessionStage::Full).await?;
    Ok(redirect_with_cookie("/account?done=password", cookie))
}

/// Step one: a new secret, shown as a QR code and as text. It is not stored until a code
/// from it proves the app has it; meanwhile it travels sealed in the confirmation form.
pub(super) async fn totp_begin(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    let s = ctx.admin()?;
    if s.admin.totp_sealed.is_some() {
        return Ok(see_other("/account"));
    }
    let secret = secrets::new_totp_secret();
    Ok(totp_setup_page(
        &ctx,
        &st.panel.sealer,
        s.admin.id,
        &s.admin.name,
        &secret,
        None,
    ))
}

fn totp_setup_page(
    ctx: &Ctx,
    sealer: &Sealer,
    admin_id: i64,
    name: &str,
    secret: &[u8],
    error: Option<&str>,
) -> Response {
    let l = ctx.lang;
    let uri = secrets::otpauth_uri(name, secret);
    let qr = Qr::encode(&uri).map(|q| q.to_svg()).unwrap_or_default();
    let content = html! {
        @if let Some(e) = error { (notice("error", e)) }
        ol {
            li { (l.t("Scan this code with your authenticator app, or type the key below into it.", "Scannen Sie diesen Code mit Ihrer Authenticator-App oder tippen Sie den Schlüssel unten ein.")) }
            li { (l.t("Enter the six-digit code the app shows.", "Geben Sie den sechsstelligen Code aus der App ein.")) }
        }
        div.qr role="img" aria-label=(l.t("QR code for the authenticator app", "QR-Code für die Authenticator-App")) { (trusted_svg(qr)) }
        p { (l.t("Key:", "Schlüssel:")) " " code #totp-secret { (secrets::base32(secret)) } }
        form.card method="post" action="/account/totp/confirm" {
            (csrf_field(ctx))
            input type="hidden" name="sealed" value=(sealer.seal(&pending_totp(admin_id, secret)));
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

/// What the setup form carries sealed: the account it is for, then the secret, so a sealed
/// secret from one account's setup page cannot be planted in another account.
fn pending_totp(admin_id: i64, secret: &[u8]) -> Vec<u8> {
    let mut v = admin_id.to_be_bytes().to_vec();
    v.extend_from_slice(secret);
    v
}

#[derive(Deserialize)]
pub(super) struct TotpConfirm {
    sealed: String,
    code: String,
    password: String,
}

pub(super) async fn totp_confirm(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<TotpConfirm>,
) -> PanelResult {
    let s = ctx.admin()?;
    let l = ctx.lang;
    // Replacing a second factor means turning it off first, which asks for the password.
    if s.admin.totp_sealed.is_some() {
        return Ok(see_other("/account"));
    }
    let secret = st
        .panel
        .sealer
        .open(&f.sealed)
        .filter(|p| p.len() == 28 && p[..8] == s.admin.id.to_be_bytes())
        .map(|p| p[8..].to_vec())
        .ok_or_else(|| {
            PanelError::BadRequest(
                l.t(
                    "The setup form was altered; start again.",
                    "Das Formular wurde verändert; bitte neu beginnen.",
                )
                .into(),
            )
        })?;
    confirm_password(&st, &ctx, s, f.password).await?;
    let now = now();
    let Some(step) = secrets::totp_match(&secret, &f.code, now) else {
        let mut r = totp_setup_page(&ctx, &st.panel.sealer, s.admin.id, &s.admin.name, &secret,
            Some(l.t("That code does not match. Check the time on your phone and try the next code.", "Der Code passt nicht. Prüfen Sie die Uhrzeit Ihres Telefons und versuchen Sie den nächsten Code.")));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(r);
    };
    let codes = secrets::new_recovery_codes();
    let hashes: Vec<String> = codes
        .iter()
        .map(|c| secrets::recovery_code_hash(c))
        .collect();
    let actor = format!("admin:{}", s.admin.name);
    st.store
        .set_admin_totp(
            &actor,
            &s.admin.name,
            Some((&st.panel.sealer.seal(&secret), &hashes)),
            now,
        )
        .await?;
    // The code just typed counts as used.
    st.store.accept_totp_step(s.admin.id, step, now).await?;
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
    password: String,
}

pub(super) async fn totp_off(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<PasswordOnly>,
) -> PanelResult {
    let s = ctx.admin()?;
    confirm_password(&st, &ctx, s, f.password).await?;
    let actor = format!("admin:{}", s.admin.name);
    st.store
        .set_admin_totp(&actor, &s.admin.name, None, now())
        .await?;
    Ok(see_other("/account?done=totp_off"))
}

/// The admin accounts section of the settings page.
pub(super) async fn admin_section(st: &AppState, ctx: &Ctx) -> Result<maud::Markup, PanelError> {
    let l = ctx.lang;
    let me = ctx.admin()?;
    let admins = st.store.admins().await?;
    let now = now();
    let can_write = me.admin.role == Role::Admin;
    Ok(html! {
        section.card #admins {
            h2 { (l.t("Panel accounts", "Panel-Konten")) }
            div.scroll { table {
                thead { tr {
                    th scope="col" { (l.t("Name", "Name")) }
                    th scope="col" { (l.t("Role", "Rolle")) }
                    th scope="col" { (l.t("Second factor", "Zweiter Faktor")) }
                    th scope="col" { (l.t("State", "Zustand")) }
                    @if can_write { th scope="col" { span.sr-only { (l.t("Actions", "Aktionen")) } } }
                } }
                tbody {
                    @for a in &admins {
                        tr {
                            td { (a.name) }
                            td { (role_label(l, a.role)) }
                            td { @if a.totp_sealed.is_some() { (l.t("on", "an")) } @else { (l.t("off", "aus")) } }
                            td {
                                @if a.disabled_at.is_some() { (l.t("disabled", "deaktiviert")) }
                                @else if a.locked_until.is_some_and(|u| u > now) { strong { (l.t("locked", "gesperrt")) } }
                                @else { (l.t("active", "aktiv")) }
                            }
                            @if can_write {
                                td.actions {
                                    @if a.locked_until.is_some_and(|u| u > now) {
                                        form.inline method="post" action={ "/settings/admins/" (super::pages::urlpath(&a.name)) "/unlock" } {
                                            (csrf_field(ctx)) button type="submit" { (l.t("Unlock", "Entsperren")) }
                                        }
                                    }
                                    @if a.disabled_at.is_none() && a.id != me.admin.id {
                                        form.inline method="post" action={ "/settings/admins/" (super::pages::urlpath(&a.name)) "/disable" } data-confirm=(l.t("Disable this account? Its sessions end at once.", "Dieses Konto deaktivieren? Seine Sitzungen enden sofort.")) {
                                            (csrf_field(ctx)) button.danger type="submit" { (l.t("Disable", "Deaktivieren")) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            } }
            @if can_write {
                h3 { (l.t("New account", "Neues Konto")) }
                form.row method="post" action="/settings/admins" {
                    (csrf_field(ctx))
                    div { label for="admin-name" { (l.t("Name", "Name")) } input id="admin-name" name="name" required maxlength="64"; }
                    div { label for="admin-role" { (l.t("Role", "Rolle")) }
                        select id="admin-role" name="role" {
                            option value="helpdesk" { (role_label(l, Role::Helpdesk)) }
                            option value="admin" { (role_label(l, Role::Admin)) }
                        }
                    }
                    div { button type="submit" { (l.t("Create", "Anlegen")) } }
                }
            }
        }
    })
}

#[derive(Deserialize)]
pub(super) struct NewAdmin {
    name: String,
    role: String,
}

/// Creates an account with a random first password, shown once to hand over.
pub(super) async fn admin_create(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<NewAdmin>,
) -> PanelResult {
    let s = ctx.writer()?;
    let l = ctx.lang;
    let role: Role = f.role.parse()?;
    let password = secrets::random_token(12);
    let hash = hash_password(password.clone()).await?;
    let actor = format!("admin:{}", s.admin.name);
    let created = st
        .store
        .create_admin(&actor, f.name.trim(), &hash, role, now())
        .await?;
    let content = html! {
        p { (l.t("The account", "Das Konto")) " " strong { (created.name) } " (" (role_label(l, created.role)) ") " (l.t("was created. Its first password:", "wurde angelegt. Sein erstes Passwort:")) }
        p { code #new-password { (password) } " " button.copy type="button" data-copy="#new-password" { (l.t("Copy", "Kopieren")) } }
        p.warning { (l.t("It is shown only now. Hand it over in person or by phone; the new admin changes it under their account after logging in.",
            "Es wird nur jetzt angezeigt. Geben Sie es persönlich oder am Telefon weiter; die neue Person ändert es nach der Anmeldung unter ihrem Konto.")) }
        p { a href="/settings" { (l.t("Back to the settings", "Zurück zu den Einstellungen")) } }
    };
    Ok(layout(
        &ctx,
        l.t("Account created", "Konto angelegt"),
        content,
    ))
}

pub(super) async fn admin_unlock(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PanelResult {
    let s = ctx.writer()?;
    st.store
        .unlock_admin(&format!("admin:{}", s.admin.name), &name, now())
        .await?;
    Ok(see_other("/settings#admins"))
}

pub(super) async fn admin_disable(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PanelResult {
    let s = ctx.writer()?;
    if name == s.admin.name {
        return Err(PanelError::BadRequest(
            ctx.lang
                .t(
                    "You cannot disable your own account.",
                    "Das eigene Konto kann man nicht deaktivieren.",
                )
                .into(),
        ));
    }
    st.store
        .disable_admin(&format!("admin:{}", s.admin.name), &name, now())
        .await?;
    Ok(see_other("/settings#admins"))
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
