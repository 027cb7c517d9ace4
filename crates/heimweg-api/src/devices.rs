//! `/api/v1/devices`: enroll, list, show, change, rotate the key of, and revoke devices;
//! `/api/v1/mdm/profiles`: new keys and Apple profiles for many devices at once.

use crate::{
    created_secret, double_option, name, page_limit, path_name, ApiError, AppState, Caller,
};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use heimweg_control::mobileconfig::ApplePlatform;
use heimweg_control::Scope;
use heimweg_control::{qr::Qr, DeviceStatus, ExpiryDays, PublicKey, OWN_KEY_STEPS};
use heimweg_service::{Device, DeviceQuery, DeviceUpdate, EnrollRequest, Enrollment, MdmExport};
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
    status: DeviceStatus,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    last_handshake_at: Option<i64>,
    last_endpoint: Option<String>,
    key_rotated_at: Option<i64>,
    shared_key_at: Option<i64>,
}

impl DeviceJson {
    pub(crate) fn new(d: Device, now: i64) -> Self {
        let status = d.status(now);
        DeviceJson {
            id: d.id,
            name: d.name.to_string(),
            public_key: d.public_key.to_base64(),
            group: d.group.to_string(),
            owner: d.owner.map(|o| o.to_string()),
            ipv4: d.ipv4.to_string(),
            ipv6: d.ipv6.to_string(),
            status,
            created_at: d.created_at,
            expires_at: d.expires_at,
            revoked_at: d.revoked_at,
            last_handshake_at: d.last_handshake_at,
            last_endpoint: d.last_endpoint,
            key_rotated_at: d.key_rotated_at,
            shared_key_at: d.shared_key_at,
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
    caller.0.require(Scope::DevicesRead)?;
    let Query(p) = params?;
    let limit = page_limit(p.limit)?;
    let status = p
        .status
        .as_deref()
        .map(str::parse::<DeviceStatus>)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let offset = p.offset.unwrap_or(0);
    let q = DeviceQuery {
        search: p.search,
        group: p.group,
        owner: p.owner,
        status,
        limit,
        offset,
    };
    let page = st.service.devices(&caller.0, &q).await?;
    let now = st.service.now();
    let items: Vec<DeviceJson> = page
        .items
        .into_iter()
        .map(|d| DeviceJson::new(d, now))
        .collect();
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
    caller.0.require(Scope::DevicesRead)?;
    let d = st
        .service
        .device(&caller.0, &path_name("device", &name)?)
        .await?;
    Ok(Json(DeviceJson::new(d, st.service.now())))
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
    caller.0.require(Scope::DevicesWrite)?;
    let Json(req) = body?;
    let request = EnrollRequest {
        name: name("name", &req.name)?,
        group: name("group", &req.group)?,
        owner: req.owner.as_deref().map(|o| name("owner", o)).transpose()?,
        public_key: parse_key(req.public_key.as_deref())?,
        expires_in: req
            .expires_in_days
            .map(ExpiryDays::new)
            .transpose()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?,
    };
    let enrolled = st.service.enroll(&caller.0, request).await?;
    Ok(config_response(&st, enrolled))
}

/// The one response that carries a config: the device, the config text, QR code and iOS
/// profile, never cached.
fn config_response(st: &AppState, enrolled: Enrollment) -> Response {
    // A template without its private key is no config an app can import from a QR code.
    let qr_svg = enrolled
        .has_private_key
        .then(|| Qr::encode(&enrolled.config).ok().map(|q| q.to_svg()))
        .flatten();
    let next_step = (!enrolled.has_private_key).then_some(OWN_KEY_STEPS);
    created_secret(json!({
        "device": DeviceJson::new(enrolled.device, st.service.now()),
        "config": enrolled.config,
        "config_contains_private_key": enrolled.has_private_key,
        "file_name": enrolled.file_name,
        "qr_svg": qr_svg,
        "mobileconfig": enrolled.mobileconfig,
        "next_step": next_step,
    }))
}

pub(crate) async fn revoke(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.0.require(Scope::DevicesWrite)?;
    st.service
        .revoke(&caller.0, &path_name("active device", &name)?)
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
    caller.0.require(Scope::DevicesWrite)?;
    let req: Rotate = crate::optional_body(&body)?;
    let public_key = parse_key(req.public_key.as_deref())?;
    let name = path_name("active device", &name)?;
    let rotated = st.service.rotate(&caller.0, &name, public_key).await?;
    Ok(config_response(&st, rotated))
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
    Path(device): Path<String>,
    body: Result<Json<Update>, JsonRejection>,
) -> Result<Json<DeviceJson>, ApiError> {
    caller.0.require(Scope::DevicesWrite)?;
    let Json(u) = body?;
    let update = DeviceUpdate {
        group: u.group.as_deref().map(|g| name("group", g)).transpose()?,
        owner: u
            .owner
            .map(|o| o.as_deref().map(|o| name("owner", o)).transpose())
            .transpose()?,
        expires_at: u.expires_at,
    };
    let device = path_name("active device", &device)?;
    let d = st.service.update_device(&caller.0, &device, update).await?;
    Ok(Json(DeviceJson::new(d, st.service.now())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MdmRequest {
    group: Option<String>,
    #[serde(default)]
    devices: Vec<String>,
    #[serde(default)]
    platform: MdmPlatform,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MdmPlatform {
    #[default]
    Ios,
    Macos,
}

/// Re-keys the selected devices and answers their Apple profiles as one zip, never cached.
pub(crate) async fn mdm_export(
    State(st): State<AppState>,
    caller: Caller,
    body: Result<Json<MdmRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.0.require(Scope::DevicesWrite)?;
    let Json(req) = body?;
    let export = MdmExport {
        group: req.group.as_deref().map(|g| name("group", g)).transpose()?,
        devices: req
            .devices
            .iter()
            .map(|d| name("devices", d))
            .collect::<Result<_, _>>()?,
        platform: match req.platform {
            MdmPlatform::Ios => ApplePlatform::Ios,
            MdmPlatform::Macos => ApplePlatform::MacOs,
        },
    };
    let profiles = st.service.mdm_export(&caller.0, export).await?;
    Ok(zip_download(profiles.archive))
}

/// An archive of profiles as a download: it holds private keys, so no cache keeps it.
pub(crate) fn zip_download(archive: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/zip"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"heimweg-profiles.zip\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        archive,
    )
        .into_response()
}
