//! OAuth 2.1 resource server (MCP authorization, 2025-11-25): who is
//! calling, and may they.
//!
//! Off unless `auth_issuer` is set. When on, every request to an MCP
//! endpoint needs `Authorization: Bearer <JWT>` from that issuer, for this
//! resource ([`verify`]); without one it gets 401 with a `WWW-Authenticate`
//! challenge naming the Protected Resource Metadata (RFC 9728, served by
//! [`metadata`]). A request whose token lacks a configured scope gets 403
//! `insufficient_scope` ([`scopes`]). The token itself goes nowhere: not on
//! the stream, not in KV, not to workers or upstreams. What is kept is the
//! [`Caller`]'s principal, in the session record, so that a session answers
//! only to the principal that opened it (another one gets 404, as if the
//! session did not exist).
//!
//! - [`settings`] — the `auth_*` settings.
//! - [`jwks`] — the issuer's keys, discovered, cached and refreshed.
//! - [`verify`] — one token's checks.
//! - [`introspect`] — opaque tokens, through RFC 7662 introspection.
//! - [`scopes`] — which scopes a request needs.
//! - [`metadata`] — `/.well-known/oauth-protected-resource…`.

pub mod introspect;
pub mod jwks;
pub mod metadata;
pub mod scopes;
pub mod settings;
pub mod verify;

use crate::{Gateway, error::GatewayError};
use axum::{
    extract::{Request, State},
    http::{HeaderMap, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use jetway_shared::{jsonrpc::Kind, principal::Principal};
use serde_json::Value;
use std::{collections::BTreeSet, sync::Arc};

/// Who sent a request: anonymous when auth is off.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub principal: Option<Principal>,
    pub scopes: BTreeSet<String>,
}

/// The scopes a token grants: `scope` (space-separated, RFC 8693 / 9068 /
/// 7662) and `scp` (a list or a string, as some issuers send).
fn scopes_of(scope: Option<&str>, scp: Option<verify::Scp>) -> BTreeSet<String> {
    let mut scopes: BTreeSet<String> = scope
        .iter()
        .flat_map(|s| s.split_whitespace())
        .map(str::to_owned)
        .collect();
    match scp {
        Some(verify::Scp::List(l)) => scopes.extend(l),
        Some(verify::Scp::Text(t)) => scopes.extend(t.split_whitespace().map(str::to_owned)),
        None => {}
    }
    scopes
}

/// The protected resource a request to `path` is for: a service's MCP
/// endpoint. The HTTP+SSE endpoints (`…/sse`, `…/messages`) belong to the
/// same resource as `…/mcp`, so one token serves both transports.
pub fn resource_path(path: &str) -> String {
    for suffix in ["/sse", "/messages"] {
        if let Some(base) = path.strip_suffix(suffix) {
            return format!("{base}/mcp");
        }
    }
    path.to_owned()
}

/// The path of the Protected Resource Metadata of the MCP endpoint at `path`.
pub fn metadata_path(path: &str) -> String {
    format!("/.well-known/oauth-protected-resource{path}")
}

/// The value of a `WWW-Authenticate` challenge.
fn challenge(public_url: &str, path: &str, params: &[(&str, &str)]) -> String {
    let mut parts: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace(['"', '\\'], "")))
        .collect();
    parts.push(format!(
        "resource_metadata=\"{public_url}{}\"",
        metadata_path(path)
    ));
    format!("Bearer {}", parts.join(", "))
}

/// The bearer token of `h`: `None` if there is no `Authorization` header;
/// `Err` if there are several, or it is not a bearer token.
fn bearer(h: &HeaderMap) -> Result<Option<&str>, &'static str> {
    let mut values = h.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("several Authorization headers");
    }
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not ASCII")?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err("the Authorization header is not a bearer token"),
    }
}

/// Middleware on the MCP endpoints: puts the [`Caller`] in the request's
/// extensions, or answers 401 (503 while the issuer's keys cannot be had).
pub async fn authenticate(
    State(gw): State<Arc<Gateway>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(verifier) = &gw.auth else {
        req.extensions_mut().insert(Caller::default());
        return next.run(req).await;
    };
    let cfg = &verifier.cfg;
    let path = resource_path(req.uri().path());
    let refuse = |params: &[(&str, &str)], why: String| {
        let value = challenge(&cfg.public_url, &path, params);
        GatewayError::Unauthorized(value, why).into_response()
    };
    let token = match bearer(req.headers()) {
        Ok(Some(t)) => t,
        Ok(None) => {
            let scope = cfg.scopes.join(" ");
            let params: Vec<(&str, &str)> = if scope.is_empty() {
                vec![]
            } else {
                vec![("scope", scope.as_str())]
            };
            return refuse(&params, "a bearer token is required".into());
        }
        Err(why) => {
            return refuse(
                &[("error", "invalid_request"), ("error_description", why)],
                why.into(),
            );
        }
    };
    let resource = format!("{}{path}", cfg.public_url);
    match verifier.verify(token, &resource).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) if e.is_unavailable() => {
            tracing::warn!(error = %e, "cannot verify tokens");
            GatewayError::AuthUnavailable.into_response()
        }
        Err(e) => {
            tracing::info!(error = %e, "token refused");
            let why = e.to_string();
            refuse(
                &[("error", "invalid_token"), ("error_description", &why)],
                why.clone(),
            )
        }
    }
}

/// 403 unless `caller` holds every scope the client message `message`
/// (classified as `kind`) needs: a request's method's, and a `tools/call`'s
/// tool's. Notifications and responses need none; nothing to check when
/// auth is off.
pub fn authorize(
    gw: &Gateway,
    caller: &Caller,
    path: &str,
    kind: &Kind,
    message: &Value,
) -> Result<(), GatewayError> {
    let (Some(verifier), Kind::Request { method, .. }) = (&gw.auth, kind) else {
        return Ok(());
    };
    let tool = (method == "tools/call")
        .then(|| message.pointer("/params/name").and_then(Value::as_str))
        .flatten();
    let cfg = &verifier.cfg;
    let missing = scopes::missing(cfg, &caller.scopes, method, tool);
    if missing.is_empty() {
        return Ok(());
    }
    let needed = scopes::required(cfg, method, tool).join(" ");
    let why = format!("{method} needs the scope(s) {}", missing.join(" "));
    let value = challenge(
        &cfg.public_url,
        &resource_path(path),
        &[
            ("error", "insufficient_scope"),
            ("scope", &needed),
            ("error_description", &why),
        ],
    );
    Err(GatewayError::InsufficientScope(value, why))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_tokens_are_read_strictly() {
        let with = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(
                    header::AUTHORIZATION,
                    HeaderValue::from_str(v).expect("ascii"),
                );
            }
            h
        };
        assert_eq!(bearer(&with(&[])), Ok(None));
        assert_eq!(bearer(&with(&["Bearer abc"])), Ok(Some("abc")));
        assert_eq!(bearer(&with(&["bearer  abc "])), Ok(Some("abc")));
        assert!(bearer(&with(&["Basic dXNlcjpwYXNz"])).is_err());
        assert!(bearer(&with(&["Bearer"])).is_err());
        assert!(bearer(&with(&["Bearer "])).is_err());
        assert!(bearer(&with(&["Bearer a", "Bearer b"])).is_err());
    }

    #[test]
    fn both_transports_of_a_service_are_one_resource() {
        assert_eq!(resource_path("/mcp"), "/mcp");
        assert_eq!(resource_path("/sse"), "/mcp");
        assert_eq!(resource_path("/messages"), "/mcp");
        assert_eq!(resource_path("/services/b/sse"), "/services/b/mcp");
        assert_eq!(resource_path("/services/b/mcp"), "/services/b/mcp");
    }

    #[test]
    fn challenges_name_the_metadata_of_the_endpoint() {
        assert_eq!(
            challenge("https://mcp.example", "/mcp", &[]),
            "Bearer resource_metadata=\"https://mcp.example/.well-known/oauth-protected-resource/mcp\""
        );
        assert_eq!(
            challenge(
                "https://mcp.example/p",
                "/services/b/mcp",
                &[
                    ("error", "invalid_token"),
                    ("error_description", "say \"hi\"")
                ]
            ),
            "Bearer error=\"invalid_token\", error_description=\"say hi\", \
             resource_metadata=\"https://mcp.example/p/.well-known/oauth-protected-resource/services/b/mcp\""
        );
    }
}
