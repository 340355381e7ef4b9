//! Publishing what a request's handler sends onto the session's out subjects.

use async_nats::{HeaderMap, jetstream::Context};
use jetway_shared::{
    headers,
    publish::{PublishFailure, publish_acked},
    subjects::{SessionId, StreamKey, final_msg_id},
};

/// One server message for one SSE stream of a session.
pub struct OutMessage<'a> {
    pub session: &'a SessionId,
    pub stream: &'a StreamKey,
    pub payload: Vec<u8>,
    /// The final response (or closing marker) of a request: deduplicated by
    /// a deterministic id, so a redelivered request answers once.
    pub is_final: bool,
    /// Deduplication suffix for other messages (unique per delivery).
    pub dedup: Option<String>,
}

/// Publishes server messages with the worker's provenance headers.
#[derive(Clone)]
pub struct Publisher {
    js: Context,
    instance: String,
}

impl Publisher {
    pub fn new(js: Context, instance: String) -> Self {
        Self { js, instance }
    }

    /// The JetStream context it publishes with.
    pub fn jetstream(&self) -> &Context {
        &self.js
    }

    pub async fn publish(&self, msg: OutMessage<'_>) -> Result<(), PublishFailure> {
        let mut h = HeaderMap::new();
        h.insert(headers::WORKER, self.instance.as_str());
        h.insert(headers::STREAM, msg.stream.as_str());
        h.insert(headers::TIME_MS, headers::now_ms().to_string().as_str());
        if msg.is_final {
            h.insert(headers::FINAL, "1");
            h.insert(
                async_nats::header::NATS_MESSAGE_ID,
                final_msg_id(msg.session, msg.stream).as_str(),
            );
        } else if let Some(d) = &msg.dedup {
            h.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("{}.{d}", msg.session).as_str(),
            );
        }
        publish_acked(&self.js, msg.session.out(msg.stream), h, msg.payload.into()).await?;
        Ok(())
    }
}
