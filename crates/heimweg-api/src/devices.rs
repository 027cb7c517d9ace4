//! `/api/v1/devices`: enroll, list, show, change, rotate the key of, and revoke devices.

use crate::service::{self, EnrollRequest};
use crate::{created_secret, double_option, now, page_limit, ApiError, AppState, Caller};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use heimweg_control::{qr::Qr, PublicKey};
use heimweg_store::{Device, DeviceQuery, DeviceUpdate};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Serialize)]
pub(crate) struct DeviceJson {
    id: i64,
    name: String,
    public_key: String,
    group: String,
    owner: Option<String>,
    ipv4: String,
    ipv6: String,
    status: &'static str,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    last_handshake_at: Option<i64>,
    last_endpoint: Option<String>,
    key_rotated_at: Option<i64>,
}

impl From<Device> for DeviceJson {
    fn from(d: Device) -> Self {
        let status = d.status(now());
        DeviceJson {
            id: d.id,
            name: d.name,
            public_key: d.public_key.to_base64(),
            group: d.group,
            owner: d.owner,
            ipv4: d.ipv4.to_string(),
            ipv6: d.ipv6.to_string(),
            status,
            created_at: d.created_at,
            expires_at: d.expires_at,
            revoked_at: d.revoked_at,
            last_handshake_at: d.last_handshake_at,
            last_endpoint: d.last_endpoint,
            key_rotated_at: d.key_rotated_at,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    search: Option<String>,
    group: Option<String>,
    owner: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

pub(crate) async fn list(
    State(st): State<AppState>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require("devices:read")?;
    let Query(p) = params?;
    let limit = page_limit(p.limit)?;
    let status = p.status.as_deref().map(str::parse).transpose()?;
    let offset = p.offset.unwrap_or(0);
    let page = st
        .store
        .devices(
            &DeviceQuery {
                search: p.search,
                group: p.group,
                owner: p.owner,
                status,
                limit,
                offset,
            },
            now(),
        )
        .await?;
    let items: Vec<DeviceJson> = page.items.into_iter().map(DeviceJson::from).collect();
    Ok(Json(json!({
        "items": items,
        "total": page.total,
        "limit": limit,
        "offset": offset,
    })))
}

pub(crate) async fn show(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<DeviceJson>, ApiError> {
    caller.require("devices:read")?;
    let d = st.store.device_by_name(&name).await?;
    Ok(Json(d.into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateDevice {
    name: String,
    #[serde(default = "default_group")]
    group: String,
    owner: Option<String>,
    public_key: Option<String>,
    expires_in_days: Option<u32>,
}

pub(crate) fn default_group() -> String {
    "default".into()
}

pub(crate) async fn create(
    State(st): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateDevice>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require("devices:write")?;
    let Json(req) = body?;
    let public_key = parse_key(req.public_key.as_deref())?;
    let enrolled = service::enroll(
        &st.store,
        st.gateway_key,
        &caller.actor(),
        EnrollRequest {
            name: req.name,
            group: req.group,
            owner: req.owner,
            public_key,
            expires_in_days: req.expires_in_days,
        },
        now(),
    )
    .await?;
    Ok(config_response(&st, enrolled).await)
}

/// The one response that carries a config: the device, the config text, QR code and iOS
/// profile, never cached.
async fn config_response(st: &AppState, enrolled: service::Enrollment) -> Response {
    let qr_svg = Qr::encode(&enrolled.config).ok().map(|q| q.to_svg());
    let mobileconfig = service::mobileconfig(&st.store, &enrolled).await;
    created_secret(json!({
        "device": DeviceJson::from(enrolled.device),
        "config": enrolled.config,
        "config_contains_private_key": enrolled.has_private_key,
        "file_name": enrolled.file_name,
        "qr_svg": qr_svg,
        "mobileconfig": mobileconfig,
    }))
}

pub(crate) async fn revoke(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require("devices:write")?;
    st.store
        .revoke_device(&caller.actor(), &name, now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn parse_key(key: Option<&str>) -> Result<Option<PublicKey>, ApiError> {
    key.map(str::parse::<PublicKey>)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("public_key: {e}")))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rotate {
    public_key: Option<String>,
}

/// New key pair (or the device's own new public key); the response carries the new config.
pub(crate) async fn rotate(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    caller.require("devices:write")?;
    let req: Rotate = crate::optional_body(&body)?;
    let public_key = parse_key(req.public_key.as_deref())?;
    let rotated = service::rotate(
        &st.store,
        st.gateway_key,
        &caller.actor(),
        &name,
        public_key,
        now(),
    )
    .await?;
    Ok(config_response(&st, rotated).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Update {
    group: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    owner: Option<Option<String>>,
    /// Unix seconds, or null for never.
    #[serde(default, deserialize_with = "double_option")]
    expires_at: Option<Option<i64>>,
}

pub(crate) async fn update(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<Update>, JsonRejection>,
) -> Result<Json<DeviceJson>, ApiError> {
    caller.require("devices:write")?;
    let Json(u) = body?;
    let d = st
        .store
        .update_device(
            &caller.actor(),
            &name,
            DeviceUpdate {
                group: u.group,
                owner: u.owner,
                expires_at: u.expires_at,
            },
            now(),
        )
        .await?;
    Ok(Json(d.into()))
}
