//! `/api/v1/groups`: groups and their access policy.

use crate::{now, ApiError, AppState, Caller};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use heimweg_store::{Group, GroupUpdate, NewGroup};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Serialize)]
pub(crate) struct GroupJson {
    id: i64,
    name: String,
    allowed_prefixes: Vec<String>,
    full_tunnel: bool,
    dns: Vec<String>,
}

impl From<Group> for GroupJson {
    fn from(g: Group) -> Self {
        GroupJson {
            id: g.id,
            name: g.name,
            allowed_prefixes: g.allowed_prefixes.iter().map(|n| n.to_string()).collect(),
            full_tunnel: g.full_tunnel,
            dns: g.dns,
        }
    }
}

pub(crate) async fn list(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require("groups:read")?;
    let items: Vec<GroupJson> = st
        .store
        .groups()
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
}

pub(crate) async fn create(
    State(st): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateGroup>, JsonRejection>,
) -> Result<(StatusCode, Json<GroupJson>), ApiError> {
    caller.require("groups:write")?;
    let Json(req) = body?;
    let prefixes = parse_prefixes(&req.allowed_prefixes)?;
    check_dns(&req.dns)?;
    let g = st
        .store
        .create_group(
            &caller.actor(),
            NewGroup {
                name: req.name,
                allowed_prefixes: prefixes,
                full_tunnel: req.full_tunnel,
                dns: req.dns,
            },
            now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(g.into())))
}

pub(crate) fn parse_prefixes(prefixes: &[String]) -> Result<Vec<ipnet::IpNet>, ApiError> {
    let nets = prefixes
        .iter()
        .map(|p| {
            p.parse::<ipnet::IpNet>().map(|n| n.trunc()).map_err(|_| {
                ApiError::BadRequest(format!("{p:?} is not a CIDR such as 10.20.0.0/16"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if nets.is_empty() {
        return Err(ApiError::BadRequest(
            "allowed_prefixes must name at least one network".into(),
        ));
    }
    Ok(nets)
}

pub(crate) fn check_dns(dns: &[String]) -> Result<(), ApiError> {
    for d in dns {
        if d.parse::<std::net::IpAddr>().is_err() && !heimweg_control::clientconf::is_hostname(d) {
            return Err(ApiError::BadRequest(format!(
                "dns entry {d:?} is neither an IP address nor a domain name"
            )));
        }
    }
    Ok(())
}

pub(crate) async fn show(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<GroupJson>, ApiError> {
    caller.require("groups:read")?;
    Ok(Json(st.store.group(&name).await?.into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateGroup {
    allowed_prefixes: Option<Vec<String>>,
    full_tunnel: Option<bool>,
    dns: Option<Vec<String>>,
}

/// Changes a group's policy; its devices follow within a second. Their configs keep the
/// AllowedIPs they were issued with: the gateway's filter, not the config, is the boundary.
pub(crate) async fn update(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<UpdateGroup>, JsonRejection>,
) -> Result<Json<GroupJson>, ApiError> {
    caller.require("groups:write")?;
    let Json(req) = body?;
    let allowed_prefixes = req
        .allowed_prefixes
        .as_deref()
        .map(parse_prefixes)
        .transpose()?;
    if let Some(dns) = &req.dns {
        check_dns(dns)?;
    }
    let g = st
        .store
        .update_group(
            &caller.actor(),
            &name,
            GroupUpdate {
                allowed_prefixes,
                full_tunnel: req.full_tunnel,
                dns: req.dns,
            },
            now(),
        )
        .await?;
    Ok(Json(g.into()))
}
