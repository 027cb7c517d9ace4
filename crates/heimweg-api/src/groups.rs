//! `/api/v1/groups`: groups and their access policy.

use crate::{name, path_name, ApiError, AppState, Caller};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use heimweg_control::policy::{parse_dns, parse_networks};
use heimweg_control::Scope;
use heimweg_control::{GroupPolicy, TunnelMode, UsageWindow};
use heimweg_service::{Group, GroupPatch};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Serialize)]
pub(crate) struct GroupJson {
    id: i64,
    name: String,
    allowed_prefixes: Vec<String>,
    full_tunnel: bool,
    dns: Vec<String>,
    peer_to_peer: bool,
    usage_window: Option<WindowJson>,
    /// Sign in to connect: how many hours an activation lets the group's devices through;
    /// null: no sign-in needed.
    sign_in_hours: Option<u8>,
}

/// A usage window as the API shows it, with where it stands now.
#[derive(Serialize)]
pub(crate) struct WindowJson {
    schedule: String,
    time_zone: String,
    closed_dates: Vec<String>,
    open_now: bool,
    /// Unix seconds of the next opening or closing; null when there is none within the next
    /// weeks (or ever).
    next_change: Option<i64>,
}

impl WindowJson {
    pub(crate) fn of(w: &UsageWindow, now: i64) -> WindowJson {
        let state = w.at(now);
        WindowJson {
            schedule: w.schedule(),
            time_zone: w.time_zone().to_string(),
            closed_dates: w.closed_dates().iter().map(ToString::to_string).collect(),
            open_now: state.open,
            next_change: state.until.filter(|_| state.exact),
        }
    }
}

impl GroupJson {
    pub(crate) fn of(g: Group, now: i64) -> GroupJson {
        GroupJson {
            id: g.id,
            name: g.name.to_string(),
            allowed_prefixes: g.policy.networks().iter().map(|n| n.to_string()).collect(),
            full_tunnel: g.policy.tunnel().is_full(),
            dns: g.policy.dns().iter().map(|d| d.to_string()).collect(),
            peer_to_peer: g.policy.allows_peer_to_peer(),
            usage_window: g.window.as_ref().map(|w| WindowJson::of(w, now)),
            sign_in_hours: g.sign_in_hours,
        }
    }
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

pub(crate) async fn list(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.0.require(Scope::GroupsRead)?;
    let now = st.service.now();
    let items: Vec<GroupJson> = st
        .service
        .groups(&caller.0)
        .await?
        .into_iter()
        .map(|g| GroupJson::of(g, now))
        .collect();
    Ok(Json(json!({ "items": items, "total": items.len() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateGroup {
    name: String,
    allowed_prefixes: Vec<String>,
    #[serde(default)]
    full_tunnel: bool,
    #[serde(default)]
    dns: Vec<String>,
    /// Devices of the group may reach other devices (of groups that allow it too).
    #[serde(default)]
    peer_to_peer: bool,
}

pub(crate) async fn create(
    State(st): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateGroup>, JsonRejection>,
) -> Result<(StatusCode, Json<GroupJson>), ApiError> {
    caller.0.require(Scope::GroupsWrite)?;
    let Json(req) = body?;
    let name = name("name", &req.name)?;
    let policy = GroupPolicy::parse(
        &req.allowed_prefixes,
        TunnelMode::from_full(req.full_tunnel),
        &req.dns,
    )
    .map_err(bad)?
    .peer_to_peer(req.peer_to_peer);
    let g = st.service.create_group(&caller.0, &name, &policy).await?;
    Ok((
        StatusCode::CREATED,
        Json(GroupJson::of(g, st.service.now())),
    ))
}

pub(crate) async fn show(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<GroupJson>, ApiError> {
    caller.0.require(Scope::GroupsRead)?;
    let name = path_name("group", &name)?;
    let g = st.service.group(&caller.0, &name).await?;
    Ok(Json(GroupJson::of(g, st.service.now())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateGroup {
    allowed_prefixes: Option<Vec<String>>,
    full_tunnel: Option<bool>,
    dns: Option<Vec<String>>,
    peer_to_peer: Option<bool>,
    /// Absent: unchanged; null: no window (any time); else the new window.
    #[serde(default, deserialize_with = "present")]
    usage_window: Option<Option<WindowInput>>,
    /// Absent: unchanged; null or 0: no sign-in needed; else 1 to 24 hours.
    #[serde(default, deserialize_with = "present")]
    sign_in_hours: Option<Option<u8>>,
}

/// A usage window as a client sends it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowInput {
    schedule: String,
    #[serde(default)]
    time_zone: String,
    #[serde(default)]
    closed_dates: Vec<String>,
}

/// A field that is present, `null` included: `Some(None)` for null, where plain `Option`
/// would read null as absent.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Changes a group's policy or usage window; its devices follow within a second.
pub(crate) async fn update(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<UpdateGroup>, JsonRejection>,
) -> Result<Json<GroupJson>, ApiError> {
    caller.0.require(Scope::GroupsWrite)?;
    let Json(req) = body?;
    let patch = GroupPatch {
        networks: req
            .allowed_prefixes
            .as_deref()
            .map(parse_networks)
            .transpose()
            .map_err(bad)?,
        tunnel: req.full_tunnel.map(TunnelMode::from_full),
        dns: req.dns.as_deref().map(parse_dns).transpose().map_err(bad)?,
        peer_to_peer: req.peer_to_peer,
        window: req
            .usage_window
            .map(|w| {
                w.map(|w| UsageWindow::new(&w.schedule, &w.time_zone, &w.closed_dates.join(",")))
                    .transpose()
            })
            .transpose()
            .map_err(|e| bad(format!("usage_window: {e}")))?,
        sign_in_hours: req.sign_in_hours.map(|h| h.filter(|&h| h > 0)),
    };
    let name = path_name("group", &name)?;
    let g = st.service.update_group(&caller.0, &name, patch).await?;
    Ok(Json(GroupJson::of(g, st.service.now())))
}
