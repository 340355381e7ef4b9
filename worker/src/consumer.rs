//! The consumer loop: an accept loop over the shared durable consumer.
//!
//! A semaphore caps requests in flight; each request runs in its own task
//! and span; a failing message is logged and handed back, never stops the
//! loop. On shutdown the loop stops pulling, lets in-flight requests finish
//! within the grace period, then hands the rest back (nak) for other workers.

use crate::{config::CONSUMER, request::Runtime};
use async_nats::jetstream::{
    AckKind,
    consumer::{AckPolicy, PullConsumer, pull},
    stream::Stream,
};
use futures::StreamExt;
use jetway_shared::subjects;
use rmcp::ServerHandler;
use std::{sync::Arc, time::Duration};
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Creates or updates the shared durable consumer.
pub async fn ensure_consumer(
    stream: &Stream,
    ack_wait: Duration,
    max_deliver: i64,
) -> Result<PullConsumer, async_nats::Error> {
    let config = pull::Config {
        durable_name: Some(CONSUMER.to_owned()),
        filter_subject: subjects::worker_filter(0),
        ack_policy: AckPolicy::Explicit,
        ack_wait,
        // One delivery beyond the executions, on which the worker answers
        // with an error instead of running the request again.
        max_deliver: max_deliver + 1,
        max_ack_pending: 10_000,
        ..Default::default()
    };
    match stream.create_consumer(config.clone()).await {
        Ok(c) => Ok(c),
        Err(e) => {
            tracing::warn!(error = %e, "could not create or update the worker consumer; using the existing one");
            Ok(stream.get_consumer(CONSUMER).await?)
        }
    }
}

/// Pulls requests until `shutdown`, then drains.
pub async fn run<S: ServerHandler + Clone>(
    runtime: Arc<Runtime<S>>,
    consumer: PullConsumer,
    shutdown: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(runtime.config.max_concurrency));
    let tracker = TaskTracker::new();
    let hard_stop = CancellationToken::new();
    tracing::info!(
        consumer = CONSUMER,
        concurrency = runtime.config.max_concurrency,
        "worker ready"
    );
    'pull: while !shutdown.is_cancelled() {
        let messages = consumer
            .stream()
            .max_messages_per_batch(runtime.config.max_concurrency)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await;
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "could not pull from the consumer; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        loop {
            let permit = tokio::select! {
                p = limit.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break 'pull,
                },
                _ = shutdown.cancelled() => break 'pull,
            };
            let next = tokio::select! {
                m = messages.next() => m,
                _ = shutdown.cancelled() => break 'pull,
            };
            match next {
                Some(Ok(msg)) => {
                    let rt = runtime.clone();
                    let stop = hard_stop.clone();
                    tracker.spawn(async move {
                        rt.handle(msg, stop).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer stream error");
                    if matches!(
                        e.kind(),
                        async_nats::jetstream::consumer::pull::MessagesErrorKind::ConsumerDeleted
                    ) {
                        break;
                    }
                }
                None => break,
            }
        }
    }
    tracker.close();
    let grace = runtime.config.grace_period;
    tracing::info!(in_flight = tracker.len(), ?grace, "draining");
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            in_flight = tracker.len(),
            "grace period over; handing requests back"
        );
        hard_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    }
    tracing::info!("worker stopped");
}

/// Acks a request, retrying briefly: a lost ack means a needless redelivery,
/// which the deduplicated final response makes harmless, so give up after that.
pub async fn ack(msg: &async_nats::jetstream::Message) {
    for _ in 0..3 {
        match msg.double_ack().await {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "ack failed; retrying"),
        }
    }
}

/// Hands a request back for redelivery after `delay`.
pub async fn nak(msg: &async_nats::jetstream::Message, delay: Option<Duration>) {
    if let Err(e) = msg.ack_with(AckKind::Nak(delay)).await {
        tracing::warn!(error = %e, "nak failed; the request will be redelivered after the ack wait");
    }
}
