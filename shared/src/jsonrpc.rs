//! JSON-RPC 2.0 pieces: error codes, error constructors and message shapes.
//!
//! The gateway forwards client messages unchanged; it only needs to know what
//! kind of message a body holds and to build error responses.

use serde_json::{Value, json};

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist or is not available.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// Internal error.
pub const INTERNAL_ERROR: i64 = -32603;
/// Implementation-defined: the message bus is unavailable.
pub const SERVICE_UNAVAILABLE: i64 = -32001;
/// Implementation-defined: the session does not exist or has ended.
pub const SESSION_NOT_FOUND: i64 = -32002;
/// Implementation-defined: the request failed on every attempt (its
/// workers died while running it).
pub const REQUEST_FAILED: i64 = -32003;
/// Implementation-defined: the request ran past its deadline and was stopped.
pub const DEADLINE_EXCEEDED: i64 = -32004;
/// The request carries no valid credentials (HTTP 401).
pub const UNAUTHORIZED: i64 = -32005;
/// The credentials lack a scope the request needs (HTTP 403).
pub const INSUFFICIENT_SCOPE: i64 = -32006;
/// Too many requests of one session in flight (HTTP 429).
pub const TOO_MANY_REQUESTS: i64 = -32007;
/// JetStream's storage is full (HTTP 507, `Retry-After`): nothing was
/// stored; the same message may be sent again once space frees.
pub const STORAGE_FULL: i64 = -32010;
/// The session stored as many messages as `session_max_messages` allows
/// (HTTP 507): it frees as its oldest messages age out; a new session is
/// not affected.
pub const SESSION_STORAGE_FULL: i64 = -32011;

/// Method names the gateway and worker runtime treat specially.
pub mod method {
    pub const INITIALIZE: &str = "initialize";
    pub const PING: &str = "ping";
    pub const CANCELLED: &str = "notifications/cancelled";
    pub const PROGRESS: &str = "notifications/progress";
    pub const MESSAGE: &str = "notifications/message";
}

/// A JSON-RPC error response; `id` is `null` when the request id is unknown.
pub fn error(id: Option<&Value>, code: i64, message: impl Into<String>) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id.cloned().unwrap_or(Value::Null),
        "error": { "code": code, "message": message.into() },
    })
}

/// A JSON-RPC success response.
pub fn result(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// What one JSON-RPC message is.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Has a method and an id.
    Request { id: Value, method: String },
    /// Has a method and no id.
    Notification { method: String },
    /// Has an id and a result or an error.
    Response { id: Value },
}

/// Why a JSON value is not a valid JSON-RPC 2.0 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("message is not a JSON object")]
    NotAnObject,
    #[error("\"jsonrpc\" must be \"2.0\"")]
    Version,
    #[error("\"id\" must be a string or a 64-bit signed integer")]
    Id,
    #[error("\"method\" must be a string")]
    Method,
    #[error("\"params\" must be an object or an array")]
    Params,
    #[error("a response needs exactly one of \"result\" and \"error\"")]
    Response,
    #[error("message has neither \"method\" nor \"id\"")]
    Shape,
}

/// Classifies one message, checking it against JSON-RPC 2.0 (and MCP's rule
/// that ids are strings or integers, never null).
pub fn classify(v: &Value) -> Result<Kind, Invalid> {
    let obj = v.as_object().ok_or(Invalid::NotAnObject)?;
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(Invalid::Version);
    }
    let id = match obj.get("id") {
        None => None,
        Some(id @ Value::String(_)) => Some(id.clone()),
        Some(id @ Value::Number(n)) if n.is_i64() => Some(id.clone()),
        Some(_) => return Err(Invalid::Id),
    };
    match (obj.get("method"), id) {
        (Some(Value::String(m)), id) => {
            if let Some(p) = obj.get("params")
                && !(p.is_object() || p.is_array())
            {
                return Err(Invalid::Params);
            }
            let method = m.clone();
            Ok(match id {
                Some(id) => Kind::Request { id, method },
                None => Kind::Notification { method },
            })
        }
        (Some(_), _) => Err(Invalid::Method),
        (None, Some(id)) => {
            if obj.contains_key("result") == obj.contains_key("error") {
                return Err(Invalid::Response);
            }
            Ok(Kind::Response { id })
        }
        (None, None) => Err(Invalid::Shape),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_three_shapes() {
        assert_eq!(
            classify(&json!({"jsonrpc":"2.0","id":1,"method":"ping"})),
            Ok(Kind::Request {
                id: json!(1),
                method: "ping".into()
            })
        );
        assert_eq!(
            classify(&json!({"jsonrpc":"2.0","method":"notifications/initialized"})),
            Ok(Kind::Notification {
                method: "notifications/initialized".into()
            })
        );
        assert_eq!(
            classify(&json!({"jsonrpc":"2.0","id":"a","result":{}})),
            Ok(Kind::Response { id: json!("a") })
        );
    }

    #[test]
    fn refuses_what_json_rpc_refuses() {
        let cases = [
            (json!([]), Invalid::NotAnObject),
            (json!({"id":1,"method":"x"}), Invalid::Version),
            (
                json!({"jsonrpc":"1.0","id":1,"method":"x"}),
                Invalid::Version,
            ),
            (json!({"jsonrpc":"2.0","id":null,"method":"x"}), Invalid::Id),
            (json!({"jsonrpc":"2.0","id":1.5,"method":"x"}), Invalid::Id),
            (
                json!({"jsonrpc":"2.0","id":u64::MAX,"method":"x"}),
                Invalid::Id,
            ),
            (json!({"jsonrpc":"2.0","id":1,"method":3}), Invalid::Method),
            (
                json!({"jsonrpc":"2.0","id":1,"method":"x","params":3}),
                Invalid::Params,
            ),
            (json!({"jsonrpc":"2.0","id":1}), Invalid::Response),
            (
                json!({"jsonrpc":"2.0","id":1,"result":1,"error":{}}),
                Invalid::Response,
            ),
            (json!({"jsonrpc":"2.0"}), Invalid::Shape),
        ];
        for (v, want) in cases {
            assert_eq!(classify(&v), Err(want), "{v}");
        }
    }
}
