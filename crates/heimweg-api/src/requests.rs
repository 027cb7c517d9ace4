//! Staff access requests: the public `POST /api/v1/access-requests`, the requester's status
//! page `/request/{secret}`, and the admin's list, approve and reject.
//!
//! The requester gets a random secret and keeps the status page's address; the store keeps
//! only hashes. An approval activates an enrollment link derived from that secret
//! ([`crate::request_link_secret`]), so the config reaches the person who asked, on the
//! device they asked from, without the admin handling any secret.

use crate::{
    created_secret, now, page, request_link_secret, secret_headers, service, token_hash, ApiError,
    AppState, Caller,
};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use heimweg_control::escape_markup;
use heimweg_store::{AccessRequest, NewAccessRequest};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Serialize)]
pub(crate) struct RequestJson {
    id: i64,
    requester: String,
    contact: String,
    device_name: String,
    reason: String,
    status: String,
    created_at: i64,
    decided_at: Option<i64>,
    decided_by: Option<String>,
    link_open: bool,
}

impl From<AccessRequest> for RequestJson {
    fn from(r: AccessRequest) -> Self {
        RequestJson {
            id: r.id,
            requester: r.requester,
            contact: r.contact,
            device_name: r.device_name,
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
    let (r, secret) = service::file_access_request(
        &st.store,
        client,
        &NewAccessRequest {
            requester: req.requester,
            contact: req.contact,
            device_name: req.device_name,
            reason: req.reason,
        },
        now(),
    )
    .await?;
    Ok(created_secret(json!({
        "id": r.id,
        "status": r.status,
        "status_path": format!("/request/{secret}"),
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
    caller.require("devices:read")?;
    let Query(p) = params?;
    let items: Vec<RequestJson> = st
        .store
        .access_requests(p.status.as_deref(), p.limit.unwrap_or(100), now())
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
    caller.require("devices:write")?;
    let req: Approve = crate::optional_body(&body)?;
    let r = service::approve_access_request(
        &st.store,
        &caller.actor(),
        id,
        req.group.as_deref(),
        req.expires_in_hours,
        now(),
    )
    .await?;
    Ok(Json(r.into()))
}

pub(crate) async fn reject(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<RequestJson>, ApiError> {
    caller.require("devices:write")?;
    let r = st
        .store
        .reject_access_request(&caller.actor(), id, now())
        .await?;
    Ok(Json(r.into()))
}

/// The requester's page: where the request stands, and once approved, the way to the config.
pub(crate) async fn status_page(
    State(st): State<AppState>,
    Path(secret): Path<String>,
) -> Response {
    let found = if secret.len() > 128 {
        Ok(None)
    } else {
        st.store
            .access_request_by_hash(&token_hash(&secret), now())
            .await
    };
    let (status, title, body) = match found {
        Err(e) => return ApiError::from(e).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            "Unknown request",
            "<p>There is no access request at this address.</p>".to_string(),
        ),
        Ok(Some(r)) => {
            let device = escape_markup(&r.device_name);
            match (r.status.as_str(), r.link_open) {
                ("pending", _) => (
                    StatusCode::OK,
                    "Waiting for approval",
                    format!(
                        "<p>Your request for <strong>{device}</strong> is waiting for your IT \
                         department. Keep this page's address and open it again later, on the \
                         device you want to connect.</p>"
                    ),
                ),
                ("approved", true) => (
                    StatusCode::OK,
                    "Request approved",
                    format!(
                        "<p>Your request for <strong>{device}</strong> was approved. Open the \
                         link below on that device to set it up. It works once.</p>\
                         <p><a href=\"/enroll/{}\">Set up {device} now</a></p>",
                        request_link_secret(&secret)
                    ),
                ),
                ("approved", false) => (
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
