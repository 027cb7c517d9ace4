//! Enrollment links: the list, a new link shown once with its QR code, withdrawing one.

use super::{
    actor_label, base_url, csrf_field, form_name, given, group_select, layout, link_hours,
    see_other, timestamp, trusted_svg, Ctx, Lang, PanelResult,
};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Form;
use heimweg_control::{qr::Qr, LinkStatus};
use maud::html;
use serde::Deserialize;

fn link_status_label(l: Lang, s: LinkStatus) -> &'static str {
    match s {
        LinkStatus::Used => l.t("used", "benutzt"),
        LinkStatus::Revoked => l.t("withdrawn", "zurückgezogen"),
        LinkStatus::Expired => l.t("expired", "abgelaufen"),
        LinkStatus::Open => l.t("open", "offen"),
    }
}

pub(super) async fn links(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    let caller = ctx.caller()?;
    let l = ctx.lang;
    let now = st.service.now();
    let links = st.service.links(&caller, 200).await?;
    let writable = ctx.may_change();
    let content = html! {
        p { (l.t("A link lets a member of staff set up one device themselves: they open it on the device and get its config once. It works once and expires.",
                 "Mit einem Link richtet eine Person ein Gerät selbst ein: Sie öffnet ihn auf dem Gerät und erhält einmal die Konfiguration. Er gilt einmal und läuft ab.")) }
        @if writable {
            form.card.row method="post" action="/links" {
                (csrf_field(&ctx))
                div { label for="device_name" { (l.t("Device name", "Gerätename")) } input id="device_name" name="device_name" required maxlength="64"; }
                div { label for="group" { (l.t("Group", "Gruppe")) } (group_select(&st, &ctx, "group", "default").await?) }
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
                    @let status = k.status(now);
                    tr {
                        td { (k.device_name) } td { (k.group) } td { (k.owner.as_ref().map_or("—", |o| o.as_str())) }
                        td { (actor_label(l, &k.created_by)) } td { (timestamp(k.expires_at)) }
                        td { span class={ "badge link-" (status) } { (link_status_label(l, status)) }
                             @if let Some(u) = k.used_at { " " (timestamp(u)) } }
                        @if writable { td { @if status == LinkStatus::Open {
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
    pub(super) device_name: String,
    pub(super) group: String,
    pub(super) owner: Option<String>,
    pub(super) expires_in_hours: Option<String>,
}

pub(super) async fn link_create(
    State(st): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(f): Form<LinkForm>,
) -> PanelResult {
    let caller = ctx.caller()?;
    let l = ctx.lang;
    let hours = link_hours(l, &f.expires_in_hours)?;
    let device_name = form_name(l.t("Device name", "Gerätename"), &f.device_name)?;
    let group = form_name(l.t("Group", "Gruppe"), &f.group)?;
    let owner = given(&f.owner)
        .map(|o| form_name(l.t("Owner", "Person"), o))
        .transpose()?;
    let offer = st
        .service
        .create_link(&caller, &device_name, &group, owner.as_ref(), hours)
        .await?;
    let link = offer.link;
    let url = format!("{}/enroll/{}", base_url(&st, &headers), offer.secret);
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
    st.service.revoke_link(&ctx.caller()?, id).await?;
    Ok(see_other("/links"))
}
