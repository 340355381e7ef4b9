//! The legacy-era Streamable HTTP transport (2025-03-26 … 2025-11-25).
//!
//! - POST: every client message is published to the session's inbound
//!   subject and acknowledged by JetStream before the gateway answers;
//!   requests get an SSE stream (or JSON) of what the worker publishes for
//!   them, notifications and responses get 202.
//! - GET: the session's standalone SSE stream, or with `Last-Event-ID` the
//!   resumption of any stream of the session.
//! - DELETE: ends the session on every replica.

use super::{checks, publish, respond, trace};
use crate::{
    Gateway,
    auth::{self, Caller},
    error::GatewayError,
    metrics, quota,
    served::{Scope, Served},
    sse,
};
use async_nats::jetstream::message::StreamMessage as StoredMessage;
use axum::{
    Extension,
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use jetway_shared::telemetry::propagation;
use jetway_shared::{
    headers::{self, Control},
    jsonrpc::Kind,
    protocol::ProtocolVersion,
    subjects::{EventId, SessionId, StreamKey},
};
use serde_json::Value;
use std::sync::Arc;
use tokio::time::Instant;
use tracing::Instrument;

pub async fn post(
    State(gw): State<Arc<Gateway>>,
    Scope(svc): Scope,
    Extension(caller): Extension<Caller>,
    Extension(owner): Extension<quota::Owner>,
    uri: Uri,
    h: HeaderMap,
    body: Body,
) -> Result<Response, GatewayError> {
    let started = std::time::Instant::now();
    if gw.draining.is_cancelled() {
        return Err(GatewayError::Draining);
    }
    let body =
        checks::read_body(body, gw.config.max_body_bytes, gw.config.body_read_timeout).await?;
    let checked = checks::post(&h, body, limits(&gw, &svc))?;
    for m in &checked.messages {
        auth::authorize(&gw, &caller, uri.path(), &m.kind, &m.value)?;
    }
    publish::require_bus(&gw)?;
    let stream_version = checked.stream_version();
    let span = trace::post(checked.messages.first(), stream_version, &h);
    publish_and_respond(gw, svc, caller, owner, checked, started, span.clone())
        .instrument(span)
        .await
}

/// A checked POST: its session found or created, its messages published,
/// and the response (SSE, JSON, or 202), inside the POST's span `traced`.
async fn publish_and_respond(
    gw: Arc<Gateway>,
    svc: Arc<Served>,
    caller: Caller,
    owner: quota::Owner,
    checked: checks::CheckedPost,
    started: std::time::Instant,
    traced: tracing::Span,
) -> Result<Response, GatewayError> {
    let stream_version = checked.stream_version();
    let checks::CheckedPost {
        target,
        messages,
        batch,
        traceparent: trace,
        ..
    } = checked;
    let (session, created) = match target {
        checks::Target::New { requested, params } => {
            let session = SessionId::generate(&svc.service, 0);
            quota::open_session(&gw, &svc, &owner, &session).await?;
            if let Err(e) = svc
                .sessions
                .create(
                    &session,
                    requested,
                    params,
                    &gw.config.bus.instance_id,
                    caller.principal.clone(),
                )
                .await
            {
                quota::close_session(&gw, &svc, &owner, &session).await;
                return Err(e);
            }
            tracing::info!(session = %session, "session created");
            (session, true)
        }
        checks::Target::Existing(named) => {
            let session = named.ok_or(GatewayError::SessionNotFound)?;
            let record = svc.sessions.find_for(&session, &caller).await?;
            // The header may claim 2025-03-26 (or be absent); what counts
            // is what the session negotiated.
            if batch && !record.protocol_version.allows_batches() {
                return Err(GatewayError::InvalidRequest(
                    format!(
                        "JSON-RPC batches are not supported in protocol version {}, which this session negotiated",
                        record.protocol_version
                    ),
                    None,
                ));
            }
            (session, false)
        }
    };
    traced.record("mcp.session.id", session.as_str());

    let ids: Vec<&Value> = messages
        .iter()
        .filter(|m| matches!(m.kind, Kind::Request { .. }))
        .filter_map(|m| m.value.get("id"))
        .collect();
    let slots = (!ids.is_empty())
        .then(|| gw.inflight.acquire(&session, &ids))
        .transpose()?;
    let mut readers = Vec::new();
    let mut prelude = Vec::new();
    let mut timed = None;
    for msg in &messages {
        let payload = Bytes::from(serde_json::to_vec(&msg.value).unwrap_or_default());
        let trace = propagation::client_traceparent(&msg.value, trace.as_deref());
        match &msg.kind {
            Kind::Request { method, .. } => {
                timed.get_or_insert(metrics::request(method));
                let key = StreamKey::new_request();
                let spec = sse::ReadSpec {
                    session: session.clone(),
                    key: key.clone(),
                    after: 0,
                    fresh: true,
                    idle: gw.config.keep_alive,
                    takeover: None,
                    connects: gw.connects.clone(),
                };
                let rx = sse::open(&gw.nats, svc.stream.clone(), spec, gw.stream_cancel.clone())
                    .await
                    .map_err(|_| GatewayError::Unavailable)?;
                let ack = publish::inbound(
                    &gw,
                    &session,
                    session.in_rpc(),
                    headers::kind::REQUEST,
                    Some(&key),
                    trace,
                    payload,
                )
                .await?;
                if stream_version.primes_streams() {
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
                publish::inbound(&gw, &session, session.in_msg(), kind, None, trace, payload)
                    .await?;
            }
        }
    }

    let mut resp = if readers.is_empty() {
        StatusCode::ACCEPTED.into_response()
    } else if gw.config.json_response {
        let deadline = Instant::now() + gw.config.request_timeout;
        let mut exchange = timed.map(|m| metrics::Exchange::new(m, started));
        let finals = respond::collect_finals(readers, deadline).await;
        if let Some(x) = exchange.as_mut() {
            x.finished_json(finals.as_ref().and_then(|f| f.first()));
        }
        match finals {
            Some(mut finals) if !batch && finals.len() == 1 => {
                axum::Json(finals.remove(0)).into_response()
            }
            Some(finals) => axum::Json(Value::Array(finals)).into_response(),
            None => return Err(GatewayError::Timeout),
        }
    } else {
        let ending = respond::Ending {
            finals: readers.len(),
            deadline: Some(Instant::now() + gw.config.request_timeout),
            poll: gw.poll_for(stream_version),
            shutdown: gw.stream_cancel.clone(),
        };
        let observe = respond::Observe {
            kind: metrics::StreamKind::Post,
            exchange: timed.map(|m| metrics::Exchange::new(m, started)),
            resumed_at: None,
        };
        let resp = respond::sse_observed(prelude, readers, ending, Some(observe));
        // The stream holds its requests' slots until it ends.
        let (parts, body) = resp.into_parts();
        let body = futures::StreamExt::map(body.into_data_stream(), move |chunk| {
            let _held = &slots;
            chunk
        });
        Response::from_parts(parts, Body::from_stream(body))
    };
    if created {
        resp.headers_mut().insert(
            checks::SESSION_HEADER,
            HeaderValue::from_str(session.as_str()).map_err(|_| GatewayError::Unavailable)?,
        );
    }
    Ok(resp)
}

pub async fn get(
    State(gw): State<Arc<Gateway>>,
    Scope(svc): Scope,
    Extension(caller): Extension<Caller>,
    h: HeaderMap,
) -> Result<Response, GatewayError> {
    let arrived = std::time::Instant::now();
    if gw.draining.is_cancelled() {
        return Err(GatewayError::Draining);
    }
    let checks::CheckedGet {
        version,
        session,
        resume,
    } = checks::get(&h, limits(&gw, &svc))?;
    publish::require_bus(&gw)?;
    let session = session.ok_or(GatewayError::SessionNotFound)?;
    svc.sessions.find_for(&session, &caller).await?;
    let span = trace::stream(session.as_str(), resume.is_some(), version);
    let mut stored = None;
    let (key, after) = match &resume {
        Some(id) => {
            metrics::resumed();
            let (position, msg) = check_resume(&svc, &session, id).await?;
            stored = Some(msg);
            if position == Position::AtEnd {
                // The client saw the final response already: nothing follows.
                let ending = respond::Ending {
                    finals: 0,
                    deadline: None,
                    poll: None,
                    shutdown: gw.stream_cancel.clone(),
                };
                return Ok(respond::sse(Vec::new(), Vec::new(), ending));
            }
            (id.stream.clone(), id.sequence)
        }
        None => (StreamKey::get(), 0),
    };
    trace::parent(&span, &h, stored.as_ref().map(|m| &m.headers));
    drop(stored);
    async move {
        // At most one standalone GET stream per session is live, across all
        // replicas: a new one (or a resumed one) takes over, and the marker ends
        // the older connection wherever it is. A new stream starts after it.
        let takeover = if key.is_get() {
            let seq = publish::control(&gw, &session, Control::Takeover).await?;
            Some(seq)
        } else {
            None
        };
        let after = match (&resume, takeover) {
            (None, Some(marker)) => marker,
            _ => after,
        };
        let spec = sse::ReadSpec {
            session: session.clone(),
            key: key.clone(),
            after,
            fresh: false,
            idle: gw.config.keep_alive,
            takeover,
            connects: gw.connects.clone(),
        };
        let rx = sse::open(&gw.nats, svc.stream.clone(), spec, gw.stream_cancel.clone())
            .await
            .map_err(|_| GatewayError::Unavailable)?;
        let prelude = if resume.is_none() && version.primes_streams() {
            vec![sse::priming(&EventId {
                stream: key,
                sequence: after,
            })]
        } else {
            Vec::new()
        };
        // A request stream ends with its final message; the GET stream when the
        // session ends or a newer GET connection takes over.
        let ending = respond::Ending {
            finals: 1,
            deadline: None,
            poll: gw.poll_for(version),
            shutdown: gw.stream_cancel.clone(),
        };
        let observe = respond::Observe {
            kind: metrics::StreamKind::Get,
            exchange: None,
            resumed_at: resume.is_some().then_some(arrived),
        };
        Ok(respond::sse_observed(
            prelude,
            vec![rx],
            ending,
            Some(observe),
        ))
    }
    .instrument(span)
    .await
}

/// A `Last-Event-ID` is honoured only if it names an event of this session's
/// stream that is still stored: the message at that sequence must be on the
/// stream's subject (or be the request that opened it). Anything else — an
/// id of another session, one that never existed, one that aged out — is
/// refused, so a resume can never read another session's messages.
async fn check_resume(
    svc: &Served,
    session: &SessionId,
    id: &EventId,
) -> Result<(Position, StoredMessage), GatewayError> {
    let msg = svc.stored(id.sequence).await?;
    let position = position_of(&msg, session, id)?;
    Ok((position, msg))
}

/// [`check_resume`]'s judgement of the stored message `msg`.
fn position_of(
    msg: &StoredMessage,
    session: &SessionId,
    id: &EventId,
) -> Result<Position, GatewayError> {
    let opened_it = msg.subject.as_str() == session.in_rpc()
        && msg.headers.get(headers::STREAM).map(|v| v.as_str()) == Some(id.stream.as_str());
    if opened_it {
        Ok(Position::Within)
    } else if msg.subject.as_str() == session.out(&id.stream) {
        let last = msg.headers.get(headers::FINAL).is_some()
            || Control::of(Some(&msg.headers)) == Some(Control::Closed);
        Ok(if last {
            Position::AtEnd
        } else {
            Position::Within
        })
    } else {
        Err(GatewayError::UnknownEventId)
    }
}

/// Where a valid `Last-Event-ID` points.
#[derive(Debug, PartialEq, Eq)]
enum Position {
    /// Events may follow it.
    Within,
    /// It is the stream's last event: the stream is complete.
    AtEnd,
}

pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    Scope(svc): Scope,
    Extension(caller): Extension<Caller>,
    Extension(owner): Extension<quota::Owner>,
    h: HeaderMap,
) -> Result<Response, GatewayError> {
    let checked = checks::delete(&h, limits(&gw, &svc))?;
    publish::require_bus(&gw)?;
    let session = checked.session.ok_or(GatewayError::SessionNotFound)?;
    svc.sessions.find_for(&session, &caller).await?;
    svc.sessions.close(&session).await?;
    quota::close_session(&gw, &svc, &owner, &session).await;
    // End the session's GET streams on every replica.
    if let Err(e) = publish::control(&gw, &session, Control::Closed).await {
        tracing::warn!(error = %e, session = %session, "could not end the session's GET streams");
    }
    tracing::info!(session = %session, "session deleted");
    Ok(StatusCode::OK.into_response())
}

/// What this gateway checks requests for `svc` against.
fn limits<'a>(gw: &'a Gateway, svc: &'a Served) -> checks::Limits<'a> {
    checks::Limits {
        config: &gw.config,
        service: &svc.service,
    }
}

impl Gateway {
    /// How long a stream of this protocol version stays open in polling
    /// mode: only versions whose events carry ids a client resumes from.
    fn poll_for(&self, version: ProtocolVersion) -> Option<std::time::Duration> {
        self.config.sse_poll.filter(|_| version.primes_streams())
    }
}
