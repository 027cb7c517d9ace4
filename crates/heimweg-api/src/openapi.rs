//! The OpenAPI 3.1 document of the API, served at `/api/v1/openapi.json`.
//!
//! Written out rather than generated: the handlers stay plain axum. `tests/api.rs` keeps it
//! honest: its paths must equal [`crate::routes`], and every operation it lists must exist
//! and answer as documented (401 without a token where it says a scope is needed).

use axum::Json;
use serde_json::{json, Map, Value};

pub(crate) async fn serve() -> Json<Value> {
    Json(document())
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn body(name: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema(name) } } })
}

fn reply(description: &str, name: Option<&str>) -> Value {
    match name {
        Some(n) => json!({ "description": description,
                           "content": { "application/json": { "schema": schema(n) } } }),
        None => json!({ "description": description }),
    }
}

fn path_param(name: &str, kind: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": { "type": kind } })
}

fn query_param(name: &str, kind: &str, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description,
            "schema": { "type": kind } })
}

/// One operation. `scope` is the bearer-token scope it needs (`None`: public).
fn op(
    summary: &str,
    scope: Option<&str>,
    parameters: Vec<Value>,
    request: Option<Value>,
    responses: &[(&str, Value)],
) -> Value {
    let mut o = Map::new();
    o.insert("summary".into(), summary.into());
    if !parameters.is_empty() {
        o.insert("parameters".into(), parameters.into());
    }
    if let Some(r) = request {
        o.insert("requestBody".into(), r);
    }
    let mut rs: Map<String, Value> = responses
        .iter()
        .map(|(code, v)| (code.to_string(), v.clone()))
        .collect();
    rs.insert(
        "4XX".into(),
        reply(
            "The request was refused; the message says why.",
            Some("Error"),
        ),
    );
    match scope {
        Some(s) => {
            o.insert("security".into(), json!([{ "bearer": [] }]));
            o.insert("x-required-scope".into(), s.into());
            o.insert(
                "description".into(),
                format!("Needs a token with the scope `{s}`.").into(),
            );
        }
        None => {
            o.insert("security".into(), json!([]));
        }
    }
    o.insert("responses".into(), rs.into());
    o.into()
}

fn paging() -> Vec<Value> {
    vec![
        query_param("limit", "integer", "1 to 500, default 50"),
        query_param("offset", "integer", "default 0"),
    ]
}

// The document is one JSON literal per path, read as the reference it is; cut into pieces it
// would be harder to hold against `routes()`.
#[allow(clippy::too_many_lines)]
pub fn document() -> Value {
    let name = || path_param("name", "string");
    let id = || path_param("id", "integer");
    let no_content = || reply("Done.", None);
    let device_list = {
        let mut p = vec![
            query_param("search", "string", "substring of name, owner or public key"),
            query_param("group", "string", "exact group name"),
            query_param("owner", "string", "exact owner name"),
            query_param("status", "string", "active, expired or revoked"),
        ];
        p.extend(paging());
        p
    };
    let user_list = {
        let mut p = vec![query_param(
            "search",
            "string",
            "substring of name or e-mail",
        )];
        p.extend(paging());
        p
    };
    json!({
      "openapi": "3.1.0",
      "info": {
        "title": "heimweg API",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Enroll, change and revoke the devices of a heimweg WireGuard gateway. \
          Changes reach the running gateway within a second. Configs and tokens appear in a \
          response exactly once and are never stored."
      },
      "components": {
        "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer",
          "description": "An API token (hw_…) from `heimweg token create` or POST /api/v1/tokens." } },
        "schemas": {
          "Error": { "type": "object", "required": ["error"], "properties": { "error": {
            "type": "object", "required": ["code", "message"], "properties": {
              "code": { "type": "string" }, "message": { "type": "string" } } } } },
          "Device": { "type": "object", "properties": {
            "id": { "type": "integer" }, "name": { "type": "string" },
            "public_key": { "type": "string" }, "group": { "type": "string" },
            "owner": { "type": ["string", "null"] }, "ipv4": { "type": "string" },
            "ipv6": { "type": "string" },
            "status": { "enum": ["active", "expired", "revoked"] },
            "created_at": { "type": "integer" }, "expires_at": { "type": ["integer", "null"] },
            "revoked_at": { "type": ["integer", "null"] },
            "last_handshake_at": { "type": ["integer", "null"] },
            "last_endpoint": { "type": ["string", "null"] },
            "key_rotated_at": { "type": ["integer", "null"] },
            "shared_key_at": { "type": ["integer", "null"], "description":
              "when the gateway last saw this device's key used from two places at once (a \
               config copied onto a second device)" } } },
          "DeviceList": { "type": "object", "properties": {
            "items": { "type": "array", "items": schema("Device") },
            "total": { "type": "integer" }, "limit": { "type": "integer" },
            "offset": { "type": "integer" } } },
          "NewDevice": { "type": "object", "required": ["name"], "additionalProperties": false,
            "properties": { "name": { "type": "string" },
              "group": { "type": "string", "default": "default" },
              "owner": { "type": "string" },
              "public_key": { "type": "string", "description":
                "the device's own key; without it the server generates a key pair and the \
                 private key is only in this response" },
              "expires_in_days": { "type": "integer" } } },
          "DeviceUpdate": { "type": "object", "additionalProperties": false, "properties": {
            "group": { "type": "string" }, "owner": { "type": ["string", "null"] },
            "expires_at": { "type": ["integer", "null"],
              "description": "Unix seconds; null: never" } } },
          "ImportReport": { "type": "object", "properties": {
            "dry_run": { "type": "boolean" },
            "counts": { "type": "object", "properties": {
              "users_created": { "type": "integer" }, "invited": { "type": "integer" },
              "unchanged": { "type": "integer" }, "refused": { "type": "integer" },
              "mailed": { "type": "integer",
                "description": "invitations queued for mail (their links are only in the mail)" } } },
            "rows": { "type": "array", "items": { "type": "object", "properties": {
              "line": { "type": "integer" },
              "user": { "type": ["string", "null"] }, "device": { "type": ["string", "null"] },
              "user_outcome": { "type": "string",
                "enum": ["created", "exists", "exists_email_differs", "refused"] },
              "device_outcome": { "type": "string",
                "enum": ["none", "invited", "already_invited", "already_enrolled", "refused"] },
              "reason": { "type": ["string", "null"] } } } },
            "invitations": { "type": "array", "items": { "type": "object", "properties": {
              "user": { "type": "string" }, "email": { "type": ["string", "null"] },
              "device": { "type": "string" }, "group": { "type": "string" },
              "path": { "type": "string", "description": "/enroll/SECRET, once" },
              "expires_at": { "type": "integer" } } } } } },
          "Rollout": { "type": "object", "properties": {
            "groups": { "type": "array", "items": schema("RolloutRow") },
            "total": schema("RolloutRow"),
            "mail": { "type": "object", "description": "the invitation mail queue by state",
              "properties": {
              "queued": { "type": "integer" }, "sending": { "type": "integer" },
              "sent": { "type": "integer" }, "failed": { "type": "integer" },
              "cancelled": { "type": "integer" } } } } },
          "Invitations": { "type": "object", "properties": { "items": { "type": "array",
            "items": { "type": "object", "properties": {
              "link_id": { "type": "integer" }, "user": { "type": ["string", "null"] },
              "email": { "type": ["string", "null"] }, "device": { "type": "string" },
              "group": { "type": "string" },
              "link_status": { "enum": ["open", "used", "revoked", "expired"] },
              "expires_at": { "type": "integer" },
              "opened_at": { "type": ["integer", "null"] },
              "used_at": { "type": ["integer", "null"] },
              "last_handshake_at": { "type": ["integer", "null"] },
              "mail": { "type": ["object", "null"], "properties": {
                "state": { "enum": ["queued", "sending", "sent", "failed", "cancelled"] },
                "attempts": { "type": "integer" },
                "last_error": { "type": ["string", "null"] },
                "sent_at": { "type": ["integer", "null"] },
                "reminder": { "type": "boolean" } } } } } } } },
          "DirectoryRun": { "type": "object", "properties": {
            "id": { "type": "integer" }, "started_at": { "type": "integer" },
            "finished_at": { "type": "integer" },
            "requested_by": { "type": "string", "description": "system for the schedule" },
            "outcome": { "type": "string", "enum": ["ok", "refused", "failed"] },
            "entries": { "type": "integer" }, "created": { "type": "integer" },
            "changed": { "type": "integer" }, "disabled": { "type": "integer" },
            "enabled": { "type": "integer" }, "skipped": { "type": "integer" },
            "message": { "type": ["string", "null"],
              "description": "why it was refused or failed, or the entries left out" } } },
          "DirectoryPreview": { "type": "object", "properties": {
            "dry_run": { "type": "boolean", "enum": [true] },
            "outcome": { "type": "string", "enum": ["ok", "refused", "failed"] },
            "entries": { "type": "integer" }, "users": { "type": "integer" },
            "create": { "type": "array", "items": { "type": "object", "properties": {
              "name": { "type": "string" }, "group": { "type": "string" },
              "email": { "type": ["string", "null"] } } } },
            "change": { "type": "array", "items": { "type": "object", "properties": {
              "name": { "type": "string" }, "linked": { "type": "boolean" },
              "rename": { "type": ["string", "null"] },
              "email": { "type": ["string", "null"] },
              "group": { "type": ["string", "null"] } } } },
            "disable": { "type": "array", "items": { "type": "string" } },
            "enable": { "type": "array", "items": { "type": "string" } },
            "skipped": { "type": "array", "items": { "type": "string" } },
            "would_disable": { "type": "integer" },
            "message": { "type": "string" } } },
          "DirectorySyncAnswer": { "anyOf": [schema("DirectoryRun"), schema("DirectoryPreview")] },
          "Directory": { "type": "object", "properties": {
            "settings": { "type": ["object", "null"], "properties": {
              "url": { "type": "string" },
              "security": { "type": "string", "enum": ["starttls", "tls", "none"] },
              "own_ca": { "type": "boolean" }, "bind_dn": { "type": ["string", "null"] },
              "base": { "type": "string" }, "filter": { "type": "string" },
              "login_attribute": { "type": "string" }, "mail_attribute": { "type": "string" },
              "id_attribute": { "type": "string" }, "disabled": { "type": "string" },
              "groups": { "type": "array", "items": { "type": "object", "properties": {
                "group": { "type": "string" }, "directory_group": { "type": "string" } } } },
              "interval_seconds": { "type": "integer" },
              "max_disable_percent": { "type": "integer" },
              "reenable": { "type": "boolean" } } },
            "runs": { "type": "array", "items": schema("DirectoryRun") } } },
          "Identity": { "type": "object", "properties": {
            "provider": { "type": ["object", "null"], "properties": {
              "issuer": { "type": "string" }, "client_id": { "type": "string" },
              "redirect_uri": { "type": "string",
                "description": "register this at the provider" },
              "own_ca": { "type": "boolean" },
              "scopes": { "type": "array", "items": { "type": "string" } },
              "login_claim": { "type": "string" }, "groups_claim": { "type": "string" },
              "groups": { "type": "array", "description": "in priority order: the first is a new device's default",
                "items": { "type": "object", "properties": {
                  "group": { "type": "string" }, "provider_group": { "type": "string" } } } },
              "admin_groups": { "type": "array", "items": { "type": "string" } },
              "helpdesk_groups": { "type": "array", "items": { "type": "string" } },
              "device_limit": { "type": "integer" },
              "clock_skew_seconds": { "type": "integer" } } } } },
          "Remind": { "type": "object", "additionalProperties": false, "properties": {
            "group": { "type": "string", "description": "only this group (default: all)" },
            "link_hours": { "type": "integer",
              "description": "hours the links stay open from now, 1 to 720 (168)" } } },
          "Reminded": { "type": "object", "properties": {
            "queued": { "type": "integer" }, "without_address": { "type": "integer" },
            "pending": { "type": "integer" } } },
          "RolloutRow": { "type": "object", "properties": {
            "group": { "type": ["string", "null"], "description": "null in the total" },
            "invited": { "type": "integer" }, "open_invitations": { "type": "integer" },
            "expired_invitations": { "type": "integer" }, "enrolled": { "type": "integer" },
            "connected_ever": { "type": "integer" }, "connected_this_week": { "type": "integer" } } },
          "MdmExport": { "type": "object", "additionalProperties": false, "properties": {
            "group": { "type": "string", "description": "every active device of this group" },
            "devices": { "type": "array", "items": { "type": "string" },
              "description": "and these active devices" },
            "platform": { "type": "string", "enum": ["ios", "macos"], "default": "ios" } } },
          "Rotate": { "type": "object", "additionalProperties": false, "properties": {
            "public_key": { "type": "string" } } },
          "Config": { "type": "object", "description": "Shown once; not stored.", "properties": {
            "device": schema("Device"), "config": { "type": "string" },
            "config_contains_private_key": { "type": "boolean", "description":
              "false: the device made its own key; the config has a commented placeholder line \
               where that key goes, and no QR code or profile" },
            "file_name": { "type": "string", "description":
              "an importable tunnel name, different for every device" },
            "qr_svg": { "type": ["string", "null"] },
            "mobileconfig": { "type": ["string", "null"] },
            "next_step": { "type": ["string", "null"], "description":
              "what to do with a config without its private key" } } },
          "Group": { "type": "object", "properties": {
            "id": { "type": "integer" }, "name": { "type": "string" },
            "allowed_prefixes": { "type": "array", "items": { "type": "string" } },
            "full_tunnel": { "type": "boolean" },
            "dns": { "type": "array", "items": { "type": "string" } },
            "peer_to_peer": { "type": "boolean" },
            "usage_window": { "oneOf": [schema("UsageWindow"), { "type": "null" }],
              "description": "when the group's devices may pass traffic; null: at any time" },
            "sign_in_hours": { "type": ["integer", "null"], "minimum": 1, "maximum": 24,
              "description": "sign in to connect: the devices pass traffic only for this many \
                hours after their owner signs in with a second factor on the staff page; null: \
                no sign-in needed" } } },
          "UsageWindow": { "type": "object", "properties": {
            "schedule": { "type": "string", "description":
              "weekly, in the zone's wall-clock time: \"Mon-Fri 06:00-20:00; Sat 08:00-12:00\" \
               (German day names read too; an end not after the start runs past midnight)" },
            "time_zone": { "type": "string", "description": "an IANA name, such as Europe/Berlin" },
            "closed_dates": { "type": "array", "items": { "type": "string", "format": "date" },
              "description": "dates on which no window opens (public holidays)" },
            "open_now": { "type": "boolean" },
            "next_change": { "type": ["integer", "null"],
              "description": "Unix seconds of the next opening or closing; null: none within the next weeks" } } },
          "UsageWindowInput": { "type": "object", "required": ["schedule"],
            "additionalProperties": false, "properties": {
            "schedule": { "type": "string", "example": "Mon-Fri 06:00-20:00" },
            "time_zone": { "type": "string", "description": "an IANA name (Europe/Berlin if empty)" },
            "closed_dates": { "type": "array", "items": { "type": "string", "format": "date" } } } },
          "Absence": { "type": "object", "properties": {
            "id": { "type": "integer" },
            "user": { "type": ["string", "null"], "description": "all of this user's devices" },
            "device": { "type": ["string", "null"], "description": "this device only" },
            "starts_at": { "type": "integer" },
            "ends_at": { "type": "integer", "description": "Unix seconds, exclusive" },
            "active": { "type": "boolean", "description": "suspends access at this moment" },
            "reason": { "type": "string" },
            "created_by": { "type": "string", "description": "whose decision it was" },
            "created_at": { "type": "integer" } } },
          "Activation": { "type": "object", "properties": {
            "id": { "type": "integer" }, "user": { "type": "string" },
            "starts_at": { "type": "integer" },
            "ends_at": { "type": "integer", "description":
              "Unix seconds, exclusive; each group also ends it after its own sign_in_hours" },
            "created_by": { "type": "string" } } },
          "ActivationList": { "type": "object", "properties": {
            "items": { "type": "array", "items": schema("Activation") },
            "total": { "type": "integer" } } },
          "NewAbsence": { "type": "object", "required": ["from", "until"],
            "additionalProperties": false, "properties": {
            "user": { "type": "string", "description": "either a user…" },
            "device": { "type": "string", "description": "…or one device" },
            "from": { "type": "string", "description":
              "a date (2027-01-04: its midnight), a local time (2027-01-04T08:00) or a moment \
               with an offset, read in time_zone" },
            "until": { "type": "string", "description":
              "as from; a date includes that whole day" },
            "time_zone": { "type": "string", "description": "an IANA name (Europe/Berlin if empty)" },
            "reason": { "type": "string", "maxLength": 200 } } },
          "AbsenceList": { "type": "object", "properties": {
            "items": { "type": "array", "items": schema("Absence") },
            "total": { "type": "integer" } } },
          "AccessReview": { "type": "object", "properties": {
            "generated_at": { "type": "integer" },
            "unseen_days": { "type": "integer",
              "description": "devices not seen for this many days lose their access (0: off)" },
            "items": { "type": "array", "items": schema("AccessReviewRow") },
            "total": { "type": "integer" },
            "revoked_soon": { "type": "array", "description":
              "devices the review revokes within a week unless they connect",
              "items": { "type": "object", "properties": {
                "device": { "type": "string" }, "due_at": { "type": "integer" } } } } } },
          "AccessReviewRow": { "type": "object", "properties": {
            "user": { "type": ["string", "null"] }, "device": { "type": "string" },
            "group": { "type": "string" },
            "networks": { "type": ["array", "null"], "items": { "type": "string" } },
            "usage_window": { "type": ["string", "null"] },
            "since": { "type": "integer", "description": "enrolled at (Unix seconds)" },
            "enrolled_by": { "type": ["string", "null"],
              "description": "whose decision: the actor that enrolled it, as the audit log has it" },
            "last_seen": { "type": "integer" },
            "last_handshake_at": { "type": ["integer", "null"] },
            "expires_at": { "type": ["integer", "null"] } } },
          "NewGroup": { "type": "object", "required": ["name", "allowed_prefixes"],
            "additionalProperties": false, "properties": {
            "name": { "type": "string" },
            "allowed_prefixes": { "type": "array", "items": { "type": "string" } },
            "full_tunnel": { "type": "boolean" },
            "dns": { "type": "array", "items": { "type": "string" } },
            "peer_to_peer": { "type": "boolean", "description": "Devices of the group may reach other devices (of groups that allow it too); off by default." } } },
          "GroupUpdate": { "type": "object", "additionalProperties": false, "properties": {
            "allowed_prefixes": { "type": "array", "items": { "type": "string" } },
            "full_tunnel": { "type": "boolean" },
            "dns": { "type": "array", "items": { "type": "string" } },
            "peer_to_peer": { "type": "boolean" },
            "usage_window": { "oneOf": [schema("UsageWindowInput"), { "type": "null" }],
              "description": "null removes the window" },
            "sign_in_hours": { "type": ["integer", "null"], "minimum": 0, "maximum": 24,
              "description": "sign in to connect for this many hours; null or 0 turns it off" } } },
          "GroupList": { "type": "object", "properties": {
            "items": { "type": "array", "items": schema("Group") },
            "total": { "type": "integer" } } },
          "User": { "type": "object", "properties": {
            "id": { "type": "integer" }, "name": { "type": "string" },
            "email": { "type": ["string", "null"] }, "created_at": { "type": "integer" },
            "disabled_at": { "type": ["integer", "null"] },
            "active_devices": { "type": "integer" },
            "from_directory": { "type": "boolean",
              "description": "linked to a directory entry: the directory sync decides" },
            "group": { "type": ["string", "null"],
              "description": "the group the directory gives this user; their devices go there" },
            "from_provider": { "type": "boolean",
              "description": "linked to an account of the identity provider: signs in on the staff page /my" } } },
          "UserList": { "type": "object", "properties": {
            "items": { "type": "array", "items": schema("User") },
            "total": { "type": "integer" } } },
          "NewUser": { "type": "object", "required": ["name"], "additionalProperties": false,
            "properties": { "name": { "type": "string" }, "email": { "type": "string" } } },
          "UserDetail": { "type": "object", "properties": { "user": schema("User"),
            "devices": { "type": ["array", "null"], "items": schema("Device"),
              "description": "null unless the token also holds devices:read" } } },
          "Token": { "type": "object", "properties": {
            "id": { "type": "integer" }, "name": { "type": "string" },
            "scopes": { "type": "array", "items": { "type": "string" } },
            "created_at": { "type": "integer" }, "revoked_at": { "type": ["integer", "null"] },
            "token": { "type": "string", "description": "only when created" } } },
          "NewToken": { "type": "object", "required": ["name", "scopes"],
            "additionalProperties": false, "properties": { "name": { "type": "string" },
              "scopes": { "type": "array", "items": { "enum": heimweg_control::Scope::ALL.map(heimweg_control::Scope::as_str) } } } },
          "Link": { "type": "object", "properties": {
            "id": { "type": "integer" }, "device_name": { "type": "string" },
            "group": { "type": "string" }, "owner": { "type": ["string", "null"] },
            "path": { "type": "string", "description": "only when created" },
            "expires_at": { "type": "integer" },
            "status": { "enum": ["open", "used", "revoked", "expired"] } } },
          "NewLink": { "type": "object", "required": ["device_name"],
            "additionalProperties": false, "properties": {
            "device_name": { "type": "string" }, "group": { "type": "string" },
            "owner": { "type": "string" }, "expires_in_hours": { "type": "integer" } } },
          "AccessRequest": { "type": "object", "properties": {
            "id": { "type": "integer" }, "requester": { "type": "string" },
            "contact": { "type": "string" }, "device_name": { "type": "string" },
            "reason": { "type": "string" },
            "status": { "enum": ["pending", "approved", "rejected"] },
            "created_at": { "type": "integer" }, "decided_at": { "type": ["integer", "null"] },
            "decided_by": { "type": ["string", "null"] }, "link_open": { "type": "boolean" },
            "status_path": { "type": "string",
              "description": "only when filed: the requester's page, shown once" } } },
          "NewAccessRequest": { "type": "object", "required": ["requester", "device_name"],
            "additionalProperties": false, "properties": {
            "requester": { "type": "string" }, "contact": { "type": "string" },
            "device_name": { "type": "string" }, "reason": { "type": "string" } } },
          "Approve": { "type": "object", "additionalProperties": false, "properties": {
            "group": { "type": "string", "default": "default" },
            "expires_in_hours": { "type": "integer", "default": 72 } } },
          "ListOf": { "type": "object", "properties": { "items": { "type": "array" } } }
        }
      },
      "paths": {
        "/api/v1/openapi.json": { "get": op("This document", None, vec![], None,
          &[("200", reply("The OpenAPI document", None))]) },
        "/api/v1/devices": {
          "get": op("List devices, newest first", Some("devices:read"), device_list, None,
            &[("200", reply("A page of devices", Some("DeviceList")))]),
          "post": op("Enroll a device; the config is in the response once",
            Some("devices:write"), vec![], Some(body("NewDevice")),
            &[("201", reply("Enrolled", Some("Config")))]) },
        "/api/v1/devices/{name}": {
          "get": op("Show a device", Some("devices:read"), vec![name()], None,
            &[("200", reply("The device", Some("Device")))]),
          "patch": op("Change a device's group, owner or expiry", Some("devices:write"),
            vec![name()], Some(body("DeviceUpdate")),
            &[("200", reply("The changed device", Some("Device")))]) },
        "/api/v1/devices/{name}/rotate": { "post": op(
          "Give a device a new key; the old one stops working within a second",
          Some("devices:write"), vec![name()], Some(body("Rotate")),
          &[("201", reply("The new config, once", Some("Config")))]) },
        "/api/v1/devices/{name}/revoke": { "post": op(
          "Revoke a device; the gateway drops it within a second", Some("devices:write"),
          vec![name()], None, &[("204", no_content())]) },
        "/api/v1/mdm/profiles": { "post": op(
          "Give every selected device a new key and answer their Apple profiles as one zip \
           (one .mobileconfig per device, each with the device's stable PayloadIdentifier, so \
           the MDM's push replaces the installed profile); all devices or none",
          Some("devices:write"), vec![], Some(body("MdmExport")),
          &[("200", json!({ "description": "The profiles, once; not stored",
              "content": { "application/zip": { "schema":
                { "type": "string", "format": "binary" } } } }))]) },
        "/api/v1/import/people": { "post": op(
          "Import staff and their devices from CSV (columns user, email, group, device; `;` or \
           `,`; UTF-8 with or without BOM): creates the users who are new and a one-time \
           enrollment link per new device, in transactions of 250 rows; the same file again \
           changes nothing. A refused row says why and changes nothing; the others go ahead \
           (needs devices:write too)",
          Some("users:write"),
          vec![query_param("dry_run", "boolean", "only report what would change"),
               query_param("link_hours", "integer", "hours the links stay open, 1 to 720 (168)"),
               query_param("mail", "boolean",
                 "mail each invitation whose person has an address (sent by the gateway's mail \
                  queue) instead of answering its link")],
          Some(json!({ "required": true, "content": { "text/csv": { "schema":
            { "type": "string" } } } })),
          &[("200", reply("What changed (or would), row by row; the links, once",
              Some("ImportReport")))]) },
        "/api/v1/rollout": { "get": op(
          "How far each group's rollout got: invitations made, open, expired unused; devices \
           enrolled, connected at least once, connected in the last seven days; and the total",
          Some("devices:read"), vec![], None,
          &[("200", reply("Per group and in total", Some("Rollout")))]) },
        "/api/v1/invitations": { "get": op(
          "Each invitation (newest first) with its latest mail (queued, sending, sent, failed, \
           cancelled), whether its link was opened and used, and the device's last handshake \
           (needs users:read too: it lists mail addresses)",
          Some("devices:read"), vec![query_param("limit", "integer", "default 500")], None,
          &[("200", reply("Invitations", Some("Invitations")))]) },
        "/api/v1/invitations/remind": { "post": op(
          "Mail a new link to everyone whose invitation is unused and who has a mail address \
           (the earlier link stops working when the reminder is sent); each link stays open \
           for link_hours from now (needs users:write too)",
          Some("devices:write"), vec![], Some(body("Remind")),
          &[("200", reply("How many reminders were queued", Some("Reminded")))]) },
        "/api/v1/directory": { "get": op(
          "The directory sync: its settings (null when no directory is connected; never the \
           password) and the latest runs, newest first",
          Some("users:read"), vec![query_param("limit", "integer", "runs, 1 to 500 (50)")], None,
          &[("200", reply("Settings and runs", Some("Directory")))]) },
        "/api/v1/identity": { "get": op(
          "The identity provider staff (on /my) and admins (in the panel) sign in through, and \
           which of its groups map to heimweg groups and panel roles (null when none is \
           connected; never the client secret)",
          Some("users:read"), vec![], None,
          &[("200", reply("The provider's settings", Some("Identity")))]) },
        "/api/v1/directory/sync": { "post": op(
          "Read the directory now and apply it: newcomers created, leavers and disabled \
           accounts disabled with every device revoked. A run that could not read the directory \
           (failed) or would disable more than the threshold (refused) changes nothing; the \
           run is answered whatever its outcome (needs devices:write too). With dry_run, what \
           a run would do, and nothing changed or recorded",
          Some("users:write"),
          vec![query_param("dry_run", "boolean", "only say what a run would do")], None,
          &[("200", reply("The run, or with dry_run what it would do",
              Some("DirectorySyncAnswer")))]) },
        "/api/v1/groups": {
          "get": op("List groups", Some("groups:read"), vec![], None,
            &[("200", reply("All groups", Some("GroupList")))]),
          "post": op("Create a group with its access policy", Some("groups:write"), vec![],
            Some(body("NewGroup")), &[("201", reply("Created", Some("Group")))]) },
        "/api/v1/groups/{name}": {
          "get": op("Show a group", Some("groups:read"), vec![name()], None,
            &[("200", reply("The group", Some("Group")))]),
          "patch": op("Change a group's access policy or usage window; its devices follow \
             within a second, and outside the window they pass no traffic",
            Some("groups:write"), vec![name()], Some(body("GroupUpdate")),
            &[("200", reply("The changed group", Some("Group")))]) },
        "/api/v1/access-review": { "get": op(
          "Who has access to what at this moment: every device that may connect, its owner, \
           its group's networks and usage window, since when, by whose decision, when last \
           seen (needs devices:read too); with format=csv a file for a spreadsheet",
          Some("users:read"), vec![query_param("format", "string", "json (default) or csv")],
          None, &[("200", json!({ "description": "The review",
            "content": { "application/json": { "schema": schema("AccessReview") },
                         "text/csv": { "schema": { "type": "string" } } } }))]) },
        "/api/v1/absences": {
          "get": op("Absences that have not ended, the earliest first", Some("users:read"),
            vec![], None, &[("200", reply("Absences", Some("AbsenceList")))]),
          "post": op("Suspend a user's devices (users:write) or one device (devices:write) \
             for a span; access comes back by itself at its end", Some("users:write"), vec![],
            Some(body("NewAbsence")), &[("201", reply("Created", Some("Absence")))]) },
        "/api/v1/absences/{id}/end": { "post": op(
          "End an absence now (one that has not begun is withdrawn); access is back within a \
           second (users:write for a user's, devices:write for a device's)",
          Some("users:write"), vec![id()], None,
          &[("200", reply("The absence", Some("Absence")))]) },
        "/api/v1/activations": { "get": op(
          "Who is signed in to connect now (groups with sign_in_hours), the latest end first",
          Some("users:read"), vec![], None,
          &[("200", reply("Running activations", Some("ActivationList")))]) },
        "/api/v1/users/{name}/activation/end": { "post": op(
          "End the user's activation now: their devices in groups that require signing in to \
           connect are cut off within a second on every gateway",
          Some("users:write"), vec![name()], None, &[("204", no_content())]) },
        "/api/v1/users/{name}/second-factor/reset": { "post": op(
          "Forget the user's second factor for the staff page and any lock after wrong codes \
           (sign-in with the directory password): their next sign-in sets up a new one, and \
           their staff sessions end",
          Some("users:write"), vec![name()], None, &[("204", no_content())]) },
        "/api/v1/users": {
          "get": op("List users", Some("users:read"), user_list, None,
            &[("200", reply("A page of users", Some("UserList")))]),
          "post": op("Create a user", Some("users:write"), vec![], Some(body("NewUser")),
            &[("201", reply("Created", Some("User")))]) },
        "/api/v1/users/{name}": { "get": op("Show a user and their devices",
          Some("users:read"), vec![name()], None,
          &[("200", reply("The user", Some("UserDetail")))]) },
        "/api/v1/users/{name}/disable": { "post": op(
          "Disable a user who left and revoke all their devices (needs devices:write too)",
          Some("users:write"), vec![name()], None,
          &[("200", reply("How many devices were revoked", None))]) },
        "/api/v1/tokens": {
          "get": op("List API tokens (never their secrets)", Some("tokens:read"), vec![],
            None, &[("200", reply("All tokens", Some("ListOf")))]),
          "post": op("Create an API token with a subset of the caller's scopes",
            Some("tokens:write"), vec![], Some(body("NewToken")),
            &[("201", reply("The token, once", Some("Token")))]) },
        "/api/v1/tokens/{name}/revoke": { "post": op("Revoke an API token and every token minted from it",
          Some("tokens:write"), vec![name()], None, &[("204", no_content())]) },
        "/api/v1/audit": { "get": op("The audit log, newest first", Some("audit:read"),
          vec![query_param("limit", "integer", "default 100, at most 1000")], None,
          &[("200", reply("Entries", Some("ListOf")))]) },
        "/api/v1/enrollment-links": {
          "get": op("List enrollment links", Some("devices:read"), vec![], None,
            &[("200", reply("Links", Some("ListOf")))]),
          "post": op("Create a one-time enrollment link", Some("devices:write"), vec![],
            Some(body("NewLink")), &[("201", reply("The link, once", Some("Link")))]) },
        "/api/v1/enrollment-links/{id}/revoke": { "post": op("Withdraw an unused link",
          Some("devices:write"), vec![id()], None, &[("204", no_content())]) },
        "/api/v1/access-requests": {
          "get": op("List staff access requests", Some("devices:read"),
            vec![query_param("status", "string", "pending, approved or rejected"),
                 query_param("limit", "integer", "default 100")], None,
            &[("200", reply("Requests", Some("ListOf")))]),
          "post": op("Public: a member of staff asks for access", None, vec![],
            Some(body("NewAccessRequest")),
            &[("201", reply("Filed; the status page is in the response once",
              Some("AccessRequest")))]) },
        "/api/v1/access-requests/{id}/approve": { "post": op(
          "Approve a request: the requester's status page then offers the enrollment",
          Some("devices:write"), vec![id()], Some(body("Approve")),
          &[("200", reply("The request", Some("AccessRequest")))]) },
        "/api/v1/access-requests/{id}/reject": { "post": op("Reject a request",
          Some("devices:write"), vec![id()], None,
          &[("200", reply("The request", Some("AccessRequest")))]) },
        "/enroll/{token}": {
          "get": op(
            "Public HTML page: what a one-time link sets up, and a button; uses nothing up", None,
            vec![path_param("token", "string")], None,
            &[("200", reply("The confirmation page", None)),
              ("410", reply("Used, expired or withdrawn", None))]),
          "post": op(
            "Public: uses the one-time link up and shows its config, once", None,
            vec![path_param("token", "string")], None,
            &[("200", reply("The page with QR code and downloads", None)),
              ("410", reply("Used, expired or withdrawn", None))]) },
        "/request/{secret}": { "get": op("Public HTML page: where a request stands", None,
          vec![path_param("secret", "string")], None,
          &[("200", reply("The status page", None)), ("404", reply("Unknown", None))]) }
      }
    })
}
