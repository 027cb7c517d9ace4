//! The overview page and the audit log: what happened, by whom, for people.

use super::{given, layout, timestamp, Ctx, Lang, PanelResult, CONNECTED_SECS};
use crate::AppState;
use axum::extract::{Query, State};
use heimweg_control::{human_bytes, AuditAction, RecordedActor, RequestStatus};
use heimweg_service::AuditEntry;
use maud::{html, Markup};
use serde::Deserialize;

pub(super) async fn overview(State(st): State<AppState>, ctx: Ctx) -> PanelResult {
    let caller = ctx.caller()?;
    let l = ctx.lang;
    let counts = st.service.device_counts(&caller, CONNECTED_SECS).await?;
    let pending = st
        .service
        .requests(&caller, Some(RequestStatus::Pending), 500)
        .await?
        .len();
    let events = st.service.audit_log(&caller, 12).await?;
    let live = st.live.as_ref().map(|l| l.totals());
    let (_, due) = st.service.review_due(&caller).await?;
    let s = ctx.admin()?;
    let content = html! {
        @if s.admin.totp_sealed.is_none() {
            p.notice.warn { (l.t("Your account has no second factor yet.", "Ihr Konto hat noch keinen zweiten Faktor.")) " " a href="/account" { (l.t("Set it up now", "Jetzt einrichten")) } }
        }
        @if pending > 0 {
            p.notice.warn { a href="/requests" { (pending) " " (l.t("access requests are waiting for a decision", "Zugangsanfragen warten auf eine Entscheidung")) } }
        }
        @if !due.is_empty() {
            p.notice.warn #review-notice { a href="/review" { (due.len()) " " (l.t("devices not seen for a long time lose their access within a week", "lange nicht gesehene Geräte verlieren binnen einer Woche ihren Zugang")) } }
        }
        div.cards {
            div.stat { span.value #connected { (counts.connected) } span.label { (l.t("devices connected now", "Geräte jetzt verbunden")) } }
            div.stat { span.value { (counts.active) } span.label { (l.t("devices enrolled", "Geräte eingerichtet")) } }
            @if let Some(t) = &live {
                @match t.per_minute {
                    Some((rx, tx, hs)) => {
                        div.stat { span.value { (format!("{:.0}", hs)) } span.label { (l.t("handshakes per minute", "Handshakes pro Minute")) } }
                        div.stat { span.value { (human_bytes(rx as u64)) " / " (human_bytes(tx as u64)) } span.label { (l.t("in / out per minute", "rein / raus pro Minute")) } }
                    }
                    None => {
                        div.stat { span.value { "…" } span.label { (l.t("rates appear after a minute", "Raten erscheinen nach einer Minute")) } }
                    }
                }
                div.stat { span.value { (human_bytes(t.rx_bytes)) " / " (human_bytes(t.tx_bytes)) } span.label { (l.t("in / out since start", "rein / raus seit Start")) } }
            }
        }
        h2 { (l.t("Recent events", "Letzte Ereignisse")) }
        (audit_table(l, &events))
        p { a href="/audit" { (l.t("The whole audit log", "Das ganze Protokoll")) } }
    };
    Ok(layout(&ctx, l.t("Overview", "Übersicht"), content))
}

/// What an audit action means, for people; the action code stays visible beside it for
/// searching and for the API, which reports codes.
fn action_label(l: Lang, action: AuditAction) -> &'static str {
    use AuditAction as A;
    match action {
        A::DeviceCreate => l.t("device enrolled", "Gerät eingerichtet"),
        A::DeviceRevoke => l.t("device revoked", "Gerät gesperrt"),
        A::DeviceRotate => l.t("key renewed", "Schlüssel erneuert"),
        A::DeviceUpdate => l.t("device changed", "Gerät geändert"),
        A::DeviceSharedKey => l.t(
            "key used on two devices at once",
            "Schlüssel auf zwei Geräten zugleich benutzt",
        ),
        A::GroupCreate => l.t("group created", "Gruppe angelegt"),
        A::GroupUpdate => l.t("access policy changed", "Zugriff geändert"),
        A::AbsenceCreate => l.t("absence entered", "Abwesenheit eingetragen"),
        A::AbsenceEnd => l.t("absence ended", "Abwesenheit beendet"),
        A::ActivationStart => l.t("signed in to connect", "zum Verbinden angemeldet"),
        A::ActivationEnd => l.t("connection time ended", "Verbindungszeit beendet"),
        A::UserCreate => l.t("user created", "Person angelegt"),
        A::UserDisable => l.t(
            "user disabled, devices revoked",
            "Person deaktiviert, Geräte gesperrt",
        ),
        A::UserEnable => l.t("user enabled again", "Person wieder freigeschaltet"),
        A::UserUpdate => l.t("user changed", "Person geändert"),
        A::UserSignIn => l.t(
            "signed in on the staff page",
            "auf der Mitarbeitendenseite angemeldet",
        ),
        A::DirectorySync => l.t("directory synchronised", "Verzeichnis abgeglichen"),
        A::LinkCreate => l.t("enrollment link created", "Einrichtungslink erstellt"),
        A::LinkRevoke => l.t(
            "enrollment link withdrawn",
            "Einrichtungslink zurückgezogen",
        ),
        A::LinkRemind => l.t(
            "reminder mailed with a new link",
            "Erinnerung mit neuem Link verschickt",
        ),
        A::RequestCreate => l.t("access requested", "Zugang angefragt"),
        A::RequestApprove => l.t("request approved", "Anfrage zugesagt"),
        A::RequestReject => l.t("request declined", "Anfrage abgelehnt"),
        A::TokenCreate => l.t("API token created", "API-Token erstellt"),
        A::TokenRevoke => l.t("API token revoked", "API-Token widerrufen"),
        A::SettingsEndpoint => l.t("endpoint set", "Endpunkt gesetzt"),
        A::SettingsReview => l.t("access review set", "Zugangsüberprüfung eingestellt"),
        A::Init => l.t("database created", "Datenbank angelegt"),
        A::AdminCreate => l.t("panel account created", "Panel-Konto angelegt"),
        A::AdminDisable => l.t("panel account disabled", "Panel-Konto deaktiviert"),
        A::AdminLogin => l.t("logged in", "angemeldet"),
        A::AdminRole => l.t(
            "role set by the identity provider",
            "Rolle vom Anmeldedienst gesetzt",
        ),
        A::AdminLock => l.t("account locked", "Konto gesperrt"),
        A::AdminUnlock => l.t("account unlocked", "Konto entsperrt"),
        A::AdminPassword => l.t("password changed", "Passwort geändert"),
        A::AdminTotpOn => l.t("second factor on", "zweiter Faktor an"),
        A::AdminTotpOff => l.t("second factor off", "zweiter Faktor aus"),
        A::UserTotpOn => l.t(
            "set up the second factor for the staff page",
            "zweiten Faktor für die Mitarbeitendenseite eingerichtet",
        ),
        A::UserTotpReset => l.t(
            "reset the staff member's second factor",
            "zweiten Faktor der Person zurückgesetzt",
        ),
        A::UserLock => l.t(
            "staff sign-in locked after wrong codes",
            "Anmeldung nach falschen Codes gesperrt",
        ),
    }
}

/// Who made a change, for people: "alice", "enrollment link 2 (from alice)", "Petra Schulz
/// (access request)". The audit log keeps the exact actor; the API reports it unchanged.
pub(crate) fn actor_label(l: Lang, actor: &str) -> String {
    let name = |a: &str| match RecordedActor::parse(a) {
        RecordedActor::Admin(n) => n.to_string(),
        _ => a.to_string(),
    };
    match RecordedActor::parse(actor) {
        RecordedActor::Link { id, created_by } => match l {
            Lang::En => format!("enrollment link {id} (from {})", name(created_by)),
            Lang::De => format!("Einrichtungslink {id} (von {})", name(created_by)),
        },
        RecordedActor::Requester(who) => {
            format!("{who} ({})", l.t("access request", "Zugangsanfrage"))
        }
        RecordedActor::Token(token) => format!("{} {token}", l.t("API token", "API-Token")),
        RecordedActor::Cli(user) => format!("{} ({user})", l.t("command line", "Kommandozeile")),
        RecordedActor::Admin(n) => n.to_string(),
        RecordedActor::System => "system".into(),
        RecordedActor::Panel => "panel".into(),
        RecordedActor::Directory => l.t("directory sync", "Verzeichnisabgleich").into(),
        RecordedActor::Staff(who) => {
            format!("{who} ({})", l.t("staff page", "Mitarbeitendenseite"))
        }
        RecordedActor::Other(a) => a.to_string(),
    }
}

pub(crate) fn audit_table(l: Lang, entries: &[AuditEntry]) -> Markup {
    html! {
        div.scroll { table {
            thead { tr {
                th scope="col" { (l.t("When", "Wann")) }
                th scope="col" { (l.t("Who", "Wer")) }
                th scope="col" { (l.t("What", "Was")) }
                th scope="col" { (l.t("Subject", "Betreff")) }
                th scope="col" { (l.t("Details", "Details")) }
            } }
            tbody {
                @for e in entries {
                    tr {
                        td { (timestamp(e.at)) }
                        td { (actor_label(l, &e.actor)) }
                        td { (action_label(l, e.action)) " " code.hint { (e.action) } }
                        td { (e.subject) }
                        td { (e.detail) }
                    }
                }
                @if entries.is_empty() { tr { td colspan="5" { (l.t("Nothing yet.", "Noch nichts.")) } } }
            }
        } }
    }
}

#[derive(Deserialize, Default)]
pub(super) struct AuditParams {
    pub(super) subject: Option<String>,
    pub(super) page: Option<u32>,
}

pub(super) async fn audit(
    State(st): State<AppState>,
    ctx: Ctx,
    Query(q): Query<AuditParams>,
) -> PanelResult {
    let caller = ctx.caller()?;
    let l = ctx.lang;
    let page = q.page.unwrap_or(1).max(1);
    let per_page = 100;
    let entries = st
        .service
        .audit_entries(
            &caller,
            given(&q.subject),
            per_page,
            (page - 1).saturating_mul(per_page),
        )
        .await?;
    let pages = entries.total.div_ceil(u64::from(per_page)).max(1);
    let link = |p: u32| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if let Some(v) = given(&q.subject) {
            s.append_pair("subject", v);
        }
        s.append_pair("page", &p.to_string());
        format!("/audit?{}", s.finish())
    };
    let content = html! {
        form.filters method="get" action="/audit" {
            div { label for="subject" { (l.t("Only about (device, user, group name)", "Nur zu (Gerät, Person, Gruppe)")) } input id="subject" name="subject" value=[given(&q.subject)]; }
            div { button type="submit" { (l.t("Show", "Anzeigen")) } }
        }
        (audit_table(l, &entries.items))
        @if pages > 1 {
            nav.pager aria-label=(l.t("Pages", "Seiten")) {
                @if page > 1 { a rel="prev" href=(link(page - 1)) { "← " (l.t("Newer", "Neuer")) } }
                span { (l.t("Page", "Seite")) " " (page) " / " (pages) }
                @if u64::from(page) < pages { a rel="next" href=(link(page + 1)) { (l.t("Older", "Älter")) " →" } }
            }
        }
    };
    Ok(layout(&ctx, l.t("Audit log", "Protokoll"), content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_read_as_people_and_sources() {
        assert_eq!(actor_label(Lang::En, "admin:alice"), "alice");
        assert_eq!(
            actor_label(Lang::En, "link:2:admin:alice"),
            "enrollment link 2 (from alice)"
        );
        assert_eq!(
            actor_label(Lang::De, "request:Petra Schulz"),
            "Petra Schulz (Zugangsanfrage)"
        );
        assert_eq!(actor_label(Lang::En, "token:ci"), "API token ci");
        assert_eq!(actor_label(Lang::En, "cli:root"), "command line (root)");
        assert_eq!(actor_label(Lang::En, "panel"), "panel");
    }
}
