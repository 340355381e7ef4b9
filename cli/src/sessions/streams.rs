//! A session's SSE streams, derived from its messages in stream order: the
//! standalone GET stream, and one POST stream per request with the request's
//! method, id and status.
//!
//! A request is `finished` when its stream holds a final result, `failed`
//! when the final is a JSON-RPC error, `cancelled` when the final is an
//! empty marker, and `open` while there is no final.

use crate::message::{Control, Direction, Stored, What};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Open,
    Finished,
    Failed,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Finished => "finished",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }
}

/// One request and its POST stream.
#[derive(Debug, Clone, Serialize)]
pub struct RequestStream {
    /// Stream key (`r<16 hex>`).
    pub stream: String,
    pub id: Value,
    pub method: String,
    /// Tool, prompt or resource the request names, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub status: Status,
    /// Server messages on the stream, the final one included.
    pub events: usize,
    /// Sequence and time of the request.
    pub seq: u64,
    pub time_ms: u64,
    /// Gateway that accepted the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Workers that published on the stream (more than one after a redelivery).
    pub workers: BTreeSet<String>,
    /// The final message (response or error), when there is one.
    #[serde(skip)]
    pub final_message: Option<Value>,
}

/// The session's standalone GET stream.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GetStream {
    /// Messages on it, control markers included.
    pub events: usize,
    /// GET connections opened (each publishes a takeover marker).
    pub connections: usize,
    /// The session-closed marker is on it.
    pub closed: bool,
}

/// Every stream of a session.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Streams {
    pub get: GetStream,
    pub requests: Vec<RequestStream>,
    /// Messages per direction.
    pub messages_in: usize,
    pub messages_out: usize,
    /// Time of the last message.
    pub last_ms: u64,
}

/// Builds the streams of a session from its messages (in stream order).
pub fn streams(messages: &[Stored]) -> Streams {
    let mut s = Streams::default();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for m in messages {
        s.last_ms = s.last_ms.max(m.time_ms);
        match m.direction {
            Direction::In => s.messages_in += 1,
            Direction::Out => s.messages_out += 1,
        }
        if m.on_get_stream() {
            s.get.events += 1;
            match m.what {
                What::Control(Control::Takeover) => s.get.connections += 1,
                What::Control(Control::Closed) => s.get.closed = true,
                _ => {}
            }
            continue;
        }
        let Some(key) = m.stream.clone() else {
            continue;
        };
        match (&m.direction, &m.what) {
            (Direction::In, What::Request { method, id }) if m.subject.ends_with(".in.rpc") => {
                by_key.insert(key.clone(), s.requests.len());
                s.requests.push(RequestStream {
                    stream: key,
                    id: id.clone(),
                    method: method.clone(),
                    target: m.message.as_ref().and_then(target),
                    status: Status::Open,
                    events: 0,
                    seq: m.seq,
                    time_ms: m.time_ms,
                    gateway: m.instance.clone(),
                    workers: BTreeSet::new(),
                    final_message: None,
                });
            }
            (Direction::Out, what) => {
                let Some(r) = by_key.get(&key).map(|&i| &mut s.requests[i]) else {
                    continue;
                };
                r.events += 1;
                if let Some(w) = &m.instance {
                    r.workers.insert(w.clone());
                }
                if m.is_final {
                    r.status = match what {
                        What::Control(Control::Cancelled) => Status::Cancelled,
                        What::Error { .. } => Status::Failed,
                        _ => Status::Finished,
                    };
                    r.final_message = m.message.clone();
                }
            }
            _ => {}
        }
    }
    s
}

/// What a request acts on: a tool or prompt name, or a resource URI.
pub fn target(request: &Value) -> Option<String> {
    let params = request.get("params")?;
    ["name", "uri", "ref"]
        .iter()
        .find_map(|k| params.get(*k))
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetway_shared::headers;

    use crate::message::testing::msg;

    fn request(seq: u64, key: &str, id: i64) -> Stored {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"t{id}"}}}}"#
        );
        msg(seq, "in.rpc", &[(headers::STREAM, key)], &body)
    }

    fn last(seq: u64, key: &str, body: &str) -> Stored {
        msg(
            seq,
            &format!("out.{key}"),
            &[(headers::FINAL, "1"), (headers::WORKER, "wk-1")],
            body,
        )
    }

    #[test]
    fn request_statuses_follow_their_final_message() {
        let (a, b, c, d) = (
            "r000000000000000a",
            "r000000000000000b",
            "r000000000000000c",
            "r000000000000000d",
        );
        let messages = vec![
            request(1, a, 1),
            request(2, b, 2),
            request(3, c, 3),
            request(4, d, 4),
            msg(
                5,
                &format!("out.{d}"),
                &[],
                r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#,
            ),
            last(6, a, r#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            last(
                7,
                b,
                r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"no"}}"#,
            ),
            last(8, c, ""),
            msg(9, "out.get", &[(headers::CONTROL, "takeover")], ""),
            msg(10, "out.get", &[(headers::CONTROL, "closed")], ""),
        ];
        let s = streams(&messages);
        let statuses: Vec<Status> = s.requests.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [
                Status::Finished,
                Status::Failed,
                Status::Cancelled,
                Status::Open
            ]
        );
        assert_eq!(s.requests[3].events, 1);
        assert_eq!(s.requests[0].target.as_deref(), Some("t1"));
        assert_eq!(
            (s.get.events, s.get.connections, s.get.closed),
            (2, 1, true)
        );
        assert_eq!((s.messages_in, s.messages_out), (4, 6));
    }
}
