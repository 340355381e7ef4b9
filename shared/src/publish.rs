//! Acknowledged publishing with safe retries.
//!
//! A publish is retried only when it carries a `Nats-Msg-Id`: then a retry
//! after a lost acknowledgement cannot store the message twice, because the
//! stream deduplicates it within the duplicate window.

use crate::backoff::Backoff;
use async_nats::{
    HeaderMap,
    jetstream::{
        Context,
        context::{PublishError, PublishErrorKind},
        publish::PublishAck,
    },
};
use bytes::Bytes;
use std::time::Duration;

/// Why a message is not on the stream.
#[derive(Debug, thiserror::Error)]
pub enum PublishFailure {
    #[error("JetStream did not acknowledge the message: {0}")]
    Unavailable(#[source] crate::BoxError),
    #[error("message exceeds the server's max_payload")]
    TooLarge,
    /// A compare-and-set publish found another last sequence on its subject.
    #[error("the subject's last sequence is not the expected one")]
    Conflict,
    #[error("JetStream refused the message: {0}")]
    Refused(#[source] PublishError),
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
    let mut backoff = Backoff::new();
    loop {
        match publish_once(js, subject.clone(), headers.clone(), payload.clone()).await {
            Err(PublishFailure::Unavailable(e)) => {
                if !retriable || !backoff.wait().await {
                    return Err(PublishFailure::Unavailable(e));
                }
                tracing::debug!(error = %e, "publish not acknowledged; retrying");
            }
            done => return done,
        }
    }
}

/// One publish and its acknowledgement; a timeout, a broken connection or
/// "no responders" is [`PublishFailure::Unavailable`] (the message may or
/// may not be on the stream).
pub async fn publish_once(
    js: &Context,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<PublishAck, PublishFailure> {
    let result = match js.publish_with_headers(subject, headers, payload).await {
        Ok(ack) => ack.await,
        Err(e) => Err(e),
    };
    result.map_err(|e| match e.kind() {
        PublishErrorKind::MaxPayloadExceeded => PublishFailure::TooLarge,
        PublishErrorKind::WrongLastSequence => PublishFailure::Conflict,
        PublishErrorKind::TimedOut
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::StreamNotFound => PublishFailure::Unavailable(Box::new(e)),
        _ => PublishFailure::Refused(e),
    })
}
