//! `/api/v1/identity`: the identity provider staff and admins sign in through, and what its
//! groups mean (never the client secret).

use crate::{ApiError, AppState, Caller};
use axum::extract::State;
use axum::Json;
use heimweg_control::Scope;
use heimweg_service::OidcSettings;
use serde_json::{json, Value};

fn settings_json(s: &OidcSettings) -> Value {
    json!({
        "issuer": s.issuer,
        "client_id": s.client_id,
        "redirect_uri": s.redirect_uri(),
        "own_ca": s.ca_pem.is_some(),
        "scopes": s.scopes,
        "login_claim": s.login_claim,
        "groups_claim": s.groups_claim,
        "groups": s.groups.entries().iter().map(|(claim, group)| json!({
            "group": group.as_str(), "provider_group": claim,
        })).collect::<Vec<_>>(),
        "admin_groups": s.roles.admin,
        "helpdesk_groups": s.roles.helpdesk,
        "device_limit": s.device_limit,
        "clock_skew_seconds": s.clock_skew.as_secs(),
    })
}

/// `GET /api/v1/identity`: the provider's settings, null when none is connected.
pub(crate) async fn show(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.0.require(Scope::UsersRead)?;
    Ok(Json(json!({
        "provider": st.service.identity_provider().map(settings_json),
    })))
}
