//! Header checks, in the order the spec's error statuses imply.

use crate::{config::Config, error::GatewayError};
use axum::http::{HeaderMap, header};
use jetway_shared::{
    protocol::{ProtocolVersion, Transport},
    service::Service,
    subjects::{EventId, SessionId},
};

pub use jetway_shared::protocol::{LAST_EVENT_ID, SESSION_HEADER, VERSION_HEADER};

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
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

/// The `Last-Event-ID` to resume from, if any: 400 if it is not one of ours.
pub fn last_event_id(h: &HeaderMap) -> Result<Option<EventId>, GatewayError> {
    match h.get(LAST_EVENT_ID) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(EventId::parse)
            .map(Some)
            .ok_or(GatewayError::MalformedEventId),
    }
}

/// The W3C trace context to carry onto the bus, if the client sent one.
pub fn traceparent(h: &HeaderMap) -> Option<&str> {
    header_str(h, "traceparent").filter(|v| v.len() <= 128)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn accept_needs_both_media_types_for_post() {
        assert!(accept_post(&with("accept", "application/json, text/event-stream")).is_ok());
        assert!(
            accept_post(&with(
                "accept",
                "text/event-stream;q=1, application/json;q=0.9"
            ))
            .is_ok()
        );
        assert!(accept_post(&with("accept", "*/*")).is_ok());
        assert!(accept_post(&with("accept", "application/json")).is_err());
        assert!(accept_post(&HeaderMap::new()).is_err());
        assert!(accept_get(&with("accept", "text/event-stream")).is_ok());
        assert!(accept_get(&with("accept", "application/json")).is_err());
    }

    #[test]
    fn protocol_version_defaults_and_refuses_unknown() {
        assert_eq!(
            protocol_version(&HeaderMap::new()).ok(),
            Some(ProtocolVersion::V2025_03_26)
        );
        assert_eq!(
            protocol_version(&with("mcp-protocol-version", "2025-11-25")).ok(),
            Some(ProtocolVersion::V2025_11_25)
        );
        assert!(protocol_version(&with("mcp-protocol-version", "2026-07-28")).is_err());
        assert!(protocol_version(&with("mcp-protocol-version", "banana")).is_err());
        assert!(protocol_version(&with("mcp-protocol-version", "2024-11-05")).is_err());
    }

    #[test]
    fn only_a_missing_session_header_is_an_error() {
        assert!(matches!(
            session(&Service::default(), &HeaderMap::new()),
            Err(GatewayError::MissingSession)
        ));
        let id = "0-0123456789abcdef0123456789abcdef";
        assert_eq!(
            session(&Service::default(), &with("mcp-session-id", id))
                .ok()
                .flatten(),
            SessionId::parse(&Service::default(), id).ok()
        );
        let long = format!("0-{}", "a".repeat(10_000));
        let junk: [&[u8]; 8] = [
            b"abc",
            b"",
            b"not-a-jetway-id",
            b"0-abc.*",
            b"123e4567-e89b-12d3-a456-426614174000",
            long.as_bytes(),
            "0-\u{e9}\u{e9}".as_bytes(),
            b"\xff\xfe\x80junk",
        ];
        for raw in junk {
            let mut h = HeaderMap::new();
            let value = HeaderValue::from_bytes(raw).expect("no control characters");
            h.insert(SESSION_HEADER, value);
            assert!(
                matches!(session(&Service::default(), &h), Ok(None)),
                "{:?} names no session",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn content_type_allows_parameters() {
        assert!(content_type(&with("content-type", "application/json; charset=utf-8")).is_ok());
        assert!(content_type(&with("content-type", "text/plain")).is_err());
        assert!(content_type(&HeaderMap::new()).is_err());
    }
}
