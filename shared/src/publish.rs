//! Acknowledged publishing with safe retries.
//!
//! A publish is retried only when it carries a `Nats-Msg-Id`: then a retry
//! after a lost acknowledgement cannot store the message twice, because the
//! stream deduplicates it within the duplicate window.

use async_nats::{
    HeaderMap,
    jetstream::{Context, context::PublishErrorKind, publish::PublishAck},
};
use bytes::Bytes;
use std::time::Duration;

/// Why a message is not on the stream.
#[derive(Debug, thiserror::Error)]
pub enum PublishFailure {
    #[error("JetStream did not acknowledge the message: {0}")]
    Unavailable(String),
    #[error("message exceeds the server's max_payload")]
    TooLarge,
    #[error("JetStream refused the message: {0}")]
    Refused(String),
}

/// Publishes and waits for the stream's acknowledgement.
pub async fn publish_acked(
    js: &Context,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<PublishAck, PublishFailure> {
    let retriable = headers.get(async_nats::header::NATS_MESSAGE_ID).is_some();
    let attempts = if retriable { 3 } else { 1 };
    let mut last = String::new();
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
        }
        let sent = js
            .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
            .await;
        let result = match sent {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match result {
            Ok(ack) => return Ok(ack),
            Err(e) => match e.kind() {
                PublishErrorKind::MaxPayloadExceeded => return Err(PublishFailure::TooLarge),
                PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => last = e.to_string(),
                PublishErrorKind::StreamNotFound => {
                    return Err(PublishFailure::Unavailable(e.to_string()));
                }
                _ => return Err(PublishFailure::Refused(e.to_string())),
            },
        }
    }
    Err(PublishFailure::Unavailable(last))
}
