//! Acknowledged publishing with safe retries.
//!
//! A publish is retried only when it carries a `Nats-Msg-Id`: then a retry
//! after a lost acknowledgement cannot store the message twice, because the
//! stream deduplicates it within the duplicate window.
//!
//! A refusal for lack of room is its own answer, never retried here: the
//! stream (or the server's store) is full ([`PublishFailure::StorageFull`]),
//! or one subject of a session holds `session_max_messages`
//! ([`PublishFailure::SubjectFull`]). Both stay true until messages age out
//! or an operator frees space, so a caller answers at once (the gateway 507).

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
    /// The stream, bucket or server store is full (`discard: new`).
    #[error("JetStream storage is full: {0}")]
    StorageFull(#[source] PublishError),
    /// The subject holds as many messages as it may (`session_max_messages`).
    #[error("the subject holds its maximum number of messages: {0}")]
    SubjectFull(#[source] PublishError),
    #[error("JetStream refused the message: {0}")]
    Refused(#[source] PublishError),
}

/// Why JetStream refused to store a message for lack of room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The stream, bucket or server store.
    Storage,
    /// One subject (per-subject message limit).
    Subject,
}

/// JetStream's "store failed" error (its description says which limit).
const STREAM_STORE_FAILED: u64 = 10077;

/// Whether `e`, or an error it was caused by, is JetStream refusing to
/// store a message for lack of room: the `max_bytes` or `max_msgs` of a
/// `discard: new` stream or bucket, its per-subject limit, or the
/// server's or account's storage limit.
pub fn full(e: &(dyn std::error::Error + 'static)) -> Option<Full> {
    use async_nats::jetstream::ErrorCode;
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(js) = err.downcast_ref::<async_nats::jetstream::Error>() {
            let code = js.error_code();
            if code.0 == STREAM_STORE_FAILED {
                let text = js.to_string();
                if text.contains("per subject") {
                    return Some(Full::Subject);
                }
                if text.contains("maximum bytes") || text.contains("maximum messages") {
                    return Some(Full::Storage);
                }
            }
            if code == ErrorCode::STORAGE_RESOURCES_EXCEEDED
                || code == ErrorCode::INSUFFICIENT_RESOURCES
                || code == ErrorCode::ACCOUNT_RESOURCES_EXCEEDED
            {
                return Some(Full::Storage);
            }
            return None;
        }
        next = err.source();
    }
    None
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
                    failed("unavailable");
                    return Err(PublishFailure::Unavailable(e));
                }
                crate::metrics::BUS.publish_retries.inc();
                tracing::debug!(error = %e, "publish not acknowledged; retrying");
            }
            Err(PublishFailure::TooLarge) => {
                failed("too_large");
                return Err(PublishFailure::TooLarge);
            }
            Err(PublishFailure::StorageFull(e)) => {
                failed("storage_full");
                return Err(PublishFailure::StorageFull(e));
            }
            Err(PublishFailure::SubjectFull(e)) => {
                failed("subject_full");
                return Err(PublishFailure::SubjectFull(e));
            }
            Err(PublishFailure::Refused(e)) => {
                failed("refused");
                return Err(PublishFailure::Refused(e));
            }
            done => return done,
        }
    }
}

/// Counts a publish that gave up (a conflict is an answer, not a failure).
fn failed(reason: &'static str) {
    crate::metrics::BUS
        .publish_failures
        .get_or_create(&crate::metrics::FailureLabels { reason })
        .inc();
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
        _ => match full(&e) {
            Some(Full::Storage) => PublishFailure::StorageFull(e),
            Some(Full::Subject) => PublishFailure::SubjectFull(e),
            None => PublishFailure::Refused(e),
        },
    })
}
