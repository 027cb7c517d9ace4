//! `/api/v1/tokens`: API tokens, managed over the API. A token can mint only tokens with a
//! subset of its own scopes, so `tokens:write` never escalates privileges, and what it minted
//! is revoked with it.

use crate::{created_secret, generate_token, now, token_hash, ApiError, AppState, Caller, SCOPES};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

pub(crate) async fn list(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require("tokens:read")?;
    let items: Vec<serde_json::Value> = st
        .store
        .api_tokens()
        .await?
        .into_iter()
        .map(|t| {
            json!({"id": t.id, "name": t.name, "scopes": t.scopes,
                   "created_at": t.created_at, "revoked_at": t.revoked_at})
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    name: String,
    scopes: Vec<String>,
}

/// The token is in this response once; only its hash is stored.
pub(crate) async fn create(
    State(st): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateToken>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require("tokens:write")?;
    let Json(req) = body?;
    if req.scopes.is_empty() {
        return Err(ApiError::BadRequest(
            "scopes must name at least one scope".into(),
        ));
    }
    for s in &req.scopes {
        if !SCOPES.contains(&s.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "unknown scope {s:?}; use {}",
                SCOPES.join(", ")
            )));
        }
        if !caller.has(s) {
            return Err(ApiError::BadRequest(format!(
                "a token can only grant scopes it holds itself, and this one lacks {s:?}"
            )));
        }
    }
    let token = generate_token();
    let t = st
        .store
        .create_child_api_token(
            &caller.actor(),
            caller.token_id,
            &req.name,
            &token_hash(&token),
            &req.scopes,
            now(),
        )
        .await?;
    Ok(created_secret(
        json!({"id": t.id, "name": t.name, "scopes": t.scopes, "token": token}),
    ))
}

pub(crate) async fn revoke(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require("tokens:write")?;
    // Revoking is as strong as granting: only a token that holds every scope of the target
    // may revoke it, so a narrow token cannot lock out the admin's.
    let target = st
        .store
        .api_tokens()
        .await?
        .into_iter()
        .find(|t| t.name == name && t.revoked_at.is_none())
        .ok_or_else(|| ApiError::NotFound(format!("there is no live token named {name:?}")))?;
    if let Some(s) = target.scopes.iter().find(|s| !caller.has(s)) {
        return Err(ApiError::BadRequest(format!(
            "a token can only revoke tokens whose scopes it holds itself, and this one lacks {s:?}"
        )));
    }
    st.store
        .revoke_api_token(&caller.actor(), &name, now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
