//! `/api/v1/enrollment-links`, the public `/enroll/{token}` page they lead to, and the audit
//! log.

use crate::{created_secret, name, page, secret_headers, ApiError, AppState, Caller};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use heimweg_control::Scope;
use heimweg_control::{escape_markup, qr::Qr, LinkHours};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateLink {
    device_name: String,
    #[serde(default = "crate::devices::default_group")]
    group: String,
    owner: Option<String>,
    /// Hours until the link stops working; 72 by default, at most 30 days.
    expires_in_hours: Option<u32>,
}

pub(crate) async fn create(
    State(st): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateLink>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.0.require(Scope::DevicesWrite)?;
    let Json(req) = body?;
    let device_name = name("device_name", &req.device_name)?;
    let group = name("group", &req.group)?;
    let owner = req.owner.as_deref().map(|o| name("owner", o)).transpose()?;
    let lifetime = req
        .expires_in_hours
        .map_or(Ok(LinkHours::default()), LinkHours::new)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let offer = st
        .service
        .create_link(&caller.0, &device_name, &group, owner.as_ref(), lifetime)
        .await?;
    let body = json!({
        "id": offer.link.id,
        "device_name": offer.link.device_name,
        "path": format!("/enroll/{}", offer.secret),
        "expires_at": offer.link.expires_at,
    });
    Ok(created_secret(body))
}

pub(crate) async fn list(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.0.require(Scope::DevicesRead)?;
    let now = st.service.now();
    let items: Vec<serde_json::Value> = st
        .service
        .links(&caller.0, 500)
        .await?
        .into_iter()
        .map(|l| {
            let status = l.status(now);
            json!({"id": l.id, "device_name": l.device_name, "group": l.group,
                   "owner": l.owner, "created_by": l.created_by, "created_at": l.created_at,
                   "expires_at": l.expires_at, "used_at": l.used_at, "status": status})
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

pub(crate) async fn revoke(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    caller.0.require(Scope::DevicesWrite)?;
    st.service.revoke_link(&caller.0, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The page a staff member opens on the device: the config once, as a QR code for the iPad's
/// camera and as a download for a laptop. Nothing on it is cached or sent as a referrer.
fn gone() -> Response {
    let mut r = (
        StatusCode::GONE,
        Html(page(
            "Link not valid",
            "<p>This enrollment link has been used, has expired or was withdrawn. \
             Ask your IT department for a new one.</p>",
        )),
    )
        .into_response();
    secret_headers(&mut r);
    r
}

/// A link that could not be redeemed for a reason of the gateway's (a full address pool, no
/// endpoint set): a page the staff member can read and pass on, not an API error. The link
/// stays open, so it works once the cause is fixed.
fn failed(e: heimweg_service::ServiceError) -> Response {
    let api = ApiError::from(e);
    let reason = match &api {
        ApiError::Internal(_) | ApiError::Unavailable(_) => {
            "The gateway could not finish the setup just now.".to_string()
        }
        ApiError::BadRequest(m) | ApiError::NotFound(m) | ApiError::Conflict(m) => m.clone(),
        _ => "The setup was refused.".to_string(),
    };
    let status = api.into_response().status();
    let body = format!(
        "<p>{}</p><p>The link still works: try again later, or ask your IT department and tell          them this message.</p><p>Die Einrichtung ist nicht gelungen. Der Link gilt weiter:          versuchen Sie es später noch einmal oder wenden Sie sich mit dieser Meldung an Ihre          IT-Abteilung.</p>",
        escape_markup(&reason)
    );
    let mut r = (status, Html(page("Setup failed", &body))).into_response();
    secret_headers(&mut r);
    r
}

/// Opening a link only shows what it sets up and a button: mail scanners and chat previews
/// open links on their own, and must not use one up (and receive its private key).
pub(crate) async fn confirm(State(st): State<AppState>, Path(token): Path<String>) -> Response {
    let device = match st.service.view_link(&token).await {
        Ok(Some(l)) => escape_markup(l.device_name.as_str()),
        Ok(None) => return gone(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let body = format!(
        "<p>This link sets up VPN access for <strong>{device}</strong>. Open it on that device. \
         It works once: the next page shows the settings, and only once.</p>\
         <p>Diese Seite richtet den VPN-Zugang für <strong>{device}</strong> ein. Öffnen Sie sie \
         auf diesem Gerät. Sie gilt einmal: die nächste Seite zeigt die Einstellungen, nur \
         einmal.</p>\
         <form method=\"post\"><button type=\"submit\">Set up now / Jetzt einrichten</button></form>"
    );
    let mut r = Html(page("Set up VPN access", &body)).into_response();
    secret_headers(&mut r);
    r
}

/// The confirmed link: claims it and shows the config, once.
pub(crate) async fn redeem(State(st): State<AppState>, Path(token): Path<String>) -> Response {
    let enrolled = match st.service.redeem_link(&token).await {
        Ok(Some(e)) => e,
        Ok(None) => return gone(),
        Err(e) => return failed(e),
    };
    let qr = Qr::encode(&enrolled.config)
        .map(|q| q.to_svg())
        .unwrap_or_default();
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let profile = enrolled.mobileconfig.clone().unwrap_or_default();
    let stem = enrolled.file_name.trim_end_matches(".conf");
    let body = format!(
        "<p>Scan this code with the WireGuard app (+ → Create from QR code), or download the \
         file and import it. This page is shown only once.</p>\
         <div class=\"qr\">{qr}</div>\
         <p><a download=\"{file}\" href=\"data:application/octet-stream;base64,{conf}\">\
         Download {file}</a></p>\
         <p><a download=\"{stem}.mobileconfig\" \
         href=\"data:application/x-apple-aspen-config;base64,{profile}\">\
         Download the iPad profile ({stem}.mobileconfig)</a></p>",
        file = escape_markup(&enrolled.file_name),
        stem = escape_markup(stem),
        conf = b64(&enrolled.config),
        profile = b64(&profile),
    );
    let mut r = Html(page("Your VPN access", &body)).into_response();
    secret_headers(&mut r);
    r
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    limit: Option<u32>,
}

pub(crate) async fn audit_log(
    State(st): State<AppState>,
    caller: Caller,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.0.require(Scope::AuditRead)?;
    let Query(p) = params?;
    let entries = st
        .service
        .audit_log(&caller.0, p.limit.unwrap_or(100))
        .await?;
    let items: Vec<serde_json::Value> = entries
        .into_iter()
        .map(|e| {
            json!({"at": e.at, "actor": e.actor, "action": e.action,
                   "subject": e.subject, "detail": e.detail})
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}
