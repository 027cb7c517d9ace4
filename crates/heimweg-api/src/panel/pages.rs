//! The panel's pages. Each reads through the store or the service layer and renders; every
//! change goes through the same calls as the JSON API, audited under `admin:NAME`.

use super::{
    ago, auth, csrf_field, layout, notice, see_other, timestamp, trusted_svg, Ctx, Lang,
    PanelError, PanelResult,
};
use crate::groups::{check_dns, parse_prefixes};
use crate::service::{self, EnrollRequest, Enrollment};
use crate::{now, AppState};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use base64::Engine;
use heimweg_control::{human_bytes, qr::Qr, PublicKey};
use heimweg_store::{DeviceQuery, DeviceUpdate, GroupUpdate, NewAccessRequest, NewGroup};
use maud::{html, Markup};
use serde::Deserialize;

/// Rows per page of the device list.
const PAGE_SIZE: u32 = 50;
/// A handshake this recent means "connected" (WireGuard rekeys every 2 minutes in use).
const CONNECTED_SECS: i64 = 180;

fn actor(s: &heimweg_store::Session) -> String {
    format!("admin:{}", s.admin.name)
}

/// A link lifetime typed into a form, in hours; the service checks the range.
fn link_hours(l: Lang, field: &Option<String>) -> Result<Option<u32>, PanelError> {
    given(field)
        .map(str::parse::<u32>)
        .transpose()
        .map_err(|_| {
            PanelError::BadRequest(
                l.t(
                    "Hours must be a whole number from 1 to 720.",
                    "Stunden müssen eine ganze Zahl von 1 bis 720 sein.",
                )
                .into(),
            )
        })
}

/// An empty form field means "not given".
fn given(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The site's own address as the browser used it, for links handed to staff.
fn base_url(headers: &HeaderMap) -> String {
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

pub(super) async fn overview(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    ctx.admin()?;
    let l = ctx.lang;
    let now = now();
    let counts = st.store.device_counts(now, CONNECTED_SECS).await?;
    let pending = st
        .store
        .access_requests(Some("pending"), 500, now)
        .await?
        .len();
    let events = st.store.audit_log(12).await?;
    let live = st.live.as_ref().map(|l| l.totals());
    let s = ctx.admin()?;
    let content = html! {
        @if s.admin.totp_sealed.is_none() {
            p.notice.warn { (l.t("Your account has no second factor yet.", "Ihr Konto hat noch keinen zweiten Faktor.")) " " a href="/account" { (l.t("Set it up now", "Jetzt einrichten")) } }
        }
        @if pending > 0 {
            p.notice.warn { a href="/requests" { (pending) " " (l.t("access requests are waiting for a decision", "Zugangsanfragen warten auf eine Entscheidung")) } }
        }
        div.cards {
            div.stat { span.value #connected { (counts.connected) } span.label { (l.t("devices connected now", "Geräte jetzt verbunden")) } }
            div.stat { span.value { (counts.active) } span.label { (l.t("devices enrolled", "Geräte eingerichtet")) } }
            @if let Some(t) = &live {
                @match t.per_minute {
                    Some((rx, tx, hs)) => {
                        div.stat { span.value { (format!("{:.0}", hs)) } span.label { (l.t("handshakes per minute", "Handshakes pro Minute")) } }
                        div.stat { span.value { (human_bytes(rx as u64)) " / " (human_bytes(tx as u64)) } span.label { (l.t("in / out per minute", "rein / raus pro Minute")) } }
                    }
                    None => {
                        div.stat { span.value { "…" } span.label { (l.t("rates appear after a minute", "Raten erscheinen nach einer Minute")) } }
                    }
                }
                div.stat { span.value { (human_bytes(t.rx_bytes)) " / " (human_bytes(t.tx_bytes)) } span.label { (l.t("in / out since start", "rein / raus seit Start")) } }
            }
        }
        h2 { (l.t("Recent events", "Letzte Ereignisse")) }
        (audit_table(l, &events))
        p { a href="/audit" { (l.t("The whole audit log", "Das ganze Protokoll")) } }
    };
    Ok(layout(&ctx, l.t("Overview", "Übersicht"), content))
}

/// What an audit action means, for people; the action code stays visible beside it for
/// searching and for the API, which reports codes.
fn action_label(l: Lang, action: &str) -> &'static str {
    match action {
        "device.create" => l.t("device enrolled", "Gerät eingerichtet"),
        "device.revoke" => l.t("device revoked", "Gerät gesperrt"),
        "device.rotate" => l.t("key renewed", "Schlüssel erneuert"),
        "device.update" => l.t("device changed", "Gerät geändert"),
        "group.create" => l.t("group created", "Gruppe angelegt"),
        "group.update" => l.t("access policy changed", "Zugriff geändert"),
        "user.create" => l.t("user created", "Person angelegt"),
        "user.disable" => l.t(
            "user disabled, devices revoked",
            "Person deaktiviert, Geräte gesperrt",
        ),
        "link.create" => l.t("enrollment link created", "Einrichtungslink erstellt"),
        "link.revoke" => l.t(
            "enrollment link withdrawn",
            "Einrichtungslink zurückgezogen",
        ),
        "request.create" => l.t("access requested", "Zugang angefragt"),
        "request.approve" => l.t("request approved", "Anfrage zugesagt"),
        "request.reject" => l.t("request declined", "Anfrage abgelehnt"),
        "token.create" => l.t("API token created", "API-Token erstellt"),
        "token.revoke" => l.t("API token revoked", "API-Token widerrufen"),
        "settings.endpoint" => l.t("endpoint set", "Endpunkt gesetzt"),
        "init" => l.t("database created", "Datenbank angelegt"),
        "admin.create" => l.t("panel account created", "Panel-Konto angelegt"),
        "admin.disable" => l.t("panel account disabled", "Panel-Konto deaktiviert"),
        "admin.login" => l.t("logged in", "angemeldet"),
        "admin.lock" => l.t("account locked", "Konto gesperrt"),
        "admin.unlock" => l.t("account unlocked", "Konto entsperrt"),
        "admin.password" => l.t("password changed", "Passwort geändert"),
        "admin.totp_on" => l.t("second factor on", "zweiter Faktor an"),
        "admin.totp_off" => l.t("second factor off", "zweiter Faktor aus"),
        _ => "",
    }
}

/// Who made a change, for people: "alice", "enrollment link 2 (from alice)", "Petra Schulz
/// (access request)". The audit log keeps the exact actor; the API reports it unchanged.
fn actor_label(l: Lang, actor: &str) -> String {
    let name = |a: &str| a.strip_prefix("admin:").unwrap_or(a).to_string();
    if let Some(rest) = actor.strip_prefix("link:") {
        if let Some((id, by)) = rest.split_once(':') {
            return match l {
                Lang::En => format!("enrollment link {id} (from {})", name(by)),
                Lang::De => format!("Einrichtungslink {id} (von {})", name(by)),
            };
        }
    }
    if let Some(who) = actor.strip_prefix("request:") {
        return format!("{who} ({})", l.t("access request", "Zugangsanfrage"));
    }
    if let Some(token) = actor.strip_prefix("token:") {
        return format!("{} {token}", l.t("API token", "API-Token"));
    }
    if let Some(user) = actor.strip_prefix("cli:") {
        return format!("{} ({user})", l.t("command line", "Kommandozeile"));
    }
    name(actor)
}

fn audit_table(l: Lang, entries: &[heimweg_store::AuditEntry]) -> Markup {
    html! {
        div.scroll { table {
            thead { tr {
                th scope="col" { (l.t("When", "Wann")) }
                th scope="col" { (l.t("Who", "Wer")) }
                th scope="col" { (l.t("What", "Was")) }
                th scope="col" { (l.t("Subject", "Betreff")) }
                th scope="col" { (l.t("Details", "Details")) }
            } }
            tbody {
                @for e in entries {
                    tr {
                        td { (timestamp(e.at)) }
                        td { (actor_label(l, &e.actor)) }
                        td { (action_label(l, &e.action)) " " code.hint { (e.action) } }
                        td { (e.subject) }
                        td { (e.detail) }
                    }
                }
                @if entries.is_empty() { tr { td colspan="5" { (l.t("Nothing yet.", "Noch nichts.")) } } }
            }
        } }
    }
}

#[derive(Deserialize, Default)]
pub(super) struct DeviceFilter {
    q: Option<String>,
    group: Option<String>,
    owner: Option<String>,
    status: Option<String>,
    page: Option<u32>,
}

fn status_label(l: Lang, status: &str) -> &'static str {
    match status {
        "active" => l.t("active", "aktiv"),
        "expired" => l.t("expired", "abgelaufen"),
        "revoked" => l.t("revoked", "gesperrt"),
        _ => l.t("unknown", "unbekannt"),
    }
}

pub(super) async fn devices(
    State(st): State<AppState>,
    ctx: Ctx,
    Query(f): Query<DeviceFilter>,
) -> PanelResult {
    ctx.admin()?;
    let l = ctx.lang;
    let now = now();
    // The list opens on what is live; "all" shows revoked and expired devices too.
    let status_param = given(&f.status).unwrap_or("active");
    let status = match status_param {
        "all" => None,
        s => Some(s.parse()?),
    };
    let page = f.page.unwrap_or(1).max(1);
    let result = st
        .store
        .devices(
            &DeviceQuery {
                search: given(&f.q).map(String::from),
                group: given(&f.group).map(String::from),
                owner: given(&f.owner).map(String::from),
                status,
                limit: PAGE_SIZE,
                offset: (page - 1).saturating_mul(PAGE_SIZE),
            },
            now,
        )
        .await?;
    let groups = st.store.groups().await?;
    let pages = result.total.div_ceil(u64::from(PAGE_SIZE)).max(1);
    let link = |p: u32| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("q", &f.q), ("group", &f.group), ("owner", &f.owner)] {
            if let Some(v) = given(v) {
                q.append_pair(k, v);
            }
        }
        q.append_pair("status", status_param);
        q.append_pair("page", &p.to_string());
        format!("/devices?{}", q.finish())
    };
    let first = u64::from(page - 1) * u64::from(PAGE_SIZE) + 1;
    let last = first + result.items.len() as u64 - 1;
    let content = html! {
        form.filters role="search" method="get" action="/devices" {
            div { label for="q" { (l.t("Search name, owner or key", "Name, Person oder Schlüssel suchen")) }
                  input id="q" name="q" type="search" value=[given(&f.q)] autofocus; }
            div { label for="group" { (l.t("Group", "Gruppe")) }
                select id="group" name="group" {
                    option value="" { (l.t("all", "alle")) }
                    @for g in &groups { option value=(g.name) selected[given(&f.group) == Some(g.name.as_str())] { (g.name) } }
                } }
            div { label for="status" { (l.t("Status", "Status")) }
                select id="status" name="status" {
                    @for (v, label) in [("active", status_label(l, "active")), ("expired", status_label(l, "expired")), ("revoked", status_label(l, "revoked")), ("all", l.t("all", "alle"))] {
                        option value=(v) selected[status_param == v] { (label) }
                    }
                } }
            div { label for="owner" { (l.t("Owner", "Person")) } input id="owner" name="owner" value=[given(&f.owner)]; }
            div { button type="submit" { (l.t("Show", "Anzeigen")) } }
        }
        p #result-count aria-live="polite" {
            @if result.total == 0 { (l.t("No devices match.", "Keine passenden Geräte.")) }
            @else { (first) "–" (last) " " (l.t("of", "von")) " " (result.total) }
        }
        div.scroll { table.devices {
            thead { tr {
                th scope="col" { (l.t("Name", "Name")) }
                th scope="col" { (l.t("Owner", "Person")) }
                th scope="col" { (l.t("Group", "Gruppe")) }
                th scope="col" { (l.t("Address", "Adresse")) }
                th scope="col" { (l.t("Status", "Status")) }
                th scope="col" { (l.t("Last handshake", "Letzter Handshake")) }
            } }
            tbody {
                @for d in &result.items {
                    tr {
                        td { a href={ "/devices/" (urlpath(&d.name)) } { (d.name) } }
                        td { (d.owner.as_deref().unwrap_or("—")) }
                        td { (d.group) }
                        td { code { (d.ipv4) } }
                        td { span class={ "badge " (d.status(now)) } { (status_label(l, d.status(now))) } }
                        td {
                            @if d.status(now) == "active" && d.last_handshake_at.is_some_and(|t| now - t < CONNECTED_SECS) {
                                span.badge.connected { (l.t("connected", "verbunden")) } " "
                            }
                            (ago(l, d.last_handshake_at, now))
                        }
                    }
                }
            }
        } }
        @if pages > 1 {
            nav.pager aria-label=(l.t("Pages", "Seiten")) {
                @if page > 1 { a rel="prev" href=(link(page - 1)) { "← " (l.t("Previous", "Zurück")) } }
                span { (l.t("Page", "Seite")) " " (page) " / " (pages) }
                @if u64::from(page) < pages { a rel="next" href=(link(page + 1)) { (l.t("Next", "Weiter")) " →" } }
            }
        }
    };
    Ok(layout(&ctx, l.t("Devices", "Geräte"), content))
}

/// A name as one path segment.
pub(super) fn urlpath(name: &str) -> String {
    form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[derive(Deserialize, Default)]
pub(super) struct EnrollForm {
    name: String,
    group: String,
    owner: Option<String>,
    public_key: Option<String>,
    expires_in_days: Option<String>,
}

async fn enroll_form_markup(
    st: &AppState,
    ctx: &Ctx,
    f: &EnrollForm,
    error: Option<&str>,
) -> Result<Markup, PanelError> {
    let l = ctx.lang;
    let groups = st.store.groups().await?;
    let endpoint = st.store.settings().await?.endpoint;
    Ok(html! {
        @if endpoint.is_none() {
            p.notice.warn { (l.t("Set the address devices dial first:", "Legen Sie zuerst die Adresse fest, die Geräte anwählen:")) " " a href="/settings" { (l.t("Settings", "Einstellungen")) } }
        }
        @if let Some(e) = error { (notice("error", e)) }
        form.card method="post" action="/devices/new" {
            (csrf_field(ctx))
            label for="name" { (l.t("Device name", "Gerätename")) }
            input id="name" name="name" required maxlength="64" value=(f.name) placeholder=(l.t("e.g. ipad-mueller", "z. B. ipad-mueller")) autofocus aria-describedby="name-hint";
            p.hint #name-hint { (l.t("Shown in the WireGuard app and in this panel.", "Erscheint in der WireGuard-App und in diesem Panel.")) }
            label for="group" { (l.t("Group (decides which networks the device reaches)", "Gruppe (bestimmt, welche Netze das Gerät erreicht)")) }
            select id="group" name="group" {
                @for g in &groups { option value=(g.name) selected[f.group == g.name] { (g.name) } }
            }
            label for="owner" { (l.t("Owner (optional)", "Person (optional)")) }
            input id="owner" name="owner" maxlength="64" value=[f.owner.as_deref()];
            label for="expires" { (l.t("Expires after days (optional)", "Läuft ab nach Tagen (optional)")) }
            input id="expires" name="expires_in_days" type="number" min="1" max="3650" inputmode="numeric" value=[f.expires_in_days.as_deref()];
            details {
                summary { (l.t("The device made its own key", "Das Gerät hat einen eigenen Schlüssel")) }
                label for="public_key" { (l.t("The device's public key (then the config has no private key and no QR code)", "Öffentlicher Schlüssel des Geräts (dann enthält die Konfiguration keinen privaten Schlüssel und keinen QR-Code)")) }
                input id="public_key" name="public_key" maxlength="64" spellcheck="false" autocomplete="off" value=[f.public_key.as_deref()];
            }
            button type="submit" { (l.t("Enroll and show the config", "Einrichten und Konfiguration zeigen")) }
        }
    })
}

pub(super) async fn enroll_form(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    ctx.writer()?;
    let f = EnrollForm {
        group: "default".into(),
        ..EnrollForm::default()
    };
    let content = enroll_form_markup(&st, &ctx, &f, None).await?;
    Ok(layout(
        &ctx,
        ctx.lang.t("Enroll a device", "Gerät einrichten"),
        content,
    ))
}

/// A mistake comes back as the same form with the entries kept and the reason on top.
async fn enroll_again(st: &AppState, ctx: &Ctx, f: &EnrollForm, msg: String) -> PanelResult {
    let content = enroll_form_markup(st, ctx, f, Some(&msg)).await?;
    let mut r = layout(
        ctx,
        ctx.lang.t("Enroll a device", "Gerät einrichten"),
        content,
    );
    *r.status_mut() = StatusCode::BAD_REQUEST;
    Ok(r)
}

pub(super) async fn enroll(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<EnrollForm>,
) -> PanelResult {
    let s = ctx.writer()?;
    let l = ctx.lang;
    let public_key = match given(&f.public_key)
        .map(str::parse::<PublicKey>)
        .transpose()
    {
        Ok(k) => k,
        Err(e) => {
            return enroll_again(
                &st,
                &ctx,
                &f,
                format!("{}: {e}", l.t("Public key", "Öffentlicher Schlüssel")),
            )
            .await
        }
    };
    let expires_in_days = match given(&f.expires_in_days).map(str::parse::<u32>).transpose() {
        Ok(d) if d != Some(0) => d,
        _ => {
            return enroll_again(
                &st,
                &ctx,
                &f,
                l.t(
                    "Days until expiry must be a whole number from 1.",
                    "Tage bis zum Ablauf müssen eine ganze Zahl ab 1 sein.",
                )
                .into(),
            )
            .await
        }
    };
    let result = service::enroll(
        &st.store,
        st.gateway_key,
        &actor(s),
        EnrollRequest {
            name: f.name.trim().to_string(),
            group: f.group.clone(),
            owner: given(&f.owner).map(String::from),
            public_key,
            expires_in_days,
        },
        now(),
    )
    .await;
    match result {
        Ok(e) => Ok(config_page(&st, &ctx, e, l.t("Device enrolled", "Gerät eingerichtet")).await),
        Err(e) => match PanelError::from(e) {
            PanelError::BadRequest(m) | PanelError::NotFound(m) => {
                enroll_again(&st, &ctx, &f, m).await
            }
            other => Err(other),
        },
    }
}

/// The one page that shows a config: QR code, downloads, warning. Nothing here is stored;
/// reloading cannot show it again.
async fn config_page(st: &AppState, ctx: &Ctx, e: Enrollment, title: &str) -> Response {
    let l = ctx.lang;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let profile = service::mobileconfig(&st.store, &e).await;
    let qr = e
        .has_private_key
        .then(|| Qr::encode(&e.config).ok().map(|q| q.to_svg()))
        .flatten();
    let stem = e.file_name.trim_end_matches(".conf").to_string();
    let content = html! {
        p.warning role="alert" { strong { (l.t("Shown only once.", "Wird nur einmal angezeigt.")) } " "
            (l.t("The private key exists only on this page: heimweg does not keep it. Scan or download now; if this page is lost, rotate the key to get a new config.",
                 "Der private Schlüssel existiert nur auf dieser Seite: heimweg speichert ihn nicht. Jetzt scannen oder herunterladen; geht die Seite verloren, erzeugen Sie mit „Schlüssel erneuern“ eine neue Konfiguration.")) }
        dl.facts {
            dt { (l.t("Device", "Gerät")) } dd { a href={ "/devices/" (urlpath(&e.device.name)) } { (e.device.name) } }
            dt { (l.t("Addresses", "Adressen")) } dd { code { (e.device.ipv4) } ", " code { (e.device.ipv6) } }
            dt { (l.t("Group", "Gruppe")) } dd { (e.device.group) }
        }
        @if let Some(svg) = qr {
            h2 { (l.t("iPad, iPhone, Android: scan", "iPad, iPhone, Android: scannen")) }
            p { (l.t("In the WireGuard app: + → Create from QR code.", "In der WireGuard-App: + → Aus QR-Code erstellen.")) }
            div.qr #config-qr role="img" aria-label=(l.t("QR code of the config", "QR-Code der Konfiguration")) { (trusted_svg(svg)) }
        } @else {
            p { (l.t("The device brought its own key: import this config there; it has no private key.", "Das Gerät hat einen eigenen Schlüssel: importieren Sie diese Konfiguration dort; sie enthält keinen privaten Schlüssel.")) }
        }
        h2 { (l.t("Laptop or MDM: download", "Laptop oder MDM: herunterladen")) }
        p.downloads {
            a.button #download-conf download=(e.file_name) href={ "data:application/octet-stream;base64," (b64(&e.config)) } { (l.t("Download", "Herunterladen")) " " (e.file_name) }
            @if let Some(p) = &profile {
                " "
                a.button #download-mobileconfig download={ (stem) ".mobileconfig" } href={ "data:application/x-apple-aspen-config;base64," (b64(p)) } { (l.t("Download", "Herunterladen")) " " (stem) ".mobileconfig " (l.t("(iPad profile)", "(iPad-Profil)")) }
            }
        }
        details {
            summary { (l.t("Show the config as text", "Konfiguration als Text zeigen")) }
            pre #config-text { (e.config) }
            button.copy type="button" data-copy="#config-text" { (l.t("Copy", "Kopieren")) }
        }
    };
    layout(ctx, title, content)
}

pub(super) async fn device(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PanelResult {
    let s = ctx.admin()?;
    let l = ctx.lang;
    let now = now();
    let d = st.store.device_by_name(&name).await?;
    let live = st.live.as_ref().and_then(|live| live.peer(&d.public_key));
    let trail = st.store.audit_entries(Some(&d.name), 50, 0).await?;
    let groups = st.store.groups().await?;
    let status = d.status(now);
    let last_handshake = live
        .as_ref()
        .and_then(|p| p.last_handshake_at)
        .max(d.last_handshake_at);
    let endpoint = live
        .as_ref()
        .and_then(|p| p.endpoint.map(|e| e.to_string()))
        .or(d.last_endpoint.clone());
    let writable = s.admin.role == heimweg_store::Role::Admin && status != "revoked";
    let path = format!("/devices/{}", urlpath(&d.name));
    let content = html! {
        dl.facts {
            dt { (l.t("Status", "Status")) } dd { span class={ "badge " (status) } { (status_label(l, status)) }
                @if status == "active" && last_handshake.is_some_and(|t| now - t < CONNECTED_SECS) { " " span.badge.connected { (l.t("connected", "verbunden")) } } }
            dt { (l.t("Last handshake", "Letzter Handshake")) } dd #last-handshake { (ago(l, last_handshake, now)) }
            dt { (l.t("Endpoint", "Endpunkt")) } dd { (endpoint.as_deref().unwrap_or("—")) }
            dt { (l.t("Traffic here", "Verkehr hier")) } dd {
                @if let Some(p) = &live { (l.t("in", "rein")) " " (human_bytes(p.rx_bytes)) ", " (l.t("out", "raus")) " " (human_bytes(p.tx_bytes)) }
                @else { "—" } }
            dt { (l.t("Owner", "Person")) } dd { @if let Some(o) = &d.owner { a href={ "/users/" (urlpath(o)) } { (o) } } @else { "—" } }
            dt { (l.t("Group", "Gruppe")) } dd { a href={ "/groups/" (urlpath(&d.group)) } { (d.group) } }
            dt { (l.t("Addresses", "Adressen")) } dd { code { (d.ipv4) } ", " code { (d.ipv6) } }
            dt { (l.t("Public key", "Öffentlicher Schlüssel")) } dd { code { (d.public_key.to_base64()) } }
            dt { (l.t("Enrolled", "Eingerichtet")) } dd { (timestamp(d.created_at)) }
            dt { (l.t("Expires", "Läuft ab")) } dd { (d.expires_at.map_or_else(|| l.t("never", "nie").to_string(), timestamp)) }
            @if let Some(r) = d.revoked_at { dt { (l.t("Revoked", "Gesperrt")) } dd { (timestamp(r)) } }
            @if let Some(r) = d.key_rotated_at { dt { (l.t("Key renewed", "Schlüssel erneuert")) } dd { (timestamp(r)) } }
        }
        @if writable {
            div.actions {
                form.inline method="post" action={ (path) "/revoke" } data-confirm=(l.t("Revoke this device? It is cut off within a second and cannot be re-enabled.", "Dieses Gerät sperren? Es wird binnen einer Sekunde getrennt und kann nicht wieder aktiviert werden.")) {
                    (csrf_field(&ctx)) button.danger #revoke type="submit" { (l.t("Revoke", "Sperren")) }
                }
                form.inline method="post" action={ (path) "/rotate" } data-confirm=(l.t("Renew the key? The current config stops working; the device needs the new one.", "Schlüssel erneuern? Die jetzige Konfiguration hört auf zu funktionieren; das Gerät braucht die neue.")) {
                    (csrf_field(&ctx)) button type="submit" { (l.t("Renew key (new config)", "Schlüssel erneuern (neue Konfiguration)")) }
                }
            }
            details.card {
                summary { (l.t("Change group, owner or expiry", "Gruppe, Person oder Ablauf ändern")) }
                form method="post" action=(path) {
                    (csrf_field(&ctx))
                    label for="group" { (l.t("Group", "Gruppe")) }
                    select id="group" name="group" { @for g in &groups { option value=(g.name) selected[g.name == d.group] { (g.name) } } }
                    label for="owner" { (l.t("Owner (empty: none)", "Person (leer: keine)")) }
                    input id="owner" name="owner" maxlength="64" value=[d.owner.as_deref()];
                    label for="expires_on" { (l.t("Expires on (empty: never)", "Läuft ab am (leer: nie)")) }
                    input id="expires_on" name="expires_on" type="date" value=[d.expires_at.map(|t| timestamp(t)[..10].to_string())];
                    button type="submit" { (l.t("Save", "Speichern")) }
                }
            }
        }
        h2 { (l.t("History", "Verlauf")) }
        (audit_table(l, &trail.items))
    };
    Ok(layout(
        &ctx,
        &format!("{} {}", l.t("Device", "Gerät"), d.name),
        content,
    ))
}

#[derive(Deserialize)]
pub(super) struct DeviceEdit {
    group: String,
    owner: Option<String>,
    expires_on: Option<String>,
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (the inverse of [`timestamp`]'s calendar).
fn days_from_date(s: &str) -> Option<i64> {
    let mut parts = s.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

pub(super) async fn device_update(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
    Form(f): Form<DeviceEdit>,
) -> PanelResult {
    let s = ctx.writer()?;
    let l = ctx.lang;
    let expires_at = match given(&f.expires_on) {
        None => None,
        Some(d) => Some(
            days_from_date(d)
                // The end of that day, UTC: "expires on the 30th" includes the 30th.
                .map(|days| days * 86_400 + 86_399)
                .ok_or_else(|| {
                    PanelError::BadRequest(
                        l.t(
                            "The expiry date is not a date.",
                            "Das Ablaufdatum ist kein Datum.",
                        )
                        .into(),
                    )
                })?,
        ),
    };
    st.store
        .update_device(
            &actor(s),
            &name,
            DeviceUpdate {
                group: Some(f.group),
                owner: Some(given(&f.owner).map(String::from)),
                expires_at: Some(expires_at),
            },
            now(),
        )
        .await?;
    Ok(see_other(&format!("/devices/{}", urlpath(&name))))
}

pub(super) async fn device_revoke(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PanelResult {
    let s = ctx.writer()?;
    st.store.revoke_device(&actor(s), &name, now()).await?;
    Ok(see_other(&format!("/devices/{}", urlpath(&name))))
}

pub(super) async fn device_rotate(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PanelResult {
    let s = ctx.writer()?;
    let e = service::rotate(&st.store, st.gateway_key, &actor(s), &name, None, now()).await?;
    Ok(config_page(
        &st,
        &ctx,
        e,
        ctx.lang
            .t("New key, new config", "Neuer Schlüssel, neue Konfiguration"),
    )
    .await)
}

fn link_status_label(l: Lang, s: &str) -> &'static str {
    match s {
        "used" => l.t("used", "benutzt"),
        "revoked" => l.t("withdrawn", "zurückgezogen"),
        "expired" => l.t("expired", "abgelaufen"),
        _ => l.t("open", "offen"),
    }
}

async fn group_select(st: &AppState, id: &str, selected: &str) -> Result<Markup, PanelError> {
    let groups = st.store.groups().await?;
    Ok(html! {
        select id=(id) name="group" { @for g in &groups { option value=(g.name) selected[g.name == selected] { (g.name) } } }
    })
}

pub(super) async fn links(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    let s = ctx.admin()?;
    let l = ctx.lang;
    let now = now();
    let links = st.store.enrollment_links(200).await?;
    let writable = s.admin.role == heimweg_store::Role::Admin;
    let content = html! {
        p { (l.t("A link lets a member of staff set up one device themselves: they open it on the device and get its config once. It works once and expires.",
                 "Mit einem Link richtet eine Person ein Gerät selbst ein: Sie öffnet ihn auf dem Gerät und erhält einmal die Konfiguration. Er gilt einmal und läuft ab.")) }
        @if writable {
            form.card.row method="post" action="/links" {
                (csrf_field(&ctx))
                div { label for="device_name" { (l.t("Device name", "Gerätename")) } input id="device_name" name="device_name" required maxlength="64"; }
                div { label for="group" { (l.t("Group", "Gruppe")) } (group_select(&st, "group", "default").await?) }
                div { label for="owner" { (l.t("Owner (optional)", "Person (optional)")) } input id="owner" name="owner" maxlength="64"; }
                div { label for="hours" { (l.t("Valid for hours", "Gültig für Stunden")) } input id="hours" name="expires_in_hours" type="number" min="1" max="720" value="72"; }
                div { button type="submit" { (l.t("Create link", "Link erstellen")) } }
            }
        }
        div.scroll { table {
            thead { tr {
                th scope="col" { (l.t("Device", "Gerät")) } th scope="col" { (l.t("Group", "Gruppe")) }
                th scope="col" { (l.t("Owner", "Person")) } th scope="col" { (l.t("Created by", "Erstellt von")) }
                th scope="col" { (l.t("Expires", "Läuft ab")) } th scope="col" { (l.t("Status", "Status")) }
                @if writable { th scope="col" { span.sr-only { (l.t("Actions", "Aktionen")) } } }
            } }
            tbody {
                @for k in &links {
                    @let status = service::link_status(k, now);
                    tr {
                        td { (k.device_name) } td { (k.group) } td { (k.owner.as_deref().unwrap_or("—")) }
                        td { (actor_label(l, &k.created_by)) } td { (timestamp(k.expires_at)) }
                        td { span class={ "badge link-" (status) } { (link_status_label(l, status)) }
                             @if let Some(u) = k.used_at { " " (timestamp(u)) } }
                        @if writable { td { @if status == "open" {
                            form.inline method="post" action={ "/links/" (k.id) "/revoke" } {
                                (csrf_field(&ctx)) button.danger type="submit" { (l.t("Withdraw", "Zurückziehen")) }
                            }
                        } } }
                    }
                }
                @if links.is_empty() { tr { td colspan="7" { (l.t("No links yet.", "Noch keine Links.")) } } }
            }
        } }
    };
    Ok(layout(
        &ctx,
        l.t("Enrollment links", "Einrichtungslinks"),
        content,
    ))
}

#[derive(Deserialize)]
pub(super) struct LinkForm {
    device_name: String,
    group: String,
    owner: Option<String>,
    expires_in_hours: Option<String>,
}

pub(super) async fn link_create(
    State(st): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(f): Form<LinkForm>,
) -> PanelResult {
    let s = ctx.writer()?;
    let l = ctx.lang;
    let hours = link_hours(l, &f.expires_in_hours)?;
    let (link, token) = service::create_link(
        &st.store,
        &actor(s),
        f.device_name.trim(),
        &f.group,
        given(&f.owner),
        hours,
        now(),
    )
    .await?;
    let url = format!("{}/enroll/{token}", base_url(&headers));
    let qr = Qr::encode(&url).map(|q| q.to_svg()).unwrap_or_default();
    let content = html! {
        p { (l.t("Send this link to the person who sets up", "Senden Sie diesen Link an die Person, die")) " " strong { (link.device_name) } " " (l.t("(by e-mail, chat, or show the QR code). It works once, until", "einrichtet (per E-Mail, Chat, oder zeigen Sie den QR-Code). Er gilt einmal, bis")) " " (timestamp(link.expires_at)) "." }
        p.warning { (l.t("The link is shown only now; heimweg keeps only a fingerprint of it.", "Der Link wird nur jetzt angezeigt; heimweg speichert nur einen Fingerabdruck davon.")) }
        p { input.linkbox #link-url readonly value=(url) aria-label=(l.t("Enrollment link", "Einrichtungslink")); " "
            button.copy type="button" data-copy="#link-url" { (l.t("Copy", "Kopieren")) } }
        div.qr role="img" aria-label=(l.t("QR code of the link", "QR-Code des Links")) { (trusted_svg(qr)) }
        p { a href="/links" { (l.t("Back to the links", "Zurück zu den Links")) } }
    };
    Ok(layout(&ctx, l.t("Link created", "Link erstellt"), content))
}

pub(super) async fn link_revoke(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> PanelResult {
    let s = ctx.writer()?;
    st.store
        .revoke_enrollment_link(&actor(s), id, now())
        .await?;
    Ok(see_other("/links"))
}

pub(super) async fn requests(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    let s = ctx.admin()?;
    let l = ctx.lang;
    let now = now();
    let all = st.store.access_requests(None, 200, now).await?;
    let (pending, decided): (Vec<_>, Vec<_>) = all.into_iter().partition(|r| r.status == "pending");
    let writable = s.admin.role == heimweg_store::Role::Admin;
    let content = html! {
        p { (l.t("Staff ask for access at", "Mitarbeitende bitten um Zugang unter")) " " a href="/access" { "/access" } ". "
            (l.t("Approving sends them, on their own status page, a one-time link that sets up the device.", "Eine Zusage gibt ihnen auf ihrer eigenen Statusseite einen Einmal-Link, der das Gerät einrichtet.")) }
        h2 { (l.t("Waiting", "Offen")) " (" (pending.len()) ")" }
        @if pending.is_empty() { p { (l.t("No requests are waiting.", "Keine Anfragen offen.")) } }
        @for r in &pending {
            article.card.request {
                h3 { (r.requester) " — " (r.device_name) }
                dl.facts {
                    dt { (l.t("Contact", "Kontakt")) } dd { (r.contact) }
                    dt { (l.t("Reason", "Grund")) } dd { (r.reason) }
                    dt { (l.t("Asked", "Gefragt")) } dd { (timestamp(r.created_at)) }
                }
                @if writable {
                    form.row method="post" action={ "/requests/" (r.id) "/approve" } {
                        (csrf_field(&ctx))
                        div { label for={ "group-" (r.id) } { (l.t("Group", "Gruppe")) } (group_select(&st, &format!("group-{}", r.id), "default").await?) }
                        div { label for={ "hours-" (r.id) } { (l.t("Link valid for hours", "Link gültig für Stunden")) } input id={ "hours-" (r.id) } name="expires_in_hours" type="number" min="1" max="720" value="72"; }
                        div.buttons {
                            button type="submit" { (l.t("Approve", "Zusagen")) }
                            " "
                            // The decline button belongs to the form below (HTML `form=`), so
                            // both decisions sit side by side.
                            button.danger type="submit" form={ "reject-" (r.id) } { (l.t("Decline", "Ablehnen")) }
                        }
                    }
                    form id={ "reject-" (r.id) } method="post" action={ "/requests/" (r.id) "/reject" } {
                        (csrf_field(&ctx))
                    }
                }
            }
        }
        h2 { (l.t("Decided", "Entschieden")) }
        div.scroll { table {
            thead { tr { th scope="col" { (l.t("Who", "Wer")) } th scope="col" { (l.t("Device", "Gerät")) } th scope="col" { (l.t("Decision", "Entscheidung")) } th scope="col" { (l.t("By", "Von")) } th scope="col" { (l.t("When", "Wann")) } th scope="col" { (l.t("Link", "Link")) } } }
            tbody { @for r in &decided { tr {
                td { (r.requester) } td { (r.device_name) }
                td { @if r.status == "approved" { (l.t("approved", "zugesagt")) } @else { (l.t("declined", "abgelehnt")) } }
                td { (r.decided_by.as_deref().map(|a| actor_label(l, a)).unwrap_or_default()) } td { (r.decided_at.map(timestamp).unwrap_or_default()) }
                td { @if r.status == "approved" { @if r.link_open { (l.t("not used yet", "noch nicht benutzt")) } @else { (l.t("used or expired", "benutzt oder abgelaufen")) } } }
            } } }
        } }
    };
    Ok(layout(
        &ctx,
        l.t("Access requests", "Zugangsanfragen"),
        content,
    ))
}

#[derive(Deserialize)]
pub(super) struct ApproveForm {
    group: Option<String>,
    expires_in_hours: Option<String>,
}

pub(super) async fn request_approve(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<ApproveForm>,
) -> PanelResult {
    let s = ctx.writer()?;
    let hours = link_hours(ctx.lang, &f.expires_in_hours)?;
    service::approve_access_request(&st.store, &actor(s), id, given(&f.group), hours, now())
        .await?;
    Ok(see_other("/requests"))
}

pub(super) async fn request_reject(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> PanelResult {
    let s = ctx.writer()?;
    st.store.reject_access_request(&actor(s), id, now()).await?;
    Ok(see_other("/requests"))
}

#[derive(Deserialize, Default)]
pub(super) struct AccessForm {
    requester: String,
    contact: Option<String>,
    device_name: String,
    reason: Option<String>,
}

fn access_form_markup(ctx: &Ctx, f: &AccessForm, error: Option<&str>) -> Markup {
    let l = ctx.lang;
    html! {
        p { (l.t("Ask your IT department for VPN access for one device. Open this page on the device you want to connect; you will get a page to come back to.",
                 "Bitten Sie Ihre IT um VPN-Zugang für ein Gerät. Öffnen Sie diese Seite auf dem Gerät, das Sie verbinden möchten; Sie erhalten eine Seite, auf die Sie zurückkehren.")) }
        @if let Some(e) = error { (notice("error", e)) }
        form.card.narrow method="post" action="/access" {
            (csrf_field(ctx))
            label for="requester" { (l.t("Your name", "Ihr Name")) }
            input id="requester" name="requester" required maxlength="64" autocomplete="name" value=(f.requester);
            label for="contact" { (l.t("E-mail or phone", "E-Mail oder Telefon")) }
            input id="contact" name="contact" maxlength="200" autocomplete="email" value=[f.contact.as_deref()];
            label for="device_name" { (l.t("Which device? (e.g. ipad-mueller)", "Welches Gerät? (z. B. ipad-mueller)")) }
            input id="device_name" name="device_name" required maxlength="64" value=(f.device_name);
            label for="reason" { (l.t("Why (optional)", "Wofür (optional)")) }
            textarea id="reason" name="reason" maxlength="1000" rows="3" { (f.reason.as_deref().unwrap_or("")) }
            button type="submit" { (l.t("Ask for access", "Zugang anfragen")) }
        }
    }
}

/// Public: the form staff use to ask for access.
pub(super) async fn access_form(ctx: Ctx) -> Response {
    layout(
        &ctx,
        ctx.lang.t("Ask for VPN access", "VPN-Zugang anfragen"),
        access_form_markup(&ctx, &AccessForm::default(), None),
    )
}

pub(super) async fn access_file(
    State(st): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(f): Form<AccessForm>,
) -> PanelResult {
    let l = ctx.lang;
    let filed = service::file_access_request(
        &st.store,
        ctx.client,
        &NewAccessRequest {
            requester: f.requester.trim().to_string(),
            contact: f.contact.clone().unwrap_or_default(),
            device_name: f.device_name.trim().to_string(),
            reason: f.reason.clone().unwrap_or_default(),
        },
        now(),
    )
    .await;
    let (_, secret) = match filed {
        Ok(x) => x,
        Err(e) => {
            return match PanelError::from(e) {
                PanelError::BadRequest(m) | PanelError::TooManyRequests(m) => {
                    let mut r = layout(
                        &ctx,
                        l.t("Ask for VPN access", "VPN-Zugang anfragen"),
                        access_form_markup(&ctx, &f, Some(&m)),
                    );
                    *r.status_mut() = StatusCode::BAD_REQUEST;
                    Ok(r)
                }
                other => Err(other),
            }
        }
    };
    let url = format!("{}/request/{secret}", base_url(&headers));
    let content = html! {
        p { (l.t("Your request was sent. Keep the address below (bookmark it): it shows whether it was approved, and then sets up your device. Only you have it.",
                 "Ihre Anfrage wurde gesendet. Behalten Sie die Adresse unten (als Lesezeichen): Sie zeigt, ob zugesagt wurde, und richtet dann Ihr Gerät ein. Nur Sie haben sie.")) }
        p { a #status-link href=(url) { (url) } }
    };
    Ok(layout(
        &ctx,
        l.t("Request sent", "Anfrage gesendet"),
        content,
    ))
}

#[derive(Deserialize, Default)]
pub(super) struct Search {
    q: Option<String>,
}

pub(super) async fn users(
    State(st): State<AppState>,
    ctx: Ctx,
    Query(q): Query<Search>,
) -> PanelResult {
    let s = ctx.admin()?;
    let l = ctx.lang;
    let now = now();
    let users = st.store.users(given(&q.q), 200, 0, now).await?;
    let content = html! {
        form.filters role="search" method="get" action="/users" {
            div { label for="q" { (l.t("Search name or e-mail", "Name oder E-Mail suchen")) } input id="q" name="q" type="search" value=[given(&q.q)]; }
            div { button type="submit" { (l.t("Show", "Anzeigen")) } }
        }
        div.scroll { table {
            thead { tr { th scope="col" { (l.t("Name", "Name")) } th scope="col" { (l.t("E-mail", "E-Mail")) } th scope="col" { (l.t("Active devices", "Aktive Geräte")) } th scope="col" { (l.t("State", "Zustand")) } } }
            tbody { @for u in &users.items { tr {
                td { a href={ "/users/" (urlpath(&u.name)) } { (u.name) } }
                td { (u.email.as_deref().unwrap_or("—")) }
                td { (u.active_devices) }
                td { @if u.disabled_at.is_some() { (l.t("disabled", "deaktiviert")) } @else { (l.t("active", "aktiv")) } }
            } } }
        } }
        p { (users.items.len()) " " (l.t("of", "von")) " " (users.total) }
        @if s.admin.role == heimweg_store::Role::Admin {
            h2 { (l.t("New user", "Neue Person")) }
            form.card.row method="post" action="/users" {
                (csrf_field(&ctx))
                div { label for="name" { (l.t("Name", "Name")) } input id="name" name="name" required maxlength="64"; }
                div { label for="email" { (l.t("E-mail (optional)", "E-Mail (optional)")) } input id="email" name="email" type="email" maxlength="254"; }
                div { button type="submit" { (l.t("Create", "Anlegen")) } }
            }
        }
    };
    Ok(layout(&ctx, l.t("Users", "Personen"), content))
}

#[derive(Deserialize)]
pub(super) struct UserForm {
    name: String,
    email: Option<String>,
}

pub(super) async fn user_create(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<UserForm>,
) -> PanelResult {
    let s = ctx.writer()?;
    let u = st
        .store
        .create_user(&actor(s), f.name.trim(), given(&f.email), now())
        .await?;
    Ok(see_other(&format!("/users/{}", urlpath(&u.name))))
}

pub(super) async fn user(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PanelResult {
    let s = ctx.admin()?;
    let l = ctx.lang;
    let now = now();
    let u = st.store.user(&name, now).await?;
    let devices = st
        .store
        .devices(
            &DeviceQuery {
                owner: Some(u.name.clone()),
                limit: 500,
                ..DeviceQuery::default()
            },
            now,
        )
        .await?;
    let content = html! {
        dl.facts {
            dt { (l.t("E-mail", "E-Mail")) } dd { (u.email.as_deref().unwrap_or("—")) }
            dt { (l.t("Created", "Angelegt")) } dd { (timestamp(u.created_at)) }
            dt { (l.t("State", "Zustand")) } dd { @if let Some(d) = u.disabled_at { (l.t("disabled", "deaktiviert")) " " (timestamp(d)) } @else { (l.t("active", "aktiv")) } }
        }
        h2 { (l.t("Devices", "Geräte")) }
        ul { @for d in &devices.items { li { a href={ "/devices/" (urlpath(&d.name)) } { (d.name) } " — " (status_label(l, d.status(now))) } }
             @if devices.items.is_empty() { li { (l.t("none", "keine")) } } }
        @if s.admin.role == heimweg_store::Role::Admin && u.disabled_at.is_none() {
            form method="post" action={ "/users/" (urlpath(&u.name)) "/disable" } data-confirm=(l.t("Disable this person? All their devices are revoked at once.", "Diese Person deaktivieren? Alle ihre Geräte werden sofort gesperrt.")) {
                (csrf_field(&ctx))
                button.danger type="submit" { (l.t("Disable (has left): revoke all devices", "Deaktivieren (ausgeschieden): alle Geräte sperren")) }
            }
        }
    };
    Ok(layout(&ctx, &u.name, content))
}

pub(super) async fn user_disable(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PanelResult {
    let s = ctx.writer()?;
    st.store.disable_user(&actor(s), &name, now()).await?;
    Ok(see_other(&format!("/users/{}", urlpath(&name))))
}

fn lines(s: &str) -> Vec<String> {
    s.split(['\n', ',', ' ', '\r'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

fn group_fields(ctx: &Ctx, g: Option<&heimweg_store::Group>) -> Markup {
    let l = ctx.lang;
    let prefixes = g
        .map(|g| {
            g.allowed_prefixes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let dns = g.map(|g| g.dns.join(", ")).unwrap_or_default();
    html! {
        label for="prefixes" { (l.t("Networks the devices may reach, one per line (e.g. 10.20.0.0/16)", "Netze, die die Geräte erreichen dürfen, eins pro Zeile (z. B. 10.20.0.0/16)")) }
        textarea id="prefixes" name="allowed_prefixes" rows="4" required spellcheck="false" { (prefixes) }
        label.check { input type="checkbox" name="full_tunnel" value="on" checked[g.is_some_and(|g| g.full_tunnel)];
            " " (l.t("Full tunnel: send all traffic of the device through the VPN", "Voller Tunnel: den ganzen Verkehr des Geräts durch das VPN leiten")) }
        label for="dns" { (l.t("DNS servers and search domains, comma-separated", "DNS-Server und Suchdomänen, durch Komma getrennt")) }
        input id="dns" name="dns" value=(dns) spellcheck="false";
    }
}

pub(super) async fn groups(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    let s = ctx.admin()?;
    let l = ctx.lang;
    let groups = st.store.groups().await?;
    let content = html! {
        div.scroll { table {
            thead { tr { th scope="col" { (l.t("Group", "Gruppe")) } th scope="col" { (l.t("May reach", "Darf erreichen")) } th scope="col" { (l.t("Tunnel", "Tunnel")) } th scope="col" { "DNS" } } }
            tbody { @for g in &groups { tr {
                td { a href={ "/groups/" (urlpath(&g.name)) } { (g.name) } }
                td { @for (i, p) in g.allowed_prefixes.iter().enumerate() { @if i > 0 { ", " } code { (p) } } }
                td { @if g.full_tunnel { (l.t("full", "voll")) } @else { (l.t("split", "geteilt")) } }
                td { (g.dns.join(", ")) }
            } } }
        } }
        @if s.admin.role == heimweg_store::Role::Admin {
            h2 { (l.t("New group", "Neue Gruppe")) }
            form.card method="post" action="/groups" {
                (csrf_field(&ctx))
                label for="name" { (l.t("Name", "Name")) }
                input id="name" name="name" required maxlength="64";
                (group_fields(&ctx, None))
                button type="submit" { (l.t("Create", "Anlegen")) }
            }
        }
    };
    Ok(layout(
        &ctx,
        l.t("Groups and access", "Gruppen und Zugriff"),
        content,
    ))
}

#[derive(Deserialize)]
pub(super) struct GroupForm {
    name: Option<String>,
    allowed_prefixes: String,
    full_tunnel: Option<String>,
    dns: Option<String>,
}

impl GroupForm {
    /// The networks and DNS entries typed in, checked as the JSON API checks them.
    fn policy(&self) -> Result<(Vec<ipnet::IpNet>, Vec<String>), PanelError> {
        let prefixes = parse_prefixes(&lines(&self.allowed_prefixes))?;
        let dns = lines(self.dns.as_deref().unwrap_or(""));
        check_dns(&dns)?;
        Ok((prefixes, dns))
    }
}

pub(super) async fn group_create(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<GroupForm>,
) -> PanelResult {
    let s = ctx.writer()?;
    let (prefixes, dns) = f.policy()?;
    let g = st
        .store
        .create_group(
            &actor(s),
            NewGroup {
                name: f.name.as_deref().unwrap_or("").trim().to_string(),
                allowed_prefixes: prefixes,
                full_tunnel: f.full_tunnel.is_some(),
                dns,
            },
            now(),
        )
        .await?;
    Ok(see_other(&format!("/groups/{}", urlpath(&g.name))))
}

pub(super) async fn group(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PanelResult {
    let s = ctx.admin()?;
    let l = ctx.lang;
    let g = st.store.group(&name).await?;
    let content = html! {
        @if s.admin.role == heimweg_store::Role::Admin {
            form.card method="post" action={ "/groups/" (urlpath(&g.name)) } {
                (csrf_field(&ctx))
                (group_fields(&ctx, Some(&g)))
                p.hint { (l.t("Changes reach every connected device of the group within a second; configs already handed out keep their DNS and routes until renewed.",
                              "Änderungen erreichen jedes verbundene Gerät der Gruppe binnen einer Sekunde; ausgegebene Konfigurationen behalten DNS und Routen bis zur Erneuerung.")) }
                button type="submit" { (l.t("Save", "Speichern")) }
            }
        } @else {
            dl.facts {
                dt { (l.t("May reach", "Darf erreichen")) } dd { @for p in &g.allowed_prefixes { code { (p) } " " } }
                dt { (l.t("Tunnel", "Tunnel")) } dd { @if g.full_tunnel { (l.t("full", "voll")) } @else { (l.t("split", "geteilt")) } }
                dt { "DNS" } dd { (g.dns.join(", ")) }
            }
        }
        p { a href={ "/devices?status=active&group=" (urlpath(&g.name)) } { (l.t("Devices of this group", "Geräte dieser Gruppe")) } }
    };
    Ok(layout(
        &ctx,
        &format!("{} {}", l.t("Group", "Gruppe"), g.name),
        content,
    ))
}

pub(super) async fn group_update(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
    Form(f): Form<GroupForm>,
) -> PanelResult {
    let s = ctx.writer()?;
    let (prefixes, dns) = f.policy()?;
    st.store
        .update_group(
            &actor(s),
            &name,
            GroupUpdate {
                allowed_prefixes: Some(prefixes),
                full_tunnel: Some(f.full_tunnel.is_some()),
                dns: Some(dns),
            },
            now(),
        )
        .await?;
    Ok(see_other(&format!("/groups/{}", urlpath(&name))))
}

#[derive(Deserialize, Default)]
pub(super) struct AuditParams {
    subject: Option<String>,
    page: Option<u32>,
}

pub(super) async fn audit(
    State(st): State<AppState>,
    ctx: Ctx,
    Query(q): Query<AuditParams>,
) -> PanelResult {
    ctx.admin()?;
    let l = ctx.lang;
    let page = q.page.unwrap_or(1).max(1);
    let per_page = 100;
    let entries = st
        .store
        .audit_entries(
            given(&q.subject),
            per_page,
            (page - 1).saturating_mul(per_page),
        )
        .await?;
    let pages = entries.total.div_ceil(u64::from(per_page)).max(1);
    let link = |p: u32| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if let Some(v) = given(&q.subject) {
            s.append_pair("subject", v);
        }
        s.append_pair("page", &p.to_string());
        format!("/audit?{}", s.finish())
    };
    let content = html! {
        form.filters method="get" action="/audit" {
            div { label for="subject" { (l.t("Only about (device, user, group name)", "Nur zu (Gerät, Person, Gruppe)")) } input id="subject" name="subject" value=[given(&q.subject)]; }
            div { button type="submit" { (l.t("Show", "Anzeigen")) } }
        }
        (audit_table(l, &entries.items))
        @if pages > 1 {
            nav.pager aria-label=(l.t("Pages", "Seiten")) {
                @if page > 1 { a rel="prev" href=(link(page - 1)) { "← " (l.t("Newer", "Neuer")) } }
                span { (l.t("Page", "Seite")) " " (page) " / " (pages) }
                @if u64::from(page) < pages { a rel="next" href=(link(page + 1)) { (l.t("Older", "Älter")) " →" } }
            }
        }
    };
    Ok(layout(&ctx, l.t("Audit log", "Protokoll"), content))
}

pub(super) async fn settings(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    let s = ctx.admin()?;
    let l = ctx.lang;
    let settings = st.store.settings().await?;
    let admins = auth::admin_section(&st, &ctx).await?;
    let content = html! {
        section.card {
            h2 { (l.t("Address devices dial", "Adresse, die Geräte anwählen")) }
            @if s.admin.role == heimweg_store::Role::Admin {
                form method="post" action="/settings" {
                    (csrf_field(&ctx))
                    label for="endpoint" { (l.t("Public host name or address and UDP port, e.g. vpn.example.org:51820", "Öffentlicher Hostname oder Adresse und UDP-Port, z. B. vpn.example.org:51820")) }
                    input id="endpoint" name="endpoint" required value=[settings.endpoint.as_deref()] spellcheck="false";
                    button type="submit" { (l.t("Save", "Speichern")) }
                }
            } @else {
                p { (settings.endpoint.as_deref().unwrap_or("—")) }
            }
        }
        section.card {
            h2 { (l.t("Address pools", "Adressbereiche")) }
            dl.facts {
                dt { "IPv4" } dd { code { (settings.pool_v4) } }
                dt { "IPv6" } dd { code { (settings.pool_v6) } }
                dt { "MTU" } dd { (settings.mtu) }
                dt { (l.t("Address reuse after", "Adressen wiederverwendet nach")) } dd { (settings.address_grace.as_secs() / 3600) " h" }
            }
            p.hint { (l.t("Pools are fixed once devices hold addresses from them. DNS is set per group.", "Bereiche stehen fest, sobald Geräte Adressen daraus haben. DNS wird je Gruppe festgelegt.")) " " a href="/groups" { (l.t("Groups", "Gruppen")) } }
        }
        (admins)
    };
    Ok(layout(&ctx, l.t("Settings", "Einstellungen"), content))
}

#[derive(Deserialize)]
pub(super) struct SettingsForm {
    endpoint: String,
}

pub(super) async fn settings_update(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<SettingsForm>,
) -> PanelResult {
    let s = ctx.writer()?;
    st.store
        .set_endpoint(&actor(s), f.endpoint.trim(), now())
        .await?;
    Ok(see_other("/settings"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_back_to_the_days_they_came_from() {
        for days in [0i64, 59, 60, 11_016, 20_000, 21_000] {
            let date = &timestamp(days * 86_400)[..10];
            assert_eq!(days_from_date(date), Some(days), "{date}");
        }
        assert_eq!(days_from_date("2026-13-01"), None);
        assert_eq!(days_from_date("yesterday"), None);
    }

    #[test]
    fn actors_read_as_people_and_sources() {
        assert_eq!(actor_label(Lang::En, "admin:alice"), "alice");
        assert_eq!(
            actor_label(Lang::En, "link:2:admin:alice"),
            "enrollment link 2 (from alice)"
        );
        assert_eq!(
            actor_label(Lang::De, "request:Petra Schulz"),
            "Petra Schulz (Zugangsanfrage)"
        );
        assert_eq!(actor_label(Lang::En, "token:ci"), "API token ci");
        assert_eq!(actor_label(Lang::En, "cli:root"), "command line (root)");
        assert_eq!(actor_label(Lang::En, "panel"), "panel");
    }

    #[test]
    fn list_fields_split_on_lines_commas_and_spaces() {
        assert_eq!(
            lines("10.0.0.0/8\r\n192.0.2.0/24, 2001:db8::/32 "),
            vec!["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32"]
        );
    }
}
