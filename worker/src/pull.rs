//! Fair pulls: a worker asks the shared consumer for one request at a time,
//! and only when it has a free slot to start it.
//!
//! A pull request for a batch of N stays pending on the server until it has
//! N messages or expires, so a worker that asks for its whole concurrency
//! soaks up light traffic while others idle, and under load holds requests
//! it cannot start. Asking for one message per free slot, one request
//! outstanding at a time, makes the server's queue of waiting pull requests
//! a round robin over the workers that have room: a worker that just got a
//! message goes to the back. One inbox subscription serves every pull of
//! the worker's life (no subscribe/unsubscribe per message).
//!
//! Plain round robin deals a client's requests alternately to two workers,
//! so a client that opens sessions one after another, each with
//! `initialize` and one call, would see every call on the same worker. The
//! consumer therefore uses the `prioritized` pull policy (lower first, FIFO
//! among equals) and each worker alternates its pull requests between two
//! priorities: workers then take requests in runs of two, which spreads
//! such sessions over the workers while keeping the share of each even.

use async_nats::{
    Subscriber,
    jetstream::{
        self, Context,
        consumer::{PriorityPolicy, PullConsumer, pull::BatchConfig},
    },
    status::StatusCode,
};
use futures::StreamExt;
use std::time::Duration;

/// How long one pull request waits on the server for a message.
const EXPIRES: Duration = Duration::from_secs(10);
/// How often the server says a pending pull request is still alive.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// The priority group of the workers' consumer.
pub const GROUP: &str = "workers";

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("could not send a pull request: {0}")]
    Request(#[from] async_nats::jetstream::consumer::pull::BatchRequestError),
    #[error("could not subscribe to the pull inbox: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    #[error("the pull inbox subscription ended")]
    Closed,
    #[error("the consumer refused the pull: {0}")]
    Refused(String),
}

/// Pulls requests from the workers' consumer one at a time.
pub struct Puller {
    consumer: PullConsumer,
    js: Context,
    inbox: async_nats::Subject,
    sub: Subscriber,
    /// The consumer takes priorities (one created by an older Jetway may not).
    prioritized: bool,
    pulls: u64,
}

impl Puller {
    pub async fn new(
        consumer: PullConsumer,
        nats: &async_nats::Client,
        js: Context,
    ) -> Result<Self, PullError> {
        let inbox = async_nats::Subject::from(nats.new_inbox());
        let sub = nats.subscribe(inbox.clone()).await?;
        let prioritized =
            consumer.cached_info().config.priority_policy == PriorityPolicy::Prioritized;
        Ok(Self {
            consumer,
            js,
            inbox,
            sub,
            prioritized,
            pulls: 0,
        })
    }

    /// Asks for one message and waits for it. `Ok(None)`: the pull request
    /// expired or was lost (a reconnect, a consumer leader change) with
    /// nothing for this worker; ask again.
    pub async fn next(&mut self) -> Result<Option<jetstream::Message>, PullError> {
        self.pulls += 1;
        let batch = BatchConfig {
            batch: 1,
            expires: Some(EXPIRES),
            idle_heartbeat: HEARTBEAT,
            group: self.prioritized.then(|| GROUP.to_owned()),
            priority: self.prioritized.then_some((self.pulls % 2) as usize),
            ..Default::default()
        };
        self.consumer
            .request_batch(batch, self.inbox.clone())
            .await?;
        let sent = tokio::time::Instant::now();
        loop {
            // Two missed heartbeats: the server no longer has our request.
            let next = tokio::time::timeout(HEARTBEAT * 2, self.sub.next()).await;
            let Ok(next) = next else { return Ok(None) };
            let message = next.ok_or(PullError::Closed)?;
            match message.status {
                None | Some(StatusCode::OK) if message.reply.is_some() => {
                    return Ok(Some(jetstream::Message {
                        message,
                        context: self.js.clone(),
                    }));
                }
                Some(StatusCode::IDLE_HEARTBEAT) => continue,
                // An earlier request that was taken for lost expired late.
                Some(StatusCode::TIMEOUT) if sent.elapsed() + HEARTBEAT < EXPIRES => continue,
                // Expired, or nothing to deliver.
                Some(StatusCode::TIMEOUT) | Some(StatusCode::NOT_FOUND) => return Ok(None),
                Some(status) => {
                    let why = message.description.unwrap_or_default();
                    return Err(PullError::Refused(format!("{status}: {why}")));
                }
                // A message without an ack subject is not a consumer delivery.
                None => continue,
            }
        }
    }
}
