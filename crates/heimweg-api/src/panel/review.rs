//! The access review: who has access to what, since when and by whose decision (download for
//! the auditor), and the devices about to lose their access for not being seen; the setting
//! on the settings page.

use super::{
    actor_label, ago, csrf_field, layout, see_other, timestamp, urlpath, Ctx, PanelError,
    PanelResult,
};
use crate::AppState;
use axum::extract::State;
use axum::Form;
use heimweg_service::{
    access_review_csv, MAX_SUSPEND_HOURS, MAX_UNSEEN_DAYS, MIN_UNSEEN_DAYS, REVIEW_NOTICE_DAYS,
};
use maud::{html, Markup};
use serde::Deserialize;

pub(super) async fn review(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    let caller = ctx.caller()?;
    let l = ctx.lang;
    let now = st.service.now();
    let (days, due) = st.service.review_due(&caller).await?;
    let (rows, groups) = st.service.access_review(&caller).await?;
    let content = html! {
        p { (l.t("Every device that may connect now: whose it is, what it reaches, since when, by whose decision, and when it was last seen (BSI NET.3.3.A5, ORP.4.A3).",
                 "Jedes Gerät, das jetzt verbinden darf: wem es gehört, was es erreicht, seit wann, auf wessen Entscheidung und wann es zuletzt gesehen wurde (BSI NET.3.3.A5, ORP.4.A3).")) }
        p { a.button #review-csv href="/review.csv" download { (l.t("Download as CSV (Excel)", "Als CSV herunterladen (Excel)")) } }
        h2 { (l.t("Devices not seen for long", "Lange nicht gesehene Geräte")) }
        @if days == 0 {
            p #review-off { (l.t("The automatic review is off: devices keep their access however long they are not used.", "Die automatische Überprüfung ist aus: Geräte behalten ihren Zugang, egal wie lange sie nicht benutzt werden.")) " " a href="/settings#review" { (l.t("Settings", "Einstellungen")) } }
        } @else {
            p { (l.t("Devices not seen for", "Geräte, die")) " " strong { (days) } " " (l.t("days lose their access; they are listed here a week before.", "Tage nicht gesehen wurden, verlieren ihren Zugang; sie stehen eine Woche vorher hier.")) }
            (due_table(&ctx, &due, now))
        }
        h2 { (l.t("Who has access", "Wer Zugang hat")) }
        div.scroll { table #access-review {
            thead { tr {
                th scope="col" { (l.t("Person", "Person")) } th scope="col" { (l.t("Device", "Gerät")) }
                th scope="col" { (l.t("Group and networks", "Gruppe und Netze")) } th scope="col" { (l.t("Usage window", "Nutzungszeiten")) }
                th scope="col" { (l.t("Since", "Seit")) } th scope="col" { (l.t("Decided by", "Entschieden von")) }
                th scope="col" { (l.t("Last seen", "Zuletzt gesehen")) }
            } }
            tbody { @for r in &rows {
                @let d = &r.device;
                @let group = groups.iter().find(|g| g.name == d.group);
                tr {
                    td { @if let Some(o) = &d.owner { a href={ "/users/" (urlpath(o.as_str())) } { (o) } } @else { "—" } }
                    td { a href={ "/devices/" (urlpath(d.name.as_str())) } { (d.name) } }
                    td { (d.group) @if let Some(g) = group { ": " @for (i, n) in g.policy.networks().iter().enumerate() { @if i > 0 { ", " } code { (n) } } } }
                    td { @match group.and_then(|g| g.window.as_ref()) { Some(w) => { (w.schedule()) }, None => { (l.t("any time", "jederzeit")) } } }
                    td { (timestamp(d.created_at)) }
                    td { (r.enrolled_by.as_deref().map_or_else(|| "—".to_string(), |a| actor_label(l, a))) }
                    td { (ago(l, d.last_handshake_at, now)) }
                }
            } }
        } }
        p { (rows.len()) " " (l.t("devices with access", "Geräte mit Zugang")) }
    };
    Ok(layout(
        &ctx,
        l.t("Access review", "Zugangsüberprüfung"),
        content,
    ))
}

fn due_table(ctx: &Ctx, due: &[heimweg_service::DueDevice], now: i64) -> Markup {
    let l = ctx.lang;
    html! {
        @if due.is_empty() {
            p #review-due-none { (l.t("No device loses its access in the next", "Kein Gerät verliert in den nächsten")) " " (REVIEW_NOTICE_DAYS) " " (l.t("days.", "Tagen seinen Zugang.")) }
        } @else {
            div.scroll { table #review-due {
                thead { tr {
                    th scope="col" { (l.t("Device", "Gerät")) } th scope="col" { (l.t("Person", "Person")) }
                    th scope="col" { (l.t("Last seen", "Zuletzt gesehen")) } th scope="col" { (l.t("Loses access", "Verliert Zugang")) }
                } }
                tbody { @for d in due { tr {
                    td { a href={ "/devices/" (urlpath(d.device.name.as_str())) } { (d.device.name) } }
                    td { (d.device.owner.as_ref().map_or("—", |o| o.as_str())) }
                    td { (ago(l, Some(d.device.last_seen()), now)) }
                    td { (timestamp(d.due_at)) }
                } } }
            } }
            p.hint { (l.t("A device that connects before then keeps its access.", "Ein Gerät, das vorher verbindet, behält seinen Zugang.")) }
        }
    }
}

/// The review as a file for a spreadsheet.
pub(super) async fn review_csv(
    State(st): State<AppState>,
    ctx: Ctx,
) -> Result<axum::response::Response, PanelError> {
    let (rows, groups) = st.service.access_review(&ctx.caller()?).await?;
    Ok(crate::review::csv_download(access_review_csv(
        &rows, &groups,
    )))
}

/// The review's settings, for the settings page.
pub(super) fn review_setting(ctx: &Ctx, days: u32, suspend_hours: u32) -> Markup {
    let l = ctx.lang;
    html! {
        section.card #review {
            h2 { (l.t("Access review", "Zugangsüberprüfung")) }
            p { (l.t("Devices not seen for the given number of days lose their access (revoked, announced on the access review page a week before). 0 turns it off.",
                     "Geräte, die die angegebene Zahl von Tagen nicht gesehen wurden, verlieren ihren Zugang (gesperrt, eine Woche vorher auf der Seite Zugangsüberprüfung angekündigt). 0 schaltet es aus.")) " "
                a href="/review" { (l.t("Access review", "Zugangsüberprüfung")) } }
            @if ctx.may_change() {
                form.row method="post" action="/settings/review" {
                    (csrf_field(ctx))
                    div { label for="unseen_days" { (l.t("Days unseen", "Tage nicht gesehen")) }
                        input id="unseen_days" name="unseen_days" type="number" min="0" max=(MAX_UNSEEN_DAYS) value=(days); }
                    div { button type="submit" { (l.t("Save", "Speichern")) } }
                }
                p.hint { "0 " (l.t("or", "oder")) " " (MIN_UNSEEN_DAYS) "–" (MAX_UNSEEN_DAYS) "." }
            } @else {
                p { (days) }
            }
            h3 { (l.t("One key, one device", "Ein Schlüssel, ein Gerät")) }
            p { (l.t("A key used from two places at once (a config copied onto a second device) is flagged on its device and in the audit log; with hours set, the device is also suspended that long (an absence you can end).",
                     "Ein Schlüssel, der von zwei Orten zugleich benutzt wird (eine auf ein zweites Gerät kopierte Konfiguration), wird am Gerät und im Protokoll vermerkt; mit gesetzten Stunden wird das Gerät auch so lange pausiert (eine Abwesenheit, die Sie beenden können).")) }
            @if ctx.may_change() {
                form.row #shared-key-setting method="post" action="/settings/shared-key" {
                    (csrf_field(ctx))
                    div { label for="suspend_hours" { (l.t("Suspend for hours (0: only flag)", "Pausieren für Stunden (0: nur vermerken)")) }
                        input id="suspend_hours" name="suspend_hours" type="number" min="0" max=(MAX_SUSPEND_HOURS) value=(suspend_hours); }
                    div { button type="submit" { (l.t("Save", "Speichern")) } }
                }
            } @else {
                p { (suspend_hours) " h" }
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct SharedKeyForm {
    pub(super) suspend_hours: String,
}

pub(super) async fn shared_key_update(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<SharedKeyForm>,
) -> PanelResult {
    let caller = ctx.caller()?;
    let hours: u32 = f.suspend_hours.trim().parse().map_err(|_| {
        PanelError::BadRequest(
            ctx.lang
                .t(
                    "Give a whole number of hours.",
                    "Geben Sie eine ganze Zahl von Stunden an.",
                )
                .into(),
        )
    })?;
    st.service.set_shared_key_suspend(&caller, hours).await?;
    Ok(see_other("/settings#review"))
}

#[derive(Deserialize)]
pub(super) struct ReviewForm {
    pub(super) unseen_days: String,
}

pub(super) async fn review_update(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<ReviewForm>,
) -> PanelResult {
    let caller = ctx.caller()?;
    let days: u32 = f.unseen_days.trim().parse().map_err(|_| {
        PanelError::BadRequest(
            ctx.lang
                .t(
                    "Give a whole number of days.",
                    "Geben Sie eine ganze Zahl von Tagen an.",
                )
                .into(),
        )
    })?;
    st.service.set_review(&caller, days).await?;
    Ok(see_other("/settings#review"))
}
