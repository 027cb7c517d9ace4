//! The directory page: what the sync reads (the settings file sets it; never the password),
//! its latest runs with what each changed or why it changed nothing, and a run on demand.

use super::{csrf_field, layout, notice, see_other, timestamp, Ctx, Lang, PanelResult};
use crate::AppState;
use axum::extract::{Query, State};
use heimweg_service::{DirectoryRun, DirectorySettings, OidcSettings};
use maud::{html, Markup};
use serde::Deserialize;

/// Runs listed on the page; the API and the command line give more.
const LISTED: u32 = 50;

#[derive(Deserialize)]
pub(super) struct Shown {
    run: Option<i64>,
}

pub(super) async fn directory(
    State(st): State<AppState>,
    ctx: Ctx,
    Query(shown): Query<Shown>,
) -> PanelResult {
    let l = ctx.lang;
    let runs = st.service.directory_runs(&ctx.caller()?, LISTED).await?;
    let settings = st.service.directory();
    let content = html! {
        @if let Some(run) = shown.run.and_then(|id| runs.iter().find(|r| r.id == id)) {
            @match run.outcome.as_str() {
                "ok" => (notice("ok", &format!("{} {} {}, {} {}, {} {}.", l.t("Synchronised:", "Abgeglichen:"), run.created, l.t("created", "angelegt"), run.changed, l.t("changed", "geändert"), run.disabled, l.t("disabled", "deaktiviert")))),
                _ => (notice("error", &format!("{} {}", why_nothing(l, &run.outcome), run.message.as_deref().unwrap_or("")))),
            }
        }
        @match settings {
            None => p #no-directory { (l.t(
                "No directory is connected. Set HEIMWEG_LDAP_URL, HEIMWEG_LDAP_BASE, HEIMWEG_LDAP_GROUPS and the reading account in /etc/heimweg/env (deploy/README.md, \"Directory\") and restart heimweg.",
                "Kein Verzeichnis angebunden. HEIMWEG_LDAP_URL, HEIMWEG_LDAP_BASE, HEIMWEG_LDAP_GROUPS und das Lesekonto in /etc/heimweg/env setzen (deploy/README.md, „Verzeichnis“) und heimweg neu starten.")) }
            Some(s) => {
                (settings_table(l, s))
                @if ctx.may_change() {
                    form.card #sync method="post" action="/directory/sync" {
                        (csrf_field(&ctx))
                        p { (l.t("Runs every interval by itself. A run disables leavers and disabled accounts with all their devices; it changes nothing if the directory cannot be read or would disable more than the threshold.",
                                 "Läuft im eingestellten Abstand von selbst. Ein Lauf deaktiviert Ausgeschiedene und gesperrte Konten mit allen Geräten; er ändert nichts, wenn das Verzeichnis nicht lesbar ist oder mehr als die Schwelle deaktivieren würde.")) }
                        button type="submit" { (l.t("Synchronise now", "Jetzt abgleichen")) }
                    }
                }
            }
        }
        h2 { (l.t("Latest runs", "Letzte Läufe")) }
        (runs_table(l, &runs))
        h2 #identity { (l.t("Sign-in through the identity provider", "Anmeldung über den Anmeldedienst")) }
        (identity_table(l, st.service.identity_provider()))
    };
    Ok(layout(
        &ctx,
        l.t("Directory and sign-in", "Verzeichnis und Anmeldung"),
        content,
    ))
}

fn settings_table(l: Lang, s: &DirectorySettings) -> Markup {
    let settings = crate::directory::settings_json(s);
    let text = |k: &str| settings[k].as_str().unwrap_or("—").to_string();
    html! {
        table #directory-settings {
            tr { th scope="row" { (l.t("Directory", "Verzeichnis")) } td { code { (s.url) } " (" (text("security")) ")" } }
            tr { th scope="row" { (l.t("Reads as", "Liest als")) } td { (s.bind.as_ref().map_or("—", |b| b.0.as_str())) } }
            tr { th scope="row" { (l.t("Users under", "Personen unter")) } td { code { (s.base) } " " code { (s.filter) } } }
            tr { th scope="row" { (l.t("Disabled when", "Deaktiviert, wenn")) } td { (text("disabled")) } }
            tr { th scope="row" { (l.t("Every", "Alle")) } td { (interval(s.interval.as_secs())) } }
            tr { th scope="row" { (l.t("Refused above", "Verweigert über")) } td { (s.policy.max_disable_percent) " % " (l.t("of the users at once", "der Personen auf einmal")) } }
            tr { th scope="row" { (l.t("Returning users", "Zurückkehrende")) } td { @if s.policy.reenable { (l.t("enabled again (devices stay revoked)", "wieder freigeschaltet (Geräte bleiben gesperrt)")) } @else { (l.t("stay disabled until an admin acts", "bleiben deaktiviert, bis jemand aus der IT handelt")) } } }
        }
        h2 { (l.t("Group mapping (first match decides)", "Gruppenzuordnung (der erste Treffer entscheidet)")) }
        table #directory-groups {
            thead { tr { th scope="col" { "#" } th scope="col" { (l.t("Directory group", "Verzeichnisgruppe")) } th scope="col" { (l.t("heimweg group", "heimweg-Gruppe")) } } }
            tbody { @for (n, (dn, group)) in s.groups.entries().iter().enumerate() { tr {
                td { (n + 1) } td { code { (dn) } } td { a href={ "/groups/" (super::urlpath(group.as_str())) } { (group) } }
            } } }
        }
    }
}

/// The identity provider staff (on /my) and admins sign in through, and what its groups mean.
fn identity_table(l: Lang, s: Option<&OidcSettings>) -> Markup {
    let Some(s) = s else {
        return html! { p #no-provider { (l.t(
        "No identity provider is connected: staff cannot enroll their own devices, and the panel takes local accounts only. Set HEIMWEG_OIDC_ISSUER, the client and the group mapping in /etc/heimweg/env (deploy/README.md, \"Identity provider\") and restart heimweg.",
        "Kein Anmeldedienst angebunden: Mitarbeitende können keine eigenen Geräte einrichten, das Panel nimmt nur lokale Konten. HEIMWEG_OIDC_ISSUER, den Client und die Gruppenzuordnung in /etc/heimweg/env setzen (deploy/README.md, „Anmeldedienst“) und heimweg neu starten.")) } };
    };
    let list = |v: &[String]| {
        if v.is_empty() {
            "—".to_string()
        } else {
            v.join(", ")
        }
    };
    html! {
        table #identity-settings {
            tr { th scope="row" { (l.t("Provider", "Anmeldedienst")) } td { code { (s.issuer) } } }
            tr { th scope="row" { (l.t("Client", "Client")) } td { code { (s.client_id) } " · " (l.t("redirect URI", "Weiterleitungs-URI")) " " code { (s.redirect_uri()) } } }
            tr { th scope="row" { (l.t("Claims", "Claims")) } td { (l.t("login", "Anmeldename")) " " code { (s.login_claim) } ", " (l.t("groups", "Gruppen")) " " code { (s.groups_claim) } } }
            tr { th scope="row" { (l.t("Panel: admins", "Panel: Admins")) } td { (list(&s.roles.admin)) } }
            tr { th scope="row" { (l.t("Panel: helpdesk", "Panel: Helpdesk")) } td { (list(&s.roles.helpdesk)) } }
            tr { th scope="row" { (l.t("Own devices per person", "Eigene Geräte pro Person")) } td { (s.device_limit) } }
        }
        table #identity-groups {
            thead { tr { th scope="col" { "#" } th scope="col" { (l.t("Provider group", "Gruppe beim Anmeldedienst")) } th scope="col" { (l.t("heimweg group", "heimweg-Gruppe")) } } }
            tbody { @for (n, (claim, group)) in s.groups.entries().iter().enumerate() { tr {
                td { (n + 1) } td { code { (claim) } } td { a href={ "/groups/" (super::urlpath(group.as_str())) } { (group) } }
            } } }
        }
        p.hint { (l.t("Staff may pick any of their mapped groups for a new device, the first one listed being the default; where the directory sync knows a person, its group decides.",
                      "Mitarbeitende wählen für ein neues Gerät unter ihren zugeordneten Gruppen, vorgegeben ist die zuerst genannte; kennt der Verzeichnisabgleich die Person, entscheidet dessen Gruppe.")) }
    }
}

fn runs_table(l: Lang, runs: &[DirectoryRun]) -> Markup {
    html! {
        @if runs.is_empty() { p { (l.t("No run yet.", "Noch kein Lauf.")) } }
        @else { div.scroll { table #directory-runs {
            thead { tr {
                th scope="col" { (l.t("Started", "Begonnen")) } th scope="col" { (l.t("By", "Durch")) }
                th scope="col" { (l.t("Outcome", "Ergebnis")) } th scope="col" { (l.t("Entries", "Einträge")) }
                th scope="col" { (l.t("Created", "Angelegt")) } th scope="col" { (l.t("Changed", "Geändert")) }
                th scope="col" { (l.t("Disabled", "Deaktiviert")) } th scope="col" { (l.t("Enabled again", "Wieder frei")) }
                th scope="col" { (l.t("Notes", "Hinweise")) }
            } }
            tbody { @for r in runs { tr {
                td { (timestamp(r.started_at)) }
                td { @if r.requested_by == "system" { (l.t("schedule", "Zeitplan")) } @else { (super::overview::actor_label(l, &r.requested_by)) } }
                td { @let class = match r.outcome.as_str() { "ok" => "active", _ => "revoked" };
                     span class={ "badge " (class) } { (outcome(l, &r.outcome)) } }
                td { (r.entries) } td { (r.created) } td { (r.changed) } td { (r.disabled) } td { (r.enabled) }
                td {
                    @if r.outcome != "ok" { (why_nothing(l, &r.outcome)) br; }
                    @if let Some(m) = &r.message { small { (m) } }
                }
            } } }
        } } }
    }
}

/// 15 min, 1 h 30 min, 45 s.
fn interval(secs: u64) -> String {
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m} min"),
        (h, 0, 0) => format!("{h} h"),
        (h, m, 0) => format!("{h} h {m} min"),
        _ => format!("{secs} s"),
    }
}

/// Why a run changed nothing, in the reader's language (the recorded detail that follows it
/// is the run's own, in English, for the log and a support case).
fn why_nothing(l: Lang, outcome: &str) -> &'static str {
    if outcome == "refused" {
        l.t(
            "Nothing was changed: the directory's answer would have disabled more people than a run may, or named nobody.",
            "Nichts wurde geändert: Die Antwort des Verzeichnisses hätte mehr Personen deaktiviert, als ein Lauf darf, oder niemanden genannt.",
        )
    } else {
        l.t(
            "Nothing was changed: the directory could not be read, or the mapping names a group heimweg does not have.",
            "Nichts wurde geändert: Das Verzeichnis war nicht lesbar, oder die Zuordnung nennt eine Gruppe, die es in heimweg nicht gibt.",
        )
    }
}

fn outcome(l: Lang, outcome: &str) -> &'static str {
    match outcome {
        "ok" => l.t("done", "erledigt"),
        "refused" => l.t("refused", "verweigert"),
        _ => l.t("failed", "fehlgeschlagen"),
    }
}

pub(super) async fn sync(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    ctx.writer()?;
    let run = st.service.sync_directory(&ctx.caller()?).await?;
    Ok(see_other(&format!("/directory?run={}", run.id)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn intervals_read_as_people_set_them() {
        for (secs, text) in [
            (10, "10 s"),
            (900, "15 min"),
            (3600, "1 h"),
            (5400, "1 h 30 min"),
            (90, "90 s"),
        ] {
            assert_eq!(super::interval(secs), text);
        }
    }
}
