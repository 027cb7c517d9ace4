//! Staff: the list, one person with their devices, and disabling a leaver.

use super::{
    base_url, csrf_field, form_name, given, layout, link_hours, path_name, see_other, status_label,
    timestamp, urlpath, Ctx, Lang, PanelError, PanelResult,
};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Form;
use base64::Engine as _;
use heimweg_control::Email;
use heimweg_service::{DeviceOutcome, ImportOptions, ImportReport, PersonOutcome, UserOutcome};
use maud::{html, Markup};
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
            thead { tr { th scope="col" { (l.t("Name", "Name")) } th scope="col" { (l.t("E-mail", "E-Mail")) } th scope="col" { (l.t("Active devices", "Aktive Geräte")) } th scope="col" { (l.t("Group (directory)", "Gruppe (Verzeichnis)")) } th scope="col" { (l.t("Signs in", "Meldet sich an")) } th scope="col" { (l.t("State", "Zustand")) } } }
            tbody { @for u in &users.items { tr {
                td { a href={ "/users/" (urlpath(u.name.as_str())) } { (u.name) } }
                td { (u.email.as_ref().map_or("—", |e| e.as_str())) }
                td { (u.active_devices) }
                td { @if u.from_directory { (u.group.as_ref().map_or("—", |g| g.as_str())) } @else { "—" } }
                td { @if u.from_provider { (l.t("city account", "Konto der Stadt")) } @else { "—" } }
                td { @if u.disabled_at.is_some() { (l.t("disabled", "deaktiviert")) } @else { (l.t("active", "aktiv")) } }
            } } }
        } }
        p { (users.items.len()) " " (l.t("of", "von")) " " (users.total) }
        @if ctx.may_change() {
            p { a.button href="/import" { (l.t("Import a list of staff (CSV)", "Liste von Personen importieren (CSV)")) } " "
                a href="/rollout" { (l.t("Rollout: who has connected", "Einführung: wer verbunden ist")) } " "
                a href="/directory" { (l.t("Directory sync", "Verzeichnisabgleich")) } " "
                a href="/absences" { (l.t("Absences", "Abwesenheiten")) } " "
                a href="/review" { (l.t("Access review", "Zugangsüberprüfung")) } }
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
    // Only where staff sign in with the directory password does heimweg keep a second factor.
    let factor = match st.service.directory_sign_in() {
        Some(_) => Some(st.service.staff_factor(&caller, &u.name).await?),
        None => None,
    };
    let content = html! {
        dl.facts {
            dt { (l.t("E-mail", "E-Mail")) } dd { (u.email.as_ref().map_or("—", |e| e.as_str())) }
            dt { (l.t("Created", "Angelegt")) } dd { (timestamp(u.created_at)) }
            dt { (l.t("State", "Zustand")) } dd { @if let Some(d) = u.disabled_at { (l.t("disabled", "deaktiviert")) " " (timestamp(d)) } @else { (l.t("active", "aktiv")) } }
            @if let Some(f) = &factor {
                dt { (l.t("Second factor (staff page)", "Zweiter Faktor (Mitarbeitendenseite)")) }
                dd #second-factor {
                    @match f.as_ref().filter(|f| f.totp_sealed.is_some()) {
                        Some(_) => { (l.t("set up", "eingerichtet")) },
                        None => { (l.t("not set up yet (at the first sign-in)", "noch nicht eingerichtet (bei der ersten Anmeldung)")) },
                    }
                    @if let Some(until) = f.as_ref().and_then(|f| f.locked_until).filter(|&t| t > now) {
                        "; " strong { (l.t("locked after wrong codes until", "nach falschen Codes gesperrt bis")) " " (timestamp(until)) }
                    }
                }
            }
        }
        @if ctx.may_change() && factor.as_ref().is_some_and(Option::is_some) {
            form method="post" action={ "/users/" (urlpath(u.name.as_str())) "/second-factor/reset" } data-confirm=(l.t("Reset the second factor? The person sets up a new one at their next sign-in; a lock ends.", "Zweiten Faktor zurücksetzen? Die Person richtet bei der nächsten Anmeldung einen neuen ein; eine Sperre endet.")) {
                (csrf_field(&ctx))
                button #reset-second-factor type="submit" { (l.t("Reset second factor (lost phone, locked)", "Zweiten Faktor zurücksetzen (Telefon verloren, gesperrt)")) }
            }
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

pub(super) async fn user_reset_second_factor(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PanelResult {
    st.service
        .reset_staff_factor(&ctx.caller()?, &path_name(&name)?)
        .await?;
    Ok(see_other(&format!("/users/{}", urlpath(&name))))
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

/// Most instruction sheets the import page carries as a download (about 12 KB each).
const MAX_PANEL_SHEETS: usize = 200;

/// The import form: the list pasted (from Excel, tab-separated) or, with the script, read from
/// a file into the same field, so that the form stays an ordinary one the CSRF check reads.
fn import_form(ctx: &Ctx, csv: &str, mail: MailChoice) -> Markup {
    let l = ctx.lang;
    html! {
        form.card #import method="post" action="/import" {
            (csrf_field(ctx))
            p.hint { (l.t("Columns, named in the first row: user (required), email, group (default: default), device (a one-time enrollment link is prepared for it). Separated by ; or , or tabs, UTF-8. Importing the same list again changes nothing.",
                          "Spalten, benannt in der ersten Zeile: Benutzer (Pflicht), E-Mail, Gruppe (sonst default), Gerät (dafür wird ein Einmal-Einrichtungslink vorbereitet). Getrennt durch ; oder , oder Tabulatoren, UTF-8. Dieselbe Liste noch einmal zu importieren ändert nichts.")) }
            label for="csv-file" { (l.t("CSV file", "CSV-Datei")) }
            input #csv-file type="file" accept=".csv,.txt,text/csv" data-fill="#csv";
            label for="csv" { (l.t("or paste the list (cells copied from Excel work too)", "oder die Liste einfügen (aus Excel kopierte Zellen gehen auch)")) }
            textarea #csv name="csv" rows="10" required spellcheck="false" { (csv) }
            label for="helpdesk" { (l.t("Whom staff call for help (printed on the instruction sheets)", "Wen die Personen um Hilfe bitten (steht auf den Anleitungen)")) }
            input #helpdesk name="helpdesk" maxlength="200" placeholder="IT-Service, Tel. …";
            label for="expires_in_hours" { (l.t("Links stay open for hours", "Links bleiben offen für Stunden")) }
            input #expires_in_hours name="expires_in_hours" type="number" min="1" max="720" value="168";
            label.check { input #mail type="checkbox" name="mail" value="1" checked[mail.checked];
                " " (l.t("Send each invitation by mail to everyone with an address (German and English, the link only: never a key). The list below then holds only the others.",
                         "Jede Einladung per E-Mail an alle mit Adresse schicken (deutsch und englisch, nur der Link, nie ein Schlüssel). Die Liste unten enthält dann nur die übrigen.")) }
            @if !mail.server {
                p.hint { (l.t("No mail server is set on this gateway (HEIMWEG_SMTP_HOST): mails wait in the queue until one is.",
                              "Auf diesem Gateway ist kein Mailserver eingestellt (HEIMWEG_SMTP_HOST): die E-Mails warten in der Warteschlange, bis einer eingestellt ist.")) }
            }
            button type="submit" name="action" value="check" { (l.t("Check (changes nothing)", "Prüfen (ändert nichts)")) }
            " "
            button type="submit" name="action" value="import" { (l.t("Import", "Importieren")) }
        }
    }
}

/// The import form's mail box: ticked, and whether this gateway sends mail at all.
#[derive(Clone, Copy)]
struct MailChoice {
    checked: bool,
    server: bool,
}

pub(super) async fn import_page(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    let l = ctx.lang;
    ctx.writer()?;
    Ok(layout(
        &ctx,
        l.t("Import staff", "Personen importieren"),
        import_form(
            &ctx,
            "",
            MailChoice {
                checked: st.service.mail_enabled(),
                server: st.service.mail_enabled(),
            },
        ),
    ))
}

#[derive(Deserialize)]
pub(super) struct ImportForm {
    pub(super) csv: String,
    pub(super) helpdesk: Option<String>,
    pub(super) expires_in_hours: Option<String>,
    pub(super) action: Option<String>,
    pub(super) mail: Option<String>,
}

pub(super) async fn import(
    State(st): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(f): Form<ImportForm>,
) -> PanelResult {
    let caller = ctx.caller()?;
    let l = ctx.lang;
    let options = ImportOptions {
        dry_run: f.action.as_deref() != Some("import"),
        link_hours: link_hours(l, &f.expires_in_hours)?,
        mail: f.mail.is_some(),
    };
    let report = st
        .service
        .import_people(&caller, f.csv.as_bytes(), options)
        .await?;
    let base = base_url(&st, &headers);
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    let invitations = (!report.invitations.is_empty()).then(|| b64(report.invitations_csv(&base)));
    // The sheets travel inside this page: a few hundred, not a city's whole staff at once.
    let sheets = (!report.invitations.is_empty() && report.invitations.len() <= MAX_PANEL_SHEETS)
        .then(|| {
            b64(crate::sheets::for_invitations(
                &report.invitations,
                &base,
                given(&f.helpdesk).unwrap_or(""),
            ))
        });
    let c = report.counts();
    let content = html! {
        @if report.dry_run {
            p.notice #import-check { strong { (l.t("Checked; nothing changed.", "Geprüft; nichts geändert.")) } " "
                (l.t("The import would create", "Der Import würde anlegen:")) " " (c.users_created) " " (l.t("users and", "Personen und")) " " (c.invited) " " (l.t("invitations", "Einladungen")) "; "
                (c.unchanged) " " (l.t("rows change nothing", "Zeilen ändern nichts")) ", " (c.refused) " " (l.t("are refused", "werden abgelehnt")) "." }
        } @else {
            p.notice #import-done { strong { (l.t("Imported.", "Importiert.")) } " "
                (c.users_created) " " (l.t("users created,", "Personen angelegt,")) " " (c.invited) " " (l.t("invitations prepared", "Einladungen vorbereitet")) "; "
                (c.unchanged) " " (l.t("rows changed nothing", "Zeilen änderten nichts")) ", " (c.refused) " " (l.t("were refused", "wurden abgelehnt")) "." }
            @if let Some(b64) = &invitations {
                p.warning role="alert" { (l.t("The links are in this list only, once: download it now (for a mail merge or to print).", "Die Links stehen nur in dieser Liste, nur jetzt: laden Sie sie jetzt herunter (für einen Serienbrief oder zum Drucken).")) }
                p { a.button #download-invitations download="invitations.csv" href={ "data:text/csv;base64," (b64) } { (l.t("Download the invitations (CSV)", "Einladungen herunterladen (CSV)")) }
                    @if let Some(sheets) = &sheets {
                        " " a.button #download-sheets download="instruction-sheets.html" href={ "data:text/html;base64," (sheets) } { (l.t("Instruction sheets to print (a page each)", "Anleitungen zum Drucken (je eine Seite)")) }
                    } @else {
                        " " (l.t("For more than 200 instruction sheets, import per group or use", "Für mehr als 200 Anleitungen importieren Sie je Gruppe oder nutzen")) " " code { "heimweg user import --sheets" } "."
                    }
                }
            }
        }
        (import_rows(l, &report))
        @if report.mailed > 0 {
            p.notice #import-mailed { (report.mailed) " " (if report.dry_run { l.t("invitations would go by mail.", "Einladungen gingen per E-Mail hinaus.") } else { l.t("invitations are queued for mail: see Rollout for who got theirs.", "Einladungen warten auf den Versand per E-Mail: wer seine bekam, zeigt die Einführung.") }) }
        }
        @if report.dry_run { (import_form(&ctx, &f.csv, MailChoice { checked: options.mail, server: st.service.mail_enabled() })) }
    };
    Ok(layout(
        &ctx,
        l.t("Import staff", "Personen importieren"),
        content,
    ))
}

/// Every row that is refused or changes something, with its line.
fn import_rows(l: Lang, report: &ImportReport) -> Markup {
    html! {
        div.scroll { table #import-rows {
            thead { tr { th scope="col" { (l.t("Line", "Zeile")) } th scope="col" { (l.t("Person", "Person")) } th scope="col" { (l.t("Device", "Gerät")) } th scope="col" { (l.t("Outcome", "Ergebnis")) } } }
            tbody { @for r in &report.rows { tr {
                td { (r.line) }
                td { (r.user.as_ref().map_or("—", |u| u.as_str())) }
                td { (r.device.as_ref().map_or("—", |d| d.as_str())) }
                td { @match &r.outcome {
                    PersonOutcome::Refused(why) => { span.badge.revoked { (l.t("refused", "abgelehnt")) } " " (why) }
                    PersonOutcome::Done { user, device } => {
                        @if *user == UserOutcome::Created { (l.t("new person", "neue Person")) " " }
                        @if let UserOutcome::Exists { email_differs: true } = user { (l.t("(the e-mail differs from the stored one, which stays)", "(die E-Mail weicht von der gespeicherten ab, die bleibt)")) " " }
                        @match device {
                            DeviceOutcome::Invited(_) => { (l.t("invitation", "Einladung")) }
                            DeviceOutcome::AlreadyInvited => { (l.t("already invited", "schon eingeladen")) }
                            DeviceOutcome::AlreadyEnrolled => { (l.t("device already set up", "Gerät schon eingerichtet")) }
                            DeviceOutcome::None => {}
                        }
                    }
                } }
            } } }
        } }
    }
}
