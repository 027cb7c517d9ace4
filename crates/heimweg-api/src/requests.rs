//! Staff access requests: the public `POST /api/v1/access-requests`, the requester's status
//! page `/request/{secret}`, and the admin's list, approve and reject.
//!
//! The requester gets a random secret and keeps the status page's address; the store keeps
//! only hashes. An approval activates an enrollment link derived from that secret
//! (`heimweg_service::request_link_secret`), so the config reaches the person who asked, on the
//! device they asked from, without the admin handling any secret.

use crate::{created_secret, name, page, secret_headers, ApiError, AppState, Caller};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use heimweg_control::Scope;
use heimweg_control::{escape_markup, LinkHours, RequestStatus};
use heimweg_service::{AccessRequest, RequestForm};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Serialize)]
pub(crate) struct RequestJson {
    id: i64,
    requester: String,
    contact: String,
    device_name: String,
    reason: String,
    status: RequestStatus,
    created_at: i64,
    decided_at: Option<i64>,
    decided_by: Option<String>,
    link_open: bool,
}

impl From<AccessRequest> for RequestJson {
    fn from(r: AccessRequest) -> Self {
        RequestJson {
            id: r.id,
            requester: r.requester.to_string(),
            contact: r.contact,
            device_name: r.device_name.to_string(),
            reason: r.reason,
            status: r.status,
            created_at: r.created_at,
            decided_at: r.decided_at,
            decided_by: r.decided_by,
            link_open: r.link_open,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Create {
    requester: String,
    #[serde(default)]
    contact: String,
    device_name: String,
    #[serde(default)]
    reason: String,
}

/// Public: files a request. The answer holds the requester's status page, once.
pub(crate) async fn create(
    State(st): State<AppState>,
    crate::ClientAddr(client): crate::ClientAddr,
    body: Result<Json<Create>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    let form = RequestForm {
        requester: req.requester,
        contact: req.contact,
        device_name: req.device_name,
        reason: req.reason,
    };
    let filed = st.service.file_request(client, &form).await?;
    Ok(created_secret(json!({
        "id": filed.request.id,
        "status": filed.request.status,
        "status_path": format!("/request/{}", filed.secret),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    status: Option<String>,
    limit: Option<u32>,
}

pub(crate) async fn list(
    State(st): State<AppState>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.0.require(Scope::DevicesRead)?;
    let Query(p) = params?;
    let status = p
        .status
        .as_deref()
        .map(str::parse::<RequestStatus>)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let items: Vec<RequestJson> = st
        .service
        .requests(&caller.0, status, p.limit.unwrap_or(100))
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Approve {
    group: Option<String>,
    /// Hours the requester has to open the link; 72 by default, at most 30 days.
    expires_in_hours: Option<u32>,
}

/// Approving makes the requester's status page offer the enrollment; the admin never sees
/// the link's secret.
pub(crate) async fn approve(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> Result<Json<RequestJson>, ApiError> {
    caller.0.require(Scope::DevicesWrite)?;
    let req: Approve = crate::optional_body(&body)?;
    let group = req.group.as_deref().map(|g| name("group", g)).transpose()?;
    let lifetime = req
        .expires_in_hours
        .map_or(Ok(LinkHours::default()), LinkHours::new)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let r = st
        .service
        .approve_request(&caller.0, id, group.as_ref(), lifetime)
        .await?;
    Ok(Json(r.into()))
}

pub(crate) async fn reject(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<RequestJson>, ApiError> {
    caller.0.require(Scope::DevicesWrite)?;
    let r = st.service.reject_request(&caller.0, id).await?;
    Ok(Json(r.into()))
}

/// The requester's page: where the request stands, and once approved, the way to the config.
pub(crate) async fn status_page(
    State(st): State<AppState>,
    Path(secret): Path<String>,
) -> Response {
    let found = st.service.request_status(&secret).await;
    let (status, title, body) = match found {
        Err(e) => return ApiError::from(e).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            "Unknown request",
            "<p>There is no access request at this address.</p>".to_string(),
        ),
        Ok(Some((r, link))) => {
            let device = escape_markup(r.device_name.as_str());
            match (r.status, link) {
                (RequestStatus::Pending, _) => (
                    StatusCode::OK,
                    "Waiting for approval",
                    format!(
                        "<p>Your request for <strong>{device}</strong> is waiting for your IT \
                         department. Keep this page's address and open it again later, on the \
                         device you want to connect.</p>"
                    ),
                ),
                (RequestStatus::Approved, Some(link)) => (
                    StatusCode::OK,
                    "Request approved",
                    format!(
                        "<p>Your request for <strong>{device}</strong> was approved. Open the \
                         link below on that device to set it up. It works once.</p>\
                         <p><a href=\"/enroll/{link}\">Set up {device} now</a></p>"
                    ),
                ),
                (RequestStatus::Approved, None) => (
                    StatusCode::OK,
                    "Request approved",
                    format!(
                        "<p>Your request for <strong>{device}</strong> was approved, but its \
                         setup link has been used or has expired. Ask your IT department \
                         for a new one.</p>"
                    ),
                ),
                _ => (
                    StatusCode::OK,
                    "Request declined",
                    format!(
                        "<p>Your request for <strong>{device}</strong> was declined. Ask your \
                         IT department if you think this is a mistake.</p>"
                    ),
                ),
            }
        }
    };
    let mut r = (status, Html(page(title, &body))).into_response();
    secret_headers(&mut r);
    r
}
