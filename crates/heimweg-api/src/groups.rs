//! `/api/v1/groups`: groups and their access policy.

use crate::{name, path_name, ApiError, AppState, Caller};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use heimweg_control::policy::{parse_dns, parse_networks};
use heimweg_control::Scope;
use heimweg_control::{GroupPolicy, TunnelMode};
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
}

impl From<Group> for GroupJson {
    fn from(g: Group) -> Self {
        GroupJson {
            id: g.id,
            name: g.name.to_string(),
            allowed_prefixes: g.policy.networks().iter().map(|n| n.to_string()).collect(),
            full_tunnel: g.policy.tunnel().is_full(),
            dns: g.policy.dns().iter().map(|d| d.to_string()).collect(),
            peer_to_peer: g.policy.allows_peer_to_peer(),
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
    let items: Vec<GroupJson> = st
        .service
        .groups(&caller.0)
        .await?
        .into_iter()
        .map(Into::into)
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
    Ok((StatusCode::CREATED, Json(g.into())))
}

pub(crate) async fn show(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<GroupJson>, ApiError> {
    caller.0.require(Scope::GroupsRead)?;
    let name = path_name("group", &name)?;
    Ok(Json(st.service.group(&caller.0, &name).await?.into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateGroup {
    allowed_prefixes: Option<Vec<String>>,
    full_tunnel: Option<bool>,
    dns: Option<Vec<String>>,
    peer_to_peer: Option<bool>,
}

/// Changes a group's policy; its devices follow within a second.
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
    };
    let name = path_name("group", &name)?;
    let g = st.service.update_group(&caller.0, &name, patch).await?;
    Ok(Json(g.into()))
}
