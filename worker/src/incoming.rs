//! A request as the worker reads it from its delivery: parsed once into
//! rmcp's types, with the session and POST stream it belongs to.

use crate::delivery::Delivery;
use jetway_shared::{
    headers,
    jsonrpc::{self, method},
    subjects::{SessionId, StreamKey, session_of_subject},
};
use rmcp::{RoleServer, model::JsonRpcMessage, service::RxJsonRpcMessage};
use serde_json::Value;

/// A request as parsed from its delivery, once.
pub struct Request {
    pub session: SessionId,
    /// The POST stream its answers go to.
    pub stream: StreamKey,
    /// The JSON-RPC id, as the client sent it.
    pub id: Value,
    pub method: String,
    pub message: RxJsonRpcMessage<RoleServer>,
}

/// Why a delivery is not a request the runtime can run.
pub enum Unrunnable {
    /// Not a Jetway request at all: terminate it.
    Foreign(&'static str),
    /// A request whose params do not parse: answer with this error.
    Invalid {
        session: SessionId,
        stream: StreamKey,
        body: Value,
    },
}

impl Request {
    pub fn parse(delivery: &Delivery) -> Result<Self, Unrunnable> {
        let msg = delivery.message();
        let session = session_of_subject(&msg.subject).ok_or(Unrunnable::Foreign("subject"))?;
        let stream = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(headers::STREAM))
            .and_then(|v| StreamKey::parse(v.as_str()))
            .ok_or(Unrunnable::Foreign("stream key"))?;
        match serde_json::from_slice::<RxJsonRpcMessage<RoleServer>>(&msg.payload) {
            Ok(message @ JsonRpcMessage::Request(_)) => {
                let JsonRpcMessage::Request(r) = &message else {
                    unreachable!("matched above")
                };
                Ok(Self {
                    id: serde_json::to_value(&r.id).unwrap_or(Value::Null),
                    method: r.request.method().to_owned(),
                    session,
                    stream,
                    message,
                })
            }
            Ok(_) => Err(Unrunnable::Foreign("not a request")),
            Err(e) => {
                // The gateway only publishes JSON-RPC requests here; their
                // params may still not fit the method.
                #[derive(serde::Deserialize)]
                struct Envelope {
                    id: Value,
                }
                let envelope: Envelope = serde_json::from_slice(&msg.payload)
                    .map_err(|_| Unrunnable::Foreign("not JSON-RPC"))?;
                Err(Unrunnable::Invalid {
                    session,
                    stream,
                    body: jsonrpc::error(
                        Some(&envelope.id),
                        jsonrpc::INVALID_PARAMS,
                        format!("invalid params: {e}"),
                    ),
                })
            }
        }
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
