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

/// How long an idempotent publish keeps trying: longer than a stream
/// leader election in a cluster (a few seconds), short enough that a caller
/// hears about a real outage.
pub const RETRY_FOR: Duration = Duration::from_secs(10);

/// Publishes and waits for the stream's acknowledgement.
///
/// With a `Nats-Msg-Id` the publish is retried, with backoff, for up to
/// [`RETRY_FOR`] on a timeout, a broken connection or "no responders" (no
/// stream leader while one is elected); without one it is tried once.
pub async fn publish_acked(
    js: &Context,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<PublishAck, PublishFailure> {
    let retriable = headers.get(async_nats::header::NATS_MESSAGE_ID).is_some();
    let deadline = tokio::time::Instant::now() + RETRY_FOR;
    let mut delay = Duration::from_millis(50);
    loop {
        let sent = js
            .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
            .await;
        let result = match sent {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        let e = match result {
            Ok(ack) => return Ok(ack),
            Err(e) => e,
        };
        match e.kind() {
            PublishErrorKind::MaxPayloadExceeded => return Err(PublishFailure::TooLarge),
            PublishErrorKind::TimedOut
            | PublishErrorKind::BrokenPipe
            | PublishErrorKind::StreamNotFound => {
                if !retriable || tokio::time::Instant::now() + delay > deadline {
                    return Err(PublishFailure::Unavailable(e.to_string()));
                }
                tracing::debug!(error = %e, ?delay, "publish not acknowledged; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            _ => return Err(PublishFailure::Refused(e.to_string())),
        }
    }
}
