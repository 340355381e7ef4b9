//! The edge checks of the HTTP+SSE endpoints, as pure functions of what a
//! request carries: `GET /sse` and `POST /messages?session_id=…` either
//! pass with what the handler needs, or fail with the error the client
//! gets. Nothing here touches the bus; the handler looks the session up
//! afterwards and applies [`admit`] to its record.
//!
//! Origin and content type are the Streamable HTTP checks, reused as they
//! are; everything else differs: the session is named by the message URL's
//! query (not a header), `Last-Event-ID` is a [`SessionEventId`], there is
//! no protocol version header, and 2024-11-05 has no batches.

use crate::{config::Config, error::GatewayError, transport::checks};
use axum::{
    extract::Query,
    http::{HeaderMap, Uri},
};
use jetway_shared::{
    http_sse::{SESSION_PARAM, SESSION_PARAM_ALIAS, SessionEventId},
    jsonrpc::{self, Kind, method},
    service::Service,
    session::State,
    subjects::SessionId,
};
use serde_json::Value;

/// What a `GET /sse` asks for.
#[derive(Debug, PartialEq)]
pub enum Open {
    /// A new session.
    New,
    /// The session the id names, after that event.
    Resume(SessionEventId),
}

/// Checks a `GET /sse`: 503 while draining, 403 for a foreign `Origin`,
/// 406 without `text/event-stream` in `Accept`, 400 for a `Last-Event-ID`
/// that is not one of this transport's ids.
pub fn sse_get(
    config: &Config,
    service: &Service,
    h: &HeaderMap,
    draining: bool,
) -> Result<Open, GatewayError> {
    if draining {
        return Err(GatewayError::Draining);
    }
    checks::host(config, h)?;
    checks::origin(config, h)?;
    checks::accept_get(h)?;
    match h.get(checks::LAST_EVENT_ID) {
        None => Ok(Open::New),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|raw| SessionEventId::parse(service, raw.trim()).ok())
            .map(Open::Resume)
            .ok_or(GatewayError::MalformedEventId),
    }
}

/// One client message of a `POST /messages`, checked.
#[derive(Debug, PartialEq)]
pub struct Message {
    /// The session the URL names; `None` for a value that is no session id
    /// of any shape (404, like an unknown one, never looked up).
    pub session: Option<SessionId>,
    pub value: Value,
    pub kind: Kind,
}

/// Checks a `POST /messages`: 503 while draining, 403 for a foreign
/// `Origin`, 415 unless JSON, 400 without a session in the URL, 413 for a
/// body over the limit (`body` is `Err(limit)`), 400 with -32700 for bad
/// JSON, 400 with -32600 for anything but one JSON-RPC message.
pub fn message_post(
    config: &Config,
    service: &Service,
    h: &HeaderMap,
    uri: &Uri,
    body: Result<&[u8], usize>,
    draining: bool,
) -> Result<Message, GatewayError> {
    if draining {
        return Err(GatewayError::Draining);
    }
    checks::host(config, h)?;
    checks::origin(config, h)?;
    checks::content_type(h)?;
    let session = session_param(service, uri)?;
    let bytes = body.map_err(GatewayError::TooLarge)?;
    let value: Value = serde_json::from_slice(bytes).map_err(GatewayError::Parse)?;
    if value.is_array() {
        return Err(GatewayError::InvalidRequest(
            "JSON-RPC batches are not supported in protocol version 2024-11-05".into(),
            None,
        ));
    }
    let kind = jsonrpc::classify(&value).map_err(|e| {
        let id = value
            .get("id")
            .filter(|id| id.is_string() || id.is_number())
            .cloned();
        GatewayError::InvalidRequest(e.to_string(), id)
    })?;
    Ok(Message {
        session,
        value,
        kind,
    })
}

/// The session of the message URL (`session_id`, or its alias `sessionId`):
/// 400 if neither is there, `None` if the value is not a session id.
fn session_param(service: &Service, uri: &Uri) -> Result<Option<SessionId>, GatewayError> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|_| GatewayError::MissingSessionParam)?;
    let raw = pairs
        .iter()
        .find(|(k, _)| k == SESSION_PARAM)
        .or_else(|| pairs.iter().find(|(k, _)| k == SESSION_PARAM_ALIAS))
        .map(|(_, v)| v.as_str())
        .ok_or(GatewayError::MissingSessionParam)?;
    Ok(SessionId::parse(service, raw.trim()).ok())
}

/// Whether a session in `state` takes this message: before its
/// `initialize` is answered only `initialize`, `ping` and notifications;
/// after it, anything but a second `initialize`.
pub fn admit(kind: &Kind, state: State) -> Result<(), GatewayError> {
    let Kind::Request { method: m, .. } = kind else {
        return Ok(());
    };
    match (state, m.as_str()) {
        (State::Initializing, method::INITIALIZE | method::PING) => Ok(()),
        (State::Initializing, _) => Err(GatewayError::NotNow(
            "the session is not initialized yet: send initialize and wait for its answer",
        )),
        (_, method::INITIALIZE) => Err(GatewayError::NotNow("the session is initialized already")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};
    use jetway_shared::jsonrpc::PARSE_ERROR;

    const SID: &str = "0-0123456789abcdef0123456789abcdef";

    fn config() -> Config {
        Config::load(&crate::config::Args::default()).expect("the defaults are valid")
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn sse_get_table() {
        let svc = Service::default();
        let id = format!("{SID}.7");
        let id: &'static str = Box::leak(id.into_boxed_str());
        let sse = ("accept", "text/event-stream");
        let cases: Vec<(&str, HeaderMap, bool, Result<(), StatusCode>)> = vec![
            ("new", headers(&[sse]), false, Ok(())),
            (
                "resume",
                headers(&[sse, ("last-event-id", id)]),
                false,
                Ok(()),
            ),
            (
                "draining",
                headers(&[sse]),
                true,
                Err(StatusCode::SERVICE_UNAVAILABLE),
            ),
            (
                "foreign origin",
                headers(&[sse, ("origin", "https://evil.example")]),
                false,
                Err(StatusCode::FORBIDDEN),
            ),
            (
                "local origin",
                headers(&[sse, ("origin", "http://localhost:3000")]),
                false,
                Ok(()),
            ),
            (
                "no accept",
                headers(&[]),
                false,
                Err(StatusCode::NOT_ACCEPTABLE),
            ),
            (
                "json only",
                headers(&[("accept", "application/json")]),
                false,
                Err(StatusCode::NOT_ACCEPTABLE),
            ),
            (
                "streamable id",
                headers(&[sse, ("last-event-id", "get-4")]),
                false,
                Err(StatusCode::BAD_REQUEST),
            ),
            (
                "leading zero",
                headers(&[
                    sse,
                    ("last-event-id", "0-0123456789abcdef0123456789abcdef.07"),
                ]),
                false,
                Err(StatusCode::BAD_REQUEST),
            ),
        ];
        for (name, h, draining, want) in cases {
            let got = sse_get(&config(), &svc, &h, draining);
            match (&got, want) {
                (Ok(_), Ok(())) => {}
                (Err(e), Err(status)) => assert_eq!(e.status(), status, "{name}"),
                _ => panic!("{name}: got {got:?}"),
            }
        }
        assert_eq!(
            sse_get(
                &config(),
                &svc,
                &headers(&[sse, ("last-event-id", id)]),
                false
            )
            .ok(),
            SessionEventId::parse(&svc, id).ok().map(Open::Resume)
        );
    }

    #[test]
    fn message_post_table() {
        let svc = Service::default();
        let json = ("content-type", "application/json");
        let ok_uri = format!("/messages?session_id={SID}");
        let alias_uri = format!("/messages?sessionId={SID}");
        let req = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.as_slice();
        type Want = Result<bool, (StatusCode, i64)>; // Ok(session named?)
        let invalid = (StatusCode::BAD_REQUEST, jsonrpc::INVALID_REQUEST);
        type Case<'a> = (
            &'a str,
            HeaderMap,
            String,
            Result<&'a [u8], usize>,
            bool,
            Want,
        );
        let cases: Vec<Case> = vec![
            (
                "request",
                headers(&[json]),
                ok_uri.clone(),
                Ok(req),
                false,
                Ok(true),
            ),
            (
                "alias",
                headers(&[json]),
                alias_uri,
                Ok(req),
                false,
                Ok(true),
            ),
            (
                "junk id: 404 later",
                headers(&[json]),
                "/messages?session_id=x.*".into(),
                Ok(req),
                false,
                Ok(false),
            ),
            (
                "no session",
                headers(&[json]),
                "/messages".into(),
                Ok(req),
                false,
                Err((StatusCode::BAD_REQUEST, jsonrpc::INVALID_REQUEST)),
            ),
            (
                "draining",
                headers(&[json]),
                ok_uri.clone(),
                Ok(req),
                true,
                Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    jsonrpc::SERVICE_UNAVAILABLE,
                )),
            ),
            (
                "origin",
                headers(&[json, ("origin", "https://evil.example")]),
                ok_uri.clone(),
                Ok(req),
                false,
                Err((StatusCode::FORBIDDEN, jsonrpc::INVALID_REQUEST)),
            ),
            (
                "text/plain",
                headers(&[("content-type", "text/plain")]),
                ok_uri.clone(),
                Ok(req),
                false,
                Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, jsonrpc::INVALID_REQUEST)),
            ),
            (
                "too large",
                headers(&[json]),
                ok_uri.clone(),
                Err(10),
                false,
                Err((StatusCode::PAYLOAD_TOO_LARGE, jsonrpc::INVALID_REQUEST)),
            ),
            (
                "bad json",
                headers(&[json]),
                ok_uri.clone(),
                Ok(b"{".as_slice()),
                false,
                Err((StatusCode::BAD_REQUEST, PARSE_ERROR)),
            ),
            (
                "batch",
                headers(&[json]),
                ok_uri.clone(),
                Ok(br#"[{"jsonrpc":"2.0","method":"x"}]"#.as_slice()),
                false,
                Err(invalid),
            ),
            (
                "not json-rpc",
                headers(&[json]),
                ok_uri.clone(),
                Ok(br#"{"id":1,"method":"x"}"#.as_slice()),
                false,
                Err(invalid),
            ),
            (
                "a string",
                headers(&[json]),
                ok_uri.clone(),
                Ok(br#""hi""#.as_slice()),
                false,
                Err(invalid),
            ),
        ];
        for (name, h, uri, body, draining, want) in cases {
            let uri: Uri = uri.parse().expect("a URI");
            let got = message_post(&config(), &svc, &h, &uri, body, draining);
            match (&got, want) {
                (Ok(m), Ok(named)) => assert_eq!(m.session.is_some(), named, "{name}"),
                (Err(e), Err((status, code))) => {
                    assert_eq!((e.status(), e.code()), (status, code), "{name}: {e}")
                }
                _ => panic!("{name}: got {got:?}"),
            }
        }
    }

    #[test]
    fn admit_table() {
        let req = |m: &str| Kind::Request {
            id: 1.into(),
            method: m.into(),
        };
        let note = Kind::Notification {
            method: "notifications/initialized".into(),
        };
        let answer = Kind::Response { id: 1.into() };
        let cases = [
            (req("initialize"), State::Initializing, true),
            (req("ping"), State::Initializing, true),
            (req("tools/list"), State::Initializing, false),
            (note.clone(), State::Initializing, true),
            (answer.clone(), State::Initializing, true),
            (req("initialize"), State::Active, false),
            (req("tools/list"), State::Active, true),
            (req("ping"), State::Active, true),
            (note, State::Active, true),
            (answer, State::Active, true),
        ];
        for (kind, state, ok) in cases {
            assert_eq!(admit(&kind, state).is_ok(), ok, "{kind:?} in {state:?}");
        }
    }
}
