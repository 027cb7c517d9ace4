//! Groups and their access policy.

use super::{
    csrf_field, form_name, layout, path_name, see_other, urlpath, Ctx, PanelError, PanelResult,
};
use crate::AppState;
use axum::extract::{Path, State};
use axum::Form;
use heimweg_control::mobileconfig::ApplePlatform;
use heimweg_control::window::DEFAULT_TIME_ZONE;
use heimweg_control::{GroupPolicy, TunnelMode, UsageWindow};
use heimweg_service::{Group, GroupPatch, MdmExport, MAX_SIGN_IN_HOURS};
use maud::{html, Markup};
use serde::Deserialize;

fn lines(s: &str) -> Vec<String> {
    s.split(['\n', ',', ' ', '\r'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

fn group_fields(ctx: &Ctx, g: Option<&Group>) -> Markup {
    let l = ctx.lang;
    let prefixes = g
        .map(|g| {
            g.policy
                .networks()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let dns = g.map(|g| dns_text(&g.policy)).unwrap_or_default();
    html! {
        label for="prefixes" { (l.t("Networks the devices may reach, one per line (e.g. 10.20.0.0/16)", "Netze, die die Geräte erreichen dürfen, eins pro Zeile (z. B. 10.20.0.0/16)")) }
        textarea id="prefixes" name="allowed_prefixes" rows="4" required spellcheck="false" { (prefixes) }
        label.check { input type="checkbox" name="full_tunnel" value="on" checked[g.is_some_and(|g| g.policy.tunnel().is_full())];
            " " (l.t("Full tunnel: send all traffic of the device through the VPN", "Voller Tunnel: den ganzen Verkehr des Geräts durch das VPN leiten")) }
        label.check { input type="checkbox" name="peer_to_peer" value="on" checked[g.is_some_and(|g| g.policy.allows_peer_to_peer())];
            " " (l.t("Devices may reach each other (off: each device reaches only the networks above)", "Geräte dürfen einander erreichen (aus: jedes Gerät erreicht nur die Netze oben)")) }
        label for="dns" { (l.t("DNS servers and search domains, comma-separated", "DNS-Server und Suchdomänen, durch Komma getrennt")) }
        input id="dns" name="dns" value=(dns) spellcheck="false";
    }
}

pub(super) async fn groups(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    let l = ctx.lang;
    let groups = st.service.groups(&ctx.caller()?).await?;
    let content = html! {
        div.scroll { table {
            thead { tr { th scope="col" { (l.t("Group", "Gruppe")) } th scope="col" { (l.t("May reach", "Darf erreichen")) } th scope="col" { (l.t("Tunnel", "Tunnel")) } th scope="col" { "DNS" } th scope="col" { (l.t("Usage window", "Nutzungszeiten")) } } }
            tbody { @for g in &groups { tr {
                td { a href={ "/groups/" (urlpath(g.name.as_str())) } { (g.name) } }
                td { @for (i, p) in g.policy.networks().iter().enumerate() { @if i > 0 { ", " } code { (p) } } }
                td { @if g.policy.tunnel().is_full() { (l.t("full", "voll")) } @else { (l.t("split", "geteilt")) } }
                td { (dns_text(&g.policy)) }
                td { @match &g.window { Some(w) => { (w.schedule()) }, None => { (l.t("any time", "jederzeit")) } } }
            } } }
        } }
        @if ctx.may_change() {
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
    pub(super) name: Option<String>,
    pub(super) allowed_prefixes: String,
    pub(super) full_tunnel: Option<String>,
    pub(super) dns: Option<String>,
    pub(super) peer_to_peer: Option<String>,
}

impl GroupForm {
    /// The policy typed in, checked as the JSON API checks it.
    pub(super) fn policy(&self) -> Result<GroupPolicy, PanelError> {
        GroupPolicy::parse(
            &lines(&self.allowed_prefixes),
            TunnelMode::from_full(self.full_tunnel.is_some()),
            &lines(self.dns.as_deref().unwrap_or("")),
        )
        .map(|p| p.peer_to_peer(self.peer_to_peer.is_some()))
        .map_err(|e| PanelError::BadRequest(e.to_string()))
    }
}

/// A group's DNS entries as the form shows them.
fn dns_text(p: &GroupPolicy) -> String {
    p.dns()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) async fn group_create(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<GroupForm>,
) -> PanelResult {
    let caller = ctx.caller()?;
    let name = form_name(ctx.lang.t("Name", "Name"), f.name.as_deref().unwrap_or(""))?;
    let policy = f.policy()?;
    let g = st.service.create_group(&caller, &name, &policy).await?;
    Ok(see_other(&format!("/groups/{}", urlpath(g.name.as_str()))))
}

pub(super) async fn group(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PanelResult {
    let l = ctx.lang;
    let g = st.service.group(&ctx.caller()?, &path_name(&name)?).await?;
    let content = html! {
        @if ctx.may_change() {
            form.card method="post" action={ "/groups/" (urlpath(g.name.as_str())) } {
                (csrf_field(&ctx))
                (group_fields(&ctx, Some(&g)))
                p.hint { (l.t("Changes reach every connected device of the group within a second; configs already handed out keep their DNS and routes until renewed.",
                              "Änderungen erreichen jedes verbundene Gerät der Gruppe binnen einer Sekunde; ausgegebene Konfigurationen behalten DNS und Routen bis zur Erneuerung.")) }
                button type="submit" { (l.t("Save", "Speichern")) }
            }
        } @else {
            dl.facts {
                dt { (l.t("May reach", "Darf erreichen")) } dd { @for p in g.policy.networks() { code { (p) } " " } }
                dt { (l.t("Tunnel", "Tunnel")) } dd { @if g.policy.tunnel().is_full() { (l.t("full", "voll")) } @else { (l.t("split", "geteilt")) } }
                dt { "DNS" } dd { (dns_text(&g.policy)) }
            }
        }
        (window_section(&ctx, &g, st.service.now()))
        p { a href={ "/devices?status=active&group=" (urlpath(g.name.as_str())) } { (l.t("Devices of this group", "Geräte dieser Gruppe")) } }
        @if ctx.may_change() {
            h2 { (l.t("Profiles for the MDM", "Profile für das MDM")) }
            form.card #mdm-export method="post" action={ "/groups/" (urlpath(g.name.as_str())) "/mdm-export" } {
                (csrf_field(&ctx))
                p.hint { (l.t("Gives every active device of this group a new key and downloads their Apple profiles as one zip for the MDM to push. Each profile replaces the one installed on its device; until the MDM has pushed it, the device's old key no longer works. The zip holds the private keys and is the only copy.",
                              "Gibt jedem aktiven Gerät dieser Gruppe einen neuen Schlüssel und lädt ihre Apple-Profile als ein Zip für das MDM herunter. Jedes Profil ersetzt das auf seinem Gerät installierte; bis das MDM es verteilt hat, funktioniert der alte Schlüssel des Geräts nicht mehr. Das Zip enthält die privaten Schlüssel und ist die einzige Kopie.")) }
                label for="platform" { (l.t("WireGuard app", "WireGuard-App")) }
                select id="platform" name="platform" {
                    option value="ios" { "iPad, iPhone (com.wireguard.ios)" }
                    option value="macos" { "Mac (com.wireguard.macos)" }
                }
                label.check { input type="checkbox" name="confirm" value="on" required;
                    " " (l.t("The devices' old keys stop working now", "Die alten Schlüssel der Geräte hören jetzt auf zu funktionieren")) }
                button type="submit" { (l.t("New keys and profiles", "Neue Schlüssel und Profile")) }
            }
        }
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
    let caller = ctx.caller()?;
    let policy = f.policy()?;
    let patch = GroupPatch {
        networks: Some(policy.networks().to_vec()),
        tunnel: Some(policy.tunnel()),
        dns: Some(policy.dns().to_vec()),
        peer_to_peer: Some(policy.allows_peer_to_peer()),
        window: None,
        sign_in_hours: None,
    };
    st.service
        .update_group(&caller, &path_name(&name)?, patch)
        .await?;
    Ok(see_other(&format!("/groups/{}", urlpath(&name))))
}

/// Where a window stands at `now`, in its zone's local time, for people.
pub(super) fn window_state(l: super::Lang, w: &UsageWindow, now: i64) -> String {
    let s = w.at(now);
    match (s.open, s.until.filter(|_| s.exact)) {
        (true, Some(t)) => format!(
            "{} {}",
            l.t("Open now, until", "Jetzt offen, bis"),
            w.local(t)
        ),
        (true, None) => l.t("Open now", "Jetzt offen").to_string(),
        (false, Some(t)) => format!(
            "{} {}",
            l.t("Closed now; opens", "Jetzt geschlossen; öffnet"),
            w.local(t)
        ),
        (false, None) => l.t("Closed", "Geschlossen").to_string(),
    }
}

/// The group's usage window: where it stands, and (for admins) the form that sets it.
fn window_section(ctx: &Ctx, g: &Group, now: i64) -> Markup {
    let l = ctx.lang;
    let w = g.window.as_ref();
    html! {
        h2 { (l.t("Usage window", "Nutzungszeiten")) }
        p #window-state { @match w {
            Some(w) => { strong { (w.to_string()) } ". " (window_state(l, w, now)) "." },
            None => { (l.t("Any time: the group's devices may connect day and night.", "Jederzeit: die Geräte der Gruppe dürfen Tag und Nacht verbinden.")) },
        } }
        p #sign-in-state { @match g.sign_in_hours {
            Some(h) => { strong { (l.t("Sign in to connect", "Anmelden zum Verbinden")) } ": " (l.t("the devices pass traffic only for", "die Geräte leiten Verkehr nur für")) " " (h) " " (l.t("hours after their owner signs in with a second factor on the staff page (/my).", "Stunden, nachdem sich ihr Besitzer auf der Mitarbeiterseite (/my) mit zweitem Faktor angemeldet hat.")) },
            None => { (l.t("No sign-in needed to connect.", "Zum Verbinden ist keine Anmeldung nötig.")) },
        } }
        @if ctx.may_change() {
            form.card #usage-window method="post" action={ "/groups/" (urlpath(g.name.as_str())) "/window" } {
                (csrf_field(ctx))
                label for="schedule" { (l.t("Weekly schedule (empty: any time)", "Wochenplan (leer: jederzeit)")) }
                input id="schedule" name="schedule" spellcheck="false" placeholder="Mon-Fri 06:00-20:00; Sat 08:00-12:00" value=(w.map(UsageWindow::schedule).unwrap_or_default());
                label for="time_zone" { (l.t("Time zone", "Zeitzone")) }
                input id="time_zone" name="time_zone" spellcheck="false" value=(w.map_or(DEFAULT_TIME_ZONE, UsageWindow::time_zone));
                label for="closed_dates" { (l.t("Closed dates, such as public holidays (2026-12-24, one per line or comma-separated)", "Geschlossene Tage, etwa Feiertage (2026-12-24, eins pro Zeile oder durch Komma getrennt)")) }
                textarea id="closed_dates" name="closed_dates" rows="3" spellcheck="false" { (w.map(UsageWindow::closed_text).unwrap_or_default()) }
                label for="sign_in_hours" { (l.t("Sign in to connect: hours a sign-in lets the devices through (empty or 0: no sign-in needed)", "Anmelden zum Verbinden: Stunden, die eine Anmeldung die Geräte durchlässt (leer oder 0: keine Anmeldung nötig)")) }
                input id="sign_in_hours" name="sign_in_hours" type="number" min="0" max=(MAX_SIGN_IN_HOURS) value=(g.sign_in_hours.map(|h| h.to_string()).unwrap_or_default());
                p.hint { (l.t("Outside the window the gateway drops the devices' traffic and answers no handshake; a connection that is open at the window's end is cut off within a second. Times are local wall-clock times in the zone, across daylight-saving changes too. A range whose end is not after its start runs past midnight (22:00-06:00).",
                              "Außerhalb der Zeiten verwirft das Gateway den Verkehr der Geräte und beantwortet keinen Handshake; eine Verbindung, die zum Ende der Zeiten besteht, wird binnen einer Sekunde getrennt. Die Zeiten gelten als Ortszeit der Zone, auch über die Zeitumstellung. Ein Bereich, dessen Ende nicht nach dem Anfang liegt, reicht über Mitternacht (22:00-06:00).")) }
                button type="submit" { (l.t("Save the usage window", "Nutzungszeiten speichern")) }
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct WindowForm {
    pub(super) schedule: String,
    pub(super) time_zone: Option<String>,
    pub(super) closed_dates: Option<String>,
    pub(super) sign_in_hours: Option<String>,
}

/// Sets or (with an empty schedule) removes a group's usage window.
pub(super) async fn group_window(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
    Form(f): Form<WindowForm>,
) -> PanelResult {
    // Before the text is parsed: only an admin's form is worth the work.
    ctx.writer()?;
    let caller = ctx.caller()?;
    let window = if f.schedule.trim().is_empty() {
        None
    } else {
        Some(
            UsageWindow::new(
                &f.schedule,
                f.time_zone.as_deref().unwrap_or(""),
                f.closed_dates.as_deref().unwrap_or(""),
            )
            .map_err(|e| PanelError::BadRequest(e.to_string()))?,
        )
    };
    // A form without the field (an older page) leaves the setting as it is; empty or 0 turns
    // it off.
    let sign_in_hours = match f.sign_in_hours.as_deref().map(str::trim) {
        None => None,
        Some("" | "0") => Some(None),
        Some(h) => match h.parse::<u8>() {
            Ok(0) => Some(None),
            Ok(h) if h <= MAX_SIGN_IN_HOURS => Some(Some(h)),
            _ => {
                return Err(PanelError::BadRequest(format!(
                    "{} 0–{MAX_SIGN_IN_HOURS}",
                    ctx.lang.t(
                        "Sign in to connect takes a number of hours,",
                        "Anmelden zum Verbinden nimmt eine Zahl von Stunden,"
                    )
                )))
            }
        },
    };
    let patch = GroupPatch {
        window: Some(window),
        sign_in_hours,
        ..GroupPatch::default()
    };
    st.service
        .update_group(&caller, &path_name(&name)?, patch)
        .await?;
    Ok(see_other(&format!("/groups/{}", urlpath(&name))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_fields_split_on_lines_commas_and_spaces() {
        assert_eq!(
            lines("10.0.0.0/8\r\n192.0.2.0/24, 2001:db8::/32 "),
            vec!["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32"]
        );
    }
}

#[derive(Deserialize)]
pub(super) struct MdmForm {
    pub(super) platform: String,
    pub(super) confirm: Option<String>,
}

/// New keys and the Apple profiles of every active device of the group, as one zip.
pub(super) async fn group_mdm_export(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
    Form(f): Form<MdmForm>,
) -> PanelResult {
    let caller = ctx.caller()?;
    let l = ctx.lang;
    if f.confirm.is_none() {
        return Err(PanelError::BadRequest(
            l.t(
                "Confirm that the devices' old keys stop working.",
                "Bestätigen Sie, dass die alten Schlüssel der Geräte aufhören zu funktionieren.",
            )
            .into(),
        ));
    }
    let platform = match f.platform.as_str() {
        "ios" => ApplePlatform::Ios,
        "macos" => ApplePlatform::MacOs,
        _ => {
            return Err(PanelError::BadRequest(
                l.t("Choose iOS or macOS.", "Wählen Sie iOS oder macOS.")
                    .into(),
            ))
        }
    };
    let export = MdmExport {
        group: Some(path_name(&name)?),
        devices: vec![],
        platform,
    };
    let profiles = st.service.mdm_export(&caller, export).await?;
    Ok(crate::devices::zip_download(profiles.archive))
}
