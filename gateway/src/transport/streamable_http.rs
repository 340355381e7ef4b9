//! The legacy-era Streamable HTTP transport (2025-03-26 … 2025-11-25).
//!
//! - POST: every client message is published to the session's inbound
//!   subject and acknowledged by JetStream before the gateway answers;
//!   requests get an SSE stream (or JSON) of what the worker publishes for
//!   them, notifications and responses get 202.
//! - GET: the session's standalone SSE stream, or with `Last-Event-ID` the
//!   resumption of any stream of the session.
//! - DELETE: ends the session on every replica.

use super::{checks, respond};
use crate::{Gateway, error::GatewayError, sse};
use async_nats::HeaderMap as NatsHeaders;
use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use jetway_shared::{
    headers,
    jsonrpc::{self, Kind, method},
    protocol,
    publish::{PublishFailure, publish_acked},
    subjects::{EventId, SessionId, StreamKey, inbound_msg_id},
};
use serde_json::Value;
use std::sync::Arc;
use tokio::time::Instant;

/// One client message, checked and classified.
struct Inbound {
    value: Value,
    kind: Kind,
}

pub async fn post(
    State(gw): State<Arc<Gateway>>,
    h: HeaderMap,
    body: Body,
) -> Result<Response, GatewayError> {
    if gw.draining.is_cancelled() {
        return Err(GatewayError::Draining);
    }
    checks::origin(&gw.config, &h)?;
    checks::accept_post(&h)?;
    checks::content_type(&h)?;
    let version = checks::protocol_version(&h)?;
    let bytes = axum::body::to_bytes(body, gw.config.max_body_bytes)
        .await
        .map_err(|_| GatewayError::TooLarge(gw.config.max_body_bytes))?;
    let (messages, batch) = parse(&bytes, &version)?;

    let init = messages
        .iter()
        .find(|m| matches!(&m.kind, Kind::Request { method: m, .. } if m == method::INITIALIZE));
    let (session, stream_version, created) = match init {
        Some(init_msg) => {
            if batch {
                return Err(GatewayError::InvalidRequest(
                    "initialize must not be part of a batch".into(),
                    None,
                ));
            }
            let params = init_msg.value.get("params").cloned().unwrap_or(Value::Null);
            let requested = params
                .get("protocolVersion")
                .and_then(Value::as_str)
                .filter(|v| protocol::is_supported(v))
                .unwrap_or(protocol::LATEST)
                .to_owned();
            let session = SessionId::generate(0);
            gw.sessions
                .create(&session, &requested, params, &gw.config.bus.instance_id)
                .await?;
            tracing::info!(session = %session, "session created");
            (session, requested, true)
        }
        None => {
            let session = checks::session(&h)?;
            gw.sessions.find(&session).await?;
            (session, version, false)
        }
    };

    let trace = checks::traceparent(&h).map(str::to_owned);
    let mut readers = Vec::new();
    let mut prelude = Vec::new();
    for msg in &messages {
        let payload = Bytes::from(serde_json::to_vec(&msg.value).unwrap_or_default());
        match &msg.kind {
            Kind::Request { .. } => {
                let key = StreamKey::new_request();
                let spec = sse::ReadSpec {
                    session: session.clone(),
                    key: key.clone(),
                    after: 0,
                    fresh: true,
                    idle: gw.config.keep_alive,
                };
                let rx = sse::open(&gw.nats, gw.stream.clone(), spec, gw.stream_cancel.clone())
                    .await
                    .map_err(|_| GatewayError::Unavailable)?;
                let ack = gw
                    .publish_inbound(
                        &session,
                        session.in_rpc(),
                        headers::kind::REQUEST,
                        Some(&key),
                        trace.as_deref(),
                        payload,
                    )
                    .await?;
                if protocol::primes_streams(&stream_version) {
                    prelude.push(sse::priming(&EventId {
                        stream: key,
                        sequence: ack,
                    }));
                }
                readers.push(rx);
            }
            Kind::Notification { .. } | Kind::Response { .. } => {
                let kind = if matches!(msg.kind, Kind::Response { .. }) {
                    headers::kind::RESPONSE
                } else {
                    headers::kind::NOTIFICATION
                };
                gw.publish_inbound(
                    &session,
                    session.in_msg(),
                    kind,
                    None,
                    trace.as_deref(),
                    payload,
                )
                .await?;
            }
        }
    }

    let mut resp = if readers.is_empty() {
        StatusCode::ACCEPTED.into_response()
    } else if gw.config.json_response {
        let deadline = Instant::now() + gw.config.request_timeout;
        match respond::collect_finals(readers, deadline).await {
            Some(mut finals) if !batch && finals.len() == 1 => {
                axum::Json(finals.remove(0)).into_response()
            }
            Some(finals) => axum::Json(Value::Array(finals)).into_response(),
            None => return Err(GatewayError::Timeout),
        }
    } else {
        let finals = readers.len();
        let deadline = Some(Instant::now() + gw.config.request_timeout);
        respond::sse(prelude, readers, finals, deadline, gw.stream_cancel.clone())
    };
    if created {
        resp.headers_mut().insert(
            checks::SESSION_HEADER,
            HeaderValue::from_str(session.as_str()).map_err(|_| GatewayError::Unavailable)?,
        );
    }
    Ok(resp)
}

/// Parses the body into checked JSON-RPC messages (a batch only where the
/// request's protocol version allows one); the flag tells a batch.
fn parse(bytes: &[u8], version: &str) -> Result<(Vec<Inbound>, bool), GatewayError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| GatewayError::Parse(e.to_string()))?;
    let batch = value.is_array();
    let values = match value {
        Value::Array(items) => {
            if !protocol::allows_batches(version) {
                return Err(GatewayError::InvalidRequest(
                    format!("JSON-RPC batches are not supported in protocol version {version}"),
                    None,
                ));
            }
            if items.is_empty() {
                return Err(GatewayError::InvalidRequest("empty batch".into(), None));
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

pub async fn get(State(gw): State<Arc<Gateway>>, h: HeaderMap) -> Result<Response, GatewayError> {
    if gw.draining.is_cancelled() {
        return Err(GatewayError::Draining);
    }
    checks::origin(&gw.config, &h)?;
    checks::accept_get(&h)?;
    let version = checks::protocol_version(&h)?;
    let session = checks::session(&h)?;
    let resume = checks::last_event_id(&h)?;
    gw.sessions.find(&session).await?;
    let (key, after, fresh) = match resume {
        Some(EventId { stream, sequence }) => (stream, sequence, false),
        None => {
            let key = StreamKey::get();
            // A new standalone stream starts from now.
            let after = match gw
                .stream
                .direct_get_last_for_subject(session.out(&key))
                .await
            {
                Ok(m) => m.sequence,
                Err(e)
                    if e.kind() == async_nats::jetstream::stream::DirectGetErrorKind::NotFound =>
                {
                    0
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the stream");
                    return Err(GatewayError::Unavailable);
                }
            };
            (key, after, false)
        }
    };
    let spec = sse::ReadSpec {
        session: session.clone(),
        key: key.clone(),
        after,
        fresh,
        idle: gw.config.keep_alive,
    };
    let rx = sse::open(&gw.nats, gw.stream.clone(), spec, gw.stream_cancel.clone())
        .await
        .map_err(|_| GatewayError::Unavailable)?;
    let prelude = if protocol::primes_streams(&version) {
        vec![sse::priming(&EventId {
            stream: key.clone(),
            sequence: after,
        })]
    } else {
        Vec::new()
    };
    // A request stream ends with its final message; the GET stream only
    // when the session ends.
    Ok(respond::sse(
        prelude,
        vec![rx],
        1,
        None,
        gw.stream_cancel.clone(),
    ))
}

pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    h: HeaderMap,
) -> Result<Response, GatewayError> {
    checks::origin(&gw.config, &h)?;
    checks::protocol_version(&h)?;
    let session = checks::session(&h)?;
    gw.sessions.close(&session).await?;
    // End the session's GET streams on every replica.
    let mut nh = NatsHeaders::new();
    nh.insert(headers::FINAL, "1");
    nh.insert(headers::GATEWAY, gw.config.bus.instance_id.as_str());
    if let Err(e) = publish_acked(&gw.js, session.out(&StreamKey::get()), nh, Bytes::new()).await {
        tracing::warn!(error = %e, session = %session, "could not end the session's GET streams");
    }
    tracing::info!(session = %session, "session deleted");
    Ok(StatusCode::OK.into_response())
}

impl Gateway {
    /// Publishes one client message and waits for JetStream's acknowledgement;
    /// returns its stream sequence.
    async fn publish_inbound(
        &self,
        session: &SessionId,
        subject: String,
        kind: &str,
        stream: Option<&StreamKey>,
        trace: Option<&str>,
        payload: Bytes,
    ) -> Result<u64, GatewayError> {
        let mut h = NatsHeaders::new();
        h.insert(headers::GATEWAY, self.config.bus.instance_id.as_str());
        h.insert(headers::KIND, kind);
        h.insert(headers::TIME_MS, headers::now_ms().to_string().as_str());
        if let Some(key) = stream {
            h.insert(headers::STREAM, key.as_str());
        }
        if let Some(t) = trace {
            h.insert(headers::TRACEPARENT, t);
        }
        let nonce = StreamKey::new_request();
        h.insert(
            async_nats::header::NATS_MESSAGE_ID,
            inbound_msg_id(session, nonce.as_str()).as_str(),
        );
        match publish_acked(&self.js, subject, h, payload).await {
            Ok(ack) => Ok(ack.sequence),
            Err(PublishFailure::TooLarge) => {
                Err(GatewayError::TooLarge(self.config.max_body_bytes))
            }
            Err(e) => {
                tracing::warn!(error = %e, session = %session, "inbound publish failed");
                Err(GatewayError::Unavailable)
            }
        }
    }
}
