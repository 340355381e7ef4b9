//! RFC 9728 Protected Resource Metadata: `/.well-known/oauth-protected-resource`
//! (for `/mcp`) and its path-suffixed forms
//! (`/.well-known/oauth-protected-resource/mcp`,
//! `…/services/<name>/mcp`). 404 when auth is off or the path names no
//! endpoint this gateway serves.

use super::scopes;
use crate::{Gateway, error::GatewayError};
use axum::{
    Json,
    extract::{Path, State},
    response::IntoResponse,
};
use serde_json::json;
use std::sync::Arc;

/// `/.well-known/oauth-protected-resource`: the metadata of `/mcp`.
pub async fn root(State(gw): State<Arc<Gateway>>) -> Result<impl IntoResponse, GatewayError> {
    document(&gw, "/mcp")
}

/// `/.well-known/oauth-protected-resource/{*path}`.
pub async fn suffixed(
    State(gw): State<Arc<Gateway>>,
    Path(path): Path<String>,
) -> Result<impl IntoResponse, GatewayError> {
    document(&gw, &format!("/{path}"))
}

fn document(gw: &Gateway, path: &str) -> Result<Json<serde_json::Value>, GatewayError> {
    let Some(verifier) = &gw.auth else {
        return Err(GatewayError::UnknownService);
    };
    let served = path == "/mcp"
        || path
            .strip_prefix("/services/")
            .and_then(|rest| rest.strip_suffix("/mcp"))
            .is_some_and(|name| gw.services.get(Some(name)).is_some());
    if !served {
        return Err(GatewayError::UnknownService);
    }
    let cfg = &verifier.cfg;
    Ok(Json(json!({
        "resource": format!("{}{path}", cfg.public_url),
        "authorization_servers": [cfg.issuer],
        "bearer_methods_supported": ["header"],
        "scopes_supported": scopes::all(cfg),
        "resource_name": "Jetway MCP gateway",
    })))
}
