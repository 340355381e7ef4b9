//! The SSE body of an HTTP+SSE connection: the `endpoint` event, then one
//! `message` event per server message of the session with its
//! [`SessionEventId`], keep-alive comments while idle, and a `retry` hint
//! when the gateway ends the connection on purpose (drain, bus trouble) so
//! the client reconnects, to any gateway, with `Last-Event-ID`.

use super::relay::{End, Item};
use crate::{
    outlet::{self, Frame},
    sse,
    transport::respond::RETRY_AFTER,
};
use axum::response::Response;
use bytes::Bytes;
use jetway_shared::{
    http_sse::{ENDPOINT_EVENT, SessionEventId, endpoint_url},
    subjects::SessionId,
};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The reconnection delay the `endpoint` event asks for: after a dropped
/// connection (its gateway died), time for a load balancer's health check
/// to take that gateway out. A gateway that ends a connection on purpose
/// asks for [`RETRY_AFTER`] instead.
pub const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// The first event of every connection: the message URL, with the id the
/// client resumes from if it reconnects before any message, and a
/// reconnection delay for clients that reconnect by themselves.
pub fn endpoint(id: &SessionEventId) -> Bytes {
    format!(
        "event: {ENDPOINT_EVENT}\nid: {id}\nretry: {}\ndata: {}\n\n",
        RECONNECT_AFTER.as_millis(),
        endpoint_url(&id.session)
    )
    .into()
}

/// One server message as an SSE `message` event. Stored payloads are
/// compact JSON (no newlines).
pub fn message(id: &SessionEventId, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 80);
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b"\nevent: message\ndata: ");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\n\n");
    out.into()
}

/// The SSE response of one connection.
pub fn response(
    first: Bytes,
    session: SessionId,
    relay: mpsc::Receiver<Item>,
    shutdown: CancellationToken,
) -> Response {
    let (tx, body) = outlet::body();
    tokio::spawn(pump(first, session, relay, shutdown, tx));
    outlet::response(body)
}

async fn pump(
    first: Bytes,
    session: SessionId,
    mut relay: mpsc::Receiver<Item>,
    shutdown: CancellationToken,
    out: mpsc::Sender<Frame>,
) {
    let _open = crate::metrics::StreamGuard::open(crate::metrics::StreamKind::HttpSse);
    if out.send(first.into()).await.is_err() {
        return;
    }
    loop {
        let chunk = tokio::select! {
            // Draining first: a relay that stops because of the same
            // shutdown must not win the race and skip the retry hint.
            biased;
            _ = shutdown.cancelled() => {
                let _ = out.send(sse::retry(RETRY_AFTER).into()).await;
                return;
            }
            item = relay.recv() => match item {
                Some(Item::Event { sequence, payload, held }) => {
                    let id = SessionEventId { session: session.clone(), sequence };
                    Frame { bytes: message(&id, &payload), held: Some(held) }
                }
                Some(Item::Idle) => sse::keep_alive().into(),
                Some(Item::Ended(why)) => {
                    match why {
                        End::TakenOver => tracing::info!(session = %session, "HTTP+SSE connection taken over by a newer one"),
                        End::Closed => tracing::info!(session = %session, "HTTP+SSE session ended"),
                    }
                    return;
                }
                Some(Item::Failed(why)) => {
                    tracing::warn!(%why, session = %session, "ending HTTP+SSE connection: bus read failed");
                    let _ = out.send(sse::retry(RETRY_AFTER).into()).await;
                    return;
                }
                None => {
                    if shutdown.is_cancelled() {
                        let _ = out.send(sse::retry(RETRY_AFTER).into()).await;
                    }
                    return;
                }
            },
            _ = out.closed() => return,
        };
        if out.send(chunk).await.is_err() {
            return;
        }
    }
}
