//! The HTTP+SSE transport of protocol 2024-11-05, without sticky sessions.
//!
//! - `GET /sse` opens a session (the same record, subjects, workers and
//!   replay as a Streamable HTTP session, with its transport recorded) and
//!   answers with an SSE connection whose first event is `endpoint`: the
//!   relative message URL `messages?session_id=<sid>`.
//! - `POST /messages?session_id=<sid>` (alias `sessionId`), on any gateway,
//!   publishes the client message to the session's inbound subject and
//!   answers 202 once JetStream has it.
//! - Every server message of the session reaches the one SSE connection,
//!   wherever it is ([`relay`]); each event's id is `<sid>.<sequence>`.
//! - `GET /sse` with `Last-Event-ID` resumes the same session on any
//!   gateway: the `endpoint` event again, then every event after that id,
//!   once and in order (beyond what 2024-11-05 defines).
//! - One live connection per session: a new one publishes a takeover
//!   marker that ends the older one wherever it is.
//!
//! Layout: [`checks`] (the edge checks, pure), [`relay`] (reading the
//! session from the bus), [`stream`] (the SSE body), [`publish`].

pub mod checks;
pub mod relay;
pub mod stream;

use crate::{
    Gateway,
    auth::{self, Caller},
    error::GatewayError,
    quota,
    served::{Scope, Served},
    transport::{checks as common, publish},
};
use axum::{
    Extension,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use checks::Open;
use jetway_shared::telemetry::propagation;
use jetway_shared::{
    headers::{self, Control},
    http_sse::SessionEventId,
    jsonrpc::{Kind, method},
    principal::may_use,
    protocol::Transport,
    subjects::{Place, SessionId, StreamKey, parse_subject},
};
use std::sync::Arc;

/// `GET /sse`: a new session, or the resumption of one.
pub async fn sse(
    State(gw): State<Arc<Gateway>>,
    Scope(svc): Scope,
    Extension(caller): Extension<Caller>,
    Extension(owner): Extension<quota::Owner>,
    h: HeaderMap,
) -> Result<Response, GatewayError> {
    let open = checks::sse_get(&gw.config, &svc.service, &h, gw.draining.is_cancelled())?;
    publish::require_bus(&gw)?;
    let (first, takeover) = match open {
        Open::New => {
            let session = SessionId::generate(&svc.service, 0);
            quota::open_session(&gw, &svc, &owner, &session).await?;
            if let Err(e) = svc
                .sessions
                .create_http_sse(
                    &session,
                    &gw.config.bus.instance_id,
                    caller.principal.clone(),
                )
                .await
            {
                quota::close_session(&gw, &svc, &owner, &session).await;
                return Err(e);
            }
            let marker = publish::control(&gw, &session, Control::Takeover).await?;
            tracing::info!(session = %session, "HTTP+SSE session created");
            let id = SessionEventId {
                session,
                sequence: marker,
            };
            (id, marker)
        }
        Open::Resume(id) => {
            let record = svc
                .sessions
                .find_on(&id.session, Transport::HttpSse)
                .await?;
            owned(&record, &caller, &id.session)?;
            check_resume(&svc, &id).await?;
            let marker = publish::control(&gw, &id.session, Control::Takeover).await?;
            tracing::info!(session = %id.session, after = id.sequence, "HTTP+SSE session resumed");
            (id, marker)
        }
    };
    let spec = relay::Spec {
        session: first.session.clone(),
        after: first.sequence,
        takeover,
        idle: gw.config.keep_alive,
        connects: gw.connects.clone(),
    };
    let rx = relay::open(&gw.nats, svc.stream.clone(), spec, gw.stream_cancel.clone())
        .await
        .map_err(|_| GatewayError::Unavailable)?;
    Ok(stream::response(
        stream::endpoint(&first),
        first.session,
        rx,
        gw.stream_cancel.clone(),
    ))
}

/// 404 unless `caller` may use the session `record` describes (another
/// principal's session does not exist for them).
fn owned(
    record: &jetway_shared::session::SessionRecord,
    caller: &Caller,
    session: &SessionId,
) -> Result<(), GatewayError> {
    if may_use(record.principal.as_ref(), caller.principal.as_ref()) {
        Ok(())
    } else {
        tracing::info!(session = %session, "session of another principal: answering 404");
        Err(GatewayError::SessionNotFound)
    }
}

/// A `Last-Event-ID` is honoured only if it names a stored server message
/// (or marker) of this very session: anything else — another session's
/// message, a client message, one that never existed or aged out — is
/// refused, so a resume never reads another session's messages.
async fn check_resume(svc: &Served, id: &SessionEventId) -> Result<(), GatewayError> {
    let msg = svc.stored(id.sequence).await?;
    match parse_subject(msg.subject.as_str()) {
        Some((session, Place::Out(_))) if session == id.session => Ok(()),
        _ => Err(GatewayError::UnknownEventId),
    }
}

/// `POST /messages?session_id=…`: one client message of the session.
pub async fn messages(
    State(gw): State<Arc<Gateway>>,
    Scope(svc): Scope,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    h: HeaderMap,
    body: Body,
) -> Result<Response, GatewayError> {
    let limit = gw.config.max_body_bytes;
    let bytes = match common::read_body(body, limit, gw.config.body_read_timeout).await? {
        common::Body::Read(bytes) => Ok(bytes),
        common::Body::OverLimit => Err(limit),
    };
    let msg = checks::message_post(
        &gw.config,
        &svc.service,
        &h,
        &uri,
        bytes.as_deref().map_err(|l| *l),
        gw.draining.is_cancelled(),
    )?;
    publish::require_bus(&gw)?;
    let session = msg.session.ok_or(GatewayError::SessionNotFound)?;
    let record = svc.sessions.find_on(&session, Transport::HttpSse).await?;
    owned(&record, &caller, &session)?;
    checks::admit(&msg.kind, record.state)?;
    auth::authorize(&gw, &caller, uri.path(), &msg.kind, &msg.value)?;
    if matches!(&msg.kind, Kind::Request { method: m, .. } if m == method::INITIALIZE) {
        let (params, version) = common::initialize(
            &msg.value,
            gw.config.max_initialize_bytes,
            Transport::HttpSse,
        )?;
        svc.sessions
            .record_initialize(&session, version, params)
            .await?;
    }
    let trace = propagation::client_traceparent(&msg.value, common::traceparent(&h));
    let payload = Bytes::from(serde_json::to_vec(&msg.value).unwrap_or_default());
    match &msg.kind {
        Kind::Request { .. } => {
            // Its answers go to a stream of their own, which the session's
            // one SSE connection relays with everything else.
            let key = StreamKey::new_request();
            publish::inbound(
                &gw,
                &session,
                session.in_rpc(),
                headers::kind::REQUEST,
                Some(&key),
                trace,
                payload,
            )
            .await?;
        }
        Kind::Notification { .. } | Kind::Response { .. } => {
            let kind = if matches!(msg.kind, Kind::Response { .. }) {
                headers::kind::RESPONSE
            } else {
                headers::kind::NOTIFICATION
            };
            publish::inbound(&gw, &session, session.in_msg(), kind, None, trace, payload).await?;
        }
    }
    Ok((StatusCode::ACCEPTED, "Accepted").into_response())
}
