//! `/api/v1/users`: the staff who own devices, and disabling a leaver in one step.

use crate::devices::DeviceJson;
use crate::{now, page_limit, ApiError, AppState, Caller};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use heimweg_store::{DeviceQuery, User};
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
            name: u.name,
            email: u.email,
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
    caller.require("users:read")?;
    let Query(p) = params?;
    let limit = page_limit(p.limit)?;
    let offset = p.offset.unwrap_or(0);
    let page = st
        .store
        .users(p.search.as_deref(), limit, offset, now())
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
    caller.require("users:write")?;
    let Json(req) = body?;
    let u = st
        .store
        .create_user(&caller.actor(), &req.name, req.email.as_deref(), now())
        .await?;
    Ok((StatusCode::CREATED, Json(u.into())))
}

/// The user and their devices (all of them, newest first, up to 500).
pub(crate) async fn show(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require("users:read")?;
    let now = now();
    let user = st.store.user(&name, now).await?;
    let devices = if caller.has("devices:read") {
        let page = st
            .store
            .devices(
                &DeviceQuery {
                    owner: Some(name),
                    limit: 500,
                    ..Default::default()
                },
                now,
            )
            .await?;
        Some(
            page.items
                .into_iter()
                .map(DeviceJson::from)
                .collect::<Vec<_>>(),
        )
    } else {
        None
    };
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
    caller.require("users:write")?;
    caller.require("devices:write")?;
    let revoked = st.store.disable_user(&caller.actor(), &name, now()).await?;
    Ok(Json(json!({ "devices_revoked": revoked })))
}
