//! `/api/v1/activations`: who is signed in to connect now (groups that require it), and an
//! admin ending someone's activation early.

use crate::{path_name, ApiError, AppState, Caller};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use heimweg_service::Activation;
use serde::Serialize;
use serde_json::json;

#[derive(Serialize)]
struct ActivationJson {
    id: i64,
    user: String,
    starts_at: i64,
    /// Unix seconds, exclusive; each group also ends it after its own `sign_in_hours`.
    ends_at: i64,
    created_by: String,
}

impl From<Activation> for ActivationJson {
    fn from(a: Activation) -> ActivationJson {
        ActivationJson {
            id: a.id,
            user: a.user.to_string(),
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            created_by: a.created_by,
        }
    }
}

pub(crate) async fn list(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let items: Vec<ActivationJson> = st
        .service
        .activations(&caller.0)
        .await?
        .into_iter()
        .map(ActivationJson::from)
        .collect();
    Ok(Json(json!({ "items": items, "total": items.len() })))
}

/// Ends the user's activation now: their devices in sign-in groups are cut off within a
/// second on every gateway.
pub(crate) async fn end(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user = path_name("user", &name)?;
    st.service.end_activation(&caller.0, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Forgets the user's second factor for the staff page and any lock (a lost phone, a locked
/// sign-in): their next sign-in with the directory password sets up a new one. Their staff
/// sessions end.
pub(crate) async fn reset_second_factor(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user = path_name("user", &name)?;
    st.service.reset_staff_factor(&caller.0, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}
