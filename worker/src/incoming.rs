//! A request as the worker reads it from its delivery: parsed once into
//! rmcp's types, with the session and POST stream it belongs to.

use crate::delivery::Delivery;
use jetway_shared::{
    headers,
    jsonrpc::method,
    subjects::{SessionId, StreamKey, session_of_subject},
};
use rmcp::{RoleServer, service::RxJsonRpcMessage};
use serde::Deserialize;
use serde_json::Value;

/// A request as parsed from its delivery, once.
pub struct Request {
    pub session: SessionId,
    /// The POST stream its answers go to.
    pub stream: StreamKey,
    /// The JSON-RPC id, as the client sent it.
    pub id: Value,
    pub method: String,
    /// The request exactly as the client sent it (what a bridge forwards).
    pub raw: Value,
    /// The request in rmcp's types, or why its params do not fit them.
    pub message: Result<RxJsonRpcMessage<RoleServer>, serde_json::Error>,
}

/// Why a delivery is not a request the runtime can run: not a Jetway
/// request at all, so it is terminated.
#[derive(Debug)]
pub struct Unrunnable(pub &'static str);

impl Request {
    pub fn parse(delivery: &Delivery) -> Result<Self, Unrunnable> {
        let msg = delivery.message();
        let session = session_of_subject(&msg.subject).ok_or(Unrunnable("subject"))?;
        let stream = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(headers::STREAM))
            .and_then(|v| StreamKey::parse(v.as_str()))
            .ok_or(Unrunnable("stream key"))?;
        let raw: Value =
            serde_json::from_slice(&msg.payload).map_err(|_| Unrunnable("not JSON"))?;
        let (Some(id), Some(method)) = (
            raw.get("id").cloned(),
            raw.get("method").and_then(Value::as_str).map(str::to_owned),
        ) else {
            return Err(Unrunnable("not a JSON-RPC request"));
        };
        let message = RxJsonRpcMessage::<RoleServer>::deserialize(&raw);
        Ok(Self {
            session,
            stream,
            id,
            method,
            raw,
            message,
        })
    }

    pub fn is_initialize(&self) -> bool {
        self.method == method::INITIALIZE
    }

    /// The client's `notifications/cancelled` for this request, if `msgs` hold one.
    pub fn cancelled_in(&self, msgs: &[Value]) -> bool {
        msgs.iter().any(|m| {
            m.get("method").and_then(Value::as_str) == Some(method::CANCELLED)
                && m.pointer("/params/requestId") == Some(&self.id)
        })
    }
}
