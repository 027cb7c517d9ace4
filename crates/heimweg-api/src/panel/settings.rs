//! The settings page: the address devices dial, the pools, and the panel accounts.

use super::{admins, csrf_field, layout, see_other, Ctx, PanelError, PanelResult};
use crate::AppState;
use axum::extract::State;
use axum::Form;
use heimweg_control::Endpoint;
use maud::html;
use serde::Deserialize;

pub(super) async fn settings(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    ctx.admin()?;
    let l = ctx.lang;
    let settings = st.service.settings().await?;
    let admins = admins::admin_section(&st, &ctx).await?;
    let endpoint = settings.endpoint.as_ref().map(ToString::to_string);
    let content = html! {
        section.card {
            h2 { (l.t("Address devices dial", "Adresse, die Geräte anwählen")) }
            @if ctx.may_change() {
                form method="post" action="/settings" {
                    (csrf_field(&ctx))
                    label for="endpoint" { (l.t("Public host name or address and UDP port, e.g. vpn.example.org:51820", "Öffentlicher Hostname oder Adresse und UDP-Port, z. B. vpn.example.org:51820")) }
                    input id="endpoint" name="endpoint" required value=[endpoint.as_deref()] spellcheck="false";
                    button type="submit" { (l.t("Save", "Speichern")) }
                }
            } @else {
                p { (endpoint.as_deref().unwrap_or("—")) }
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
        (super::review::review_setting(&ctx, settings.review_unseen_days, settings.shared_key_suspend_hours))
        (admins)
    };
    Ok(layout(&ctx, l.t("Settings", "Einstellungen"), content))
}

#[derive(Deserialize)]
pub(super) struct SettingsForm {
    pub(super) endpoint: String,
}

pub(super) async fn settings_update(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<SettingsForm>,
) -> PanelResult {
    let caller = ctx.caller()?;
    let endpoint: Endpoint = f
        .endpoint
        .trim()
        .parse()
        .map_err(|e: heimweg_control::ConfigError| PanelError::BadRequest(e.to_string()))?;
    st.service.set_endpoint(&caller, endpoint).await?;
    Ok(see_other("/settings"))
}
