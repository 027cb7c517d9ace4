//! `/api/v1/directory`: the directory sync's settings and runs, and a run on demand.

use crate::{ApiError, AppState, Caller};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use heimweg_control::Scope;
use heimweg_service::{
    DirectoryPreview, DirectoryRun, DirectorySettings, DisabledRule, LdapSecurity,
};
use serde::Deserialize;
use serde_json::{json, Value};

pub(crate) fn run_json(r: &DirectoryRun) -> Value {
    json!({
        "id": r.id, "started_at": r.started_at, "finished_at": r.finished_at,
        "requested_by": r.requested_by, "outcome": r.outcome, "entries": r.entries,
        "created": r.created, "changed": r.changed, "disabled": r.disabled,
        "enabled": r.enabled, "skipped": r.skipped, "message": r.message,
    })
}

/// What is set, without the password (whether one is set is all it says).
pub(crate) fn settings_json(s: &DirectorySettings) -> Value {
    json!({
        "url": s.url,
        "security": match s.security {
            LdapSecurity::StartTls => "starttls",
            LdapSecurity::Tls => "tls",
            LdapSecurity::None => "none",
        },
        "own_ca": s.ca_pem.is_some(),
        "bind_dn": s.bind.as_ref().map(|b| &b.0),
        "base": s.base, "filter": s.filter,
        "login_attribute": s.login_attribute, "mail_attribute": s.mail_attribute,
        "id_attribute": s.id_attribute,
        "disabled": match &s.disabled {
            DisabledRule::AccountDisable => "userAccountControl bit 2 (ACCOUNTDISABLE)".to_string(),
            DisabledRule::Attribute { name, value: Some(v) } => format!("{name}={v}"),
            DisabledRule::Attribute { name, value: None } => format!("{name} present"),
        },
        "groups": s.groups.entries().iter().map(|(dn, group)| json!({
            "group": group.as_str(), "directory_group": dn.to_string(),
        })).collect::<Vec<_>>(),
        "interval_seconds": s.interval.as_secs(),
        "max_disable_percent": s.policy.max_disable_percent,
        "reenable": s.policy.reenable,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunParams {
    limit: Option<u32>,
}

/// `GET /api/v1/directory`: the settings (null when no directory is connected) and the
/// latest runs.
pub(crate) async fn show(
    State(st): State<AppState>,
    caller: Caller,
    params: Result<Query<RunParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.0.require(Scope::UsersRead)?;
    let Query(params) = params?;
    let runs = st
        .service
        .directory_runs(&caller.0, params.limit.unwrap_or(50).clamp(1, 500))
        .await?;
    Ok(Json(json!({
        "settings": st.service.directory().map(settings_json),
        "runs": runs.iter().map(run_json).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SyncParams {
    dry_run: Option<bool>,
}

/// `POST /api/v1/directory/sync`: reads the directory now and applies it; the run, whatever
/// its outcome (ok, refused, failed). With `dry_run=true`, what a run would do, and nothing
/// changed or recorded.
pub(crate) async fn sync(
    State(st): State<AppState>,
    caller: Caller,
    params: Result<Query<SyncParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    // The documented scope first, so that its refusal names it.
    caller.0.require(Scope::UsersWrite)?;
    caller.0.require(Scope::DevicesWrite)?;
    let Query(params) = params?;
    if params.dry_run == Some(true) {
        let preview = st.service.preview_directory(&caller.0).await?;
        return Ok(Json(preview_json(&preview)));
    }
    let run = st.service.sync_directory(&caller.0).await?;
    Ok(Json(run_json(&run)))
}

fn preview_json(p: &DirectoryPreview) -> Value {
    match p {
        DirectoryPreview::Plan(plan) => json!({
            "dry_run": true, "outcome": "ok", "entries": plan.entries, "users": plan.eligible,
            "create": plan.create.iter().map(|u| json!({
                "name": u.name.as_str(), "group": u.group.as_str(),
                "email": u.email.as_ref().map(|e| e.as_str()),
            })).collect::<Vec<_>>(),
            "change": plan.change.iter().map(|c| json!({
                "name": c.name.as_str(), "linked": c.link.is_some(),
                "rename": c.rename.as_ref().map(|n| n.as_str()),
                "email": c.email.as_ref().and_then(|e| e.as_ref().map(|e| e.as_str())),
                "group": c.group.as_ref().map(|g| g.as_str()),
            })).collect::<Vec<_>>(),
            "disable": plan.disable.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(),
            "enable": plan.enable.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(),
            "skipped": plan.skipped,
        }),
        DirectoryPreview::Refused(r) => json!({
            "dry_run": true, "outcome": "refused", "message": r.to_string(),
            "would_disable": r.would,
        }),
        DirectoryPreview::Failed(why) => json!({
            "dry_run": true, "outcome": "failed", "message": why,
        }),
    }
}
