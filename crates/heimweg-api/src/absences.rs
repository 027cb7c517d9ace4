//! `/api/v1/absences`: a user's or a device's access suspended for a span (ORP.4.A6/A7); it
//! comes back by itself.

use crate::{name, ApiError, AppState, Caller};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use heimweg_service::{require_absence_writer, Absence, AbsenceOf, AbsenceRequest};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Serialize)]
pub(crate) struct AbsenceJson {
    id: i64,
    user: Option<String>,
    device: Option<String>,
    starts_at: i64,
    ends_at: i64,
    /// Whether it suspends access at this moment.
    active: bool,
    reason: String,
    created_by: String,
    created_at: i64,
}

impl AbsenceJson {
    fn of(a: Absence, now: i64) -> AbsenceJson {
        let (user, device) = match a.of {
            AbsenceOf::User(n) => (Some(n.to_string()), None),
            AbsenceOf::Device(n) => (None, Some(n.to_string())),
        };
        AbsenceJson {
            id: a.id,
            user,
            device,
            active: a.starts_at <= now && now < a.ends_at,
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            reason: a.reason,
            created_by: a.created_by,
            created_at: a.created_at,
        }
    }
}

pub(crate) async fn list(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = st.service.now();
    let items: Vec<AbsenceJson> = st
        .service
        .absences(&caller.0)
        .await?
        .into_iter()
        .map(|a| AbsenceJson::of(a, now))
        .collect();
    Ok(Json(json!({ "items": items, "total": items.len() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Create {
    user: Option<String>,
    device: Option<String>,
    from: String,
    until: String,
    #[serde(default)]
    time_zone: String,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn create(
    State(st): State<AppState>,
    caller: Caller,
    body: Result<Json<Create>, JsonRejection>,
) -> Result<(StatusCode, Json<AbsenceJson>), ApiError> {
    require_absence_writer(&caller.0)?;
    let Json(req) = body?;
    let of = match (&req.user, &req.device) {
        (Some(u), None) => AbsenceOf::User(name("user", u)?),
        (None, Some(d)) => AbsenceOf::Device(name("device", d)?),
        _ => {
            return Err(ApiError::BadRequest(
                "name either a user (all their devices) or one device".into(),
            ))
        }
    };
    let a = st
        .service
        .add_absence(
            &caller.0,
            &AbsenceRequest {
                of,
                from: req.from,
                until: req.until,
                time_zone: req.time_zone,
                reason: req.reason,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(AbsenceJson::of(a, st.service.now())),
    ))
}

/// Ends an absence now; one that has not begun is withdrawn.
pub(crate) async fn end(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<AbsenceJson>, ApiError> {
    let a = st.service.end_absence(&caller.0, id).await?;
    Ok(Json(AbsenceJson::of(a, st.service.now())))
}
