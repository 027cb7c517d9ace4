//! The device pages: the searchable list, enrollment with the config shown once, a device's
//! page with its history, and the changes made there.

use super::{
    ago, audit_table, csrf_field, given, layout, notice, see_other, status_label, timestamp,
    trusted_svg, urlpath, Ctx, Lang, PanelError, PanelResult, CONNECTED_SECS,
};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use base64::Engine;
use heimweg_control::{
    human_bytes, qr::Qr, DeviceStatus, ExpiryDays, Name, PublicKey, UsageWindow,
};
use heimweg_service::reconcile::Hold;
use heimweg_service::{Device, DeviceQuery, DeviceUpdate, EnrollRequest, Enrollment, Group};
use maud::{html, Markup};
use serde::Deserialize;

/// Rows per page of the device list.
const PAGE_SIZE: u32 = 50;
#[derive(Deserialize, Default)]
pub(super) struct DeviceFilter {
    pub(super) q: Option<String>,
    pub(super) group: Option<String>,
    pub(super) owner: Option<String>,
    pub(super) status: Option<String>,
    pub(super) page: Option<u32>,
}

pub(super) async fn devices(
    State(st): State<AppState>,
    ctx: Ctx,
    Query(f): Query<DeviceFilter>,
) -> PanelResult {
    let caller = ctx.caller()?;
    let l = ctx.lang;
    let now = st.service.now();
    // The list opens on what is live; "all" shows revoked and expired devices too.
    let status_param = given(&f.status).unwrap_or("active");
    let status = match status_param {
        "all" => None,
        s => Some(
            s.parse::<DeviceStatus>()
                .map_err(|e| PanelError::BadRequest(e.to_string()))?,
        ),
    };
    let page = f.page.unwrap_or(1).max(1);
    let query = DeviceQuery {
        search: given(&f.q).map(String::from),
        group: given(&f.group).map(String::from),
        owner: given(&f.owner).map(String::from),
        status,
        limit: PAGE_SIZE,
        offset: (page - 1).saturating_mul(PAGE_SIZE),
    };
    let result = st.service.devices(&caller, &query).await?;
    let groups = st.service.groups(&caller).await?;
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
        (filters(l, &f, &groups, status_param))
        p #result-count aria-live="polite" {
            @if result.total == 0 { (l.t("No devices match.", "Keine passenden Geräte.")) }
            @else { (first) "–" (last) " " (l.t("of", "von")) " " (result.total) }
        }
        (device_table(l, &result.items, now))
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

/// The search and filter form above the device list.
fn filters(l: Lang, f: &DeviceFilter, groups: &[Group], status_param: &str) -> Markup {
    let statuses = [
        ("active", status_label(l, DeviceStatus::Active)),
        ("expired", status_label(l, DeviceStatus::Expired)),
        ("revoked", status_label(l, DeviceStatus::Revoked)),
        ("all", l.t("all", "alle")),
    ];
    html! {
        form.filters role="search" method="get" action="/devices" {
            div { label for="q" { (l.t("Search name, owner or key", "Name, Person oder Schlüssel suchen")) }
                  input id="q" name="q" type="search" value=[given(&f.q)] autofocus; }
            div { label for="group" { (l.t("Group", "Gruppe")) }
                select id="group" name="group" {
                    option value="" { (l.t("all", "alle")) }
                    @for g in groups { option value=(g.name) selected[given(&f.group) == Some(g.name.as_str())] { (g.name) } }
                } }
            div { label for="status" { (l.t("Status", "Status")) }
                select id="status" name="status" {
                    @for (v, label) in statuses {
                        option value=(v) selected[status_param == v] { (label) }
                    }
                } }
            div { label for="owner" { (l.t("Owner", "Person")) } input id="owner" name="owner" value=[given(&f.owner)]; }
            div { button type="submit" { (l.t("Show", "Anzeigen")) } }
        }
    }
}

/// One page of devices as a table.
fn device_table(l: Lang, devices: &[Device], now: i64) -> Markup {
    html! {
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
                @for d in devices {
                    tr {
                        td { a href={ "/devices/" (urlpath(d.name.as_str())) } { (d.name) } }
                        td { (d.owner.as_ref().map_or("—", |o| o.as_str())) }
                        td { (d.group) }
                        td { code { (d.ipv4) } }
                        td { span class={ "badge " (d.status(now)) } { (status_label(l, d.status(now))) } }
                        td {
                            @if d.status(now) == DeviceStatus::Active && d.last_handshake_at.is_some_and(|t| now - t < CONNECTED_SECS) {
                                span.badge.connected { (l.t("connected", "verbunden")) } " "
                            }
                            (ago(l, d.last_handshake_at, now))
                        }
                    }
                }
            }
        } }
    }
}

#[derive(Deserialize, Default)]
pub(super) struct EnrollForm {
    pub(super) name: String,
    pub(super) group: String,
    pub(super) owner: Option<String>,
    pub(super) public_key: Option<String>,
    pub(super) expires_in_days: Option<String>,
}

async fn enroll_form_markup(
    st: &AppState,
    ctx: &Ctx,
    f: &EnrollForm,
    error: Option<&str>,
) -> Result<Markup, PanelError> {
    let l = ctx.lang;
    let groups = st.service.groups(&ctx.caller()?).await?;
    let endpoint = st.service.settings().await?.endpoint;
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
                @for g in &groups { option value=(g.name) selected[g.name == f.group.as_str()] { (g.name) } }
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
    let caller = ctx.caller()?;
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
    let expires_in = match given(&f.expires_in_days)
        .map(|d| {
            d.parse::<u32>()
                .ok()
                .and_then(|d| ExpiryDays::new(d).ok())
                .ok_or(())
        })
        .transpose()
    {
        Ok(d) => d,
        Err(()) => {
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
    let names = (|| -> Result<(Name, Name, Option<Name>), PanelError> {
        Ok((
            super::form_name(l.t("Device name", "Gerätename"), &f.name)?,
            super::form_name(l.t("Group", "Gruppe"), &f.group)?,
            given(&f.owner)
                .map(|o| super::form_name(l.t("Owner", "Person"), o))
                .transpose()?,
        ))
    })();
    let (name, group, owner) = match names {
        Ok(n) => n,
        Err(PanelError::BadRequest(m)) => return enroll_again(&st, &ctx, &f, m).await,
        Err(e) => return Err(e),
    };
    let request = EnrollRequest {
        name,
        group,
        owner,
        public_key,
        expires_in,
    };
    let result = st.service.enroll(&caller, request).await;
    match result {
        Ok(e) => Ok(config_page(
            &ctx,
            e,
            l.t("Device enrolled", "Gerät eingerichtet"),
            false,
        )),
        Err(e) => match PanelError::from(e) {
            PanelError::BadRequest(m) | PanelError::NotFound(m) => {
                enroll_again(&st, &ctx, &f, m).await
            }
            other => Err(other),
        },
    }
}

/// The one page that shows a config: QR code, downloads, warning. Nothing here is stored;
/// reloading cannot show it again. `own`: shown to the staff member on their own page, which
/// has no device page to link to.
pub(super) fn config_page(ctx: &Ctx, e: Enrollment, title: &str, own: bool) -> Response {
    let l = ctx.lang;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let profile = e.mobileconfig.clone();
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
            dt { (l.t("Device", "Gerät")) } dd { @if own { (e.device.name) } @else { a href={ "/devices/" (urlpath(e.device.name.as_str())) } { (e.device.name) } } }
            dt { (l.t("Addresses", "Adressen")) } dd { code { (e.device.ipv4) } ", " code { (e.device.ipv6) } }
            dt { (l.t("Group", "Gruppe")) } dd { (e.device.group) }
        }
        @if let Some(svg) = qr {
            h2 { (l.t("iPad, iPhone, Android: scan", "iPad, iPhone, Android: scannen")) }
            p { (l.t("In the WireGuard app: + → Create from QR code.", "In der WireGuard-App: + → Aus QR-Code erstellen.")) }
            div.qr #config-qr role="img" aria-label=(l.t("QR code of the config", "QR-Code der Konfiguration")) { (trusted_svg(svg)) }
        } @else {
            p #own-key-steps { (l.t("The device made its own key, so this config has no private key and no QR code: no app imports a config without one. On the device, replace the line starting with “# PrivateKey” by “PrivateKey = ” and the device's private key, then import the file. In an app whose empty tunnel made the key, keep its PrivateKey line and paste the rest of this config below it.",
                "Das Gerät hat seinen Schlüssel selbst erzeugt; diese Konfiguration enthält daher keinen privaten Schlüssel und keinen QR-Code: keine App importiert eine Konfiguration ohne ihn. Ersetzen Sie auf dem Gerät die Zeile, die mit „# PrivateKey“ beginnt, durch „PrivateKey = “ und den privaten Schlüssel des Geräts und importieren Sie dann die Datei. In einer App, deren leerer Tunnel den Schlüssel erzeugt hat, behalten Sie dessen PrivateKey-Zeile und fügen den Rest dieser Konfiguration darunter ein.")) }
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
    let caller = ctx.caller()?;
    let l = ctx.lang;
    let now = st.service.now();
    let d = st
        .service
        .device(&caller, &super::path_name(&name)?)
        .await?;
    let live = st.live.as_ref().and_then(|live| live.peer(&d.public_key));
    let trail = st.service.device_history(&caller, &d.name, 50).await?;
    let groups = st.service.groups(&caller).await?;
    let hold = st.service.device_hold(&d).await?;
    let window = groups
        .iter()
        .find(|g| g.name == d.group)
        .and_then(|g| g.window.as_ref());
    let status = d.status(now);
    let last_handshake = live
        .as_ref()
        .and_then(|p| p.last_handshake_at)
        .max(d.last_handshake_at);
    let endpoint = live
        .as_ref()
        .and_then(|p| p.endpoint.map(|e| e.to_string()))
        .or(d.last_endpoint.clone());
    let writable = ctx.may_change() && status != DeviceStatus::Revoked;
    let path = format!("/devices/{}", urlpath(d.name.as_str()));
    let content = html! {
        dl.facts {
            dt { (l.t("Status", "Status")) } dd { span class={ "badge " (status) } { (status_label(l, status)) }
                @if status == DeviceStatus::Active && last_handshake.is_some_and(|t| now - t < CONNECTED_SECS) { " " span.badge.connected { (l.t("connected", "verbunden")) } } }
            @if let Some(h) = hold { dt { (l.t("Access now", "Zugang jetzt")) } dd #hold { span.badge.held { (hold_text(l, h, window)) } } }
            @if let Some(at) = d.shared_key_at { dt { (l.t("Key shared", "Schlüssel geteilt")) } dd #shared-key { span.badge.warn { (l.t("used on two devices at once", "auf zwei Geräten zugleich benutzt")) } " " (timestamp(at)) ". " (l.t("Give each device its own config (renew the key and hand it to one of them).", "Geben Sie jedem Gerät eine eigene Konfiguration (Schlüssel erneuern und einem davon geben).")) } }
            dt { (l.t("Last handshake", "Letzter Handshake")) } dd #last-handshake { (ago(l, last_handshake, now)) }
            dt { (l.t("Endpoint", "Endpunkt")) } dd { (endpoint.as_deref().unwrap_or("—")) }
            dt { (l.t("Traffic here", "Verkehr hier")) } dd {
                @if let Some(p) = &live { (l.t("in", "rein")) " " (human_bytes(p.rx_bytes)) ", " (l.t("out", "raus")) " " (human_bytes(p.tx_bytes)) }
                @else { "—" } }
            dt { (l.t("Owner", "Person")) } dd { @if let Some(o) = &d.owner { a href={ "/users/" (urlpath(o.as_str())) } { (o) } } @else { "—" } }
            dt { (l.t("Group", "Gruppe")) } dd { a href={ "/groups/" (urlpath(d.group.as_str())) } { (d.group) } }
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
                    input id="owner" name="owner" maxlength="64" value=[d.owner.as_ref().map(|o| o.as_str())];
                    label for="expires_on" { (l.t("Expires on (empty: never)", "Läuft ab am (leer: nie)")) }
                    input id="expires_on" name="expires_on" type="date" value=[d.expires_at.map(|t| timestamp(t)[..10].to_string())];
                    button type="submit" { (l.t("Save", "Speichern")) }
                }
            }
        }
        h2 { (l.t("History", "Verlauf")) }
        (audit_table(l, &trail))
    };
    Ok(layout(
        &ctx,
        &format!("{} {}", l.t("Device", "Gerät"), d.name),
        content,
    ))
}

#[derive(Deserialize)]
pub(super) struct DeviceEdit {
    pub(super) group: String,
    pub(super) owner: Option<String>,
    pub(super) expires_on: Option<String>,
}

/// The last second (UTC) of a `YYYY-MM-DD` date: "expires on the 30th" includes the 30th.
pub(super) fn end_of_date(s: &str) -> Option<i64> {
    let date: jiff::civil::Date = s.parse().ok()?;
    let end = date
        .at(23, 59, 59, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()?;
    Some(end.timestamp().as_second())
}

pub(super) async fn device_update(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
    Form(f): Form<DeviceEdit>,
) -> PanelResult {
    let caller = ctx.caller()?;
    let l = ctx.lang;
    let expires_at = match given(&f.expires_on) {
        None => None,
        Some(d) => Some(end_of_date(d).ok_or_else(|| {
            PanelError::BadRequest(
                l.t(
                    "The expiry date is not a date.",
                    "Das Ablaufdatum ist kein Datum.",
                )
                .into(),
            )
        })?),
    };
    let update = DeviceUpdate {
        group: Some(super::form_name(l.t("Group", "Gruppe"), &f.group)?),
        owner: Some(
            given(&f.owner)
                .map(|o| super::form_name(l.t("Owner", "Person"), o))
                .transpose()?,
        ),
        expires_at: Some(expires_at),
    };
    st.service
        .update_device(&caller, &super::path_name(&name)?, update)
        .await?;
    Ok(see_other(&format!("/devices/{}", urlpath(&name))))
}

pub(super) async fn device_revoke(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PanelResult {
    st.service
        .revoke(&ctx.caller()?, &super::path_name(&name)?)
        .await?;
    Ok(see_other(&format!("/devices/{}", urlpath(&name))))
}

pub(super) async fn device_rotate(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PanelResult {
    let e = st
        .service
        .rotate(&ctx.caller()?, &super::path_name(&name)?, None)
        .await?;
    Ok(config_page(
        &ctx,
        e,
        ctx.lang
            .t("New key, new config", "Neuer Schlüssel, neue Konfiguration"),
        false,
    ))
}

/// Why a device passes no traffic now, for the helpdesk: the usage window, an absence or no
/// sign-in to connect.
fn hold_text(l: Lang, h: Hold, window: Option<&UsageWindow>) -> String {
    match h {
        Hold::Window { until: Some(t) } => format!(
            "{} {}",
            l.t(
                "paused: outside its group's usage window; opens",
                "pausiert: außerhalb der Nutzungszeiten der Gruppe; öffnet"
            ),
            window.map_or_else(|| timestamp(t), |w| w.local(t))
        ),
        Hold::Window { until: None } => l
            .t(
                "paused: its group's usage window is closed",
                "pausiert: die Nutzungszeiten der Gruppe sind geschlossen",
            )
            .to_string(),
        Hold::Absent { until } => format!(
            "{} {}",
            l.t("paused: absent until", "pausiert: abwesend bis"),
            timestamp(until)
        ),
        Hold::SignIn => l
            .t(
                "paused: its group requires sign in to connect, and its owner has not signed in (or the time is over)",
                "pausiert: die Gruppe verlangt Anmelden zum Verbinden, und der Besitzer hat sich nicht angemeldet (oder die Zeit ist um)",
            )
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_date_ends_at_the_last_second_of_that_day_utc() {
        assert_eq!(end_of_date("1970-01-01"), Some(86_399));
        assert_eq!(end_of_date("2000-02-29"), Some(951_868_799));
        assert_eq!(
            timestamp(end_of_date("2026-11-30").unwrap()),
            "2026-11-30 23:59 UTC"
        );
        assert_eq!(end_of_date("2026-13-01"), None);
        assert_eq!(end_of_date("2026-02-30"), None);
        assert_eq!(end_of_date("yesterday"), None);
    }
}
