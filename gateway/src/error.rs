//! `GatewayError`: every way a request can fail at the HTTP edge, mapped to
//! the status and JSON-RPC error the MCP spec names. Internals never leak
//! into responses; they are logged where the error is created.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use jetway_shared::jsonrpc;
use serde_json::Value;

/// `Retry-After` of a 507 for a full store: space frees when an operator
/// acts or old messages age out, not within a second.
pub const STORAGE_RETRY_AFTER: &str = "10";

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("Parse error: {0}")]
    Parse(#[source] serde_json::Error),
    #[error("Invalid Request: {0}")]
    InvalidRequest(String, Option<Value>),
    #[error("Bad Request: Mcp-Session-Id header is required")]
    MissingSession,
    #[error("Bad Request: the message URL must carry session_id")]
    MissingSessionParam,
    #[error("Bad Request: {0}")]
    NotNow(&'static str),
    #[error("Session not found")]
    SessionNotFound,
    #[error("Not Found: this gateway serves no such service")]
    UnknownService,
    #[error("Bad Request: Unsupported protocol version: {0} (supported: {1})")]
    UnsupportedVersion(String, String),
    #[error("Bad Request: malformed Last-Event-ID")]
    MalformedEventId,
    #[error(
        "Bad Request: Last-Event-ID names no stored event of this session (unknown, or aged out of retention)"
    )]
    UnknownEventId,
    #[error("Not Acceptable: {0}")]
    NotAcceptable(&'static str),
    #[error("Unsupported Media Type: Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("Forbidden: origin {0} is not allowed")]
    ForbiddenOrigin(String),
    #[error("Forbidden: host {0} is not allowed")]
    ForbiddenHost(String),
    /// 429: this gateway already streams `max_inflight_per_session`
    /// requests of the session.
    #[error("Too Many Requests: the session has {0} requests in flight on this gateway")]
    TooManyInFlight(usize),
    /// 429: the principal's (or address's) rate bucket is empty; retry
    /// after this many seconds.
    #[error("Too Many Requests: request rate limit reached; retry in {0} s")]
    RateLimited(u64),
    /// 429: the principal (or address) holds this many live sessions.
    #[error("Too Many Requests: {0} live sessions already; end one (DELETE) or let one expire")]
    TooManySessions(usize),
    #[error("Payload Too Large: body exceeds {0} bytes")]
    TooLarge(usize),
    #[error("Request Timeout: the body did not arrive within {0} s")]
    BodyTimeout(u64),
    #[error("Service Unavailable: the message bus is unreachable")]
    Unavailable,
    /// 507: JetStream refused the message for lack of room (stream, bucket
    /// or server store full); nothing was stored.
    #[error("Insufficient Storage: the message store is full; retry later")]
    StorageFull,
    /// 507: this session's subject holds `session_max_messages` messages.
    #[error("Insufficient Storage: this session has stored its maximum number of messages")]
    SessionStorageFull,
    #[error("Service Unavailable: the gateway is shutting down")]
    Draining,
    #[error("Gateway Timeout: the request did not complete in time")]
    Timeout,
    /// 401: the `WWW-Authenticate` challenge, and why.
    #[error("Unauthorized: {1}")]
    Unauthorized(String, String),
    /// 403 `insufficient_scope`: the challenge, and why.
    #[error("Forbidden: {1}")]
    InsufficientScope(String, String),
    #[error(
        "Service Unavailable: tokens cannot be verified now (the issuer's keys are unreachable)"
    )]
    AuthUnavailable,
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Parse(_)
            | Self::InvalidRequest(..)
            | Self::MissingSession
            | Self::MissingSessionParam
            | Self::NotNow(_)
            | Self::UnsupportedVersion(..)
            | Self::MalformedEventId
            | Self::UnknownEventId => StatusCode::BAD_REQUEST,
            Self::SessionNotFound | Self::UnknownService => StatusCode::NOT_FOUND,
            Self::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::ForbiddenOrigin(_) | Self::ForbiddenHost(_) => StatusCode::FORBIDDEN,
            Self::TooManyInFlight(_) | Self::RateLimited(_) | Self::TooManySessions(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable | Self::Draining | Self::AuthUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::StorageFull | Self::SessionStorageFull => StatusCode::INSUFFICIENT_STORAGE,
            Self::Unauthorized(..) => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope(..) => StatusCode::FORBIDDEN,
        }
    }

    pub fn code(&self) -> i64 {
        match self {
            Self::Parse(_) => jsonrpc::PARSE_ERROR,
            Self::SessionNotFound => jsonrpc::SESSION_NOT_FOUND,
            Self::Unavailable | Self::Draining | Self::AuthUnavailable => {
                jsonrpc::SERVICE_UNAVAILABLE
            }
            Self::Unauthorized(..) => jsonrpc::UNAUTHORIZED,
            Self::InsufficientScope(..) => jsonrpc::INSUFFICIENT_SCOPE,
            Self::TooManyInFlight(_) | Self::RateLimited(_) | Self::TooManySessions(_) => {
                jsonrpc::TOO_MANY_REQUESTS
            }
            Self::StorageFull => jsonrpc::STORAGE_FULL,
            Self::SessionStorageFull => jsonrpc::SESSION_STORAGE_FULL,
            Self::Timeout => jsonrpc::REQUEST_FAILED,
            _ => jsonrpc::INVALID_REQUEST,
        }
    }

    /// The limit this error enforces, for `jetway_limit_rejections_total`.
    pub fn limit(&self) -> Option<crate::metrics::Limit> {
        use crate::metrics::Limit;
        Some(match self {
            Self::TooManyInFlight(_) => Limit::Inflight,
            Self::RateLimited(_) => Limit::Rate,
            Self::TooManySessions(_) => Limit::Sessions,
            Self::TooLarge(_) => Limit::BodySize,
            Self::BodyTimeout(_) => Limit::BodyTimeout,
            Self::ForbiddenHost(_) => Limit::Host,
            Self::ForbiddenOrigin(_) => Limit::Origin,
            _ => return None,
        })
    }

    fn id(&self) -> Option<&Value> {
        match self {
            Self::InvalidRequest(_, id) => id.as_ref(),
            _ => None,
        }
    }
}

/// `Retry-After` of a refused `initialize`: a session frees when its owner
/// ends one, which the gateway cannot predict.
pub const SESSIONS_RETRY_AFTER: &str = "60";

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let body = jsonrpc::error(self.id(), self.code(), self.to_string());
        let mut resp = (self.status(), axum::Json(body)).into_response();
        resp.extensions_mut()
            .insert(crate::metrics::RpcCode(self.code()));
        if let Some(limit) = self.limit() {
            crate::metrics::limit_rejected(limit);
        }
        match &self {
            Self::RateLimited(secs) => {
                resp.headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, (*secs).into());
            }
            Self::TooManySessions(_) => {
                resp.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static(SESSIONS_RETRY_AFTER),
                );
            }
            Self::Unavailable
            | Self::Draining
            | Self::AuthUnavailable
            | Self::TooManyInFlight(_) => {
                resp.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static("1"),
                );
            }
            Self::StorageFull => {
                resp.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static(STORAGE_RETRY_AFTER),
                );
            }
            Self::Unauthorized(challenge, _) | Self::InsufficientScope(challenge, _) => {
                if let Ok(v) = axum::http::HeaderValue::from_str(challenge) {
                    resp.headers_mut()
                        .insert(axum::http::header::WWW_AUTHENTICATE, v);
                }
            }
            _ => {}
        }
        resp
    }
}
