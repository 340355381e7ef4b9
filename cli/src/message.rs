//! One stored session message as the CLI shows it: where it sits on the bus
//! (sequence, subject, direction, SSE stream, event id), who handled it, and
//! what it is (request, notification, response, error, control marker).
//!
//! Subjects are parsed by `jetway_shared::subjects::parse_subject`: `in.rpc`
//! (client requests, header `Jetway-Stream` names their POST stream),
//! `in.msg` (client notifications and responses), `out.<key>` (server
//! messages of SSE stream `<key>`).

use async_nats::HeaderMap;
use bytes::Bytes;
use jetway_shared::{headers, subjects::GET_STREAM};
pub use jetway_shared::{
    headers::Control,
    subjects::{Place, parse_subject},
};
use serde_json::Value;
use std::collections::BTreeMap;

/// Client→server or server→client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }

    /// `→` client→server, `←` server→client.
    pub fn arrow(self) -> &'static str {
        match self {
            Direction::In => "→",
            Direction::Out => "←",
        }
    }
}

/// What a message is.
#[derive(Debug, Clone, PartialEq)]
pub enum What {
    Request {
        method: String,
        id: Value,
    },
    Notification {
        method: String,
    },
    Response {
        id: Value,
    },
    Error {
        id: Value,
        code: i64,
        message: String,
    },
    Control(Control),
    /// Not a JSON-RPC message (should not happen on a Jetway stream).
    Other,
}

/// One message of a session, read from the stream.
#[derive(Debug, Clone)]
pub struct Stored {
    pub seq: u64,
    pub subject: String,
    /// When the stream stored it (Unix milliseconds).
    pub time_ms: u64,
    pub direction: Direction,
    /// The SSE stream it belongs to, when known.
    pub stream: Option<String>,
    /// The SSE event id a client saw for it (`<stream>-<seq>`; for a request,
    /// the id of its POST stream's priming event).
    pub event_id: Option<String>,
    /// Gateway (client messages) or worker (server messages) instance.
    pub instance: Option<String>,
    pub headers: BTreeMap<String, Vec<String>>,
    pub payload: Bytes,
    /// The payload as JSON (`None` if empty or not JSON).
    pub message: Option<Value>,
    pub what: What,
    /// Carries `Jetway-Final`: the last message of a request's stream.
    pub is_final: bool,
    pub trace_id: Option<String>,
}

impl Stored {
    /// Builds the view of one stored message; `None` if the subject is not a
    /// session subject.
    pub fn new(
        seq: u64,
        subject: &str,
        time_ms: u64,
        raw_headers: Option<&HeaderMap>,
        payload: Bytes,
    ) -> Option<Self> {
        let (_session, place) = parse_subject(subject)?;
        let mut headers = BTreeMap::new();
        if let Some(h) = raw_headers {
            for (name, values) in h.iter() {
                let name: &str = name.as_ref();
                headers.insert(
                    name.to_owned(),
                    values.iter().map(|v| v.as_str().to_owned()).collect(),
                );
            }
        }
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v: &Vec<String>| v.first())
                .cloned()
        };
        let message: Option<Value> = if payload.is_empty() {
            None
        } else {
            serde_json::from_slice(&payload).ok()
        };
        let is_final = header(headers::FINAL).is_some();
        let control = match header(headers::CONTROL).as_deref() {
            Some(value) => Control::parse(value),
            // Written by workers before the marker was named.
            None if is_final && payload.is_empty() => Some(Control::Cancelled),
            None => None,
        };
        let what = match control {
            Some(c) => What::Control(c),
            None => message.as_ref().map(classify).unwrap_or(What::Other),
        };
        let (direction, stream, event_id) = match &place {
            Place::InRpc => {
                let key = header(headers::STREAM);
                let event = key.as_ref().map(|k| format!("{k}-{seq}"));
                (Direction::In, key, event)
            }
            Place::InMsg => (Direction::In, attributed_stream(&what), None),
            Place::Out(key) => (
                Direction::Out,
                Some(key.to_string()),
                Some(format!("{key}-{seq}")),
            ),
        };
        let instance = match direction {
            Direction::In => header(headers::GATEWAY),
            Direction::Out => header(headers::WORKER).or_else(|| header(headers::GATEWAY)),
        };
        let trace_id = header(headers::TRACEPARENT).and_then(|t| trace_id(&t));
        Some(Self {
            seq,
            subject: subject.to_owned(),
            time_ms,
            direction,
            stream,
            event_id,
            instance,
            headers,
            payload,
            message,
            what,
            is_final,
            trace_id,
        })
    }

    /// The JSON-RPC method, for requests and notifications.
    pub fn method(&self) -> Option<&str> {
        match &self.what {
            What::Request { method, .. } | What::Notification { method } => Some(method),
            _ => None,
        }
    }

    /// True for the session's GET stream.
    pub fn on_get_stream(&self) -> bool {
        self.stream.as_deref() == Some(GET_STREAM)
    }
}

/// Classifies a JSON-RPC message.
pub fn classify(v: &Value) -> What {
    let method = v.get("method").and_then(Value::as_str);
    let id = v.get("id").cloned();
    match (method, id) {
        (Some(m), Some(id)) => What::Request {
            method: m.to_owned(),
            id,
        },
        (Some(m), None) => What::Notification {
            method: m.to_owned(),
        },
        (None, Some(id)) => match v.get("error") {
            Some(e) => What::Error {
                id,
                code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            },
            None => What::Response { id },
        },
        (None, None) => What::Other,
    }
}

/// A client response to a server→client request belongs to the stream that
/// asked: workers give those requests ids `<stream key>:<n>`.
fn attributed_stream(what: &What) -> Option<String> {
    let id = match what {
        What::Response { id } | What::Error { id, .. } => id.as_str()?,
        _ => return None,
    };
    let (key, _) = id.split_once(':')?;
    jetway_shared::subjects::StreamKey::parse(key).map(|k| k.as_str().to_owned())
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
pub fn trace_id(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let _version = parts.next()?;
    let id = parts.next()?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
}

/// JSON-RPC ids as operators type them: `7` is the number 7, `"7"` (with
/// quotes) or `abc` a string.
pub fn parse_request_id(text: &str) -> Value {
    if let Ok(n) = text.parse::<i64>() {
        return Value::from(n);
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::String(_)) => v,
        _ => Value::from(text),
    }
}

/// A JSON-RPC id for display: numbers bare, strings as they are.
pub fn show_id(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A stored message of the test session [`testing::SID`], for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::Stored;
    use async_nats::HeaderMap;
    use bytes::Bytes;

    pub const SID: &str = "0-0123456789abcdef0123456789abcdef";

    /// Message `seq` on `jetway.0.<SID>.<place>` with headers `h`.
    pub fn msg(seq: u64, place: &str, h: &[(&str, &str)], body: &str) -> Stored {
        let mut map = HeaderMap::new();
        for (k, v) in h {
            map.insert(*k, *v);
        }
        Stored::new(
            seq,
            &format!("jetway.0.{SID}.{place}"),
            seq,
            Some(&map),
            Bytes::from(body.to_owned()),
        )
        .expect("a session subject")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_classified_and_attributed() {
        let sid = "0-0123456789abcdef0123456789abcdef";
        let answer = br#"{"jsonrpc":"2.0","id":"r00112233445566aa:0","result":{}}"#;
        let m = Stored::new(
            9,
            &format!("jetway.0.{sid}.in.msg"),
            0,
            None,
            Bytes::from_static(answer),
        )
        .expect("a session subject");
        assert_eq!(m.stream.as_deref(), Some("r00112233445566aa"));
        assert_eq!(m.event_id, None);

        let mut h = HeaderMap::new();
        h.insert(headers::FINAL, "1");
        h.insert(headers::WORKER, "wk-1");
        h.insert(
            headers::TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        let m = Stored::new(
            10,
            &format!("jetway.0.{sid}.out.r00112233445566aa"),
            0,
            Some(&h),
            Bytes::new(),
        )
        .expect("a session subject");
        assert_eq!(m.what, What::Control(Control::Cancelled));
        assert_eq!(m.event_id.as_deref(), Some("r00112233445566aa-10"));
        assert_eq!(m.instance.as_deref(), Some("wk-1"));
        assert_eq!(
            m.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }

    #[test]
    fn request_ids_parse_as_typed() {
        assert_eq!(parse_request_id("7"), Value::from(7));
        assert_eq!(parse_request_id("\"7\""), Value::from("7"));
        assert_eq!(parse_request_id("abc"), Value::from("abc"));
    }
}
