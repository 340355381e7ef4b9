//! Publishing for both transports: client messages onto the session's
//! inbound subjects and control markers (takeover, closed) onto its GET
//! subject, each acknowledged by JetStream before the client hears of it.
//! One set of headers, so workers, replay and redrive see no difference
//! between the transports.

use crate::{Gateway, error::GatewayError};
use async_nats::HeaderMap as NatsHeaders;
use bytes::Bytes;
use jetway_shared::{
    headers::{self, Control},
    msg_id,
    publish::{PublishFailure, publish_acked},
    subjects::{SessionId, StreamKey},
    telemetry::propagation,
};
use tracing::Instrument;

/// 503 at once while the NATS connection is down: the client would queue
/// what we publish and send it after the HTTP client heard 503.
pub fn require_bus(gw: &Gateway) -> Result<(), GatewayError> {
    match gw.nats.connection_state() {
        async_nats::connection::State::Connected => Ok(()),
        _ => Err(GatewayError::Unavailable),
    }
}

/// Publishes a control marker on the session's GET subject; returns its sequence.
pub async fn control(
    gw: &Gateway,
    session: &SessionId,
    control: Control,
) -> Result<u64, GatewayError> {
    let mut h = NatsHeaders::new();
    h.insert(headers::CONTROL, control.as_str());
    h.insert(headers::GATEWAY, gw.config.bus.instance_id.as_str());
    h.insert(headers::TIME_MS, headers::now_ms().to_string().as_str());
    match publish_acked(&gw.js, session.out(&StreamKey::get()), h, Bytes::new()).await {
        Ok(ack) => Ok(ack.sequence),
        Err(e @ (PublishFailure::StorageFull(_) | PublishFailure::SubjectFull(_))) => {
            tracing::warn!(error = %e, session = %session, "control marker refused: storage full");
            Err(refused(e))
        }
        Err(e) => {
            tracing::warn!(error = %e, session = %session, "control publish failed");
            Err(GatewayError::Unavailable)
        }
    }
}

/// Publishes one client message and waits for JetStream's acknowledgement;
/// a request names the stream key its answers go to.
pub async fn inbound(
    gw: &Gateway,
    session: &SessionId,
    subject: String,
    kind: &str,
    stream: Option<&StreamKey>,
    trace: Option<&str>,
    payload: Bytes,
) -> Result<u64, GatewayError> {
    let mut h = NatsHeaders::new();
    h.insert(headers::GATEWAY, gw.config.bus.instance_id.as_str());
    h.insert(headers::KIND, kind);
    h.insert(headers::TIME_MS, headers::now_ms().to_string().as_str());
    if let Some(key) = stream {
        h.insert(headers::STREAM, key.as_str());
    }
    // While traces are exported, the publish span's context (the worker's
    // parent); else the client's own, as it came.
    let span = jetway_shared::otel_span!(
        "publish",
        otel.name = %format!("publish {kind}"),
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.operation.type = "send",
        messaging.destination.name = subject.as_str(),
    );
    if let Some(t) = trace
        && tracing::Span::current().is_none()
    {
        // No request span (HTTP+SSE): the publish continues the client's trace.
        propagation::continue_trace(&span, Some(&propagation::TraceparentExtractor(t)));
    }
    if !propagation::inject(&span, &mut h)
        && let Some(t) = trace
    {
        h.insert(headers::TRACEPARENT, t);
    }
    let nonce = StreamKey::new_request();
    h.insert(
        async_nats::header::NATS_MESSAGE_ID,
        msg_id::inbound(session, nonce.as_str()).as_str(),
    );
    match publish_acked(&gw.js, subject, h, payload)
        .instrument(span)
        .await
    {
        Ok(ack) => Ok(ack.sequence),
        Err(PublishFailure::TooLarge) => Err(GatewayError::TooLarge(gw.config.max_body_bytes)),
        Err(e @ (PublishFailure::StorageFull(_) | PublishFailure::SubjectFull(_))) => {
            tracing::warn!(error = %e, session = %session, "inbound message refused: storage full");
            Err(refused(e))
        }
        Err(e) => {
            tracing::warn!(error = %e, session = %session, "inbound publish failed");
            Err(GatewayError::Unavailable)
        }
    }
}

/// The 507 for a publish refused for lack of room.
fn refused(e: PublishFailure) -> GatewayError {
    match e {
        PublishFailure::SubjectFull(_) => GatewayError::SessionStorageFull,
        _ => GatewayError::StorageFull,
    }
}
