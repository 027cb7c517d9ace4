//! `/api/v1/access-review`: who has access to what, since when, by whose decision, and when
//! last seen (BSI NET.3.3.A5, ORP.4.A3), as JSON or as a CSV file for the auditor; and the
//! devices the review revokes soon.

use crate::{ApiError, AppState, Caller};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use heimweg_control::Scope;
use heimweg_service::access_review_csv;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    /// `json` (the default) or `csv`.
    format: Option<String>,
}

pub(crate) async fn show(
    State(st): State<AppState>,
    caller: Caller,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Response, ApiError> {
    // The documented scope first, so that its refusal names it.
    caller.0.require(Scope::UsersRead)?;
    let Query(params) = params?;
    let csv = match params.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format: {other:?} is neither json nor csv"
            )))
        }
    };
    let (rows, groups) = st.service.access_review(&caller.0).await?;
    if csv {
        return Ok(csv_download(access_review_csv(&rows, &groups)));
    }
    let (days, due) = st.service.review_due(&caller.0).await?;
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let d = &r.device;
            let group = groups.iter().find(|g| g.name == d.group);
            json!({
                "user": d.owner.as_ref().map(ToString::to_string),
                "device": d.name.to_string(),
                "group": d.group.to_string(),
                "networks": group.map(|g| g.policy.networks().iter().map(ToString::to_string).collect::<Vec<_>>()),
                "usage_window": group.and_then(|g| g.window.as_ref()).map(ToString::to_string),
                "since": d.created_at,
                "enrolled_by": r.enrolled_by,
                "last_seen": d.last_seen(),
                "last_handshake_at": d.last_handshake_at,
                "expires_at": d.expires_at,
            })
        })
        .collect();
    let due: Vec<serde_json::Value> = due
        .iter()
        .map(|d| json!({ "device": d.device.name.to_string(), "due_at": d.due_at }))
        .collect();
    Ok(Json(json!({
        "generated_at": st.service.now(),
        "unseen_days": days,
        "items": items,
        "total": items.len(),
        "revoked_soon": due,
    }))
    .into_response())
}

/// The access review's CSV as a download (the API's and the panel's).
pub(crate) fn csv_download(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"heimweg-access-review.csv\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
