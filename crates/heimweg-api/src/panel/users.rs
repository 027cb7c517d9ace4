//! Staff: the list, one person with their devices, and disabling a leaver.

use super::{
    csrf_field, form_name, given, layout, path_name, see_other, status_label, timestamp, urlpath,
    Ctx, PanelError, PanelResult,
};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::Form;
use heimweg_control::Email;
use maud::html;
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub(super) struct Search {
    pub(super) q: Option<String>,
}

pub(super) async fn users(
    State(st): State<AppState>,
    ctx: Ctx,
    Query(q): Query<Search>,
) -> PanelResult {
    let caller = ctx.caller()?;
    let l = ctx.lang;
    let users = st.service.users(&caller, given(&q.q), 200, 0).await?;
    let content = html! {
        form.filters role="search" method="get" action="/users" {
            div { label for="q" { (l.t("Search name or e-mail", "Name oder E-Mail suchen")) } input id="q" name="q" type="search" value=[given(&q.q)]; }
            div { button type="submit" { (l.t("Show", "Anzeigen")) } }
        }
        div.scroll { table {
            thead { tr { th scope="col" { (l.t("Name", "Name")) } th scope="col" { (l.t("E-mail", "E-Mail")) } th scope="col" { (l.t("Active devices", "Aktive Geräte")) } th scope="col" { (l.t("State", "Zustand")) } } }
            tbody { @for u in &users.items { tr {
                td { a href={ "/users/" (urlpath(u.name.as_str())) } { (u.name) } }
                td { (u.email.as_ref().map_or("—", |e| e.as_str())) }
                td { (u.active_devices) }
                td { @if u.disabled_at.is_some() { (l.t("disabled", "deaktiviert")) } @else { (l.t("active", "aktiv")) } }
            } } }
        } }
        p { (users.items.len()) " " (l.t("of", "von")) " " (users.total) }
        @if ctx.may_change() {
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
    pub(super) name: String,
    pub(super) email: Option<String>,
}

pub(super) async fn user_create(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<UserForm>,
) -> PanelResult {
    let caller = ctx.caller()?;
    let l = ctx.lang;
    let name = form_name(l.t("Name", "Name"), &f.name)?;
    let email = given(&f.email)
        .map(Email::new)
        .transpose()
        .map_err(|e| PanelError::BadRequest(e.to_string()))?;
    let u = st
        .service
        .create_user(&caller, &name, email.as_ref())
        .await?;
    Ok(see_other(&format!("/users/{}", urlpath(u.name.as_str()))))
}

pub(super) async fn user(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PanelResult {
    let caller = ctx.caller()?;
    let l = ctx.lang;
    let now = st.service.now();
    let (u, devices) = st.service.user(&caller, &path_name(&name)?).await?;
    let devices = devices.unwrap_or_default();
    let content = html! {
        dl.facts {
            dt { (l.t("E-mail", "E-Mail")) } dd { (u.email.as_ref().map_or("—", |e| e.as_str())) }
            dt { (l.t("Created", "Angelegt")) } dd { (timestamp(u.created_at)) }
            dt { (l.t("State", "Zustand")) } dd { @if let Some(d) = u.disabled_at { (l.t("disabled", "deaktiviert")) " " (timestamp(d)) } @else { (l.t("active", "aktiv")) } }
        }
        h2 { (l.t("Devices", "Geräte")) }
        ul { @for d in &devices { li { a href={ "/devices/" (urlpath(d.name.as_str())) } { (d.name) } " — " (status_label(l, d.status(now))) } }
             @if devices.is_empty() { li { (l.t("none", "keine")) } } }
        @if ctx.may_change() && u.disabled_at.is_none() {
            form method="post" action={ "/users/" (urlpath(u.name.as_str())) "/disable" } data-confirm=(l.t("Disable this person? All their devices are revoked at once.", "Diese Person deaktivieren? Alle ihre Geräte werden sofort gesperrt.")) {
                (csrf_field(&ctx))
                button.danger type="submit" { (l.t("Disable (has left): revoke all devices", "Deaktivieren (ausgeschieden): alle Geräte sperren")) }
            }
        }
    };
    Ok(layout(&ctx, u.name.as_str(), content))
}

pub(super) async fn user_disable(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PanelResult {
    st.service
        .disable_user(&ctx.caller()?, &path_name(&name)?)
        .await?;
    Ok(see_other(&format!("/users/{}", urlpath(&name))))
}
