//! Publishing what a request's handler sends onto the session's out subjects.
//!
//! A final answer the stream refuses because it is full
//! ([`PublishFailure::StorageFull`]) is tried again, holding the request
//! (its lease is renewed meanwhile), for up to [`STORAGE_WAIT`]: an operator
//! freeing space, or old messages ageing out, lets it land without running
//! the request again. After that the request is handed back (nak), and runs
//! again later, at most `max_deliver` times: the answer is never acknowledged
//! and lost. Progress and notifications are not waited for (the handler
//! hears the error).
//!
//! One subject holds at most `session_max_messages`: a request's last place
//! is kept for its answer ([`crate::answer_room`]), and a message that still
//! finds its subject full is dropped and counted, never handed back, since
//! a run again would be refused again.

use crate::answer_room::{AnswerRoom, Place};
use async_nats::{HeaderMap, jetstream::Context};
use jetway_shared::{
    backoff::Backoff,
    headers, msg_id,
    publish::{PublishFailure, publish_acked},
    subjects::{SessionId, StreamKey},
    telemetry::propagation,
};
use std::sync::Arc;
use tracing::Instrument;

/// How long a final answer waits for room in a full stream before its
/// request is handed back.
pub const STORAGE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a server message is to its stream.
pub enum Out {
    /// Progress, a log, a server→client request or a notification; `tag`
    /// names it within its request, unique per delivery, so a retried
    /// publish is stored once.
    Message { tag: String },
    /// The request's final response or error: deduplicated by a
    /// deterministic id, so a redelivered request answers once.
    Final,
    /// The final message of a request the client cancelled: no response,
    /// a `cancelled` control marker that ends the POST stream.
    Cancelled,
}

/// One server message for one SSE stream of a session.
pub struct OutMessage<'a> {
    pub session: &'a SessionId,
    pub stream: &'a StreamKey,
    pub payload: Vec<u8>,
    pub kind: Out,
}

/// Publishes server messages with the worker's provenance headers.
#[derive(Clone)]
pub struct Publisher {
    js: Context,
    instance: String,
    room: Arc<AnswerRoom>,
}

impl Publisher {
    /// `session_max_messages`: what one subject of a session may hold.
    pub fn new(js: Context, instance: String, session_max_messages: u64) -> Self {
        Self {
            js,
            instance,
            room: Arc::new(AnswerRoom::new(session_max_messages)),
        }
    }

    /// The JetStream context it publishes with.
    pub fn jetstream(&self) -> &Context {
        &self.js
    }

    /// Ends a request the client cancelled: a `cancelled` marker as its
    /// final message, and no response.
    pub async fn cancelled(
        &self,
        session: &SessionId,
        stream: &StreamKey,
    ) -> Result<(), PublishFailure> {
        self.publish(OutMessage {
            session,
            stream,
            payload: Vec::new(),
            kind: Out::Cancelled,
        })
        .await
    }

    pub async fn publish(&self, msg: OutMessage<'_>) -> Result<(), PublishFailure> {
        let subject = msg.session.out(msg.stream);
        let counted = matches!(msg.kind, Out::Message { .. }) && !msg.stream.is_get();
        if counted && self.room.take(&subject) == Place::KeptForTheAnswer {
            tracing::debug!(stream = %msg.stream, "dropping a message: the request's last place is its answer's");
            crate::metrics::message_dropped(false);
            return Ok(());
        }
        let settles = !matches!(msg.kind, Out::Message { .. });
        let published = self.store(msg, subject.clone()).await;
        if counted && published.is_err() {
            self.room.give_back(&subject);
        } else if settles {
            self.room.answered(&subject);
        }
        published
    }

    async fn store(&self, msg: OutMessage<'_>, subject: String) -> Result<(), PublishFailure> {
        let payload = bytes::Bytes::from(msg.payload);
        let span = jetway_shared::otel_span!(
            "publish",
            otel.name = match msg.kind {
                Out::Message { .. } => "publish message",
                Out::Final => "publish final",
                Out::Cancelled => "publish cancelled",
            },
            otel.kind = "producer",
            messaging.system = "nats",
            messaging.operation.type = "send",
            messaging.destination.name = subject.as_str(),
        );
        let headers = || {
            let mut h = self.headers(msg.session, msg.stream, &msg.kind);
            // The gateway's resume of this stream continues this trace.
            propagation::inject(&span, &mut h);
            h
        };
        let publishing = async {
            match publish_acked(&self.js, subject, headers(), payload.clone()).await {
                Err(PublishFailure::TooLarge) if matches!(msg.kind, Out::Final) => {
                    // Running the request again would give the same answer: the
                    // client gets one clean error in its place instead (same
                    // message id, so it still counts as the one final answer).
                    let max = self.js.client().server_info().max_payload;
                    let size = payload.len();
                    tracing::warn!(
                        size,
                        max,
                        "the answer exceeds max_payload; answering an error"
                    );
                    let body = too_large(&payload, max);
                    let subject = msg.session.out(msg.stream);
                    publish_acked(&self.js, subject, headers(), body.into()).await?;
                    Ok(())
                }
                Err(PublishFailure::StorageFull(e)) if matches!(msg.kind, Out::Final) => {
                    tracing::warn!(error = %e, "the stream is full; waiting for room for the answer");
                    let mut backoff = Backoff::lasting(STORAGE_WAIT);
                    let mut last = e;
                    while backoff.wait().await {
                        let subject = msg.session.out(msg.stream);
                        match publish_acked(&self.js, subject, headers(), payload.clone()).await {
                            Err(PublishFailure::StorageFull(e)) => last = e,
                            done => return done.map(|_| ()),
                        }
                    }
                    tracing::error!(error = %last, "no room for the answer; handing the request back");
                    Err(PublishFailure::StorageFull(last))
                }
                Err(e @ PublishFailure::SubjectFull(_)) => {
                    // A run again would find it full again: drop, count, go on.
                    let final_ = !matches!(msg.kind, Out::Message { .. });
                    tracing::error!(error = %e, stream = %msg.stream, final_,
                        "the request's stream holds session_max_messages messages; this message is dropped");
                    crate::metrics::message_dropped(final_);
                    Ok(())
                }
                done => done.map(|_| ()),
            }
        };
        publishing.instrument(span.clone()).await
    }

    /// The provenance and deduplication headers of a server message.
    fn headers(&self, session: &SessionId, stream: &StreamKey, kind: &Out) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(headers::WORKER, self.instance.as_str());
        h.insert(headers::STREAM, stream.as_str());
        h.insert(headers::TIME_MS, headers::now_ms().to_string().as_str());
        let id = match kind {
            Out::Message { tag } => msg_id::out(session, tag),
            Out::Final | Out::Cancelled => {
                h.insert(headers::FINAL, "1");
                msg_id::final_response(session, stream)
            }
        };
        if matches!(kind, Out::Cancelled) {
            h.insert(headers::CONTROL, headers::Control::Cancelled.as_str());
        }
        h.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        h
    }
}

/// The error, with the answer's id, that replaces a final `answer` the bus
/// refuses (its `max_payload` is `max`).
fn too_large(answer: &[u8], max: usize) -> Vec<u8> {
    let size = answer.len();
    let id = serde_json::from_slice::<serde_json::Value>(answer)
        .ok()
        .and_then(|v| v.get("id").cloned());
    let body = jetway_shared::jsonrpc::error(
        id.as_ref(),
        jetway_shared::jsonrpc::INTERNAL_ERROR,
        format!("the response ({size} bytes) exceeds the message bus's max_payload ({max} bytes)"),
    );
    serde_json::to_vec(&body).unwrap_or_default()
}
