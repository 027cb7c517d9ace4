//! `/api/v1/users`: the staff who own devices, and disabling a leaver in one step;
//! `/api/v1/import/people`: a rollout's people list.

use crate::devices::DeviceJson;
use crate::{name, page_limit, path_name, ApiError, AppState, Caller};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use heimweg_control::Email;
use heimweg_control::{LinkHours, Scope};
use heimweg_service::{
    DeviceOutcome, ImportOptions, ImportedRow, PersonOutcome, RolloutRow, User, UserOutcome,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Serialize)]
pub(crate) struct UserJson {
    id: i64,
    name: String,
    email: Option<String>,
    created_at: i64,
    disabled_at: Option<i64>,
    active_devices: i64,
    from_directory: bool,
    group: Option<String>,
    from_provider: bool,
}

impl From<User> for UserJson {
    fn from(u: User) -> Self {
        UserJson {
            id: u.id,
            name: u.name.to_string(),
            email: u.email.map(|e| e.to_string()),
            created_at: u.created_at,
            disabled_at: u.disabled_at,
            active_devices: u.active_devices,
            from_directory: u.from_directory,
            group: u.group.map(|g| g.to_string()),
            from_provider: u.from_provider,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    search: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

pub(crate) async fn list(
    State(st): State<AppState>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.0.require(Scope::UsersRead)?;
    let Query(p) = params?;
    let limit = page_limit(p.limit)?;
    let offset = p.offset.unwrap_or(0);
    let page = st
        .service
        .users(&caller.0, p.search.as_deref(), limit, offset)
        .await?;
    let items: Vec<UserJson> = page.items.into_iter().map(Into::into).collect();
    Ok(Json(json!({
        "items": items, "total": page.total, "limit": limit, "offset": offset,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    name: String,
    email: Option<String>,
}

pub(crate) async fn create(
    State(st): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateUser>, JsonRejection>,
) -> Result<(StatusCode, Json<UserJson>), ApiError> {
    caller.0.require(Scope::UsersWrite)?;
    let Json(req) = body?;
    let name = name("name", &req.name)?;
    let email = req
        .email
        .as_deref()
        .map(Email::new)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("email: {e}")))?;
    let u = st
        .service
        .create_user(&caller.0, &name, email.as_ref())
        .await?;
    Ok((StatusCode::CREATED, Json(u.into())))
}

/// The user and their devices (all of them, newest first, up to 500), the devices only for
/// a caller that may see devices.
pub(crate) async fn show(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.0.require(Scope::UsersRead)?;
    let name = path_name("user", &name)?;
    let (user, devices) = st.service.user(&caller.0, &name).await?;
    let now = st.service.now();
    let devices = devices.map(|ds| {
        ds.into_iter()
            .map(|d| DeviceJson::new(d, now))
            .collect::<Vec<_>>()
    });
    Ok(Json(
        json!({ "user": UserJson::from(user), "devices": devices }),
    ))
}

/// Disables a user who left: all their devices are revoked at once.
pub(crate) async fn disable(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.0.require(Scope::UsersWrite)?;
    caller.0.require(Scope::DevicesWrite)?;
    let name = path_name("enabled user", &name)?;
    let revoked = st.service.disable_user(&caller.0, &name).await?;
    Ok(Json(json!({ "devices_revoked": revoked })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportParams {
    #[serde(default)]
    dry_run: bool,
    link_hours: Option<u32>,
    #[serde(default)]
    mail: bool,
}

/// A row's outcome as the report lists it.
fn row_json(r: &ImportedRow) -> serde_json::Value {
    let (user, device, reason) = match &r.outcome {
        PersonOutcome::Refused(why) => ("refused", "refused", Some(why.as_str())),
        PersonOutcome::Done { user, device } => (
            match user {
                UserOutcome::Created => "created",
                UserOutcome::Exists {
                    email_differs: true,
                } => "exists_email_differs",
                UserOutcome::Exists { .. } => "exists",
            },
            match device {
                DeviceOutcome::None => "none",
                DeviceOutcome::Invited(_) => "invited",
                DeviceOutcome::AlreadyInvited => "already_invited",
                DeviceOutcome::AlreadyEnrolled => "already_enrolled",
            },
            None,
        ),
    };
    json!({
        "line": r.line,
        "user": r.user.as_ref().map(ToString::to_string),
        "device": r.device.as_ref().map(ToString::to_string),
        "user_outcome": user,
        "device_outcome": device,
        "reason": reason,
    })
}

/// Imports a people list sent as the request body (CSV); see the OpenAPI document.
pub(crate) async fn import(
    State(st): State<AppState>,
    caller: Caller,
    params: Result<Query<ImportParams>, QueryRejection>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    caller.0.require(Scope::UsersWrite)?;
    caller.0.require(Scope::DevicesWrite)?;
    let Query(params) = params?;
    let options = ImportOptions {
        dry_run: params.dry_run,
        link_hours: LinkHours::new(params.link_hours.unwrap_or(168))
            .map_err(|e| ApiError::BadRequest(e.to_string()))?,
        mail: params.mail,
    };
    let report = st.service.import_people(&caller.0, &body, options).await?;
    let c = report.counts();
    let body = json!({
        "dry_run": report.dry_run,
        "counts": {
            "users_created": c.users_created, "invited": c.invited,
            "unchanged": c.unchanged, "refused": c.refused, "mailed": report.mailed,
        },
        "rows": report.rows.iter().map(row_json).collect::<Vec<_>>(),
        "invitations": report.invitations.iter().map(|i| json!({
            "user": i.user.to_string(),
            "email": i.email.as_ref().map(ToString::to_string),
            "device": i.device.to_string(),
            "group": i.group.to_string(),
            "path": format!("/enroll/{}", i.secret),
            "expires_at": i.expires_at,
        })).collect::<Vec<_>>(),
    });
    // The links' secrets are in the answer: no cache may keep it.
    let mut resp = (StatusCode::OK, Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `GET /api/v1/rollout`: every group's rollout and the total.
pub(crate) async fn rollout(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.0.require(Scope::DevicesRead)?;
    let rows = st.service.rollout(&caller.0).await?;
    let json_of = |group: Option<&str>, r: [i64; 6]| {
        json!({
            "group": group,
            "invited": r[0], "open_invitations": r[1], "expired_invitations": r[2],
            "enrolled": r[3], "connected_ever": r[4], "connected_this_week": r[5],
        })
    };
    let groups: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| json_of(Some(r.group.as_str()), rollout_numbers(r)))
        .collect();
    let total = rollout_total(&rows);
    let m = st.service.mail_counts().await?;
    Ok(Json(json!({
        "groups": groups,
        "total": json_of(None, total),
        "mail": { "queued": m.queued, "sending": m.sending, "sent": m.sent,
                  "failed": m.failed, "cancelled": m.cancelled },
    })))
}

#[derive(Deserialize)]
pub(crate) struct InvitationParams {
    limit: Option<u32>,
}

/// `GET /api/v1/invitations`: each invitation with its latest mail and how far its person got.
pub(crate) async fn invitations(
    State(st): State<AppState>,
    caller: Caller,
    params: Result<Query<InvitationParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    // The documented scope first, so that its refusal names it.
    caller.0.require(Scope::DevicesRead)?;
    caller.0.require(Scope::UsersRead)?;
    let Query(params) = params?;
    let limit = params.limit.unwrap_or(500).clamp(1, 10_000);
    let now = st.service.now();
    let items: Vec<serde_json::Value> = st
        .service
        .invitations(&caller.0, limit)
        .await?
        .into_iter()
        .map(|i| {
            let link = i.link_status(now);
            json!({
                "link_id": i.link_id, "user": i.user, "email": i.email, "device": i.device,
                "group": i.group, "link_status": link, "expires_at": i.expires_at,
                "opened_at": i.opened_at, "used_at": i.used_at,
                "last_handshake_at": i.last_handshake_at,
                "mail": i.mail.map(|m| json!({
                    "state": m.state.as_str(), "attempts": m.attempts,
                    "last_error": m.last_error, "sent_at": m.sent_at, "reminder": m.reminder,
                })),
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Remind {
    group: Option<String>,
    link_hours: Option<u32>,
}

/// `POST /api/v1/invitations/remind`: a new link by mail for everyone who has not set up.
pub(crate) async fn remind(
    State(st): State<AppState>,
    caller: Caller,
    body: Result<Json<Remind>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.0.require(Scope::DevicesWrite)?;
    caller.0.require(Scope::UsersWrite)?;
    let Json(req) = body?;
    let group = req.group.as_deref().map(|g| name("group", g)).transpose()?;
    let hours = LinkHours::new(req.link_hours.unwrap_or(168))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let r = st.service.remind(&caller.0, group.as_ref(), hours).await?;
    Ok(Json(json!({
        "queued": r.queued, "without_address": r.without_address, "pending": r.pending,
    })))
}

/// The groups' figures added up, in the same order.
pub(crate) fn rollout_total(rows: &[RolloutRow]) -> [i64; 6] {
    let mut total = [0i64; 6];
    for r in rows {
        for (t, v) in total.iter_mut().zip(rollout_numbers(r)) {
            *t += v;
        }
    }
    total
}

/// A group's figures in the order the view shows them.
pub(crate) fn rollout_numbers(r: &RolloutRow) -> [i64; 6] {
    [
        r.invited,
        r.open_invitations,
        r.expired_invitations,
        r.enrolled,
        r.connected_ever,
        r.connected_recently,
    ]
}
