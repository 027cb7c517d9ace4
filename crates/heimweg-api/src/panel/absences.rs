//! Absences: a person's or a device's access suspended from a date to a date (ORP.4.A6/A7); it
//! comes back by itself.

use super::{
    actor_label, csrf_field, form_name, given, layout, see_other, Ctx, PanelError, PanelResult,
};
use crate::AppState;
use axum::extract::{Path, State};
use axum::Form;
use heimweg_control::window::{time_zone, DEFAULT_TIME_ZONE};
use heimweg_service::{AbsenceOf, AbsenceRequest};
use maud::html;
use serde::Deserialize;

/// A moment in the city's zone, as the form took it ("2027-01-04 00:00 CET").
fn local(at: i64) -> String {
    match (
        jiff::Timestamp::from_second(at),
        time_zone(DEFAULT_TIME_ZONE),
    ) {
        (Ok(t), Ok(tz)) => t.to_zoned(tz).strftime("%Y-%m-%d %H:%M %Z").to_string(),
        _ => at.to_string(),
    }
}

pub(super) async fn absences(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    let caller = ctx.caller()?;
    let l = ctx.lang;
    let now = st.service.now();
    let absences = st.service.absences(&caller).await?;
    let activations = st.service.activations(&caller).await?;
    let writable = ctx.may_change();
    let content = html! {
        p { (l.t("While an absence runs, the person's devices (or the one device) pass no traffic and get no handshake answered; at its end they are back by themselves. For long absences such as parental leave or a long illness (BSI ORP.4.A6/A7).",
                 "Während einer Abwesenheit leiten die Geräte der Person (oder das eine Gerät) keinen Verkehr und bekommen keinen Handshake beantwortet; an ihrem Ende sind sie von selbst wieder da. Für lange Abwesenheiten wie Elternzeit oder lange Krankheit (BSI ORP.4.A6/A7).")) }
        @if writable {
            form.card.row #absence-form method="post" action="/absences" {
                (csrf_field(&ctx))
                div { label for="kind" { (l.t("Who", "Wer")) }
                    select id="kind" name="kind" {
                        option value="user" { (l.t("A person (all their devices)", "Eine Person (alle ihre Geräte)")) }
                        option value="device" { (l.t("One device", "Ein Gerät")) }
                    } }
                div { label for="name" { (l.t("Name", "Name")) } input id="name" name="name" required maxlength="64"; }
                div { label for="from" { (l.t("From (first day)", "Von (erster Tag)")) } input id="from" name="from" type="date" required; }
                div { label for="until" { (l.t("Until (last day)", "Bis (letzter Tag)")) } input id="until" name="until" type="date" required; }
                div { label for="reason" { (l.t("Reason (optional)", "Grund (optional)")) } input id="reason" name="reason" maxlength="200"; }
                div { button type="submit" { (l.t("Enter the absence", "Abwesenheit eintragen")) } }
            }
            p.hint { (l.t("Days are whole days in", "Tage sind ganze Tage in")) " " (DEFAULT_TIME_ZONE) "." }
        }
        div.scroll { table #absences {
            thead { tr {
                th scope="col" { (l.t("Who", "Wer")) } th scope="col" { (l.t("From", "Von")) }
                th scope="col" { (l.t("Until", "Bis")) } th scope="col" { (l.t("Reason", "Grund")) }
                th scope="col" { (l.t("Decided by", "Entschieden von")) } th scope="col" { (l.t("State", "Zustand")) }
                @if writable { th scope="col" { span.sr-only { (l.t("Actions", "Aktionen")) } } }
            } }
            tbody {
                @for a in &absences {
                    @let active = a.starts_at <= now;
                    tr {
                        td { @match &a.of {
                            AbsenceOf::User(n) => { (n) },
                            AbsenceOf::Device(n) => { (l.t("device", "Gerät")) " " (n) },
                        } }
                        td { (local(a.starts_at)) } td { (local(a.ends_at)) }
                        td { (if a.reason.is_empty() { "—" } else { a.reason.as_str() }) }
                        td { (actor_label(l, &a.created_by)) }
                        td { @if active { span.badge.status-revoked { (l.t("away now", "jetzt abwesend")) } } @else { (l.t("planned", "geplant")) } }
                        @if writable { td {
                            form.inline method="post" action={ "/absences/" (a.id) "/end" } {
                                (csrf_field(&ctx)) button type="submit" { @if active { (l.t("End now", "Jetzt beenden")) } @else { (l.t("Withdraw", "Zurückziehen")) } }
                            }
                        } }
                    }
                }
                @if absences.is_empty() { tr { td colspan="7" { (l.t("No absences entered.", "Keine Abwesenheiten eingetragen.")) } } }
            }
        } }
        h2 #signed-in-to-connect { (l.t("Signed in to connect", "Zum Verbinden angemeldet")) }
        p { (l.t("People in groups that require signing in to connect, whose sign-in lets their devices through now. Ending one cuts their devices off within a second, on every gateway.",
                 "Personen in Gruppen, die Anmelden zum Verbinden verlangen, deren Anmeldung ihre Geräte jetzt durchlässt. Beenden trennt ihre Geräte binnen einer Sekunde, auf jedem Gateway.")) }
        div.scroll { table #activations {
            thead { tr {
                th scope="col" { (l.t("Who", "Wer")) } th scope="col" { (l.t("Since", "Seit")) }
                th scope="col" { (l.t("Until", "Bis")) }
                @if writable { th scope="col" { span.sr-only { (l.t("Actions", "Aktionen")) } } }
            } }
            tbody {
                @for a in &activations { tr {
                    td { (a.user) } td { (local(a.starts_at)) } td { (local(a.ends_at)) }
                    @if writable { td {
                        form.inline method="post" action={ "/activations/" (super::urlpath(a.user.as_str())) "/end" } {
                            (csrf_field(&ctx)) button type="submit" { (l.t("End now", "Jetzt beenden")) }
                        }
                    } }
                } }
                @if activations.is_empty() { tr { td colspan="4" { (l.t("Nobody is signed in to connect.", "Niemand ist zum Verbinden angemeldet.")) } } }
            }
        } }
    };
    Ok(layout(&ctx, l.t("Absences", "Abwesenheiten"), content))
}

#[derive(Deserialize)]
pub(super) struct AbsenceForm {
    pub(super) kind: String,
    pub(super) name: String,
    pub(super) from: String,
    pub(super) until: String,
    pub(super) reason: Option<String>,
}

pub(super) async fn absence_create(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<AbsenceForm>,
) -> PanelResult {
    let caller = ctx.caller()?;
    let l = ctx.lang;
    let name = form_name(l.t("Name", "Name"), &f.name)?;
    let of = match f.kind.as_str() {
        "user" => AbsenceOf::User(name),
        "device" => AbsenceOf::Device(name),
        _ => {
            return Err(PanelError::BadRequest(
                l.t(
                    "Choose a person or a device.",
                    "Wählen Sie eine Person oder ein Gerät.",
                )
                .into(),
            ))
        }
    };
    st.service
        .add_absence(
            &caller,
            &AbsenceRequest {
                of,
                from: f.from,
                until: f.until,
                time_zone: String::new(),
                reason: given(&f.reason).unwrap_or("").to_string(),
            },
        )
        .await?;
    Ok(see_other("/absences"))
}

pub(super) async fn absence_end(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> PanelResult {
    st.service.end_absence(&ctx.caller()?, id).await?;
    Ok(see_other("/absences"))
}

/// Ends a person's activation now (sign in to connect).
pub(super) async fn activation_end(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PanelResult {
    let caller = ctx.caller()?;
    st.service
        .end_activation(&caller, &super::path_name(&name)?)
        .await?;
    Ok(see_other("/absences#signed-in-to-connect"))
}
