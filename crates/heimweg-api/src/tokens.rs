//! `/api/v1/tokens`: API tokens, managed over the API (the rules are the service's: a token
//! grants and revokes only within its own scopes, and what it minted goes with it).

use crate::{created_secret, name, path_name, ApiError, AppState, Caller};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use heimweg_control::Scope;
use heimweg_control::Scopes;
use serde::Deserialize;
use serde_json::json;

pub(crate) async fn list(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.0.require(Scope::TokensRead)?;
    let items: Vec<serde_json::Value> = st
        .service
        .tokens(&caller.0)
        .await?
        .into_iter()
        .map(|t| {
            json!({"id": t.id, "name": t.name, "scopes": t.scopes.names(),
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
    caller.0.require(Scope::TokensWrite)?;
    let Json(req) = body?;
    let name = name("name", &req.name)?;
    let scopes = Scopes::parse(&req.scopes).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let minted = st.service.create_token(&caller.0, &name, &scopes).await?;
    let t = minted.token;
    Ok(created_secret(
        json!({"id": t.id, "name": t.name, "scopes": t.scopes.names(), "token": minted.secret}),
    ))
}

pub(crate) async fn revoke(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.0.require(Scope::TokensWrite)?;
    let name = path_name("live token", &name)?;
    st.service.revoke_token(&caller.0, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
