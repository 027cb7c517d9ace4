//! `/api/v1/users`: the staff who own devices, and disabling a leaver in one step.

use crate::devices::DeviceJson;
use crate::{name, page_limit, path_name, ApiError, AppState, Caller};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use heimweg_control::Email;
use heimweg_control::Scope;
use heimweg_service::User;
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
