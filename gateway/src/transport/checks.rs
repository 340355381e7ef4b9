//! Everything the Streamable HTTP edge checks before it touches NATS, as
//! pure functions: [`post`], [`get`] and [`delete`] take the request's
//! headers (and body) and return what the handler needs, typed, or the
//! error the client gets, in the order the spec's error statuses imply:
//! host and origin (403), Accept (406), Content-Type (415), protocol version (400),
//! session header shape (400), body size (413), JSON (parse error), JSON-RPC
//! shape and batch rules (invalid request).
//!
//! The small checks they are made of stay public for the other transports.
//! Tested table-driven in `checks/tests.rs`.

use crate::{config::Config, error::GatewayError};
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use jetway_shared::{
    jsonrpc::{self, Kind, method},
    protocol::{ProtocolVersion, Transport},
    service::Service,
    subjects::{EventId, SessionId},
};
use serde_json::Value;

pub use jetway_shared::protocol::{LAST_EVENT_ID, SESSION_HEADER, VERSION_HEADER};

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// 403 if the request's `Host` is not allowed (DNS rebinding: a page on
/// another site that resolves its name to this gateway's address). A
/// request without `Host` (HTTP/1.0) passes: browsers always send one.
pub fn host(config: &Config, h: &HeaderMap) -> Result<(), GatewayError> {
    match h.get(header::HOST) {
        None => Ok(()),
        Some(v) => {
            let host = v.to_str().unwrap_or("<non-ascii>");
            if config.host_allowed(host) {
                Ok(())
            } else {
                Err(GatewayError::ForbiddenHost(host.to_owned()))
            }
        }
    }
}

/// 403 if the request carries an `Origin` that is not allowed (DNS rebinding).
pub fn origin(config: &Config, h: &HeaderMap) -> Result<(), GatewayError> {
    match h.get(header::ORIGIN) {
        None => Ok(()),
        Some(v) => {
            let origin = v.to_str().unwrap_or("<non-ascii>");
            if config.origin_allowed(origin) {
                Ok(())
            } else {
                Err(GatewayError::ForbiddenOrigin(origin.to_owned()))
            }
        }
    }
}

fn accepts(h: &HeaderMap, media: &str) -> bool {
    let (kind, _) = media.split_once('/').unwrap_or((media, ""));
    h.get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|part| {
            part.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .any(|m| m == media || m == "*/*" || m == format!("{kind}/*"))
}

/// 406 unless a POST accepts both JSON and SSE.
pub fn accept_post(h: &HeaderMap) -> Result<(), GatewayError> {
    if accepts(h, "application/json") && accepts(h, "text/event-stream") {
        Ok(())
    } else {
        Err(GatewayError::NotAcceptable(
            "Accept must list both application/json and text/event-stream",
        ))
    }
}

/// 406 unless a GET accepts SSE.
pub fn accept_get(h: &HeaderMap) -> Result<(), GatewayError> {
    if accepts(h, "text/event-stream") {
        Ok(())
    } else {
        Err(GatewayError::NotAcceptable(
            "Accept must list text/event-stream",
        ))
    }
}

/// 415 unless the body is declared JSON.
pub fn content_type(h: &HeaderMap) -> Result<(), GatewayError> {
    let ok = header_str(h, header::CONTENT_TYPE.as_str())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(GatewayError::UnsupportedMediaType)
    }
}

/// The request's protocol version: the header, or 2025-03-26 when absent;
/// 400 if it names a version this gateway does not serve.
pub fn protocol_version(h: &HeaderMap) -> Result<ProtocolVersion, GatewayError> {
    let Some(v) = header_str(h, VERSION_HEADER) else {
        return Ok(ProtocolVersion::DEFAULT_HEADER);
    };
    ProtocolVersion::parse(v.trim())
        .filter(|v| v.served_on(Transport::StreamableHttp))
        .ok_or_else(|| {
            GatewayError::UnsupportedVersion(
                v.to_owned(),
                ProtocolVersion::joined(Transport::StreamableHttp),
            )
        })
}

/// The session the request's `Mcp-Session-Id` names: 400 if the header is
/// absent; `None` if it is present but not a Jetway session id, of any shape
/// (wrong format, too long, not even visible ASCII). Such an id names no
/// session, so the caller answers 404 exactly as for an unknown well-formed
/// one (a client then starts a new session), without ever turning it into a
/// subject or a KV key.
pub fn session(service: &Service, h: &HeaderMap) -> Result<Option<SessionId>, GatewayError> {
    let value = h.get(SESSION_HEADER).ok_or(GatewayError::MissingSession)?;
    Ok(value
        .to_str()
        .ok()
        .and_then(|raw| SessionId::parse(service, raw.trim()).ok()))
}

/// The `Last-Event-ID` to resume from, if any: 400 if it is not one of
/// ours, or if there are several.
pub fn last_event_id(h: &HeaderMap) -> Result<Option<EventId>, GatewayError> {
    let mut values = h.get_all(LAST_EVENT_ID).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(GatewayError::MalformedEventId);
    }
    v.to_str()
        .ok()
        .and_then(EventId::parse)
        // Stream sequences start at 1: no event has id `…-0`.
        .filter(|id| id.sequence > 0)
        .map(Some)
        .ok_or(GatewayError::MalformedEventId)
}

/// The W3C trace context to carry onto the bus, if the client sent one.
pub fn traceparent(h: &HeaderMap) -> Option<&str> {
    header_str(h, "traceparent").filter(|v| v.len() <= 128)
}

/// What a request is checked against: the gateway's settings (allowed
/// origins, body limit) and the service the endpoint serves.
#[derive(Debug, Clone, Copy)]
pub struct Limits<'a> {
    pub config: &'a Config,
    pub service: &'a Service,
}

/// A POST body as read from the connection, up to the body limit.
#[derive(Debug, Clone)]
pub enum Body {
    /// The whole body.
    Read(Bytes),
    /// The body was longer than `max_body_bytes` (or could not be read).
    OverLimit,
}

/// Reads a request body: up to `max_bytes`, within `within` (408 if it
/// takes longer: a client that stalls its body holds no slot for long).
pub async fn read_body(
    body: axum::body::Body,
    max_bytes: usize,
    within: std::time::Duration,
) -> Result<Body, GatewayError> {
    match tokio::time::timeout(within, axum::body::to_bytes(body, max_bytes)).await {
        Err(_) => Err(GatewayError::BodyTimeout(within.as_secs())),
        Ok(Ok(bytes)) => Ok(Body::Read(bytes)),
        Ok(Err(_)) => Ok(Body::OverLimit),
    }
}

/// One client message, checked and classified.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub value: Value,
    pub kind: Kind,
}

/// The session a POST is for.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The body is an `initialize`: a new session, negotiating `requested`
    /// (the client's version if this transport serves it, else the latest).
    New {
        requested: ProtocolVersion,
        params: Value,
    },
    /// The session `Mcp-Session-Id` names; `None` if it names no session of
    /// ours, which is answered 404 once the bus is known to be up, exactly
    /// as for an unknown well-formed id.
    Existing(Option<SessionId>),
}

/// A POST that passed every check.
#[derive(Debug, Clone)]
pub struct CheckedPost {
    pub target: Target,
    /// The `MCP-Protocol-Version` of the request (2025-03-26 when absent).
    pub version: ProtocolVersion,
    pub messages: Vec<Inbound>,
    /// True if the body was a JSON-RPC batch (even of one message).
    pub batch: bool,
    /// The W3C trace context to carry onto the bus.
    pub traceparent: Option<String>,
}

impl CheckedPost {
    /// The version the response streams follow: the negotiated one for a
    /// new session, the request's otherwise.
    pub fn stream_version(&self) -> ProtocolVersion {
        match self.target {
            Target::New { requested, .. } => requested,
            Target::Existing(_) => self.version,
        }
    }
}

/// A GET that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedGet {
    pub version: ProtocolVersion,
    /// `None`: the header names no session of ours (404 once the bus is up).
    pub session: Option<SessionId>,
    /// The `Last-Event-ID` to resume from.
    pub resume: Option<EventId>,
}

/// A DELETE that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedDelete {
    pub version: ProtocolVersion,
    /// `None`: the header names no session of ours (404 once the bus is up).
    pub session: Option<SessionId>,
}

/// Checks a POST: headers, body size, JSON, JSON-RPC shape, batch rules,
/// and `initialize` alone; then which session it is for.
pub fn post(h: &HeaderMap, body: Body, limits: Limits<'_>) -> Result<CheckedPost, GatewayError> {
    host(limits.config, h)?;
    origin(limits.config, h)?;
    accept_post(h)?;
    content_type(h)?;
    let version = protocol_version(h)?;
    let Body::Read(bytes) = body else {
        return Err(GatewayError::TooLarge(limits.config.max_body_bytes));
    };
    let (messages, batch) = parse(&bytes, version, limits.config.max_batch_messages)?;
    let init = messages
        .iter()
        .find(|m| matches!(&m.kind, Kind::Request { method: m, .. } if m == method::INITIALIZE));
    let target = match init {
        Some(_) if batch => {
            return Err(GatewayError::InvalidRequest(
                "initialize must not be part of a batch".into(),
                None,
            ));
        }
        Some(init) => {
            let (params, requested) = initialize(
                &init.value,
                limits.config.max_initialize_bytes,
                Transport::StreamableHttp,
            )?;
            Target::New { requested, params }
        }
        None => Target::Existing(session(limits.service, h)?),
    };
    Ok(CheckedPost {
        target,
        version,
        messages,
        batch,
        traceparent: traceparent(h).map(str::to_owned),
    })
}

/// The params of the `initialize` request `message` (400 if they are over
/// `max` bytes: the session record keeps them) and the version it
/// negotiates on `transport`: the client's if served there, else the
/// transport's newest.
pub fn initialize(
    message: &Value,
    max: usize,
    transport: Transport,
) -> Result<(Value, ProtocolVersion), GatewayError> {
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    let size = serde_json::to_vec(&params).map_or(0, |b| b.len());
    if size > max {
        crate::metrics::limit_rejected(crate::metrics::Limit::InitializeSize);
        return Err(GatewayError::InvalidRequest(
            format!("initialize params of {size} bytes exceed {max} bytes"),
            message.get("id").cloned(),
        ));
    }
    let requested = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .and_then(ProtocolVersion::parse)
        .filter(|v| v.served_on(transport))
        .or_else(|| ProtocolVersion::list(transport).next())
        .unwrap_or(ProtocolVersion::LATEST);
    Ok((params, requested))
}

/// Checks a GET: origin, Accept, version, session header, `Last-Event-ID`.
pub fn get(h: &HeaderMap, limits: Limits<'_>) -> Result<CheckedGet, GatewayError> {
    host(limits.config, h)?;
    origin(limits.config, h)?;
    accept_get(h)?;
    let version = protocol_version(h)?;
    let session = session(limits.service, h)?;
    let resume = last_event_id(h)?;
    Ok(CheckedGet {
        version,
        session,
        resume,
    })
}

/// Checks a DELETE: origin, version, session header.
pub fn delete(h: &HeaderMap, limits: Limits<'_>) -> Result<CheckedDelete, GatewayError> {
    host(limits.config, h)?;
    origin(limits.config, h)?;
    let version = protocol_version(h)?;
    let session = session(limits.service, h)?;
    Ok(CheckedDelete { version, session })
}

/// Parses the body into checked JSON-RPC messages (a batch only where the
/// request's protocol version allows one); the flag tells a batch.
fn parse(
    bytes: &[u8],
    version: ProtocolVersion,
    max_batch: usize,
) -> Result<(Vec<Inbound>, bool), GatewayError> {
    let value: Value = serde_json::from_slice(bytes).map_err(GatewayError::Parse)?;
    let batch = value.is_array();
    let values = match value {
        Value::Array(items) => {
            if !version.allows_batches() {
                return Err(GatewayError::InvalidRequest(
                    format!("JSON-RPC batches are not supported in protocol version {version}"),
                    None,
                ));
            }
            if items.is_empty() {
                return Err(GatewayError::InvalidRequest("empty batch".into(), None));
            }
            if items.len() > max_batch {
                crate::metrics::limit_rejected(crate::metrics::Limit::Batch);
                return Err(GatewayError::InvalidRequest(
                    format!("a batch of {} messages exceeds {max_batch}", items.len()),
                    None,
                ));
            }
            items
        }
        other => vec![other],
    };
    let messages = values
        .into_iter()
        .map(|value| match jsonrpc::classify(&value) {
            Ok(kind) => Ok(Inbound { value, kind }),
            Err(e) => {
                let id = value
                    .get("id")
                    .filter(|id| id.is_string() || id.is_number())
                    .cloned();
                Err(GatewayError::InvalidRequest(e.to_string(), id))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((messages, batch))
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
