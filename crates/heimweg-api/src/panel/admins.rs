//! Panel accounts on the settings page: the list, a new account with its first password
//! shown once, unlocking and disabling.

use super::{
    csrf_field, layout, path_name, role_label, see_other, urlpath, Ctx, PanelError, PanelResult,
};
use crate::AppState;
use axum::extract::{Path, State};
use axum::Form;
use heimweg_control::Role;
use maud::html;
use serde::Deserialize;

/// The admin accounts section of the settings page.
pub(super) async fn admin_section(st: &AppState, ctx: &Ctx) -> Result<maud::Markup, PanelError> {
    let l = ctx.lang;
    let me = ctx.admin()?;
    let admins = st.service.admins(&ctx.caller()?).await?;
    let now = st.service.now();
    let can_write = ctx.may_change();
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
                                        form.inline method="post" action={ "/settings/admins/" (urlpath(a.name.as_str())) "/unlock" } {
                                            (csrf_field(ctx)) button type="submit" { (l.t("Unlock", "Entsperren")) }
                                        }
                                    }
                                    @if a.disabled_at.is_none() && a.id != me.admin.id {
                                        form.inline method="post" action={ "/settings/admins/" (urlpath(a.name.as_str())) "/disable" } data-confirm=(l.t("Disable this account? Its sessions end at once.", "Dieses Konto deaktivieren? Seine Sitzungen enden sofort.")) {
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
    pub(super) name: String,
    pub(super) role: String,
}

/// Creates an account with a random first password, shown once to hand over.
pub(super) async fn admin_create(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<NewAdmin>,
) -> PanelResult {
    let caller = ctx.caller()?;
    let l = ctx.lang;
    let role: Role = f
        .role
        .parse()
        .map_err(|e: heimweg_control::access::RoleError| PanelError::BadRequest(e.to_string()))?;
    let name = super::form_name(l.t("Name", "Name"), &f.name)?;
    let (created, password) = st.service.create_admin(&caller, &name, role, None).await?;
    let password = password.unwrap_or_default();
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
    st.service
        .unlock_admin(&ctx.caller()?, &path_name(&name)?)
        .await?;
    Ok(see_other("/settings#admins"))
}

pub(super) async fn admin_disable(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PanelResult {
    let caller = ctx.caller()?;
    let name = path_name(&name)?;
    if ctx.admin()?.admin.name.key() == name.key() {
        return Err(PanelError::BadRequest(
            ctx.lang
                .t(
                    "You cannot disable your own account.",
                    "Das eigene Konto kann man nicht deaktivieren.",
                )
                .into(),
        ));
    }
    st.service.disable_admin(&caller, &name).await?;
    Ok(see_other("/settings#admins"))
}
