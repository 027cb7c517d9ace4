//! The rollout view: per group and in total how far its people got, the invitation mails by
//! state, one click to remind everyone who has not set up, and the list per person.

use super::{
    csrf_field, group_select, layout, link_hours, notice, see_other, timestamp, urlpath, Ctx, Lang,
    PanelResult,
};
use crate::AppState;
use axum::extract::{Query, State};
use axum::Form;
use heimweg_control::{LinkStatus, Name};
use heimweg_service::{InvitationStatus, MailCounts, MailState};
use maud::{html, Markup};
use serde::Deserialize;

/// People listed on the page; the API and the command line give more.
const LISTED: u32 = 500;

#[derive(Deserialize)]
pub(super) struct Shown {
    reminded: Option<usize>,
    without_address: Option<usize>,
}

pub(super) async fn rollout(
    State(st): State<AppState>,
    ctx: Ctx,
    Query(shown): Query<Shown>,
) -> PanelResult {
    let l = ctx.lang;
    let caller = ctx.caller()?;
    let rows = st.service.rollout(&caller).await?;
    let mail = st.service.mail_counts().await?;
    let people = st.service.invitations(&caller, LISTED).await?;
    let now = st.service.now();
    let total = crate::users::rollout_total(&rows);
    let heads = [
        l.t("Invited", "Eingeladen"),
        l.t("Link open", "Link offen"),
        l.t("Link expired unused", "Link ungenutzt abgelaufen"),
        l.t("Devices set up", "Geräte eingerichtet"),
        l.t("Connected at least once", "Mindestens einmal verbunden"),
        l.t("Connected this week", "Diese Woche verbunden"),
    ];
    let content = html! {
        @if let Some(n) = shown.reminded {
            (notice("ok", &format!("{n} {} {} {}", l.t("reminders queued;", "Erinnerungen in der Warteschlange;"), shown.without_address.unwrap_or(0), l.t("people without a mail address need another way (Links).", "Personen ohne E-Mail-Adresse brauchen einen anderen Weg (Links)."))))
        }
        div.scroll { table #rollout {
            thead { tr { th scope="col" { (l.t("Group", "Gruppe")) } @for h in heads { th scope="col" { (h) } } } }
            tbody {
                @for r in &rows { tr {
                    td { a href={ "/groups/" (urlpath(r.group.as_str())) } { (r.group) } }
                    @for n in crate::users::rollout_numbers(r) { td { (n) } }
                } }
                tr.total { th scope="row" { (l.t("Total", "Gesamt")) } @for n in total { td { strong { (n) } } } }
            }
        } }
        (mail_line(l, mail, st.service.mail_enabled()))
        @if ctx.may_change() {
            (remind_form(&st, &ctx).await?)
        }
        h2 { (l.t("Per person", "Nach Person")) }
        (people_table(l, &people, now))
    };
    Ok(layout(&ctx, l.t("Rollout", "Einführung"), content))
}

fn mail_line(l: Lang, m: MailCounts, enabled: bool) -> Markup {
    html! {
        p #mail-queue {
            strong { (l.t("Invitation mails:", "Einladungs-E-Mails:")) } " "
            (m.sent) " " (l.t("sent", "verschickt")) ", "
            (m.queued + m.sending) " " (l.t("waiting", "wartend")) ", "
            (m.failed) " " (l.t("failed", "fehlgeschlagen")) ", "
            (m.cancelled) " " (l.t("cancelled (link used or withdrawn first)", "entfallen (Link vorher genutzt oder zurückgezogen)")) "."
            @if !enabled { " " (l.t("This gateway sends no mail (HEIMWEG_SMTP_HOST is not set).", "Dieses Gateway verschickt keine E-Mails (HEIMWEG_SMTP_HOST ist nicht gesetzt).")) }
        }
    }
}

async fn remind_form(st: &AppState, ctx: &Ctx) -> Result<Markup, super::PanelError> {
    let l = ctx.lang;
    let groups = group_select(st, ctx, "remind-group", "").await?;
    Ok(html! {
        form.card #remind method="post" action="/rollout/remind" data-confirm=(l.t("Mail a new link to everyone who has not set up their device? Their earlier links stop working.", "Allen, die ihr Gerät noch nicht eingerichtet haben, einen neuen Link schicken? Ihre früheren Links gelten dann nicht mehr.")) {
            (csrf_field(ctx))
            p { (l.t("Remind everyone whose invitation is unused (open or expired) and who has a mail address: each gets a mail with a new link, and the earlier link stops working.",
                     "Alle erinnern, deren Einladung ungenutzt ist (offen oder abgelaufen) und die eine E-Mail-Adresse haben: jede Person bekommt eine E-Mail mit einem neuen Link, der frühere gilt nicht mehr.")) }
            label.check { input type="checkbox" name="only_group" value="1"; " " (l.t("only the group", "nur die Gruppe")) }
            (groups)
            label for="remind-hours" { (l.t("Links stay open for hours", "Links bleiben offen für Stunden")) }
            input #remind-hours name="expires_in_hours" type="number" min="1" max="720" value="168";
            button type="submit" { (l.t("Remind by mail", "Per E-Mail erinnern")) }
        }
    })
}

fn people_table(l: Lang, people: &[InvitationStatus], now: i64) -> Markup {
    let yes = |at: Option<i64>| at.map_or_else(|| "—".to_string(), timestamp);
    html! {
        div.scroll { table #invitations {
            thead { tr {
                th scope="col" { (l.t("Person", "Person")) } th scope="col" { (l.t("E-mail", "E-Mail")) }
                th scope="col" { (l.t("Device", "Gerät")) } th scope="col" { (l.t("Group", "Gruppe")) }
                th scope="col" { (l.t("Mail", "E-Mail-Versand")) } th scope="col" { (l.t("Link opened", "Link geöffnet")) }
                th scope="col" { (l.t("Set up", "Eingerichtet")) } th scope="col" { (l.t("Last connected", "Zuletzt verbunden")) }
            } }
            tbody { @for i in people { tr {
                td { (i.user.as_ref().map_or("—", Name::as_str)) }
                td { (i.email.as_deref().unwrap_or("—")) }
                td { (i.device) }
                td { (i.group) }
                td { (mail_cell(l, i, now)) }
                td { (yes(i.opened_at)) }
                td { (yes(i.used_at)) }
                td { (yes(i.last_handshake_at)) }
            } } }
        } }
        @if people.is_empty() { p { (l.t("No invitations yet: Users → Import.", "Noch keine Einladungen: Personen → Importieren.")) } }
    }
}

fn mail_cell(l: Lang, i: &InvitationStatus, now: i64) -> Markup {
    let link = i.link_status(now);
    html! {
        @match &i.mail {
            None => { (l.t("not mailed", "nicht gemailt")) }
            Some(m) => {
                @let (class, label) = match m.state {
                    MailState::Sent => ("active", l.t("sent", "verschickt")),
                    MailState::Queued | MailState::Sending => ("link-used", l.t("waiting", "wartet")),
                    MailState::Failed => ("revoked", l.t("failed", "fehlgeschlagen")),
                    MailState::Cancelled => ("link-used", l.t("cancelled", "entfallen")),
                };
                span class={ "badge " (class) } { (label) }
                @if m.reminder { " " (l.t("(reminder)", "(Erinnerung)")) }
                @if m.state != MailState::Sent { @if let Some(e) = &m.last_error { br; small { (e) } } }
            }
        }
        @if link == LinkStatus::Expired { br; small { (l.t("link expired", "Link abgelaufen")) } }
    }
}

#[derive(Deserialize)]
pub(super) struct RemindForm {
    only_group: Option<String>,
    group: Option<String>,
    expires_in_hours: Option<String>,
}

pub(super) async fn remind(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<RemindForm>,
) -> PanelResult {
    let l = ctx.lang;
    let group = match (&f.only_group, &f.group) {
        (Some(_), Some(g)) => Some(super::form_name(l.t("group", "Gruppe"), g)?),
        _ => None,
    };
    let hours = link_hours(l, &f.expires_in_hours)?;
    let r = st
        .service
        .remind(&ctx.caller()?, group.as_ref(), hours)
        .await?;
    Ok(see_other(&format!(
        "/rollout?reminded={}&without_address={}",
        r.queued, r.without_address
    )))
}
