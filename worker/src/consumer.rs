//! The consumer loop: an accept loop over the shared durable consumer.
//!
//! A semaphore holds the worker's slots. The loop takes a free slot first
//! and only then asks the consumer for one request ([`crate::pull`]), so
//! idle workers get work before busy ones, and nothing waits in a worker
//! without a slot and a renewed lease. Each request runs in its own task
//! and span; a failing message is logged and handed back, never stops the
//! loop. A session gets at most its share of the slots ([`crate::fair`]);
//! its further requests are parked until one of its own ends. On shutdown
//! the loop stops pulling, hands parked requests back, lets in-flight
//! requests finish within the grace period, then hands the rest back (nak)
//! for other workers.

use crate::{
    config::CONSUMER,
    delivery::Delivery,
    fair::{Admit, Fair},
    handler::Handler,
    health::Health,
    pull::Puller,
    request::Runtime,
};
use async_nats::jetstream::{
    consumer::{AckPolicy, PriorityPolicy, PullConsumer, pull},
    stream::Stream,
};
use jetway_shared::{backoff::Backoff, service::Service, subjects};
use std::{sync::Arc, time::Duration};
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Creates or updates the shared durable consumer.
pub async fn ensure_consumer(
    stream: &Stream,
    service: &Service,
    ack_wait: Duration,
    max_deliver: i64,
) -> Result<PullConsumer, async_nats::Error> {
    let config = pull::Config {
        durable_name: Some(CONSUMER.to_owned()),
        filter_subject: subjects::worker_filter(service, 0),
        ack_policy: AckPolicy::Explicit,
        ack_wait,
        // One delivery beyond the executions, on which the worker answers
        // with an error instead of running the request again.
        max_deliver: max_deliver + 1,
        max_ack_pending: 10_000,
        // See `pull`: workers alternate two priorities to take runs of two.
        priority_policy: PriorityPolicy::Prioritized,
        priority_groups: vec![crate::pull::GROUP.to_owned()],
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

/// Runs `delivery` of `session` in `slot`, then the session's parked
/// requests, if any, in the same slot.
fn spawn_run<H: Handler>(
    tracker: &TaskTracker,
    runtime: &Arc<Runtime<H>>,
    fair: &Arc<Fair>,
    hard_stop: &CancellationToken,
    slot: tokio::sync::OwnedSemaphorePermit,
    session: String,
    delivery: Delivery,
) {
    let (rt, fair, stop) = (runtime.clone(), fair.clone(), hard_stop.clone());
    let busy = crate::metrics::Slot::busy();
    tracker.spawn(async move {
        let mut next = Some(delivery);
        while let Some(delivery) = next {
            rt.clone().handle(delivery, stop.clone()).await;
            next = fair.finished(&session);
        }
        drop(busy);
        drop(slot);
    });
}

/// Pulls requests until `shutdown`, then drains.
pub async fn run<H: Handler>(
    runtime: Arc<Runtime<H>>,
    mut puller: Puller,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(runtime.config.max_concurrency));
    let fair = Arc::new(Fair::new(
        runtime.config.max_slots_per_session,
        runtime.config.max_concurrency,
        (runtime.config.lease_renewal(), runtime.config.ack_wait),
    ));
    crate::metrics::slots(runtime.config.max_concurrency);
    let tracker = TaskTracker::new();
    let hard_stop = CancellationToken::new();
    tracing::info!(
        consumer = CONSUMER,
        concurrency = runtime.config.max_concurrency,
        "worker ready"
    );
    health.set_consuming(true);
    // A failed pull (NATS away, consumer leader moving) is retried soon,
    // then less often; the first success starts again from the shortest.
    let mut retry = Backoff::unbounded(Duration::from_millis(100), Duration::from_secs(1)).jitter();
    'pull: while !shutdown.is_cancelled() {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break 'pull,
            },
            _ = shutdown.cancelled() => break 'pull,
        };
        // Nothing waits in the consumer: a parked request takes the slot.
        if let Some((session, delivery)) = fair.idle_slot() {
            spawn_run(
                &tracker, &runtime, &fair, &hard_stop, slot, session, delivery,
            );
            continue;
        }
        let next = tokio::select! {
            m = puller.next() => m,
            _ = shutdown.cancelled() => break 'pull,
        };
        match next {
            Ok(Some(msg)) => {
                retry.reset();
                health.set_consuming(true);
                let delivery = Delivery::new(msg);
                let session = Fair::session_of(&delivery);
                let Admit::Run(delivery) = fair.admit(&session, delivery) else {
                    // Parked: the slot is free for the next pull.
                    continue;
                };
                spawn_run(
                    &tracker, &runtime, &fair, &hard_stop, slot, session, *delivery,
                );
            }
            Ok(None) => {
                retry.reset();
                health.set_consuming(true);
                fair.nothing_pending();
            }
            Err(e) => {
                health.set_consuming(false);
                tracing::warn!(error = %e, "could not pull from the consumer; retrying");
                tokio::select! {
                    _ = retry.sleep() => {}
                    _ = shutdown.cancelled() => break 'pull,
                }
            }
        }
    }
    health.set_draining();
    let parked = fair.drain();
    if !parked.is_empty() {
        tracing::info!(parked = parked.len(), "handing parked requests back");
    }
    for delivery in parked {
        delivery.nak(None).await;
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
