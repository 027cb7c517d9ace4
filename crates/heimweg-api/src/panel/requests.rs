//! Access requests: the admin's list with approve and decline, and the public form staff file
//! them with.

use super::{
    actor_label, base_url, csrf_field, form_name, given, group_select, layout, link_hours, notice,
    see_other, timestamp, Ctx, PanelError, PanelResult,
};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use heimweg_control::RequestStatus;
use heimweg_service::RequestForm;
use maud::{html, Markup};
use serde::Deserialize;

pub(super) async fn requests(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    let caller = ctx.caller()?;
    let l = ctx.lang;
    let all = st.service.requests(&caller, None, 200).await?;
    let (pending, decided): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|r| r.status == RequestStatus::Pending);
    let writable = ctx.may_change();
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
                        div { label for={ "group-" (r.id) } { (l.t("Group", "Gruppe")) } (group_select(&st, &ctx, &format!("group-{}", r.id), "default").await?) }
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
                td { @if r.status == RequestStatus::Approved { (l.t("approved", "zugesagt")) } @else { (l.t("declined", "abgelehnt")) } }
                td { (r.decided_by.as_deref().map(|a| actor_label(l, a)).unwrap_or_default()) } td { (r.decided_at.map(timestamp).unwrap_or_default()) }
                td { @if r.status == RequestStatus::Approved { @if r.link_open { (l.t("not used yet", "noch nicht benutzt")) } @else { (l.t("used or expired", "benutzt oder abgelaufen")) } } }
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
    pub(super) group: Option<String>,
    pub(super) expires_in_hours: Option<String>,
}

pub(super) async fn request_approve(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<ApproveForm>,
) -> PanelResult {
    let caller = ctx.caller()?;
    let l = ctx.lang;
    let hours = link_hours(l, &f.expires_in_hours)?;
    let group = given(&f.group)
        .map(|g| form_name(l.t("Group", "Gruppe"), g))
        .transpose()?;
    st.service
        .approve_request(&caller, id, group.as_ref(), hours)
        .await?;
    Ok(see_other("/requests"))
}

pub(super) async fn request_reject(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> PanelResult {
    st.service.reject_request(&ctx.caller()?, id).await?;
    Ok(see_other("/requests"))
}

#[derive(Deserialize, Default)]
pub(super) struct AccessForm {
    pub(super) requester: String,
    pub(super) contact: Option<String>,
    pub(super) device_name: String,
    pub(super) reason: Option<String>,
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
    let form = RequestForm {
        requester: f.requester.clone(),
        contact: f.contact.clone().unwrap_or_default(),
        device_name: f.device_name.clone(),
        reason: f.reason.clone().unwrap_or_default(),
    };
    let secret = match st.service.file_request(ctx.client, &form).await {
        Ok(filed) => filed.secret,
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
    let url = format!("{}/request/{secret}", base_url(&st, &headers));
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
